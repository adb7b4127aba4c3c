"""One conversation, unchanged, against every real server that runs here.

The same program (system prompt + a second system message mid-conversation + two user turns in a
row + a tool prompt + a JSON-schema reply) runs on Ollama's native API, Ollama's ``/v1`` and
llama.cpp's ``llama-server --jinja`` (Google's template rendered by llama.cpp's own Jinja engine),
with the real Gemma 3 270M GGUF from PyPI, patched by us. The servers are built from source by the
session fixtures (``tests/support/_engines.py``, ``tests/support/_engines_llama.py``). Generation is capped.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from _real_chat import CONVERSATION, SCHEMA

from gemma3_pack import Client, VisionNotSupported, patch_gguf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

OPTIONS = {"num_predict": 24, "seed": 1, "temperature": 0.0}
SHORT = {**OPTIONS, "num_predict": 6}


def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: The city name.
    """
    return f"sunny in {city}"


@pytest.fixture(scope="module")
def patched(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "gemma-3-270m.gguf"
    patch_gguf(gguf_270m, out)
    return out


@pytest.fixture(scope="module")
def llama_url(llama_server_bin: Path, patched: Path) -> Iterator[str]:
    import _engines_llama

    with _engines_llama.llama_server(
        patched, "--jinja", "--ctx-size", "4096", "--parallel", "1", "--seed", "1"
    ) as server:
        yield server.url + "/v1"


@pytest.fixture(scope="module")
def ollama_model(ollama_daemon, patched: Path) -> Iterator[tuple[str, str]]:
    url = str(ollama_daemon.url)
    name = f"g3-h7-{uuid.uuid4().hex[:6]}"
    with Client(url, timeout=600) as client:
        assert client.create_from_gguf(patched, name, progress=False).status == "success"
    yield url, name
    with contextlib.suppress(httpx.HTTPError):
        httpx.request("DELETE", f"{url}/api/delete", json={"model": name}, timeout=30)


@pytest.fixture(
    params=[
        pytest.param("ollama", marks=pytest.mark.ollama),
        pytest.param("ollama-v1", marks=pytest.mark.ollama),
        pytest.param("llama-server", marks=pytest.mark.llama_server),
    ]
)
def server(request: pytest.FixtureRequest) -> Iterator[Client]:
    if request.param == "llama-server":
        client = Client(request.getfixturevalue("llama_url"), timeout=600)
    else:
        url, name = request.getfixturevalue("ollama_model")
        suffix = "/v1" if request.param == "ollama-v1" else ""
        client = Client(url + suffix, model=name, timeout=600)
    with client:
        yield client


def test_the_same_conversation_runs_unchanged_on_every_server(server: Client) -> None:
    reply = server.chat(CONVERSATION, options=SHORT)
    assert isinstance(reply, ollama.ChatResponse)
    assert reply.message.role == "assistant"
    assert (reply.message.content or "").strip()
    streamed = list(server.chat(CONVERSATION, options=SHORT, stream=True))
    assert streamed[-1].done is True
    assert "".join(c.message.content or "" for c in streamed).strip()


def test_constrained_json_parses_even_from_the_270m(server: Client) -> None:
    reply = server.chat("Which colour is grass? Reply in JSON.", format=SCHEMA, options=OPTIONS)
    assert reply.parsed in ({"colour": "blue"}, {"colour": "green"}, {"colour": "red"})


def test_a_tool_prompt_goes_through_and_the_reply_is_parsed_or_kept(server: Client) -> None:
    reply = server.chat("What is the weather in Paris?", tools=[get_weather], options=OPTIONS)
    calls = reply.message.tool_calls or []
    # The 270M may or may not call the tool; either way the reply is well-formed.
    assert all(c.function.name == "get_weather" for c in calls)
    assert calls or (reply.message.content or "").strip()


@pytest.mark.llama_server
def test_google_template_raises_on_the_unnormalised_list_that_the_sdk_fixes(llama_url: str) -> None:
    with Client(llama_url) as client:
        raw = [{"role": "user", "content": "Hello."}, {"role": "user", "content": "Again."}]
        model = client.show().modelinfo["openai.model"]["id"]
        with pytest.raises(Exception) as info:  # the openai package's own error, on purpose
            client.openai.chat.completions.create(model=model, messages=raw, max_tokens=4)
        assert getattr(info.value, "status_code", None) in (400, 500)
        assert client.chat(raw, options={"num_predict": 4}).done is True


@pytest.mark.llama_server
def test_llama_server_without_a_projector_refuses_images_first(llama_url: str) -> None:
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
        b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
        b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    with Client(llama_url) as client:
        assert client.has_vision() is False
        with pytest.raises(VisionNotSupported):
            client.chat("What is this?", images=[png])
