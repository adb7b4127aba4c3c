"""What every connection to a model server gets, whatever client library speaks the protocol.

* default timeouts (a server that accepts and never answers must not hang ``chat`` or ``pull``);
* a guard around the HTTP transport: no reply line over :data:`MAX_LINE` bytes is buffered (a 1 GB
  NDJSON line or JSON body fails at the cap, not when memory runs out), counted *after* decoding:
  the guard asks for an uncompressed reply and inflates a gzip/deflate one itself, in bounded
  pieces, so 0.5 MB of gzip cannot become a 512 MiB string; a redirect to another origin is
  refused instead of being followed with the prompt re-sent to a stranger;
* a progress deadline next to the per-read timeout: a server that trickles one byte a second, or
  sends only keep-alive comments, must still complete a reply line within the read timeout (every
  single read succeeding is not progress);
* :func:`clean_text`, which turns whatever text a server sent (an HTML error page, terminal escape
  sequences) into one printable line.

The guard is written once for the ``httpx`` API and bound to a module: ``ollama`` uses ``httpx``,
the ``openai`` package ``httpx`` or its fork ``httpx2`` depending on its version.
"""

from __future__ import annotations

import html
import re
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Iterator
from functools import cache
from types import ModuleType
from typing import Any

from .._errors import ServerResponseError, ServerTimeout, UsageError

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_LINE",
    "READ_TIMEOUT",
    "check_host",
    "clean_text",
    "default_timeout",
    "guarded",
]

CONNECT_TIMEOUT = 10.0  # seconds to establish the connection
READ_TIMEOUT = 300.0  # seconds between two reads: a cold 27B load on a slow disk fits
MAX_LINE = 32 << 20  # 32 MiB: the longest reply line (or un-delimited JSON body) kept in memory
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TAG = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<[^>]*>", re.S | re.I)


def default_timeout(httpx_module: ModuleType, given: Any) -> Any:
    """The caller's timeout, or our connect/read default (the wrapped clients default to none)."""
    if given is not None:
        return given
    return httpx_module.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)


