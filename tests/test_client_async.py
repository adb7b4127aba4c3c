"""AsyncClient mirrors Client: same JSON on the wire, async iterators, same error translation."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import ollama
import pytest
from _fake_ollama import GEMMA, HOST, PNG, PNG_B64, REPLY
from _fake_ollama import chunk as _chunk
from _fake_ollama import ndjson as _ndjson
from _fake_ollama import show as _show
from _loopback import LoopbackOllama

from gemma3_pack import ModelNotFound, OllamaNotRunning, OllamaResponseError, VisionNotSupported
from gemma3_pack._sdk._client import AsyncClient, Client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_every_public_client_method_has_an_async_twin() -> None:
    public = {n for n in dir(Client) if not n.startswith("_")}
    assert public <= {n for n in dir(AsyncClient) if not n.startswith("_")}


async def test_chat_sends_the_same_json_as_the_sync_client(httpx_mock) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/show", json=_show(["completion", "vision"]))
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    async with AsyncClient(HOST) as client:
        reply = await client.chat(
            "Describe", system="Be terse.", images=[PNG], options={"num_ctx": 4096}
        )
    assert isinstance(reply, ollama.ChatResponse)
    assert json.loads(httpx_mock.get_requests()[1].content) == {
        "model": "gemma3:4b",
        "stream": False,
        "options": {**GEMMA, "num_ctx": 4096},
        "tools": [],
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Describe", "images": [PNG_B64]},
        ],
    }


async def test_stream_is_an_async_iterator_and_errors_mid_stream_translate(httpx_mock) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/chat", content=_ndjson(_chunk("Hel"), _chunk("lo", done=True))
    )
    httpx_mock.add_response(
        url=f"{HOST}/api/chat",
        content=_ndjson(
            _chunk("Hel"), {"error": "an error was encountered while running the model"}
        ),
    )
    client = AsyncClient(HOST)
    parts = [c.message.content async for c in await client.chat("Hi", stream=True)]
    assert parts == ["Hel", "lo"]
    seen = []
    with pytest.raises(OllamaResponseError, match="an error was encountered") as info:
        async for chunk in await client.chat("Hi", stream=True):
            seen.append(chunk.message.content)
    assert seen == ["Hel"]
    assert info.value.status_code == -1


async def test_vision_pre_check_and_missing_model(httpx_mock) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/show", json=_show(["completion"]))
    httpx_mock.add_response(
        url=f"{HOST}/api/generate", status_code=404, json={"error": "model 'gemma3:27b' not found"}
    )
    client = AsyncClient(HOST, model="gemma3:1b")
    with pytest.raises(VisionNotSupported, match="gemma3:4b"):
        await client.generate("What is this?", images=PNG)
    with pytest.raises(ModelNotFound, match="ollama pull gemma3:27b"):
        await client.generate("Hi", model="gemma3:27b")
    assert [r.url.path for r in httpx_mock.get_requests()] == ["/api/show", "/api/generate"]


async def test_connection_refused(httpx_mock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(OllamaNotRunning, match="ollama serve"):
        await AsyncClient(HOST).version()


async def test_async_conversation_appends_streamed_reply_once_consumed(httpx_mock) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/chat", content=_ndjson(_chunk("Four"), _chunk(".", done=True))
    )
    conv = AsyncClient(HOST).conversation(system="Be brief.")
    stream = await conv.send("2+2?", stream=True)
    assert conv.messages == [{"role": "system", "content": "Be brief."}]
    assert "".join([c.message.content async for c in stream]) == "Four."
    assert conv.messages[-2:] == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "Four."},
    ]


async def test_blobs_pull_and_list_over_a_real_socket(tmp_path: Path) -> None:
    blob = tmp_path / "model.gguf"
    blob.write_bytes(b"GGUF" + bytes(range(256)) * 5000)
    with LoopbackOllama(version="0.29.3") as server:
        server.add_model("gemma3:1b")
        async with AsyncClient(server.url) as client:
            await _blob_pull_list(client, server, blob)


async def _blob_pull_list(client: AsyncClient, server: LoopbackOllama, blob: Path) -> None:
    assert await client.version() == "0.29.3"
    digest = await client.upload_blob(blob, progress=False)
    assert await client.upload_blob(blob, progress=False) == digest  # skipped: HEAD says 200
    assert [(r.method, r.body) for r in server.requests if "blobs" in r.path] == [
        ("HEAD", None),
        ("POST", blob.stat().st_size),
        ("HEAD", None),
    ]
    assert (await client.pull("gemma3:4b", progress=False)).status == "success"
    names = [m.name for m in await client.list_gemma()]
    assert names == ["gemma3:1b", "gemma3:4b"]
    assert await client.ensure("gemma3:4b", progress=False) is False
