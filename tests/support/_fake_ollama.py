"""What a fake Ollama answers in the no-socket SDK tests (pytest-httpx): the host, the Gemma
settings the SDK must send, a chat reply, a real minimal PNG, ``/api/show`` and NDJSON stream
bodies."""

from __future__ import annotations

import base64
import json
import struct
import zlib

HOST = "http://ollama.test:11434"
GEMMA = {"temperature": 1.0, "top_k": 64, "top_p": 0.95, "min_p": 0.0, "repeat_penalty": 1.0}
REPLY = {
    "model": "gemma3:4b",
    "created_at": "2026-11-23T10:00:00Z",
    "message": {"role": "assistant", "content": "Rayleigh scattering."},
    "done": True,
}


def png(width: int = 2, height: int = 2) -> bytes:
    """A real, minimal RGB PNG built with the stdlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


PNG = png()
PNG_B64 = base64.b64encode(PNG).decode()


def show(capabilities: list[str]) -> dict:
    """An ``/api/show`` reply for a gemma3 model with these capabilities."""
    return {
        "modelfile": "",
        "template": "",
        "details": {"family": "gemma3"},
        "model_info": {},
        "capabilities": capabilities,
    }


def ndjson(*parts: dict) -> bytes:
    """A streamed reply body: one JSON object per line."""
    return b"".join(json.dumps(p).encode() + b"\n" for p in parts)


def chunk(text: str, done: bool = False) -> dict:
    """One streamed chat chunk."""
    return {
        "model": "gemma3:4b",
        "created_at": "2026-11-23T10:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": done,
    }