def strip_controls(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (newlines and tabs kept)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def clean_text(text: str, limit: int = 300) -> str:
    """The first meaningful line of a server's text: tags and escapes removed, shortened."""
    if "<" in text and ">" in text:
        text = _TAG.sub("\n", text)
    text = html.unescape(strip_controls(text))
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def check_host(host: str, what: str = "host") -> None:
    """Refuse a host the HTTP client would choke on later (bad scheme, broken brackets)."""
    scheme, sep, _ = host.partition("://")
    try:
        parsed = urllib.parse.urlsplit(host if sep else f"http://{host}")
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:
        raise UsageError(
            f"{what} {host!r} is not a valid address ({err}): use HOST:PORT or http://HOST:PORT"
        ) from None
    if sep and scheme.lower() not in ("http", "https"):
        raise UsageError(f"{what} {host!r} has scheme {scheme!r}: use http:// or https://")


def _origin(url: Any) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _check_redirect(request: Any, response: Any) -> None:
    location = response.headers.get("location")
    if not (300 <= response.status_code < 400 and location):
        return
    target = request.url.join(location)
    if _origin(target) != _origin(request.url):
        response.close()
        raise ServerResponseError(
            f"{request.url.scheme}://{request.url.netloc.decode()} redirected to another server "
            f"({target.scheme}://{target.netloc.decode()}); not following, as that would resend "
            "the request: use that address as the host",
            response.status_code,
            server="refused redirect",
        )


def _too_long(url: Any) -> ServerResponseError:
    return ServerResponseError(
        f"{url.scheme}://{url.netloc.decode()} sent a reply line over {MAX_LINE >> 20} MiB: "
        "that is not a model server's reply",
        server="refused reply",
    )


def _where(url: Any) -> str:
    return f"{url.scheme}://{url.netloc.decode()}"


_PIECE = 1 << 16  # inflate at most this much at a time
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


def _encodings(headers: Any, url: Any) -> list[str]:
    """The reply's content codings, outermost last; refuses any the guard cannot bound."""
    codings = [
        c.strip().lower()
        for c in headers.get("content-encoding", "").split(",")
        if c.strip() and c.strip().lower() != "identity"
    ]
    for coding in codings:
        if coding not in _WBITS:
            raise ServerResponseError(
                f"{_where(url)} sent a {coding!r}-compressed reply although none was asked for: "
                "only gzip and deflate are accepted from a model server",
                server="refused reply",
            )
    if len(codings) > 2:
        raise ServerResponseError(
            f"{_where(url)} sent a reply compressed {len(codings)} times over: "
            "that is not a model server's reply",
            server="refused reply",
        )
    return codings


class _Inflate:
    """gzip/deflate layers undone in pieces of at most :data:`_PIECE` bytes (zlib's
    ``max_length``), so memory follows what is consumed, never the compression ratio."""

    def __init__(self, codings: list[str], url: Any) -> None:
        self._codings = list(reversed(codings))  # the last coding applied is undone first
        self._layers = [zlib.decompressobj(_WBITS[c]) for c in self._codings]
        self._fresh = [True] * len(self._layers)
        self._url = url

    def _bad(self) -> ServerResponseError:
        return ServerResponseError(
            f"{_where(self._url)} sent a compressed reply that does not decompress",
            server="refused reply",
        )

    def feed(self, data: bytes, level: int = 0) -> Iterator[bytes]:
        if level == len(self._layers):
            if data:
                yield data
            return
        while data:
            layer = self._layers[level]
            try:
                out = layer.decompress(data, _PIECE)
            except zlib.error:
                if not (self._fresh[level] and self._codings[level] == "deflate"):
                    raise self._bad() from None
                # "deflate" without the zlib wrapper (raw), as some servers send it
                self._layers[level] = zlib.decompressobj(-zlib.MAX_WBITS)
                self._fresh[level] = False
                continue
            self._fresh[level] = False
            data = layer.unconsumed_tail
            yield from self.feed(out, level + 1)

    def flush(self, level: int = 0) -> Iterator[bytes]:
        for i in range(level, len(self._layers)):
            try:
                tail = self._layers[i].flush()
            except zlib.error:
                raise self._bad() from None
            yield from self.feed(tail, i + 1)


class _Progress:
    """The guard's bookkeeping for one reply: the length of the unterminated line (the cap) and
    the time spent waiting on the server since the last complete line that carries data (the
    progress deadline; time the caller spends between two chunks is not the server's)."""

    def __init__(self, url: Any, deadline: float | None) -> None:
        self.url, self.deadline = url, deadline
        self.run = 0  # bytes of the current unterminated line
        self.head = b""  # its first non-blank byte, if any
        self.waited = 0.0

    def see(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        progressed = False
        for i, line in enumerate(lines):
            if not self.head:
                self.head = line.lstrip()[:1]
            if i == len(lines) - 1:
                break
            # a complete line: data unless blank or an SSE comment (": keep-alive")
            progressed = progressed or self.head not in (b"", b":")
            self.head = b""
        newline = chunk.rfind(b"\n")
        self.run = len(chunk) - newline - 1 if newline >= 0 else self.run + len(chunk)
        if self.run > MAX_LINE:
            raise _too_long(self.url)
        if progressed:
            self.waited = 0.0
        elif self.deadline is not None and self.waited > self.deadline:
            raise ServerTimeout(
                _where(self.url),
                self.deadline,
                "sent no complete reply line",
                "if the server is slow (single bytes and keep-alives do not count as an answer)",
            )


def _deadline(request: Any) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    read = timeout.get("read")
    return float(read) if isinstance(read, (int, float)) and read > 0 else None


@cache
def _classes(httpx_module: ModuleType) -> tuple[type, type]:
    """A sync and an async guard transport for this httpx-compatible module."""
    hx = httpx_module

    class _Lines(hx.SyncByteStream):  # type: ignore[name-defined]
        def __init__(self, inner: Any, request: Any, codings: list[str]) -> None:
            self._inner, self._request, self._codings = inner, request, codings

        def __iter__(self) -> Iterator[bytes]:
            seen = _Progress(self._request.url, _deadline(self._request))
            inflate = _Inflate(self._codings, self._request.url)
            chunks = iter(self._inner)
            while True:
                start = time.monotonic()
                chunk = next(chunks, None)
                if chunk is None:
                    break
                seen.waited += time.monotonic() - start
                for piece in inflate.feed(chunk):
                    seen.see(piece)
                    yield piece
            for piece in inflate.flush():
                seen.see(piece)
                yield piece

        def close(self) -> None:
            self._inner.close()

    class _ALines(hx.AsyncByteStream):  # type: ignore[name-defined]
        def __init__(self, inner: Any, request: Any, codings: list[str]) -> None:
            self._inner, self._request, self._codings = inner, request, codings

        async def __aiter__(self) -> AsyncIterator[bytes]:
            seen = _Progress(self._request.url, _deadline(self._request))
            inflate = _Inflate(self._codings, self._request.url)
            chunks = aiter(self._inner)
            while True:
                start = time.monotonic()
                chunk = await anext(chunks, None)
                if chunk is None:
                    break
                seen.waited += time.monotonic() - start
                for piece in inflate.feed(chunk):
                    seen.see(piece)
                    yield piece
            for piece in inflate.flush():
                seen.see(piece)
                yield piece

        async def aclose(self) -> None:
            await self._inner.aclose()

    def _wrap(response: Any, request: Any, make: Any) -> Any:
        codings = _encodings(response.headers, request.url)
        headers = response.headers
        if codings:  # the guard inflates: httpx must not (and the length is the compressed one)
            headers = hx.Headers(
                [
                    (k, v)
                    for k, v in response.headers.multi_items()
                    if k.lower() not in ("content-encoding", "content-length")
                ]
            )
        return hx.Response(
            response.status_code,
            headers=headers,
            stream=make(response.stream, request, codings),
            extensions=response.extensions,
            request=request,
        )

    class Guard(hx.BaseTransport):  # type: ignore[name-defined]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def handle_request(self, request: Any) -> Any:
            request.headers["Accept-Encoding"] = "identity"
            response = self.inner.handle_request(request)
            _check_redirect(request, response)
            try:
                return _wrap(response, request, _Lines)
            except ServerResponseError:
                response.close()
                raise

        def close(self) -> None:
            self.inner.close()

    class AsyncGuard(hx.AsyncBaseTransport):  # type: ignore[name-defined]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def handle_async_request(self, request: Any) -> Any:
            request.headers["Accept-Encoding"] = "identity"
            response = await self.inner.handle_async_request(request)
            _check_redirect(request, response)
            try:
                return _wrap(response, request, _ALines)
            except ServerResponseError:
                await response.aclose()
                raise

        async def aclose(self) -> None:
            await self.inner.aclose()

    return Guard, AsyncGuard


def guarded(httpx_module: ModuleType, transport: Any, *, is_async: bool) -> Any:
    """``transport`` (or the module's default one) behind the decoded line cap, the progress
    deadline and the redirect check."""
    guard, aguard = _classes(httpx_module)
    if is_async:
        return aguard(transport or httpx_module.AsyncHTTPTransport())
    return guard(transport or httpx_module.HTTPTransport())
