"""Files written the one safe way: a temp file beside the target, renamed over it when complete.

Every output gemma3-pack writes (GGUFs, mmproj and fused files, quantized files, Modelfiles, manifests)
goes through :func:`atomic_path`, so a crash, a full disk or Ctrl-C never leaves a half-written file
under the final name, and the target is untouched until the rename.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._errors import Gemma3PackError, OutputError

__all__ = [
    "HashingWriter",
    "atomic_path",
    "refuse_overwrite",
    "refuse_special_output",
    "remove_stale_parts",
    "sha256_file",
    "stale_parts",
    "write_text_atomic",
]


# Temp files being written right now: a fatal signal handler (SIGBUS, see cli/_sigbus.py) that
# cannot unwind the stack removes them before the process exits.
PENDING: set[str] = set()


def _default_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give (mkstemp makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(dst: Path, *, mode: int | None = None, suffix: str = ".part") -> Iterator[Path]:
    """Yield an empty temp file beside ``dst``; it becomes ``dst`` when the block completes.

    On any exception (KeyboardInterrupt included) the temp file is removed and ``dst`` is left as it
    was. OS errors become one-line :class:`OutputError`\\ s. ``mode`` defaults to what ``open`` gives.
    A symlink at ``dst`` is replaced by the file; its target is left untouched.
    """
    if not dst.parent.is_dir():
        raise OutputError(
            f"cannot write {dst}: folder {dst.parent} does not exist (create it first)"
        )
    refuse_special_output(dst)
    # Ctrl-C / SIGTERM are held back from creating the temp file until the cleanup below is armed:
    # a signal in between would leave a hidden .part file behind.
    remove_stale_parts(dst, suffix)
    held = _hold_signals()
    try:
        prefix = f".{dst.name}.{os.getpid()}."
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dst.parent)
    except OSError as err:
        _release_signals(held)
        raise OutputError(f"cannot write {dst}: {err.strerror or err}") from None
    os.close(fd)
    tmp = Path(name)
    PENDING.add(name)
    try:
        _release_signals(held)  # a pending signal is raised here, inside the cleanup
        os.chmod(tmp, _default_mode() if mode is None else mode)
        yield tmp
        os.replace(tmp, dst)
    except Gemma3PackError:
        raise
    except OSError as err:  # disk full, I/O error, read-only folder: one line, nothing left behind
        raise OutputError(f"cannot write {dst}: {err.strerror or err}: {_advice(err)}") from None
    finally:
        tmp.unlink(missing_ok=True)
        PENDING.discard(name)


def stale_parts(dst: Path, suffix: str = ".part") -> list[Path]:
    """Temp files left in ``dst``'s folder by a gemma3-pack process that no longer runs (``kill -9``,
    a power cut): ``.NAME.PID.XXXXXXXX.part`` (our own naming) whose PID is gone, for ``dst`` and
    for every other output of that folder, so a killed ``-q Q8_0`` run is cleaned up by a later
    ``-q F16`` one. A live writer's are never listed, so two runs racing for one output keep their
    own temp files."""
    out = []
    pattern = re.compile(r"\.(.+)\.(\d+)\.[a-z0-9_]{8}" + re.escape(suffix))
    try:
        candidates = list(dst.parent.glob(f".*{suffix}"))
    except OSError:
        return []
    for part in candidates:
        m = pattern.fullmatch(part.name)
        if m is None:
            continue
        pid = int(m.group(2))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            if stat.S_ISREG(os.lstat(part).st_mode):
                out.append(part)
        except OSError:
            continue
    return out


def remove_stale_parts(dst: Path, suffix: str = ".part") -> list[Path]:
    """Remove :func:`stale_parts` of ``dst`` (best effort); returns what was removed."""
    removed = []
    for part in stale_parts(dst, suffix):
        try:
            part.unlink()
            removed.append(part)
        except OSError:
            pass
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


_HELD = {signal.SIGINT, signal.SIGTERM}


def _hold_signals() -> set[int | signal.Signals] | None:
    """Block SIGINT/SIGTERM in this thread (handlers run in the main thread, once unblocked)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)


