"""The OpenAI-protocol backend (llama-server, vLLM, any OpenAI-compatible URL), over real sockets.

Each test states what goes over the wire to a loopback server that answers the way llama-server
(llama.cpp tools/server: ``/props``, ``owned_by: llamacpp``, ``repeat_penalty``) and vLLM
(``ChatCompletionRequest``: ``top_k``/``min_p``/``repetition_penalty`` as extra fields, 404 for a
model it does not serve) document, and what the caller gets back: the same ``ollama.ChatResponse``
types as on Ollama, the same message normalisation, one error tree.
"""

from __future__ import annotations

import base64
import json

import ollama
import pytest
from _fake_ollama import PNG, PNG_B64
from _loopback import LoopbackOllama
from _loopback_openai import LoopbackOpenAI

from gemma3_pack import (
    AsyncClient,
    Client,
    ContextOverflow,
    ModelNotFound,
    NotSupportedByServer,
    ServerNotRunning,
    ServerResponseError,
    UsageError,
    VisionNotSupported,
)

STOP = ["<end_of_turn>"]
SAMPLING = {"temperature": 1.0, "top_p": 0.95, "top_k": 64, "min_p": 0.0}


@pytest.fixture
def connect():
    """``Client(...)`` that is closed after the test (real sockets: no leaked connections)."""
    opened: list[Client] = []

    def make(*args, **kwargs) -> Client:
        opened.append(Client(*args, **kwargs))
        return opened[-1]

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def llama():
    with LoopbackOpenAI("llama-server", models=("gemma-3-4b-it-Q4_K_M.gguf",)) as srv:
        yield srv


@pytest.fixture
def vllm():
    with LoopbackOpenAI("vllm", models=("google/gemma-3-4b-it",)) as srv:
        yield srv


# --------------------------------------------------------------------------- choosing the backend


def test_a_v1_url_means_the_openai_protocol_and_a_bare_host_means_ollama(connect, llama) -> None:
    assert connect(llama.url).backend == "openai"
    assert connect(llama.url + "/").backend == "openai"
    assert connect(llama.root, backend="llama-server").host == llama.url  # /v1 added
    assert connect("127.0.0.1:11434").backend == "ollama"
    with pytest.raises(UsageError, match="backend must be auto, ollama, openai, vllm or llama"):
        connect(llama.url, backend="tgi")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="needs the server URL"):
        connect(backend="vllm")


# --------------------------------------------------------------------------- exact request bodies


@pytest.mark.parametrize(
    ("backend", "penalty"),
    [
        ("vllm", {"repetition_penalty": 1.0}),  # vLLM's ChatCompletionRequest field
        ("llama-server", {"repeat_penalty": 1.0}),  # llama-server's server-schema.cpp field
        ("openai", {"repetition_penalty": 1.0}),  # unknown server: vLLM's spelling (see _settings)
    ],
)
def test_gemma_sampling_in_each_servers_spelling(connect, backend, penalty) -> None:
    with LoopbackOpenAI("llama-server", models=("m",)) as srv:
        connect(srv.url, backend=backend).chat("Why is the sky blue?", model="m")
        assert srv.bodies("/v1/chat/completions") == [
            {
                "model": "m",
                "stream": False,
                "messages": [{"role": "user", "content": "Why is the sky blue?"}],
                "stop": STOP,
                **SAMPLING,
                **penalty,
            }
        ]


def test_caller_values_win_and_none_removes_a_default(connect, vllm) -> None:
    client = connect(vllm.url, backend="vllm", model="google/gemma-3-4b-it")
    client.chat(
        "Hi",
        options={"temperature": 0.2, "top_k": None, "seed": 7, "num_predict": 32, "stop": "END"},
    )
    assert vllm.bodies("/v1/chat/completions")[0] == {
        "model": "google/gemma-3-4b-it",
        "stream": False,
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "top_p": 0.95,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "seed": 7,
        "max_tokens": 32,
        "stop": ["END", "<end_of_turn>"],
    }


