"""Builders for hostile inputs: raw GGUF files byte by byte (gguf-py refuses to write most of them),
raw safetensors headers, and a CLI runner that measures the child's peak RSS and wall time."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# GGUF value types (gguf-py GGUFValueType)
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?"}
_FMT.update({U64: "Q", I64: "q", F64: "d"})


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def value(vtype: int, v: Any) -> bytes:
    """A GGUF value (no type prefix). Arrays: ``v = (item_type, [items])``."""
    if vtype == STR:
        return gstr(v)
    if vtype == ARR:
        sub, items = v
        return struct.pack("<IQ", sub, len(items)) + b"".join(value(sub, i) for i in items)
    return struct.pack("<" + _FMT[vtype], v)


def kv(key: str, vtype: int, v: Any) -> bytes:
    return gstr(key) + struct.pack("<I", vtype) + value(vtype, v)


def gemma3_kvs(n_vocab: int = 300) -> list[bytes]:
    """The records a Gemma 3 model needs for ``patch`` to accept it (turn tokens at 105/106)."""
    tokens = [f"t{i}" for i in range(n_vocab)]
    tokens[:5] = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    tokens[105:107] = ["<start_of_turn>", "<end_of_turn>"]
    types = [1] * n_vocab
    types[:5] = [3] * 5
    types[105:107] = [3, 3]
    return [
        kv("general.architecture", STR, "gemma3"),
        kv("gemma3.context_length", U32, 32768),
        kv("gemma3.block_count", U32, 18),
        kv("gemma3.embedding_length", U32, 8),
        kv("tokenizer.ggml.model", STR, "llama"),
        kv("tokenizer.ggml.tokens", ARR, (STR, tokens)),
        kv("tokenizer.ggml.token_type", ARR, (I32, types)),
    ]


def tensor_info(name: str, dims: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (
        gstr(name)
        + struct.pack("<I", len(dims))
        + struct.pack(f"<{len(dims)}Q", *dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


def raw_gguf(
    path: Path,
    records: list[bytes],
    tensors: list[bytes] = (),  # type: ignore[assignment]
    data: bytes = b"",
    *,
    alignment: int = 32,
    n_kv: int | None = None,
    sparse_tail: int = 0,
) -> Path:
    """A GGUF v3 file from raw records; ``sparse_tail`` bytes of zeros are added as a hole."""
    body = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(records) if n_kv is None else n_kv)
    body += b"".join(records) + b"".join(tensors)
    if tensors:
        body += b"\0" * (-len(body) % alignment)
    body += data
    path.write_bytes(body)
    if sparse_tail:
        with open(path, "r+b") as f:
            f.truncate(len(body) + sparse_tail)
    return path


def safetensors_bytes(header: dict[str, Any] | bytes, data: bytes = b"") -> bytes:
    import json

    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@dataclass
class Measured:
    code: int
    stdout: str
    stderr: str
    max_rss_mb: float  # the child's peak resident set (ru_maxrss of that one process)
    seconds: float


# A small launcher process forks the CLI and reports that child's own ru_maxrss. Measuring from
# pytest directly would not do: a child forked from a process that has imported torch starts
# with the parent's resident pages counted (716 MB for every case, whatever it did).
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "gemma3_pack", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> Measured:
    """``python -m gemma3_pack ARGS`` with the peak RSS of that process alone (see _LAUNCHER)."""
    import tempfile

    full_env = {k: v for k, v in os.environ.items() if k != "GEMMA3_PACK_DEBUG"}
    full_env.update(env or {})
    with tempfile.NamedTemporaryFile(prefix="rss-", delete=False) as f:
        rss_file = f.name
    t0 = time.perf_counter()
    try:
        # its own session, so a timeout kills the CLI process too, not only the launcher
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, rss_file, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        seconds = time.perf_counter() - t0
        rss_kb = int(Path(rss_file).read_text() or 0)
    finally:
        os.unlink(rss_file)
    return Measured(
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        rss_kb / 1024,
        seconds,
    )
