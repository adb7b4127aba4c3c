"""The protocols behind :class:`gemma3_pack.Client`: what to send, and what the reply means.

A backend builds requests, maps replies to the SDK's types (``ollama.ChatResponse`` & co on every
backend) and translates its library's errors into :mod:`gemma3_pack._errors`. It never does I/O:
its methods are *plans*, generators that yield :class:`Call` / :class:`Each` steps and receive
their results. The client drives a plan with ``client(...)`` or ``await client(...)``, which is the
whole difference between :class:`~gemma3_pack.Client` and :class:`~gemma3_pack.AsyncClient`.

* :class:`OllamaBackend` speaks Ollama's native API through the official ``ollama`` client;
* :class:`OpenAIBackend` speaks the OpenAI chat-completions protocol (llama-server, vLLM, Ollama's
  ``/v1``) through the official ``openai`` client, with Gemma's settings in each server's spelling.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import httpx
import ollama
import pydantic
from ollama import ChatResponse, GenerateResponse, ProgressResponse, ShowResponse
from ollama._types import CreateRequest

from .._errors import (
    ContextOverflow,
    Gemma3PackError,
    ModelNotFound,
    NotSupportedByServer,
    ServerError,
    ServerNotRunning,
    ServerResponseError,
    ServerTimeout,
    UsageError,
)
from .._family import SAMPLING, STOP
from .._settings import Target, fields_for
from ._messages import to_openai
from ._transport import check_host, clean_text, default_timeout, guarded

__all__ = [
    "Call",
    "Each",
    "GemmaModel",
    "OllamaBackend",
    "OpenAIBackend",
    "OptionsLike",
    "Plan",
    "Stream",
    "make_backend",
    "merge_options",
]

OptionsLike = Mapping[str, Any] | ollama.Options | None
BackendName = Literal["auto", "ollama", "openai", "vllm", "llama-server"]


# --------------------------------------------------------------------------- plan steps


@dataclass
class Call:
    """Call ``path`` (dotted, on the library client) with these arguments; the result is sent back.

    ``upload`` streams that file as the request body (``content=``), in the driver's own way.
    """

    path: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    upload: Path | None = None
    bar: Any = None


@dataclass
class Each:
    """Iterate ``stream`` (mapped by ``map``), calling ``on_item`` on each; the last item is sent back."""

    stream: Any
    on_item: Callable[[Any], None]
    map: Callable[[Any], Any] = lambda item: item
    model: str | None = None


@dataclass
class Blocking:
    """Run ``fn`` (CPU or disk work); the async driver runs it in a worker thread."""

    fn: Callable[[], Any]


@dataclass
class Stream:
    """A plan's result that is a stream of replies, handed to the caller item by item."""

    raw: Any
    map: Callable[[Any], Any]
    model: str | None = None
    on_end: Callable[[], None] | None = None  # called once the stream is fully consumed


Step = Call | Each | Blocking
Plan = Generator[Step, Any, Any]


def merge_options(options: OptionsLike) -> dict[str, Any]:
    """Gemma defaults under the caller's options, key by key, as a plain dict.

    An ``ollama.Options`` is converted with ``exclude_unset`` so only what the caller set
    overrides a default; a ``None`` value in a mapping removes that key (the server default wins).
    """
    merged: dict[str, Any] = dict(SAMPLING)
    if options is None:
        return merged
    if isinstance(options, ollama.Options):
        given: Mapping[str, Any] = options.model_dump(exclude_unset=True)
    elif isinstance(options, Mapping):
        given = options
    else:
        raise UsageError(f"options must be a dict or ollama.Options, not {type(options).__name__}")
    for key, value in given.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class GemmaModel:
    """One installed (or served) Gemma 3 model, as ``list_gemma()`` reports it."""

    name: str
    size: int  # bytes on disk (0 when the server does not say)
    parameter_size: str
    quant: str
    capabilities: tuple[str, ...] = field(default_factory=tuple)

    @property
    def vision(self) -> bool:
        return "vision" in self.capabilities

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "parameter_size": self.parameter_size,
            "quant": self.quant,
            "capabilities": list(self.capabilities),
        }


def _kind(server: str) -> str:
    return "an Ollama" if server == "ollama" else f"a {server}"


