"""The SDK's requests, byte for byte, and its error seam (pytest-httpx; no sockets).

Each test states what goes over the wire: the exact JSON body of every call, the Gemma defaults
merged under the caller's options, images as base64 on the last user message, and which requests
are *not* sent (the vision pre-check stops a chat before it leaves the machine).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import httpx
import ollama
import pytest
from _fake_ollama import GEMMA, HOST, PNG, PNG_B64, REPLY
from _fake_ollama import chunk as _chunk
from _fake_ollama import ndjson as _ndjson
from _fake_ollama import show as _show

from gemma3_pack import (
    InputError,
    InputNotFound,
    ModelNotFound,
    OllamaNotRunning,
    OllamaResponseError,
    UsageError,
    VisionNotSupported,
)
from gemma3_pack._sdk._client import Client, merge_options
from gemma3_pack._sdk._images import encode_image, sniff_format

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16


def _bodies(httpx_mock, path: str) -> list[dict]:
    return [json.loads(r.content) for r in httpx_mock.get_requests() if r.url.path == path]


@pytest.fixture
def client() -> Client:
    return Client(HOST)


# --------------------------------------------------------------------------- host & construction


def test_host_is_parsed_exactly_like_ollamas_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Client().host == "http://127.0.0.1:11434"
    assert Client("example.org").host == "http://example.org:11434"
    assert Client("https://example.org/ollama/").host == "https://example.org/ollama"
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:8080")
    assert Client().host == "http://10.0.0.5:8080"
    assert Client().ollama._client.base_url == ollama.Client()._client.base_url


def test_kwargs_reach_ollama_client(httpx_mock) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    Client(HOST, headers={"X-Team": "gemma"}, timeout=12).chat("Hi")
    request = httpx_mock.get_requests()[0]
    assert request.headers["x-team"] == "gemma"
    assert request.headers["user-agent"].startswith("ollama-python/")
    assert request.extensions["timeout"]["read"] == 12


# --------------------------------------------------------------------------- chat JSON


def test_chat_prompt_sends_one_user_message_and_gemma_sampling(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    reply = client.chat("Why is the sky blue?")
    assert isinstance(reply, ollama.ChatResponse)
    assert reply.message.content == "Rayleigh scattering."
    assert _bodies(httpx_mock, "/api/chat") == [
        {
            "model": "gemma3:4b",
            "stream": False,
            "options": GEMMA,
            "tools": [],
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        }
    ]


def test_chat_system_format_keep_alive_and_model(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    client.chat(
        "List three colours",
        model="gemma3:12b",
        system="Answer in JSON.",
        format="json",
        keep_alive="10m",
    )
    assert _bodies(httpx_mock, "/api/chat") == [
        {
            "model": "gemma3:12b",
            "stream": False,
            "options": GEMMA,
            "tools": [],
            "format": "json",
            "keep_alive": "10m",
            "messages": [
                {"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": "List three colours"},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ({"temperature": 0.2, "num_ctx": 8192}, {**GEMMA, "temperature": 0.2, "num_ctx": 8192}),
        (
            {"min_p": 0.05, "stop": ["<end_of_turn>"]},
            {**GEMMA, "min_p": 0.05, "stop": ["<end_of_turn>"]},
        ),
        ({"top_k": None}, {k: v for k, v in GEMMA.items() if k != "top_k"}),
        # An ollama.Options counts only the fields the caller set; min_p (which Options cannot
        # carry) keeps the Gemma default instead of vanishing.
        (ollama.Options(temperature=0.3, seed=7), {**GEMMA, "temperature": 0.3, "seed": 7}),
    ],
)
def test_caller_options_win_key_by_key(httpx_mock, client: Client, options, sent) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    client.chat("Hi", options=options)
    assert _bodies(httpx_mock, "/api/chat")[0]["options"] == sent


def test_ollama_options_object_would_drop_min_p() -> None:
    # The pitfall this SDK avoids: pydantic ignores the unknown field.
    assert "min_p" not in ollama.Options(min_p=0.1).model_dump(exclude_none=True)
    assert merge_options({"min_p": 0.1})["min_p"] == 0.1
    with pytest.raises(UsageError, match="options must be a dict"):
        merge_options([("temperature", 1)])  # type: ignore[arg-type]


def test_message_list_is_sent_as_given_and_not_modified(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        ollama.Message(role="user", content="What is 2+2?"),
    ]
    before = copy.deepcopy(history)
    client.chat(history)
    assert history == before
    assert _bodies(httpx_mock, "/api/chat")[0]["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
    ]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ([[]], {}, "no messages"),
        (
            [[{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]],
            {"system": "c"},
            "keep one",
        ),
        (["Hi"], {"options": "temperature=1"}, "options must be a dict"),
        ([[{"role": "assistant", "content": "x"}]], {"images": [PNG]}, "needs a user message"),
        # the ollama client's own request validation becomes a UsageError too
        ([[{"role": 1, "content": "x"}]], {}, "invalid role: Input should be a valid string"),
    ],
)
def test_bad_arguments_fail_before_any_request(
    httpx_mock, client: Client, args, kwargs, message
) -> None:
    with pytest.raises(UsageError, match=message):
        client.chat(*args, **kwargs)
    assert httpx_mock.get_requests() == []


# --------------------------------------------------------------------------- images


def test_images_of_every_kind_become_base64_on_the_last_user_message(
    httpx_mock, client: Client, tmp_path: Path
) -> None:
    from PIL import Image

    path = tmp_path / "red.png"
    path.write_bytes(PNG)
    pil = Image.new("RGB", (3, 1), (0, 128, 255))
    data_url = "data:image/png;base64," + PNG_B64
    httpx_mock.add_response(url=f"{HOST}/api/show", json=_show(["completion", "vision"]))
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)

    client.chat(
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "Compare these"},
        ],
        images=[str(path), path, PNG, data_url, pil, JPEG],
    )

    show, chat = (json.loads(r.content) for r in httpx_mock.get_requests())
    assert show == {"model": "gemma3:4b"}
    messages = chat["messages"]
    assert messages[:2] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
    ]
    assert messages[2]["content"] == "Compare these"
    sent = messages[2]["images"]
    assert sent[:4] == [PNG_B64] * 4
    pil_png = base64.b64decode(sent[4])
    assert sniff_format(pil_png) == "png"
    assert Image.open(__import__("io").BytesIO(pil_png)).getpixel((2, 0)) == (0, 128, 255)
    assert sent[5] == base64.b64encode(JPEG).decode()


def test_multi_turn_image_history_is_resent_and_the_capability_is_cached(
    httpx_mock, client: Client
) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/show", json=_show(["completion", "vision"]))
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY, is_reusable=True)
    first = [{"role": "user", "content": "What colour?", "images": [PNG]}]
    client.chat(first)
    client.chat(
        [*first, {"role": "assistant", "content": "Red."}, {"role": "user", "content": "And now?"}],
        images=[JPEG],
    )
    assert [r.url.path for r in httpx_mock.get_requests()] == [
        "/api/show",
        "/api/chat",
        "/api/chat",
    ]
    second = _bodies(httpx_mock, "/api/chat")[1]["messages"]
    assert second[0]["images"] == [PNG_B64]
    assert second[2] == {
        "role": "user",
        "content": "And now?",
        "images": [base64.b64encode(JPEG).decode()],
    }
    assert first[0]["images"] == [PNG]  # the caller's message kept its bytes


@pytest.mark.parametrize(
    ("model", "suggestion"),
    [
        ("gemma3:1b", "gemma3:4b"),
        ("gemma3:270m", "gemma3:4b"),
        ("gemma3:1b-it-qat", "gemma3:4b-it-qat"),
        ("my-finetune", "gemma3:4b"),
    ],
)
def test_text_model_with_images_fails_before_any_chat_request(
    httpx_mock, model, suggestion
) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/show", json=_show(["completion"]))
    client = Client(HOST, model=model)
    with pytest.raises(VisionNotSupported) as info:
        client.chat("What is this?", images=[PNG])
    assert info.value.model == model
    assert info.value.suggestion == suggestion
    assert str(info.value) == (
        f"model {model!r} cannot see images (no 'vision' capability): "
        f"use a vision variant such as {suggestion}"
    )
    assert [r.url.path for r in httpx_mock.get_requests()] == ["/api/show"]


def test_old_daemon_without_capabilities_falls_back_to_model_info(
    httpx_mock, client: Client
) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/show",
        json={"modelfile": "", "details": {}, "model_info": {"gemma3.vision.block_count": 27}},
    )
    assert client.has_vision("gemma3:4b") is True


def test_vision_check_on_a_missing_model_names_the_pull(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/show", status_code=404, json={"error": "model 'gemma3:27b' not found"}
    )
    with pytest.raises(ModelNotFound, match=r"ollama pull gemma3:27b"):
        client.chat("Look", model="gemma3:27b", images=[PNG])


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        ("missing.png", InputNotFound, "does not exist"),
        (b"", InputError, "is empty"),
        (b"%PDF-1.7 not an image", InputError, "not a PNG, JPEG, WebP, GIF or BMP"),
        ("data:image/png;base64,@@@", UsageError, "not valid base64"),
        ("data:image/png;base64" + PNG_B64, UsageError, "no comma"),
        (3.14, UsageError, "cannot use a float as an image"),
    ],
)
def test_bad_images_name_the_problem(image, error, message) -> None:
    with pytest.raises(error, match=message):
        encode_image(image)


def test_image_formats_by_magic_number(tmp_path: Path) -> None:
    assert sniff_format(PNG) == "png"
    assert sniff_format(JPEG) == "jpeg"
    assert sniff_format(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_format(b"GIF89a\x01\x00") == "gif"
    assert sniff_format(b"BM\x00\x00") == "bmp"
    assert sniff_format(b"\x00\x00\x00\x0cjP  ") is None
    assert (
        encode_image("data:image/png," + "%89PNG%0D%0A%1A%0A")
        == base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    )
    assert encode_image(PNG_B64) == PNG_B64  # base64 history from Ollama passes through
    with pytest.raises(InputNotFound, match="mypicturewithoutext"):
        encode_image("mypicturewithoutext")  # a typo'd path is not mistaken for base64
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with pytest.raises(InputError, match="is a folder"):
        encode_image(folder)


# --------------------------------------------------------------------------- streaming


def test_streaming_yields_ollama_chunks(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/chat",
        content=_ndjson(_chunk("Ray"), _chunk("leigh"), _chunk("", done=True)),
    )
    chunks = list(client.chat("Why?", stream=True))
    assert all(isinstance(c, ollama.ChatResponse) for c in chunks)
    assert "".join(c.message.content for c in chunks) == "Rayleigh"
    assert [c.done for c in chunks] == [False, False, True]
    assert _bodies(httpx_mock, "/api/chat")[0]["stream"] is True


def test_error_line_mid_stream_is_translated(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/chat",
        content=_ndjson(
            _chunk("Ray"), {"error": "llama runner process has terminated: error:fault"}
        ),
    )
    stream = client.chat("Why?", stream=True)
    assert next(stream).message.content == "Ray"
    with pytest.raises(OllamaResponseError) as info:
        next(stream)
    assert info.value.error == "llama runner process has terminated: error:fault"
    assert info.value.status_code == -1


def test_missing_model_in_a_stream_is_model_not_found(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/chat", status_code=404, json={"error": "model 'gemma3:4b' not found"}
    )
    with pytest.raises(ModelNotFound) as info:
        list(client.chat("Hi", stream=True))
    assert info.value.model == "gemma3:4b"


def test_connection_refused_in_a_stream_is_ollama_not_running(httpx_mock, client: Client) -> None:
    httpx_mock.add_exception(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(OllamaNotRunning) as info:
        list(client.chat("Hi", stream=True))
    assert info.value.host == HOST
    assert isinstance(info.value, ConnectionError)


def test_generate_sends_prompt_system_images_and_streams(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/show", json=_show(["completion", "vision"]))
    httpx_mock.add_response(
        url=f"{HOST}/api/generate",
        content=_ndjson(
            {"model": "gemma3:4b", "created_at": "x", "response": "A red", "done": False},
            {"model": "gemma3:4b", "created_at": "x", "response": " square.", "done": True},
        ),
    )
    chunks = list(
        client.generate(
            "Describe", system="Be terse.", images=PNG, stream=True, options={"seed": 1}
        )
    )
    assert "".join(c.response for c in chunks) == "A red square."
    assert _bodies(httpx_mock, "/api/generate") == [
        {
            "model": "gemma3:4b",
            "prompt": "Describe",
            "system": "Be terse.",
            "images": [PNG_B64],
            "stream": True,
            "options": {**GEMMA, "seed": 1},
        }
    ]


# --------------------------------------------------------------------------- error statuses


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (
            404,
            {"error": "model 'gemma3:4b' not found"},
            ModelNotFound,
            "model 'gemma3:4b' is not installed: run `ollama pull gemma3:4b` (or `gemma3-pack pull gemma3:4b`)",
        ),
        (
            500,
            {"error": "llama runner process has terminated: exit status 2"},
            OllamaResponseError,
            "ollama: llama runner process has terminated: exit status 2 (status code: 500)",
        ),
        (
            400,
            {"error": "invalid options: num_ctx"},
            OllamaResponseError,
            "ollama: invalid options: num_ctx (status code: 400)",
        ),
        (502, None, OllamaResponseError, "ollama: Bad Gateway (status code: 502)"),
    ],
)
def test_error_statuses_become_one_line_errors(
    httpx_mock, client: Client, status, body, error, text
) -> None:
    if body is None:
        httpx_mock.add_response(url=f"{HOST}/api/chat", status_code=status, text="Bad Gateway")
    else:
        httpx_mock.add_response(url=f"{HOST}/api/chat", status_code=status, json=body)
    with pytest.raises(error) as info:
        client.chat("Hi")
    assert str(info.value) == text
    if isinstance(info.value, OllamaResponseError):
        assert info.value.status_code == status


def test_connection_refused_is_ollama_not_running(httpx_mock, client: Client) -> None:
    httpx_mock.add_exception(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(OllamaNotRunning) as info:
        client.chat("Hi")
    assert str(info.value) == (
        f"cannot reach Ollama at {HOST}: start it with `ollama serve` "
        "(or set OLLAMA_HOST to where it runs)"
    )


def test_a_real_closed_port_is_ollama_not_running() -> None:
    with pytest.raises(OllamaNotRunning, match=r"127\.0\.0\.1:9"):
        Client("127.0.0.1:9").version()


# --------------------------------------------------------------------------- conversation


def test_conversation_keeps_history_including_streamed_replies(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    httpx_mock.add_response(
        url=f"{HOST}/api/chat",
        content=_ndjson(_chunk("Blue "), _chunk("light."), _chunk("", done=True)),
    )
    conv = client.conversation(system="Be brief.")
    assert conv.send("Why is the sky blue?").message.content == "Rayleigh scattering."
    stream = conv.send("Which colour scatters most?", stream=True)
    assert len(conv.messages) == 3  # not appended until the stream is consumed
    assert "".join(c.message.content for c in stream) == "Blue light."
    assert conv.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": "Rayleigh scattering."},
        {"role": "user", "content": "Which colour scatters most?"},
        {"role": "assistant", "content": "Blue light."},
    ]
    second = _bodies(httpx_mock, "/api/chat")[1]
    assert second["messages"] == conv.messages[:4]
    assert second["options"] == GEMMA
    conv.reset()
    assert conv.messages == [{"role": "system", "content": "Be brief."}]


def test_failed_turn_leaves_history_unchanged(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/chat", status_code=500, json={"error": "busy"})
    conv = client.conversation()
    with pytest.raises(OllamaResponseError):
        conv.send("Hi")
    assert conv.messages == []
    conv.messages.append({"role": "user", "content": "tamper"})  # a copy
    assert conv.messages == []


def test_conversation_with_images_checks_vision_and_keeps_them(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/show", json=_show(["completion", "vision"]))
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY, is_reusable=True)
    conv = client.conversation(options={"temperature": 0.5})
    conv.send("What is this?", images=[PNG])
    conv.send("Are you sure?")
    last = _bodies(httpx_mock, "/api/chat")[1]
    assert last["messages"][0] == {"role": "user", "content": "What is this?", "images": [PNG_B64]}
    assert last["options"]["temperature"] == 0.5
    assert [r.url.path for r in httpx_mock.get_requests()] == [
        "/api/show",
        "/api/chat",
        "/api/chat",
    ]


# --------------------------------------------------------------------------- management


def test_version_list_gemma_and_ensure(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/version", json={"version": "0.30.2"})
    httpx_mock.add_response(
        url=f"{HOST}/api/tags",
        json={
            "models": [
                {
                    "model": "gemma3:4b",
                    "size": 3338801804,
                    "details": {
                        "family": "gemma3",
                        "families": ["gemma3"],
                        "parameter_size": "4.3B",
                        "quantization_level": "Q4_K_M",
                    },
                },
                {
                    "model": "llama3.2:1b",
                    "size": 1321098329,
                    "details": {
                        "family": "llama",
                        "parameter_size": "1.2B",
                        "quantization_level": "Q8_0",
                    },
                },
                {
                    "model": "my-gemma:latest",
                    "size": 291000000,
                    "details": {
                        "family": "gemma3",
                        "parameter_size": "268.10M",
                        "quantization_level": "Q8_0",
                    },
                },
            ]
        },
    )
    httpx_mock.add_response(
        url=f"{HOST}/api/show",
        match_json={"model": "gemma3:4b"},
        json=_show(["completion", "vision"]),
    )
    httpx_mock.add_response(
        url=f"{HOST}/api/show", match_json={"model": "my-gemma:latest"}, json=_show(["completion"])
    )
    assert client.version() == "0.30.2"
    models = client.list_gemma()
    assert [m.to_dict() for m in models] == [
        {
            "name": "gemma3:4b",
            "size": 3338801804,
            "parameter_size": "4.3B",
            "quant": "Q4_K_M",
            "capabilities": ["completion", "vision"],
        },
        {
            "name": "my-gemma:latest",
            "size": 291000000,
            "parameter_size": "268.10M",
            "quant": "Q8_0",
            "capabilities": ["completion"],
        },
    ]
    assert [m.vision for m in models] == [True, False]


def test_ensure_pulls_only_when_missing(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/show", match_json={"model": "gemma3:1b"}, json=_show(["completion"])
    )
    httpx_mock.add_response(
        url=f"{HOST}/api/show",
        match_json={"model": "gemma3:12b"},
        status_code=404,
        json={"error": "model 'gemma3:12b' not found"},
    )
    httpx_mock.add_response(
        url=f"{HOST}/api/pull",
        content=_ndjson(
            {"status": "pulling manifest"},
            {
                "status": "pulling e8ad13eff07a",
                "digest": "sha256:e8ad",
                "total": 100,
                "completed": 50,
            },
            {
                "status": "pulling e8ad13eff07a",
                "digest": "sha256:e8ad",
                "total": 100,
                "completed": 100,
            },
            {"status": "success"},
        ),
    )
    assert client.ensure("gemma3:1b", progress=False) is False
    assert client.ensure("gemma3:12b", progress=False) is True
    assert _bodies(httpx_mock, "/api/pull") == [
        {"model": "gemma3:12b", "insecure": False, "stream": True}
    ]


def test_pull_that_does_not_end_in_success_is_an_error(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/pull", content=_ndjson({"status": "pulling manifest"}))
    with pytest.raises(OllamaResponseError, match="pull gemma3:4b ended without success"):
        client.pull(progress=False)


def test_pull_of_unknown_model_keeps_the_daemons_message(httpx_mock, client: Client) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/pull",
        content=_ndjson(
            {"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}
        ),
    )
    with pytest.raises(OllamaResponseError, match="pull model manifest: file does not exist"):
        client.pull("gemma3:5b", progress=False)


# --------------------------------------------------------------------------- backends: one table


def test_every_backend_name_is_one_row_of_the_table() -> None:
    from typing import get_args

    from gemma3_pack._sdk._backend import BACKENDS, BackendName

    assert ["auto", *BACKENDS] == list(get_args(BackendName))
    with pytest.raises(UsageError, match=r"auto, ollama, openai, vllm or llama-server, not 'x'"):
        Client("http://h:1", backend="x")  # type: ignore[arg-type]


def test_a_new_backend_is_one_class_and_one_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client speaks only the Backend protocol: a class registered under a name gets one
    ChatRequest, built once from the public arguments (messages normalised, Gemma's settings
    under the caller's options, the pydantic format as its schema), and its reply is parsed."""
    import pydantic
    from ollama import ChatResponse

    from gemma3_pack._family import SAMPLING
    from gemma3_pack._sdk import _backend
    from gemma3_pack._sdk._types import Call, ChatRequest

    class City(pydantic.BaseModel):
        name: str

    seen: list[ChatRequest] = []

    class Lib:
        def send(self, req: ChatRequest) -> ChatResponse:
            seen.append(req)
            message = ollama.Message(role="assistant", content='{"name": "Lyon"}')
            return ChatResponse(model=req.model, message=message, done=True)

    class Toy:
        name, DEFAULT_MODEL = "toy", "toy-model"

        def __init__(self, host: str | None, *, is_async: bool) -> None:
            self.host, self.lib = f"toy://{host}", Lib()

        def resolve_model(self, model):
            yield from ()
            return model or self.DEFAULT_MODEL

        def chat(self, req):
            return (yield Call("send", (req,), model=req.model))

        def translate(self, err, model):
            return None

        def close(self) -> None:
            pass

    monkeypatch.setitem(_backend.BACKENDS, "toy", Toy)
    with Client("h", backend="toy") as client:  # type: ignore[arg-type]
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A"}]
        reply = client.chat(messages, system=None, options={"top_k": 5}, format=City)
    (req,) = seen
    assert req.model == "toy-model" and req.stream is False
    assert req.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "A"},
    )
    assert req.options == {**SAMPLING, "top_k": 5}
    assert req.format == City.model_json_schema()
    assert reply.parsed == City(name="Lyon")
