"""Progress output for long server work: upload bars, pull/create layer bars, the upload body.

Everything printed here goes to stderr; status text from the server is stripped of terminal escape
sequences and control characters first (a server must not be able to drive the terminal).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ollama import ProgressResponse

from .._errors import ServerResponseError
from .._progress import progress_bar, shows_progress
from ._transport import clean_text

__all__ = ["CHUNK", "ProgressPrinter", "ProgressReader", "afile_chunks", "finish", "upload_bar"]

CHUNK = 1 << 20  # 1 MiB: hashing and upload chunk size


class ProgressReader:
    """A read-only file that ticks a progress bar.

    httpx sees ``read`` and ``fileno`` and so sends a ``Content-Length`` body, read in its own
    64 KiB chunks: streamed (flat memory) and measurably faster than a chunked generator body.
    """

    def __init__(self, fh: Any, bar: Any) -> None:
        self._fh = fh
        self._bar = bar

    def fileno(self) -> int:
        return int(self._fh.fileno())

    def tell(self) -> int:
        return int(self._fh.tell())

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._fh.read(size)
        self._bar.update(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


async def afile_chunks(path: Path, bar: Any) -> AsyncIterator[bytes]:
    import anyio

    async with await anyio.open_file(path, "rb") as fh:
        while chunk := await fh.read(CHUNK):
            bar.update(len(chunk))
            yield chunk


def upload_bar(path: Path, progress: bool) -> Any:
    return progress_bar(path.stat().st_size, f"upload {path.name}", progress=progress, leave=True)


class ProgressPrinter:
    """Renders an ollama pull/create stream: one byte bar per digest, status lines otherwise."""

    def __init__(self, progress: bool) -> None:
        self.enabled = shows_progress(progress)
        self.bar: Any = None
        self.digest: str | None = None

    def __call__(self, part: ProgressResponse) -> None:
        if not self.enabled:
            return
        if part.digest and part.total:
            if part.digest != self.digest:
                self.close()
                self.digest = part.digest
                desc = clean_text(part.status or part.digest, 40)
                self.bar = progress_bar(part.total, desc, progress=True, leave=True)
            if part.completed is not None and self.bar is not None:
                self.bar.update(part.completed - self.bar.n)
        elif part.status:
            self.close()
            print(clean_text(part.status), file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None
        self.digest = None


def finish(last: ProgressResponse | None, what: str) -> ProgressResponse:
    if last is None or last.status != "success":
        status = clean_text(last.status or "") if last is not None else "no reply"
        raise ServerResponseError(f"{what} ended without success (last status: {status!r})")
    return last
