"""Foreign errors that any backend's library lets through, as :mod:`gemma3_pack._errors`: two tables.

As httpx's own transport maps httpcore's errors (``HTTPCORE_EXC_MAP``), :data:`HTTPX_ERRORS` maps
every exception httpx (and its fork httpx2, which the ``openai`` package uses) defines, by class
name: the most specific class in the error's MRO wins. :data:`OTHER_ERRORS` maps what is left —
builtin network errors and what ``json``/``pydantic`` raise on a reply of the wrong shape — in
order, first match wins. Each backend's ``translate`` handles its own library's errors (ollama's
``ResponseError``, openai's ``APIStatusError`` ...) and hands the rest to :func:`translate_common`.
tests/test_hostile_r3.py enumerates httpx's and httpx2's exception classes against the table.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pydantic

from .._errors import ServerNotRunning, ServerResponseError, ServerTimeout, UsageError
from ._transport import clean_text
from ._types import server_kind

__all__ = ["HTTPX_ERRORS", "OTHER_ERRORS", "translate_common"]

# (the error, host, server name, read timeout) -> our error, or None: not this row
Mapper = Callable[[BaseException, str, str, float | None], Exception | None]


def _failed(what: str) -> Mapper:
    def make(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
        text = clean_text(str(err))
        detail = f"{type(err).__name__}: {text}" if text else type(err).__name__
        return ServerResponseError(what.format(host=host, detail=detail), server=server)

    return make


def _usage(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    return UsageError(f"the request to {host} cannot be sent ({clean_text(str(err))})")


def _not_running(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    return ServerNotRunning(host, server)


def _timeout(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    return ServerTimeout(host, timeout)


HTTPX_ERRORS: dict[str, Mapper] = {
    "ConnectTimeout": _not_running,
    "ConnectError": _not_running,
    "TimeoutException": _timeout,  # read/write/pool
    "DecodingError": _failed("{host} sent a reply body that does not decode ({detail})"),
    "TooManyRedirects": _failed("{host} redirected too many times ({detail})"),
    "ProxyError": _failed("the proxy to {host} failed ({detail}): check HTTP(S)_PROXY"),
    "UnsupportedProtocol": _usage,
    "LocalProtocolError": _usage,
    "InvalidURL": _usage,
    "TransportError": _failed("connection to {host} failed mid-request ({detail})"),
    "NetworkError": _failed("connection to {host} failed mid-request ({detail})"),  # httpcore's
    "ProtocolError": _failed("connection to {host} failed mid-request ({detail})"),
    "HTTPStatusError": _failed("{host} answered with an error ({detail})"),
    "CookieConflict": _failed("{host} set conflicting cookies ({detail})"),
    "StreamError": _failed("the reply from {host} could not be read ({detail})"),
    "HTTPError": _failed("the request to {host} failed ({detail})"),
}

_HTTPX_MODULES = ("httpx", "httpx2", "httpcore")


def _connection(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    # ollama raises the builtin ConnectionError for httpx.ConnectError; other subclasses
    # (reset, broken pipe) mean the server went away mid-request.
    if type(err) is ConnectionError:
        return ServerNotRunning(host, server)
    return ServerResponseError(f"connection to {host} dropped: {err}", server=server)


def _too_deep(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    return ServerResponseError(f"{host} sent a reply nested too deeply to be JSON", server=server)


def _not_utf8(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    return ServerResponseError(f"{host} sent a reply that is not UTF-8 text", server=server)


def _bad_line(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    assert isinstance(err, json.JSONDecodeError)
    return ServerResponseError(f"{host} sent a malformed line: {err.msg}", server=server)


def _invalid(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    assert isinstance(err, pydantic.ValidationError)
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "request"
    if err.title.endswith("Response"):  # the reply failed the library's own model
        return ServerResponseError(
            f"{host} sent a reply without a valid {where} ({first.get('msg')}): "
            f"is it {server_kind(server)} server?",
            server=server,
        )
    return UsageError(f"invalid {where}: {first.get('msg', err)}")


def _huge_int(
    err: BaseException, host: str, server: str, timeout: float | None
) -> Exception | None:
    if "digits" not in str(err):  # json: an int of 4,300+ digits
        return None
    return ServerResponseError(
        f"{host} sent a reply with a number of over 4,300 digits: that is not a model server's reply",
        server=server,
    )


def _not_an_object(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    # The libraries do ``Response(**reply.json())``: a list or string reply lands here.
    return ServerResponseError(
        f"{host} sent a reply that is not the JSON object the protocol says: "
        f"is it {server_kind(server)} server?",
        server=server,
    )


OTHER_ERRORS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Mapper], ...] = (
    (TimeoutError, _timeout),
    (ConnectionRefusedError, _not_running),
    (ConnectionError, _connection),
    (RecursionError, _too_deep),
    (UnicodeDecodeError, _not_utf8),
    (json.JSONDecodeError, _bad_line),
    (pydantic.ValidationError, _invalid),
    (ValueError, _huge_int),
    ((TypeError, KeyError, AttributeError), _not_an_object),
)


def translate_common(
    err: BaseException, host: str, server: str, timeout: float | None
) -> Exception | None:
    """``err`` as one of our errors by the two tables above; None when neither knows it."""
    for cls in type(err).__mro__:
        if cls.__module__.split(".")[0] in _HTTPX_MODULES and cls.__name__ in HTTPX_ERRORS:
            return HTTPX_ERRORS[cls.__name__](err, host, server, timeout)
    for kind, mapper in OTHER_ERRORS:
        if isinstance(err, kind):
            mapped = mapper(err, host, server, timeout)
            if mapped is not None:
                return mapped
    return None
