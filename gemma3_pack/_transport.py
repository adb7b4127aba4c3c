"""What every connection to a model server gets, whatever client library speaks the protocol.

* default timeouts (a server that accepts and never answers must not hang ``chat`` or ``pull``);
* a guard around the HTTP transport: no reply line over :data:`MAX_LINE` bytes is buffered (a 1 GB
  NDJSON line or JSON body fails at the cap, not when memory runs out), and a redirect to another
  origin is refused instead of being followed with the prompt re-sent to a stranger;
* :func:`clean_text`, which turns whatever text a server sent (an HTML error page, terminal escape
  sequences) into one printable line.

The guard is written once for the ``httpx`` API and bound to a module: ``ollama`` uses ``httpx``,
the ``openai`` package ``httpx`` or its fork ``httpx2`` depending on its version.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from functools import cache
from types import ModuleType
from typing import Any

from ._errors import ServerResponseError, UsageError

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


def _track(run: int, chunk: bytes, url: Any) -> int:
    """The length of the current unterminated line after ``chunk``; raises past the cap."""
    newline = chunk.rfind(b"\n")
    run = len(chunk) - newline - 1 if newline >= 0 else run + len(chunk)
    if run > MAX_LINE:
        raise _too_long(url)
    return run


@cache
def _classes(httpx_module: ModuleType) -> tuple[type, type]:
    """A sync and an async guard transport for this httpx-compatible module."""
    hx = httpx_module

    class _Lines(hx.SyncByteStream):  # type: ignore[name-defined]
        def __init__(self, inner: Any, url: Any) -> None:
            self._inner, self._url = inner, url

        def __iter__(self) -> Iterator[bytes]:
            run = 0
            for chunk in self._inner:
                run = _track(run, chunk, self._url)
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class _ALines(hx.AsyncByteStream):  # type: ignore[name-defined]
        def __init__(self, inner: Any, url: Any) -> None:
            self._inner, self._url = inner, url

        async def __aiter__(self) -> AsyncIterator[bytes]:
            run = 0
            async for chunk in self._inner:
                run = _track(run, chunk, self._url)
                yield chunk

        async def aclose(self) -> None:
            await self._inner.aclose()

    def _wrap(response: Any, request: Any, stream: Any) -> Any:
        return hx.Response(
            response.status_code,
            headers=response.headers,
            stream=stream,
            extensions=response.extensions,
            request=request,
        )

    class Guard(hx.BaseTransport):  # type: ignore[name-defined]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def handle_request(self, request: Any) -> Any:
            response = self.inner.handle_request(request)
            _check_redirect(request, response)
            return _wrap(response, request, _Lines(response.stream, request.url))

        def close(self) -> None:
            self.inner.close()

    class AsyncGuard(hx.AsyncBaseTransport):  # type: ignore[name-defined]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def handle_async_request(self, request: Any) -> Any:
            response = await self.inner.handle_async_request(request)
            _check_redirect(request, response)
            return _wrap(response, request, _ALines(response.stream, request.url))

        async def aclose(self) -> None:
            await self.inner.aclose()

    return Guard, AsyncGuard


def guarded(httpx_module: ModuleType, transport: Any, *, is_async: bool) -> Any:
    """``transport`` (or the module's default one) behind the line cap and redirect check."""
    guard, aguard = _classes(httpx_module)
    if is_async:
        return aguard(transport or httpx_module.AsyncHTTPTransport())
    return guard(transport or httpx_module.HTTPTransport())