def test_model_defaults_to_the_first_one_the_server_lists_and_detects_the_server(
    connect, llama
) -> None:
    client = connect(llama.url)
    reply = client.chat("Hi")
    assert client.model == "gemma-3-4b-it-Q4_K_M.gguf"
    assert [r.path for r in llama.requests] == ["/v1/models", "/v1/chat/completions"]
    body = llama.bodies("/v1/chat/completions")[0]
    assert body["model"] == "gemma-3-4b-it-Q4_K_M.gguf"
    assert body["repeat_penalty"] == 1.0  # owned_by "llamacpp" -> llama-server's spelling
    assert "repetition_penalty" not in body
    assert isinstance(reply, ollama.ChatResponse)
    assert reply.message == ollama.Message(role="assistant", content="Rayleigh scattering.")
    assert (reply.done, reply.done_reason, reply.prompt_eval_count, reply.eval_count) == (
        True,
        "stop",
        12,
        4,
    )


# --------------------------------------------------------------------------- messages


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "user", "content": "Look at this.", "images": [PNG]},
    {"role": "assistant", "content": "A red square."},
    {"role": "system", "content": "Answer in French."},
    {"role": "user", "content": "What colour?"},
]
# Google's template accepts only system?, user, assistant, user...: one system turn first, no two
# turns of a role in a row. The mid-conversation system message joins the first one.
NORMALISED = [
    ("system", "Be brief.\n\nAnswer in French.", []),
    ("user", "Hi\n\nLook at this.", [PNG_B64]),
    ("assistant", "A red square.", []),
    ("user", "What colour?", []),
]


def _from_openai(messages: list[dict]) -> list[tuple]:
    out = []
    for m in messages:
        if isinstance(m["content"], str):
            out.append((m["role"], m["content"], []))
            continue
        text = "".join(p["text"] for p in m["content"] if p["type"] == "text")
        urls = [p["image_url"]["url"] for p in m["content"] if p["type"] == "image_url"]
        assert all(u.startswith("data:image/png;base64,") for u in urls)
        out.append((m["role"], text, [u.partition(",")[2] for u in urls]))
    return out


def _from_ollama(messages: list[dict]) -> list[tuple]:
    return [(m["role"], m["content"], m.get("images", [])) for m in messages]


@pytest.mark.parametrize("backend", ["ollama", "llama-server", "vllm"])
def test_the_same_conversation_is_normalised_the_same_way_on_every_backend(
    connect, backend
) -> None:
    if backend == "ollama":
        with LoopbackOllama() as srv:
            srv.add_model("gemma3:4b", vision=True)
            reply = connect(srv.url).chat(CONVERSATION)
            sent = _from_ollama(
                next(r.body for r in srv.requests if r.path == "/api/chat")["messages"]
            )
    else:
        with LoopbackOpenAI(backend, models=("gemma3:4b",)) as srv:
            reply = connect(srv.url, model="gemma3:4b").chat(CONVERSATION)
            sent = _from_openai(srv.bodies("/v1/chat/completions")[0]["messages"])
    assert sent == NORMALISED
    assert isinstance(reply, ollama.ChatResponse)
    assert reply.message.role == "assistant" and reply.message.content
    assert CONVERSATION[2]["images"] == [PNG]  # the caller's list is not modified


def test_images_are_image_url_data_url_parts_with_the_text_after_them(connect, llama) -> None:
    connect(llama.url, model="g").chat("Describe", images=[PNG, base64.b64decode(PNG_B64)])
    (message,) = llama.bodies("/v1/chat/completions")[0]["messages"]
    assert message == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "text", "text": "Describe"},
        ],
    }
    assert [r.path for r in llama.requests] == ["/props", "/v1/chat/completions"]


def test_a_llama_server_without_a_projector_refuses_images_before_the_chat(connect, llama) -> None:
    llama.vision = False
    client = connect(llama.url, model="g")
    assert client.has_vision() is False
    with pytest.raises(VisionNotSupported, match="--mmproj"):
        client.chat("Describe", images=[PNG])
    assert "/v1/chat/completions" not in [r.path for r in llama.requests]


# --------------------------------------------------------------------------- streaming


