"""The hostile suites' shared checks: a copy of a tiny checkpoint with edits, the state of a folder\n(hashes, sizes), and the refusal contract (exit 2, one line, no internal error)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from _hostile import gemma3_kvs, raw_gguf
from _tiny_ckpt import TINY_CONFIG

from gemma3_pack.cli import UNEXPECTED

RSS_BOUND_MB = 250  # measured: 40-120 MB per case, 160 MB for the 100 MB sparse token array


SECONDS_BOUND = 20  # measured: 0.2-2.3 s per case on the 2-core machine


def _meta_only(d: Path, *extra: bytes, name: str = "m.gguf", **kw) -> Path:
    return raw_gguf(d / name, [*gemma3_kvs(), *extra], **kw)


def _with_tensors(d: Path, tensors: list[bytes], data: bytes, *extra: bytes) -> Path:
    return raw_gguf(d / "m.gguf", [*gemma3_kvs(), *extra], tensors, data)


def _ckpt(d: Path, base: Path, **edits: object) -> Path:
    """A copy of ``base`` in ``d/ckpt``: big files as symlinks, small ones copied, then ``edits``
    (file name -> bytes, or a dict merged into config.json, or None to delete)."""
    out = d / "ckpt"
    out.mkdir()
    for f in base.iterdir():
        if f.stat().st_size > 1 << 20:
            (out / f.name).symlink_to(f)
        else:
            shutil.copy(f, out / f.name)
    for fname, content in edits.items():
        fname = fname.replace("__", ".")
        target = out / fname
        if target.is_symlink():
            target.unlink()
        if content is None:
            target.unlink()
        elif isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, dict) and fname == "config.json":
            target.write_text(json.dumps({**TINY_CONFIG, **content}))
        else:
            target.write_text(json.dumps(content))
    return out


def _state(folder: Path) -> dict[str, object]:
    """Every entry under ``folder``: content hash (small files), size+mtime (sparse giants)."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_fifo() or p.is_dir():
            out[rel] = "fifo" if p.is_fifo() else "dir"
        elif p.stat().st_size > 64 << 20:
            st = p.stat()
            out[rel] = ("big", st.st_size, st.st_mtime_ns)
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _assert_refused(res, needles: tuple[str, ...]) -> None:
    assert UNEXPECTED not in res.stderr, res.stderr  # no validating layer may be bypassed
    assert res.code == 2, (res.code, res.stderr[-2000:])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith("error: ") and "Traceback" not in res.stderr, lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    assert res.max_rss_mb < RSS_BOUND_MB, f"peak RSS {res.max_rss_mb:.0f} MB"
    assert res.seconds < SECONDS_BOUND, f"{res.seconds:.1f} s"