def _release_signals(held: set[int | signal.Signals] | None) -> None:
    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _advice(err: OSError) -> str:
    """What to do about a failed write: only a full disk is helped by freeing space."""
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "free space or choose another output path"
    if err.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return (
            "the file or folder is read-only, immutable (chattr +i) or not yours: "
            "choose another output path"
        )
    return "choose another output path"


def refuse_special_output(dst: Path) -> None:
    """An existing output must be a regular file (or a symlink to one, or a dangling symlink,
    which is replaced): never a device, FIFO, socket or folder, nor a symlink to one
    (``-o /dev/stdout``), which a rename would silently replace with a file."""
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        return
    except OSError as err:
        raise OutputError(f"cannot write {dst}: {err.strerror or err}") from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(dst)
        except OSError:  # dangling (or a loop): nothing behind it to lose
            return
        link = f" (a symlink to {os.path.realpath(dst)})"
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{dst}{link} is a folder: give a file name inside it")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise OutputError(
            f"{dst}{link} is {kind}, not a regular file: gemma3-pack never replaces one; "
            "choose a file path"
        )


def refuse_overwrite(dst: Path, *, force: bool, what: str = "") -> None:
    """Refuse an existing ``dst`` unless ``force`` (and never a special file)."""
    refuse_special_output(dst)
    if not force and os.path.lexists(dst):
        raise OutputError(
            f"{dst}{what} already exists: pass --force to overwrite it, or choose another path"
        )


def write_text_atomic(dst: Path, text: str) -> Path:
    """Write UTF-8 text with ``\\n`` line endings to ``dst`` atomically."""
    with atomic_path(dst) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return dst


def sha256_file(path: Path, *, progress: bool = False, bufsize: int = 4 << 20) -> str:
    """sha256 hex digest of a file, read in chunks (constant memory), with an optional bar."""
    from ._progress import progress_bar

    digest = hashlib.sha256()
    with (
        open(path, "rb") as fh,
        progress_bar(path.stat().st_size, f"sha256 {path.name}", progress=progress) as bar,
    ):
        while chunk := fh.read(bufsize):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


