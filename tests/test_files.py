"""The one way outputs are written: temp file beside the target, renamed only when complete."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gemma3_pack import OutputError
from gemma3_pack._files import HashingWriter, atomic_path, sha256_file, write_text_atomic


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


def test_hashing_writer_digest_is_the_files(tmp_path: Path) -> None:
    """Small writes, large writes and kernel copies, interleaved: the digest it computes while
    writing is the sha256 of the bytes on disk, and ``tell`` counts them all."""
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(5 << 20))
    path = tmp_path / "out.bin"
    with HashingWriter(path) as w:
        for i in range(300):  # below SMALL: gathered
            w.write(bytes([i % 256]) * (i + 1))
        w.write(os.urandom(HashingWriter.SMALL + 7))  # straight through
        w.copy_range(src, 12345, 3 << 20)
        w.write(b"\0" * 17)
        w.copy_range(src, 0, 1)
        assert w.tell() == sum(range(1, 301)) + HashingWriter.SMALL + 7 + (3 << 20) + 18
    data = path.read_bytes()
    assert len(data) == w.tell()
    assert data[-18:-1] == b"\0" * 17 and data[-1:] == src.read_bytes()[:1]
    assert w.hexdigest() == hashlib.sha256(data).hexdigest()


def test_hashing_writer_copies_without_copy_file_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel refuses the copy (another file system, an old kernel), it reads and
    writes instead, with the same bytes and digest."""
    import errno

    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(9 << 20))
    with HashingWriter(tmp_path / "out.bin") as w:
        w.write(b"head")
        w.copy_range(src, 100, (9 << 20) - 100)
    data = (tmp_path / "out.bin").read_bytes()
    assert data == b"head" + src.read_bytes()[100:]
    assert w.hexdigest() == hashlib.sha256(data).hexdigest()


def test_hashing_writer_reports_a_short_source_and_knows_no_digest_before_close(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100)
    w = HashingWriter(tmp_path / "out.bin")
    with pytest.raises(ValueError, match="once the file is closed"):
        w.hexdigest()
    with pytest.raises(OSError, match="ended while being copied"):
        w.copy_range(src, 50, 100)
    w.abort()
    assert w.closed
