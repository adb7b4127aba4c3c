"""Bad inputs through the real CLI: exit 2, one line naming the problem and the fix, no traceback,
nothing written, input untouched. ``GEMMA3_PACK_DEBUG=1`` brings the traceback back."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from _tiny_gguf import sha256, tiny_gguf, tiny_mmproj
from conftest import assert_one_line_error


def _truncated(gguf_270m: Path, folder: Path, size: int) -> Path:
    out = folder / f"cut-{size}.gguf"
    with open(gguf_270m, "rb") as f:
        out.write_bytes(f.read(size))
    return out


# name -> (make the input in a folder, words the one-line error must contain)
BAD: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "missing path": (lambda g, d: d / "nope.gguf", ("nope.gguf", "does not exist")),
    "empty file": (lambda g, d: _touch(d / "empty.gguf"), ("empty", "re-download")),
    "random bytes": (lambda g, d: _random(d / "random.gguf"), ("not a GGUF", "b'GGUF'")),
    "text file": (lambda g, d: _text(d / "Modelfile"), ("not a GGUF", "FROM")),
    "folder": (lambda g, d: _folder(d / "model"), ("is a folder",)),
    "truncated data": (lambda g, d: _truncated(g, d, 10_000_000), ("truncated", "re-download")),
    "truncated header": (lambda g, d: _truncated(g, d, 3_000_000), ("truncated", "re-download")),
    "llama architecture": (
        lambda g, d: tiny_gguf(d / "llama.gguf", arch="llama"),
        ("llama", "not Gemma 3"),
    ),
    "other projector": (
        lambda g, d: tiny_mmproj(d / "mmproj-llava.gguf", projector="mlp"),
        ("mlp", "not Gemma 3"),
    ),
}


def _touch(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _random(p: Path) -> Path:
    p.write_bytes(os.urandom(4096))
    return p


def _text(p: Path) -> Path:
    p.write_text("FROM gemma3:4b\nPARAMETER temperature 1\n")
    return p


def _folder(p: Path) -> Path:
    p.mkdir()
    return p


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256(p) if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case", list(BAD))
def test_patch_refuses_bad_input(case: str, cli, gguf_270m: Path, tmp_path: Path) -> None:
    make, needles = BAD[case]
    src = make(gguf_270m, tmp_path)
    before = _snapshot(tmp_path)
    result = cli("patch", str(src), "-o", str(tmp_path / "out.gguf"))
    assert_one_line_error(result, *needles)
    assert _snapshot(tmp_path) == before  # nothing written, input untouched


@pytest.mark.parametrize("case", ["empty file", "random bytes", "truncated data", "missing path"])
def test_inspect_refuses_unreadable_input(case: str, cli, gguf_270m: Path, tmp_path: Path) -> None:
    make, needles = BAD[case]
    assert_one_line_error(cli("inspect", str(make(gguf_270m, tmp_path))), *needles)


def test_output_in_missing_folder(cli, tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "m.gguf")
    before = _snapshot(tmp_path)
    result = cli("patch", str(src), "-o", str(tmp_path / "no" / "such" / "out.gguf"))
    assert_one_line_error(result, "does not exist", "mkdir -p")
    assert _snapshot(tmp_path) == before


def test_output_is_the_input(cli, tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "m.gguf")
    before = _snapshot(tmp_path)
    assert_one_line_error(cli("patch", str(src), "-o", str(src)), "is the input", "--in-place")
    assert_one_line_error(
        cli("patch", str(src), "-o", str(tmp_path / "x.gguf"), "--in-place"), "both", "use one"
    )
    assert _snapshot(tmp_path) == before


def test_existing_output_is_kept_without_force(cli, tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "m.gguf")
    (tmp_path / "out.gguf").write_bytes(b"precious")
    before = _snapshot(tmp_path)
    assert_one_line_error(
        cli("patch", str(src), "-o", str(tmp_path / "out.gguf")), "already exists", "--force"
    )
    assert _snapshot(tmp_path) == before


def test_debug_shows_the_traceback(cli, tmp_path: Path) -> None:
    (tmp_path / "empty.gguf").write_bytes(b"")
    result = cli("patch", str(tmp_path / "empty.gguf"), env={"GEMMA3_PACK_DEBUG": "1"})
    assert result.code != 0
    assert "Traceback" in result.stderr and "NotGGUF" in result.stderr
