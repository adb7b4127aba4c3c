"""The same flows against a real Ollama daemon (opt-in).

Runs only when ``OLLAMA_HOST`` (read at import, before conftest's isolation removes it) answers
``GET /api/version``; otherwise every test is skipped with that reason. Uses the smallest Gemma 3
(``gemma3:270m``, override with ``GEMMA3_PACK_LIVE_MODEL``) and the real 270M GGUF from PyPI, and
deletes what it creates.

    OLLAMA_HOST=127.0.0.1:11434 pytest -m ollama tests/test_client_live.py
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

import pytest

from gemma3_pack import ModelNotFound, VisionNotSupported
from gemma3_pack._client import Client

HOST = os.environ.get("OLLAMA_HOST")
MODEL = os.environ.get("GEMMA3_PACK_LIVE_MODEL", "gemma3:270m")


def _daemon_version() -> str | None:
    if not HOST:
        return None
    try:
        with Client(HOST, timeout=2) as probe:
            return probe.version()
    except Exception:
        return None


VERSION = _daemon_version()
pytestmark = [
    pytest.mark.ollama,
    pytest.mark.skipif(
        VERSION is None,
        reason=(
            f"no Ollama daemon answers /api/version at OLLAMA_HOST={HOST!r}"
            if HOST
            else "OLLAMA_HOST is not set; set it to a running daemon to run the live suite"
        ),
    ),
]


@pytest.fixture(scope="module")
def client():
    with Client(HOST, model=MODEL, timeout=600) as c:
        c.ensure(MODEL, progress=False)
        yield c


def test_version_is_semver(client: Client) -> None:
    assert VERSION is not None
    assert VERSION.split(".")[0].isdigit()


def test_chat_streams_and_returns_text(client: Client) -> None:
    reply = client.chat("Reply with the single word: pong", options={"num_predict": 8, "seed": 1})
    assert reply.done and reply.message.role == "assistant" and reply.message.content.strip()
    chunks = list(client.chat("Count to three.", stream=True, options={"num_predict": 16}))
    assert chunks[-1].done


def test_text_model_refuses_images_before_chatting(client: Client) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    if client.has_vision(MODEL):
        pytest.skip(f"{MODEL} has vision; this check needs a text-only model")
    with pytest.raises(VisionNotSupported):
        client.chat("What is this?", images=[png])


def test_missing_model_is_model_not_found(client: Client) -> None:
    with pytest.raises(ModelNotFound):
        client.chat("Hi", model=f"gemma3-pack-missing-{uuid.uuid4().hex[:8]}")


def test_list_gemma_includes_the_pulled_model(client: Client) -> None:
    names = {m.name for m in client.list_gemma()}
    assert MODEL in names or f"{MODEL}:latest" in names


def test_create_from_the_real_270m_gguf_then_chat(client: Client, gguf_270m: Path) -> None:
    name = f"gemma3-pack-live-{uuid.uuid4().hex[:8]}"
    try:
        assert (
            client.create_from_gguf(gguf_270m, name, system="Be brief.", progress=False).status
            == "success"
        )
        show = client.show(name)
        assert "<start_of_turn>" in (show.template or "")
        assert "<end_of_turn>" in (show.parameters or "")
        # a second create reuses the blob (HEAD answers 200)
        assert client.has_blob(f"sha256:{_sha(gguf_270m)}")
        reply = client.chat("Say hi.", model=name, options={"num_predict": 8})
        assert reply.message.content.strip()
    finally:
        _delete(client, name)


def test_create_from_an_export_folder(client: Client, gguf_270m: Path, tmp_path: Path) -> None:
    (tmp_path / "gemma-270m-Q4_K_M.gguf").symlink_to(gguf_270m)
    (tmp_path / "export.json").write_text(
        json.dumps(
            {
                "format": 1,
                "name": "live",
                "models": [{"path": "gemma-270m-Q4_K_M.gguf", "quant": "Q4_K_M"}],
                "mmproj": None,
                "fused": None,
                "modelfile": "Modelfile",
            }
        )
    )
    name = f"gemma3-pack-live-{uuid.uuid4().hex[:8]}"
    try:
        assert client.create_from_export(tmp_path, name, progress=False).status == "success"
        assert name in {m.name.removesuffix(":latest") for m in client.list_gemma()}
    finally:
        _delete(client, name)


def _delete(client: Client, name: str) -> None:
    with contextlib.suppress(Exception):
        client.ollama.delete(name)


def _sha(path: Path) -> str:
    from gemma3_pack._client import sha256_file

    return sha256_file(path)