class HashingWriter:
    """A write-only binary file that computes its own sha256 while it is written.

    The digest is the file's, byte for byte, without reading the file back: every write is queued,
    in order, to one hashing thread (hashlib releases the GIL, so hashing runs on another core
    beside the writing). :meth:`copy_range` puts bytes of another file into this one inside the
    kernel (``copy_file_range``; a plain read/write where the kernel cannot), and the thread
    hashes them from that file's page cache. Small writes are gathered; ``tell`` counts every
    byte. Written buffers wait in the queue until hashed, at most ``pending`` bytes of them, so
    memory stays flat whatever the file's size. Duck-types what ``gguf.GGUFWriter`` needs of its
    ``fout`` (``write``, ``tell``, ``flush``, ``close``); :meth:`hexdigest` once closed.

    The file is opened without truncation (it must be new and empty, as :func:`atomic_path`
    makes it): on ext4 an ``O_TRUNC`` open makes ``close`` flush every dirty page (its
    ``auto_da_alloc``), which cost ~0.6 s per GB written.
    """

    SMALL = 1 << 20  # writes below this size are gathered before they reach the file
    COPY_STEP = 1 << 30

    def __init__(self, path: Path, *, pending: int = 256 << 20) -> None:
        import collections

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        if os.fstat(fd).st_size:
            os.ftruncate(fd, 0)
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self._buf = bytearray()
        self._pos = 0
        self._digest = hashlib.sha256()
        self._jobs: collections.deque[object] = collections.deque()
        self._cond = threading.Condition()
        self._pending, self._limit = 0, pending
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._hash_jobs, name="sha256", daemon=True)
        self._thread.start()
        self.closed = False

    # -- the hashing thread ------------------------------------------------------------------
    def _hash_jobs(self) -> None:
        buf: bytearray | None = None
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                job = self._jobs.popleft()
            if job is None:
                return
            size = 0
            try:
                if isinstance(job, tuple):
                    path, offset, count = job
                    buf = buf if buf is not None else bytearray(8 << 20)
                    view = memoryview(buf)
                    with open(path, "rb", buffering=0) as src:
                        src.seek(offset)
                        while count > 0:
                            n = src.readinto(view[: min(count, len(buf))])
                            if not n:
                                raise OSError(errno.EIO, f"{path} ended while being copied")
                            self._digest.update(view[:n])
                            count -= n
                else:
                    size = len(job)  # type: ignore[arg-type]
                    if self._error is None:
                        self._digest.update(job)  # type: ignore[arg-type]
            except BaseException as err:  # re-raised in the writer's thread
                self._error = err
            finally:
                with self._cond:
                    self._pending -= size
                    self._cond.notify_all()

    def _queue(self, job: object, size: int = 0) -> None:
        if self._error is not None:
            raise self._error
        with self._cond:
            while size and self._pending and self._pending + size > self._limit:
                self._cond.wait()
            self._pending += size
            self._jobs.append(job)
            self._cond.notify_all()

    # -- writing -------------------------------------------------------------------------------
    def _write_all(self, data: memoryview) -> None:
        while len(data):
            n = self._fh.write(data)
            data = data[n:]

    def _drain(self) -> None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._write_all(memoryview(data))
            self._queue(data, len(data))

    def write(self, data: object) -> int:
        view = memoryview(data).cast("B")  # type: ignore[arg-type]
        n = len(view)
        if n < self.SMALL:
            self._buf += view
            if len(self._buf) >= self.SMALL:
                self._drain()
        else:
            self._drain()
            self._write_all(view)
            self._queue(view, n)  # the caller's buffer stays alive in the queue until hashed
        self._pos += n
        return n

    def copy_range(self, src: Path, offset: int, count: int) -> None:
        """Append ``count`` bytes of ``src`` from ``offset``, copied by the kernel where it can."""
        self._drain()
        done = 0
        with open(src, "rb", buffering=0) as fh:
            copy = getattr(os, "copy_file_range", None)
            while copy is not None and done < count:
                try:
                    n = copy(
                        fh.fileno(),
                        self._fh.fileno(),
                        min(count - done, self.COPY_STEP),
                        offset + done,
                    )
                except OSError as err:
                    if err.errno not in (
                        errno.EXDEV,
                        errno.EINVAL,
                        errno.ENOSYS,
                        errno.EOPNOTSUPP,
                        errno.EPERM,
                    ):
                        raise
                    copy = None  # this pair of file systems: read and write instead
                    break
                if n == 0:
                    raise OSError(errno.EIO, f"{src} ended while being copied")
                done += n
            if done < count:
                fh.seek(offset + done)
                buf = bytearray(8 << 20)
                while done < count:
                    n = fh.readinto(memoryview(buf)[: min(count - done, len(buf))])
                    if not n:
                        raise OSError(errno.EIO, f"{src} ended while being copied")
                    self._write_all(memoryview(buf)[:n])
                    done += n
        self._queue((src, offset, count))
        self._pos += count

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._drain()

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._drain()
        finally:
            self._stop()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop the thread and close the file without raising (the write failed elsewhere)."""
        if not self.closed:
            self._error = self._error or OSError("aborted")
            self._stop()

    def _stop(self) -> None:
        self.closed = True
        with self._cond:
            self._jobs.append(None)
            self._cond.notify_all()
        self._thread.join()
        self._fh.close()

    def hexdigest(self) -> str:
        if not self.closed:
            raise ValueError("the sha256 is known once the file is closed")
        return self._digest.hexdigest()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