def test_streaming_yields_chat_responses_and_a_conversation_keeps_the_reply(connect, vllm) -> None:
    vllm.chunks = ["Blue ", "light", "."]
    client = connect(vllm.url, model="google/gemma-3-4b-it")
    chunks = list(client.chat("Why?", stream=True))
    assert all(isinstance(c, ollama.ChatResponse) for c in chunks)
    assert [c.message.content for c in chunks] == ["Blue ", "light", "."]
    assert [c.done for c in chunks] == [False, False, True]
    assert vllm.bodies("/v1/chat/completions")[0]["stream"] is True

    conv = client.conversation(system="Be brief.")
    stream = conv.send("Which colour?", stream=True)
    assert conv.messages == [{"role": "system", "content": "Be brief."}]
    assert "".join(c.message.content for c in stream) == "Blue light."
    assert conv.messages[1:] == [
        {"role": "user", "content": "Which colour?"},
        {"role": "assistant", "content": "Blue light."},
    ]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_client_sends_the_same_body_and_streams(vllm) -> None:
    vllm.chunks = ["Four", "."]
    async with AsyncClient(vllm.url, backend="vllm", model="google/gemma-3-4b-it") as client:
        reply = await client.chat("2+2?", system="Be brief.")
        parts = [c.message.content async for c in await client.chat("2+2?", stream=True)]
        with pytest.raises(NotSupportedByServer):
            await client.pull("gemma3:4b")
    assert reply.message.content == "Rayleigh scattering."
    assert parts == ["Four", "."]
    assert vllm.bodies("/v1/chat/completions")[0] == {
        "model": "google/gemma-3-4b-it",
        "stream": False,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
        ],
        "stop": STOP,
        **SAMPLING,
        "repetition_penalty": 1.0,
    }


def test_generate_goes_through_chat_and_raw_through_completions(connect, llama) -> None:
    client = connect(llama.url, backend="llama-server", model="g")
    reply = client.generate("Hi", system="Be brief.")
    raw = client.generate("<start_of_turn>user\nHi<end_of_turn>\n", raw=True)
    assert isinstance(reply, ollama.GenerateResponse) and isinstance(raw, ollama.GenerateResponse)
    assert reply.response == raw.response == "Rayleigh scattering."
    assert llama.bodies("/v1/chat/completions")[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert llama.bodies("/v1/completions") == [
        {
            "model": "g",
            "prompt": "<start_of_turn>user\nHi<end_of_turn>\n",
            "stream": False,
            "stop": STOP,
            **SAMPLING,
            "repeat_penalty": 1.0,
        }
    ]


# --------------------------------------------------------------------------- structured output


def test_format_becomes_response_format(connect, vllm) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    client = connect(vllm.url, model="google/gemma-3-4b-it")
    vllm.reply = '{"name": "blue"}'
    assert client.chat("Name a colour", format="json").message.content == vllm.reply
    assert client.chat("Name a colour", format=schema).parsed == {"name": "blue"}
    first, second = vllm.bodies("/v1/chat/completions")
    assert first["response_format"] == {"type": "json_object"}
    assert second["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": schema, "strict": True},
    }


# --------------------------------------------------------------------------- management and errors


def test_list_show_and_version_map_to_what_each_server_offers(connect, llama, vllm) -> None:
    client = connect(llama.url)
    assert client.version() == "b6500-abcdef0"
    assert [m.to_dict() for m in client.list_gemma()] == [
        {
            "name": "gemma-3-4b-it-Q4_K_M.gguf",
            "size": 0,
            "parameter_size": "",
            "quant": "",
            "capabilities": ["completion", "vision"],
        }
    ]
    show = client.show()
    assert show.capabilities == ["completion", "vision"]
    assert show.modelinfo["llama-server.props"]["model_path"] == "/models/gemma.gguf"
    assert connect(vllm.url).version() == "0.11.0"
    assert connect(vllm.url).has_vision() is True  # vLLM cannot say: the server decides


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda c: c.pull("gemma3:4b", progress=False), "pull"),
        (lambda c: c.create_from_variant("gemma3-1b-it", "x", progress=False), "create"),
        (lambda c: c.has_blob("sha256:" + "0" * 64), "blobs"),
    ],
)
def test_ollama_only_management_fails_with_one_line_elsewhere(connect, llama, call, what) -> None:
    with pytest.raises(NotSupportedByServer) as info:
        call(connect(llama.url))
    assert str(info.value) == (
        f"{what} needs an Ollama server, but {llama.url} speaks the OpenAI API: llama-server and "
        "vLLM load their model at start (`llama-server -m MODEL.gguf`, `vllm serve MODEL`)"
    )
    assert "\n" not in str(info.value)
    assert "/v1/chat/completions" not in [r.path for r in llama.requests]