def _reply_error(host: str, server: str, what: str) -> ServerResponseError:
    return ServerResponseError(f"{host} sent a reply that is not {what}", server=server)


def _failed(what: str) -> Callable[[BaseException, str, str, float | None], Exception]:
    def make(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
        text = clean_text(str(err))
        detail = f"{type(err).__name__}: {text}" if text else type(err).__name__
        return ServerResponseError(what.format(host=host, detail=detail), server=server)

    return make


def _usage(err: BaseException, host: str, server: str, timeout: float | None) -> Exception:
    return UsageError(f"the request to {host} cannot be sent ({clean_text(str(err))})")


# Every exception httpx (and its fork httpx2, which the openai package uses) defines, by class
# name, as httpx's own transport maps httpcore's (HTTPCORE_EXC_MAP): the most specific class in
# the error's MRO wins. tests/test_client_hostile.py enumerates both modules against this table.
HTTPX_ERRORS: dict[str, Callable[[BaseException, str, str, float | None], Exception]] = {
    "ConnectTimeout": lambda e, host, server, t: ServerNotRunning(host, server),
    "ConnectError": lambda e, host, server, t: ServerNotRunning(host, server),
    "TimeoutException": lambda e, host, server, t: ServerTimeout(host, t),  # read/write/pool
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


def _httpx_error(
    err: BaseException, host: str, server: str, timeout: float | None
) -> Exception | None:
    for cls in type(err).__mro__:
        if cls.__module__.split(".")[0] in _HTTPX_MODULES and cls.__name__ in HTTPX_ERRORS:
            return HTTPX_ERRORS[cls.__name__](err, host, server, timeout)
    return None


def _common(err: BaseException, host: str, server: str, timeout: float | None) -> Exception | None:
    """Errors any backend's library lets through: raw transport errors, bad JSON, bad types."""
    mapped = _httpx_error(err, host, server, timeout)
    if mapped is not None:
        return mapped
    if isinstance(err, TimeoutError):
        return ServerTimeout(host, timeout)
    if isinstance(err, ConnectionRefusedError):
        return ServerNotRunning(host, server)
    if isinstance(err, ConnectionError):
        # ollama raises the builtin ConnectionError for httpx.ConnectError; other subclasses
        # (reset, broken pipe) mean the server went away mid-request.
        if type(err) is ConnectionError:
            return ServerNotRunning(host, server)
        return ServerResponseError(f"connection to {host} dropped: {err}", server=server)
    if isinstance(err, RecursionError):
        return ServerResponseError(
            f"{host} sent a reply nested too deeply to be JSON", server=server
        )
    if isinstance(err, UnicodeDecodeError):
        return ServerResponseError(f"{host} sent a reply that is not UTF-8 text", server=server)
    if isinstance(err, json.JSONDecodeError):
        return ServerResponseError(f"{host} sent a malformed line: {err.msg}", server=server)
    if isinstance(err, pydantic.ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        if err.title.endswith("Response"):  # the reply failed the library's own model
            return ServerResponseError(
                f"{host} sent a reply without a valid {where} ({first.get('msg')}): "
                f"is it {_kind(server)} server?",
                server=server,
            )
        return UsageError(f"invalid {where}: {first.get('msg', err)}")
    if isinstance(err, ValueError) and "digits" in str(err):  # json: an int of 4,300+ digits
        return ServerResponseError(
            f"{host} sent a reply with a number of over 4,300 digits: that is not a model "
            "server's reply",
            server=server,
        )
    if isinstance(err, (TypeError, KeyError, AttributeError)):
        # The libraries do ``Response(**reply.json())``: a list or string reply lands here.
        return ServerResponseError(
            f"{host} sent a reply that is not the JSON object the protocol says: "
            f"is it {_kind(server)} server?",
            server=server,
        )
    return None


# --------------------------------------------------------------------------- Ollama


def _model_from_error(message: str) -> str | None:
    match = re.search(r"model ['\"]?([^'\"\s]+?)['\"]?,? not found", message)
    return match.group(1) if match else None


def _has_vision(show: ShowResponse) -> bool:
    if show.capabilities is not None:
        return "vision" in show.capabilities
    # Daemons before capabilities existed (< 0.6.4): a vision tower shows up in model_info.
    return any(".vision." in key for key in (show.modelinfo or {}))


def _is_gemma3(entry: Any) -> bool:
    details = entry.details
    families = set((details.families or []) if details else []) | {
        details.family if details else None
    }
    return "gemma3" in families or (entry.model or "").startswith("gemma3")


class OllamaBackend:
    """Ollama's native API (``/api/*``) through ``ollama.Client`` / ``ollama.AsyncClient``."""

    name = "ollama"
    DEFAULT_MODEL = "gemma3:4b"

    def __init__(self, host: str | None, *, is_async: bool, **kwargs: Any) -> None:
        if host is not None:
            check_host(host)
        env = os.environ.get("OLLAMA_HOST")
        if host is None and env:
            check_host(env, "OLLAMA_HOST")
        kwargs["timeout"] = default_timeout(httpx, kwargs.get("timeout"))
        kwargs["transport"] = guarded(httpx, kwargs.get("transport"), is_async=is_async)
        cls = ollama.AsyncClient if is_async else ollama.Client
        try:
            self.lib: Any = cls(host, **kwargs)
        except ValueError as err:  # ollama's host parser
            raise UsageError(f"host {host or env!r} is not a valid address ({err})") from None
        self.is_async = is_async
        self.host = str(self.lib._client.base_url).rstrip("/")
        timeout = self.lib._client.timeout
        self.timeout: float | None = timeout.read

    def close(self) -> Any:
        """Close the connection pool (a coroutine on the async client)."""
        http = self.lib._client
        return http.aclose() if self.is_async else http.close()

    def translate(self, err: BaseException, model: str | None) -> Exception | None:
        if isinstance(err, ollama.ResponseError):
            text = clean_text(str(err.error))
            named = _model_from_error(text)
            if err.status_code == 404 and named:
                return ModelNotFound(model or named)
            if err.status_code == 404:
                # Not Ollama's "model 'x' not found": a server without Ollama's API at all.
                return ServerResponseError(
                    f"{text or 'not found'}: {self.host} has no Ollama API; for llama-server or "
                    "vLLM pass the OpenAI URL, e.g. Client('http://HOST:PORT/v1')",
                    404,
                )
            if err.status_code in range(300, 400):
                return ServerResponseError(
                    f"{self.host} answered with a redirect ({err.status_code}) that was not followed",
                    err.status_code,
                )
            low = text.lower()
            if "pull model manifest" in low and any(
                w in low for w in ("dial tcp", "no such host", "lookup", "i/o timeout")
            ):
                return ServerResponseError(
                    f"Ollama at {self.host} cannot reach its registry to pull "
                    f"{model or 'the model'} (offline?): {text}",
                    err.status_code,
                )
            return ServerResponseError(text or "(empty reply)", err.status_code)
        return _common(err, self.host, self.name, self.timeout)

    # -- plans ------------------------------------------------------------------------------

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        stream: bool,
        options: OptionsLike,
        format: Any,
        keep_alive: float | str | None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Plan:
        result = yield Call(
            "chat",
            kwargs={
                "model": model,
                "messages": messages,
                "stream": stream,
                "options": merge_options(options),
                "format": format,
                "keep_alive": keep_alive,
                **({"tools": tools} if tools else {}),  # Ollama's own tool format (FunctionGemma)
            },
            model=model,
        )
        return Stream(result, _same, model) if stream else result

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        system: str | None,
        images: list[str],
        stream: bool,
        options: OptionsLike,
        format: Any,
        keep_alive: float | str | None,
        raw: bool,
    ) -> Plan:
        result = yield Call(
            "generate",
            kwargs={
                "model": model,
                "prompt": prompt,
                "system": system,
                "images": images or None,
                "stream": stream,
                "options": merge_options(options),
                "format": format,
                "keep_alive": keep_alive,
                "raw": raw or None,
            },
            model=model,
        )
        return Stream(result, _same, model) if stream else result

    def show(self, model: str) -> Plan:
        return (yield Call("show", (model,), model=model))

    def vision(self, model: str) -> Plan:
        """Whether ``model`` takes images (None: the server cannot say)."""
        return _has_vision((yield from self.show(model)))

    def version(self) -> Plan:
        response = yield Call("_request_raw", ("GET", "/api/version"))
        try:
            data = response.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, 4,300-digit ints, too deep
            data = None
        if not (isinstance(data, dict) and isinstance(data.get("version"), str)):
            raise _reply_error(
                self.host, self.name, 'an Ollama version (expected {"version": "…"})'
            )
        return clean_text(data["version"], 64)

    def list_gemma(self) -> Plan:
        listing = yield Call("list")
        out = []
        for entry in listing.models:
            if not _is_gemma3(entry):
                continue
            caps = (yield from self.show(str(entry.model))).capabilities or []
            details = entry.details
            out.append(
                GemmaModel(
                    str(entry.model),
                    int(entry.size or 0),
                    str(details.parameter_size if details else ""),
                    str(details.quantization_level if details else ""),
                    tuple(caps),
                )
            )
        return out

    def progress(self, what: str, kwargs: dict[str, Any], on_item: Callable[[Any], None]) -> Plan:
        """``pull`` or ``create`` as a stream of progress lines; returns the last one."""
        model = kwargs.get("model")
        native = {k: kwargs[k] for k in ("renderer", "parser") if kwargs.get(k)}
        if what == "create" and native:
            # ollama-python's create() has no renderer/parser: the same request, with them.
            rest = {k: v for k, v in kwargs.items() if k not in ("renderer", "parser")}
            body = CreateRequest(**rest, stream=True).model_dump(exclude_none=True)
            stream = yield Call(
                "_request",
                (ProgressResponse, "POST", "/api/create"),
                kwargs={"json": {**body, **native}, "stream": True},
                model=model,
            )
        else:
            stream = yield Call(what, kwargs={**kwargs, "stream": True}, model=model)
        return (yield Each(stream, on_item, model=model))

    def has_blob(self, digest: str) -> Plan:
        try:
            yield Call("_request_raw", ("HEAD", f"/api/blobs/{digest}"))
            return True
        except ServerResponseError as err:
            if err.status_code == 404:
                return False
            raise

    def post_blob(self, digest: str, path: Path, bar: Any) -> Plan:
        yield Call("_request_raw", ("POST", f"/api/blobs/{digest}"), upload=path, bar=bar)

    def require_ollama(self, what: str) -> None:
        return None


def _same(item: Any) -> Any:
    return item


# --------------------------------------------------------------------------- OpenAI protocol


def _openai() -> ModuleType:
    try:
        import openai
    except ImportError:
        from .._errors import MissingDependency

        raise MissingDependency(
            "OpenAI-compatible servers need the openai package: pip install openai"
        ) from None
    return openai


def _iso(created: int | None) -> str:
    when = datetime.fromtimestamp(created or 0, tz=timezone.utc)
    return when.isoformat().replace("+00:00", "Z")


def _overflow(text: str) -> bool:
    low = text.lower()
    return "context" in low and any(
        w in low for w in ("exceed", "maximum context length", "too long", "context size")
    )


def _server_message(body: Any, fallback: str) -> str:
    """The human part of an OpenAI-style error body (``{"error": {"message": ...}}`` & variants)."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            inner = inner.get("message") or inner.get("detail") or inner
        if isinstance(inner, str):
            return clean_text(inner)
        for key in ("message", "detail"):
            if isinstance(body.get(key), str):
                return clean_text(body[key])
    return clean_text(fallback) or "(empty reply)"


def _reply(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a reply mapper: a reply of the wrong shape becomes one ServerResponseError.

    The ``openai`` package builds its response objects without validating them, so any field can
    hold any JSON value; the mappers read them as the protocol says, and this is where a server
    that says otherwise is reported (found by tests/test_fuzz_sdk.py).
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def mapped(self: OpenAIBackend, obj: Any) -> Any:
            try:
                return fn(self, obj)
            except Gemma3PackError:
                raise
            except (
                TypeError,
                KeyError,
                AttributeError,
                IndexError,
                ValueError,
                OverflowError,
            ) as err:
                raise ServerResponseError(
                    f"{self.host} sent a reply that is not {what} "
                    f"({type(err).__name__}: {clean_text(str(err), 80)})",
                    server=self.target,
                ) from None

        return mapped

    return wrap


class OpenAIBackend:
    """The OpenAI chat-completions protocol through ``openai.OpenAI`` / ``openai.AsyncOpenAI``.

    ``target`` says which server is behind the URL, and so how Gemma's non-standard settings are
    spelled (see :mod:`gemma3_pack._settings`); ``openai`` (unknown) sends every server's spelling.
    """

    name = "openai"
    DEFAULT_MODEL = None  # the first model GET /v1/models lists

    def __init__(
        self, host: str, *, is_async: bool, target: Target = "openai", **kwargs: Any
    ) -> None:
        check_host(host)
        openai = _openai()
        url = host if "://" in host else f"http://{host}"
        url = url.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        self.host = url
        self.root = url.removesuffix("/v1")
        self.target = target
        self.httpx = sys.modules[openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0]]
        timeout = default_timeout(self.httpx, kwargs.pop("timeout", None))
        self.timeout = timeout if isinstance(timeout, (int, float)) else timeout.read
        http_client = kwargs.pop("http_client", None)
        if http_client is None:
            make = openai.DefaultAsyncHttpxClient if is_async else openai.DefaultHttpxClient
            http_client = make(
                transport=guarded(self.httpx, kwargs.pop("transport", None), is_async=is_async),
                timeout=timeout,
            )
        kwargs.setdefault("max_retries", 0)  # like the Ollama backend: a failure is reported once
        # Never OPENAI_API_KEY by default: that key belongs to api.openai.com, not to whatever
        # host this URL names. llama-server/vLLM started with --api-key take api_key= or this.
        kwargs.setdefault("api_key", os.environ.get("GEMMA3_PACK_API_KEY") or "no-key")
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        self.lib = cls(base_url=url, http_client=http_client, timeout=timeout, **kwargs)
        self._served: list[dict[str, Any]] | None = None

    def close(self) -> Any:
        """Close the connection pool (a coroutine on the async client)."""
        return self.lib.close()

    def translate(self, err: BaseException, model: str | None) -> Exception | None:
        openai = _openai()
        if isinstance(err, openai.APIStatusError):
            body = err.body
            try:
                raw = err.response.text
            except Exception:  # a streamed error body that was not read
                raw = str(err.message)
            text = _server_message(body, raw)
            status = err.status_code
            if status == 404 and model and ("model" in text.lower() or "not found" in text.lower()):
                return ModelNotFound(model, "openai", self._served_names())
            if status == 404:
                return ServerResponseError(
                    f"{text} ({self.host} has no such endpoint: is it an OpenAI-compatible server? "
                    "llama-server and vLLM serve /v1)",
                    status,
                    server=self.target,
                )
            if _overflow(text):
                return ContextOverflow(text, status, server=self.target)
            return ServerResponseError(text, status, server=self.target)
        if isinstance(err, openai.APITimeoutError):
            return ServerTimeout(self.host, self.timeout)
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__
            if isinstance(cause, Gemma3PackError):
                return cause
            if cause is not None and type(cause).__name__ == "ConnectError":
                return ServerNotRunning(self.host, "openai")
            if cause is not None:
                return _common(cause, self.host, self.target, self.timeout) or ServerResponseError(
                    f"connection to {self.host} failed ({clean_text(str(cause))})",
                    server=self.target,
                )
            return ServerNotRunning(self.host, "openai")
        if isinstance(err, openai.APIError):
            return ServerResponseError(clean_text(str(err.message)), server=self.target)
        return _common(err, self.host, self.target, self.timeout)

    def _served_names(self) -> str | None:
        return ", ".join(m["id"] for m in self._served) if self._served else None

    # -- request building -------------------------------------------------------------------

    def _sampling(self, options: OptionsLike) -> dict[str, Any]:
        merged = merge_options(options)
        stops = merged.pop("stop", None)
        standard, extra = fields_for(self.target, merged)
        for ollama_name, openai_name in (("num_predict", "max_tokens"),):
            if ollama_name in extra:
                standard[openai_name] = extra.pop(ollama_name)
        if isinstance(stops, str):
            stops = [stops]
        standard["stop"] = list(dict.fromkeys([*(stops or []), STOP]))
        if extra:
            standard["extra_body"] = extra
        return standard

    def chat_body(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool,
        options: OptionsLike,
        format: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": to_openai(messages),
            "stream": stream,
            **self._sampling(options),
        }
        if format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(format, Mapping):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": dict(format), "strict": True},
            }
        elif format is not None:
            raise UsageError(f'format must be "json" or a JSON schema dict, not {format!r}')
        return body

    # -- response mapping -------------------------------------------------------------------

    @_reply("a chat completion")
    def _completion(self, c: Any) -> ChatResponse:
        if not getattr(c, "choices", None):
            raise _reply_error(self.host, self.target, "a chat completion (no choices)")
        choice = c.choices[0]
        usage = getattr(c, "usage", None)
        return ChatResponse(
            model=str(c.model or ""),
            created_at=_iso(c.created),
            message=ollama.Message(role="assistant", content=choice.message.content or ""),
            done=True,
            done_reason=choice.finish_reason,
            prompt_eval_count=getattr(usage, "prompt_tokens", None),
            eval_count=getattr(usage, "completion_tokens", None),
        )

    @_reply("a chat completion chunk")
    def _chunk(self, c: Any) -> ChatResponse:
        choice = c.choices[0] if getattr(c, "choices", None) else None
        delta = getattr(choice, "delta", None)
        finish = getattr(choice, "finish_reason", None)
        usage = getattr(c, "usage", None)
        return ChatResponse(
            model=str(getattr(c, "model", "") or ""),
            created_at=_iso(getattr(c, "created", 0)),
            message=ollama.Message(role="assistant", content=getattr(delta, "content", None) or ""),
            done=finish is not None,
            done_reason=finish,
            prompt_eval_count=getattr(usage, "prompt_tokens", None),
            eval_count=getattr(usage, "completion_tokens", None),
        )

    @staticmethod
    def _as_generate(reply: ChatResponse) -> GenerateResponse:
        data = reply.model_dump(exclude={"message", "logprobs"})
        return GenerateResponse(**data, response=reply.message.content or "")

    @_reply("a text completion")
    def _text_completion(self, c: Any) -> GenerateResponse:
        choice = c.choices[0]
        return GenerateResponse(
            model=str(c.model or ""),
            created_at=_iso(c.created),
            response=choice.text or "",
            done=choice.finish_reason is not None,
            done_reason=choice.finish_reason,
        )

    # -- plans ------------------------------------------------------------------------------

    def resolve_model(self, model: str | None) -> Plan:
        """``model``, or the first one the server lists when none was given."""
        if model:
            return model
        served = yield from self.models()
        if not served:
            raise _reply_error(self.host, self.target, "a model list (GET /v1/models is empty)")
        return str(served[0]["id"])

    def _call(self, call: Call) -> Plan:
        """``call``, with a missing model's error naming what the server does serve."""
        try:
            return (yield call)
        except ModelNotFound as err:
            if self._served is None:
                try:
                    yield from self.models()
                except ServerError:
                    raise err from None
            raise ModelNotFound(err.model, "openai", self._served_names()) from None

    @_reply("a model list")
    def _model_list(self, page: Any) -> list[dict[str, Any]]:
        return [
            m.model_dump(warnings=False) if hasattr(m, "model_dump") else dict(m)
            for m in page.data or []
        ]

    def models(self) -> Plan:
        if self._served is None:
            page = yield Call("models.list")
            served = self._model_list(page)
            self._served = [m for m in served if isinstance(m.get("id"), str)]
            owners = {m.get("owned_by") for m in self._served}
            if self.target == "openai" and owners in ({"llamacpp"}, {"vllm"}):
                self.target = "llama-server" if owners == {"llamacpp"} else "vllm"
        return self._served

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        stream: bool,
        options: OptionsLike,
        format: Any,
        keep_alive: float | str | None,
    ) -> Plan:
        body = self.chat_body(model, messages, stream=stream, options=options, format=format)
        result = yield from self._call(Call("chat.completions.create", kwargs=body, model=model))
        return Stream(result, self._chunk, model) if stream else self._completion(result)

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        system: str | None,
        images: list[str],
        stream: bool,
        options: OptionsLike,
        format: Any,
        keep_alive: float | str | None,
        raw: bool,
    ) -> Plan:
        if raw:  # the prompt goes to the model verbatim: /v1/completions
            if images:
                raise UsageError("raw=True cannot carry images over the OpenAI protocol")
            body = {"model": model, "prompt": prompt, "stream": stream, **self._sampling(options)}
            result = yield from self._call(Call("completions.create", kwargs=body, model=model))
            if stream:
                return Stream(result, self._text_completion, model)
            return self._text_completion(result)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        messages.append(
            {"role": "user", "content": prompt, **({"images": images} if images else {})}
        )
        reply = yield from self.chat(
            model, messages, stream=stream, options=options, format=format, keep_alive=None
        )
        if stream:
            return Stream(reply.raw, lambda c: self._as_generate(self._chunk(c)), model)
        return self._as_generate(reply)

    def _props(self) -> Plan:
        """llama-server's ``GET /props`` (None when the server has none, as vLLM)."""
        try:
            props = yield Call("get", (f"{self.root}/props",), {"cast_to": object})
        except ServerError:
            return None
        return props if isinstance(props, Mapping) else None

    def show(self, model: str) -> Plan:
        served = yield from self.models()
        entry = next((m for m in served if m.get("id") == model), None)
        if entry is None and self.target != "llama-server":
            # llama-server answers for any name; vLLM and Ollama's /v1 only for what they serve.
            raise ModelNotFound(model, "openai", self._served_names())
        props = yield from self._props()
        vision = yield from self.vision(model)
        caps = ["completion", *(["vision"] if vision else [])]
        info: dict[str, Any] = {"openai.model": entry or {"id": model}}
        if props:
            info["llama-server.props"] = {
                k: props[k] for k in ("build_info", "modalities", "model_path") if k in props
            }
        return ShowResponse(model_info=info, capabilities=caps)

    def vision(self, model: str) -> Plan:
        props = yield from self._props()
        if props and isinstance(props.get("modalities"), Mapping):
            return bool(props["modalities"].get("vision"))
        return None  # vLLM and Ollama's /v1 do not say: the server decides

    def version(self) -> Plan:
        for path, key in (
            ("/version", "version"),
            ("/props", "build_info"),
            ("/api/version", "version"),
        ):
            try:
                data = yield Call("get", (f"{self.root}{path}",), {"cast_to": object})
            except ServerError:
                continue
            if isinstance(data, Mapping) and isinstance(data.get(key), str):
                return clean_text(data[key], 64)
        raise _reply_error(
            self.host, self.target, "a version (no /version, /props or /api/version)"
        )

    def list_gemma(self) -> Plan:
        served = yield from self.models()
        vision = yield from self.vision("")
        caps = ("completion",) if vision is False else ("completion", "vision")
        return [GemmaModel(str(m["id"]), 0, "", "", caps) for m in served]

    def require_ollama(self, what: str) -> None:
        raise NotSupportedByServer(what, self.host)

    def progress(self, what: str, kwargs: dict[str, Any], on_item: Callable[[Any], None]) -> Plan:
        self.require_ollama(what)
        yield from ()

    def has_blob(self, digest: str) -> Plan:
        self.require_ollama("blobs")
        yield from ()
        return False

    def post_blob(self, digest: str, path: Path, bar: Any) -> Plan:
        self.require_ollama("blobs")
        yield from ()


Backend = OllamaBackend | OpenAIBackend


def make_backend(
    host: str | None, backend: BackendName, *, is_async: bool, **kwargs: Any
) -> Backend:
    """The backend for ``host``: a URL ending in ``/v1`` (or ``backend=``) means OpenAI protocol."""
    if backend == "auto":
        path = (host or "").split("://")[-1].partition("/")[2].rstrip("/")
        backend = "openai" if path.endswith("v1") else "ollama"
    if backend == "ollama":
        return OllamaBackend(host, is_async=is_async, **kwargs)
    if backend in ("openai", "vllm", "llama-server"):
        if host is None:
            raise UsageError(
                f'backend="{backend}" needs the server URL, e.g. http://127.0.0.1:8080/v1'
            )
        return OpenAIBackend(host, is_async=is_async, target=backend, **kwargs)
    raise UsageError(f"backend must be auto, ollama, openai, vllm or llama-server, not {backend!r}")
