"""The one way outputs are written: temp file beside the target, renamed only when complete."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gemma3_pack import OutputError
from gemma3_pack._files import atomic_path, sha256_file, write_text_atomic


def test_success_renames_and_leaves_no_temp(tmp_path: Path) -> None:
    dst = tmp_path / "out.gguf"
    with atomic_path(dst) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.gguf.")
        tmp.write_bytes(b"GGUF")
        assert not dst.exists()
    assert dst.read_bytes() == b"GGUF"
    assert [p.name for p in tmp_path.iterdir()] == ["out.gguf"]
    umask = os.umask(0)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path, exc: BaseException
) -> None:
    dst = tmp_path / "Modelfile"
    dst.write_text("old")
    with pytest.raises(type(exc)), atomic_path(dst) as tmp:
        tmp.write_text("half")
        raise exc
    assert dst.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["Modelfile"]


def test_os_errors_become_one_line_output_errors(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        write_text_atomic(tmp_path / "missing" / "x.json", "{}")
    dst = tmp_path / "x"
    with pytest.raises(OutputError, match="No space left on device"), atomic_path(dst):
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_explicit_mode_and_text(tmp_path: Path) -> None:
    dst = tmp_path / "a.txt"
    with atomic_path(dst, mode=0o640) as tmp:
        tmp.write_text("x")
    assert dst.stat().st_mode & 0o777 == 0o640
    assert write_text_atomic(dst, "line\n").read_bytes() == b"line\n"


def test_sha256_file_streams(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, bufsize=1 << 20) == hashlib.sha256(data).hexdigest()