def test_a_model_vllm_does_not_serve_names_what_it_serves_not_ollama_pull(connect, vllm) -> None:
    with pytest.raises(ModelNotFound) as info:
        connect(vllm.url).chat("Hi", model="gemma3:4b")
    assert str(info.value) == (
        "model 'gemma3:4b' is not served there: this server serves google/gemma-3-4b-it; "
        "pass model='google/gemma-3-4b-it'"
    )
    assert "ollama pull" not in str(info.value)


def test_an_ollama_client_pointed_at_a_llama_server_does_not_say_ollama_pull(
    connect, llama
) -> None:
    with pytest.raises(ServerResponseError) as info:
        connect(llama.root).chat("Hi")
    assert not isinstance(info.value, ModelNotFound)
    assert "has no Ollama API" in str(info.value) and "/v1" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body", "ctype", "error", "text"),
    [
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                }
            },
            "application/json",
            ContextOverflow,
            "llama-server: the request exceeds the available context size, try increasing it "
            "(status code: 400)",
        ),
        (
            500,
            "<!DOCTYPE html><html><head><title>500</title><style>b{}</style></head><body>\n"
            "<h1>Internal \x1b]0;owned\x07Server Error</h1>\n" + "<p>trace line</p>\n" * 2000,
            "text/html",
            ServerResponseError,
            "llama-server: Internal Server Error (status code: 500)",
        ),
    ],
)
def test_server_errors_are_one_clean_line(connect, llama, status, body, ctype, error, text) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    llama.fail["/v1/chat/completions"] = (status, raw, ctype)
    with pytest.raises(error) as info:
        connect(llama.url, backend="llama-server", model="g").chat("Hi")
    assert str(info.value) == text
    assert info.value.status_code == status


def test_nothing_listening_names_the_openai_servers_not_ollama_serve(connect) -> None:
    with pytest.raises(ServerNotRunning) as info:
        connect("http://127.0.0.1:9/v1", model="m").chat("Hi")
    assert str(info.value) == (
        "cannot reach an OpenAI-compatible server at http://127.0.0.1:9/v1: start the server "
        "(`llama-server -m MODEL.gguf --jinja` or `vllm serve MODEL`) or pass the URL it listens on"
    )
    assert isinstance(info.value, ConnectionError)


def test_the_openai_api_key_of_the_environment_is_never_sent_elsewhere(
    connect, llama, monkeypatch
) -> None:
    monkeypatch.delenv("GEMMA3_PACK_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    connect(llama.url, model="g").chat("Hi")
    monkeypatch.setenv("GEMMA3_PACK_API_KEY", "local-key")
    connect(llama.url, model="g").chat("Hi")
    connect(llama.url, model="g", api_key="given").chat("Hi")
    assert [r.headers["authorization"] for r in llama.requests] == [
        "Bearer no-key",
        "Bearer local-key",
        "Bearer given",
    ]


COLOUR = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["blue", "green"]}},
    "required": ["colour"],
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("backend", ["ollama", "llama-server", "vllm"])
def test_tools_and_json_reach_every_backend_the_same_way(connect, backend) -> None:
    from gemma3_pack._chat._tools import INSTRUCTION

    reply_text = '{"colour": "blue"}'
    if backend == "ollama":
        with LoopbackOllama() as srv:
            srv.add_model("gemma3:4b", vision=True)
            srv.reply = reply_text
            reply = connect(srv.url).chat(CONVERSATION, tools=[WEATHER_TOOL], format=COLOUR)
            body = next(r.body for r in srv.requests if r.path == "/api/chat")
            sent, fmt = _from_ollama(body["messages"]), body["format"]
    else:
        with LoopbackOpenAI(backend, models=("gemma3:4b",)) as srv:
            srv.reply = reply_text
            client = connect(srv.url, model="gemma3:4b")
            reply = client.chat(CONVERSATION, tools=[WEATHER_TOOL], format=COLOUR)
            body = srv.bodies("/v1/chat/completions")[0]
            sent, fmt = (
                _from_openai(body["messages"]),
                body["response_format"]["json_schema"]["schema"],
            )
    assert reply.parsed == {"colour": "blue"}
    assert fmt == COLOUR
    role, system, _ = sent[0]
    assert role == "system"
    assert system.startswith(INSTRUCTION + '[\n  {\n    "name": "get_weather"')
    assert system.endswith("\n\nBe brief.\n\nAnswer in French.")
    assert sent[1:] == NORMALISED[1:]
