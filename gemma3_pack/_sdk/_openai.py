"""The OpenAI chat-completions protocol (llama-server, vLLM, Ollama's ``/v1``) through the official
``openai`` client, as a backend, with Gemma's settings in each server's spelling.

Which server is behind the URL is data: :data:`SERVERS` has one row per server (how ``/v1/models``
names it, its quirks); the spelling of Gemma's non-standard settings is in
:mod:`gemma3_pack._settings`. Plans only (see :mod:`gemma3_pack._sdk._types`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import ollama
from ollama import ChatResponse, GenerateResponse, ShowResponse

from .._chat import _functiongemma
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
from .._family import STOP
from .._settings import Target, fields_for
from ._messages import to_openai
from ._translate import translate_common
from ._transport import check_host, clean_text, default_timeout, guarded
from ._types import (
    Call,
    ChatRequest,
    GemmaModel,
    GenerateRequest,
    Plan,
    Stream,
    reply_error,
)

__all__ = ["SERVERS", "OpenAIBackend", "Server"]


@dataclass(frozen=True)
class Server:
    """What one OpenAI-compatible server does its own way."""

    owned_by: str | None = None  # what its GET /v1/models says in owned_by (how it is recognised)
    any_model_name: bool = False  # answers for any model name (it serves the one it loaded)
    # FunctionGemma's call tokens are control tokens: the request setting that keeps them visible
    keep_control_tokens: Mapping[str, Any] = field(default_factory=dict)


SERVERS: dict[Target, Server] = {
    "openai": Server(),  # not known (yet): Ollama's /v1, or a server not recognised
    "llama-server": Server(
        owned_by="llamacpp",
        any_model_name=True,
        keep_control_tokens={"preserved_tokens": list(_functiongemma.CONTROL_TOKENS)},
    ),
    "vllm": Server(owned_by="vllm", keep_control_tokens={"skip_special_tokens": False}),
}


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

    ``target`` says which server is behind the URL (its row of :data:`SERVERS`; ``openai``, not
    known, is recognised from ``GET /v1/models`` once the client asks it), and so how Gemma's
    non-standard settings are spelled (see :mod:`gemma3_pack._settings`): ``openai`` sends every
    server's spelling.
    """

    name = "openai"
    DEFAULT_MODEL = None  # the first model GET /v1/models lists

    def __init__(
        self, host: str | None, *, is_async: bool, target: Target = "openai", **kwargs: Any
    ) -> None:
        if host is None:
            raise UsageError(
                f'backend="{target}" needs the server URL, e.g. http://127.0.0.1:8080/v1'
            )
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
                return translate_common(
                    cause, self.host, self.target, self.timeout
                ) or ServerResponseError(
                    f"connection to {self.host} failed ({clean_text(str(cause))})",
                    server=self.target,
                )
            return ServerNotRunning(self.host, "openai")
        if isinstance(err, openai.APIError):
            return ServerResponseError(clean_text(str(err.message)), server=self.target)
        return translate_common(err, self.host, self.target, self.timeout)

    def _served_names(self) -> str | None:
        return ", ".join(m["id"] for m in self._served) if self._served else None

    # -- request building -------------------------------------------------------------------

    def _sampling(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Merged options as this server spells them: the standard fields, the rest in
        ``extra_body``, Gemma's stop string always included."""
        merged = dict(options)
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

    def chat_body(self, req: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": req.model,
            "messages": to_openai(req.messages),
            "stream": req.stream,
            **self._sampling(req.options),
        }
        if req.format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(req.format, Mapping):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": dict(req.format), "strict": True},
            }
        elif req.format is not None:
            raise UsageError(f'format must be "json" or a JSON schema dict, not {req.format!r}')
        return body

    # -- response mapping -------------------------------------------------------------------

    @_reply("a chat completion")
    def _completion(self, c: Any) -> ChatResponse:
        if not getattr(c, "choices", None):
            raise reply_error(self.host, self.target, "a chat completion (no choices)")
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
            raise reply_error(self.host, self.target, "a model list (GET /v1/models is empty)")
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
            # Recognise the server by what it says it is (owned_by may be any JSON value).
            owners = [m.get("owned_by") for m in self._served]
            for target, row in SERVERS.items():
                if self.target != "openai" or not owners or row.owned_by is None:
                    continue
                if all(isinstance(o, str) and o == row.owned_by for o in owners):
                    self.target = target
        return self._served

    def chat(self, req: ChatRequest) -> Plan:
        body = self.chat_body(req)
        result = yield from self._call(
            Call("chat.completions.create", kwargs=body, model=req.model)
        )
        return Stream(result, self._chunk, req.model) if req.stream else self._completion(result)

    def generate(self, req: GenerateRequest) -> Plan:
        model = req.model
        if req.raw:  # the prompt goes to the model verbatim: /v1/completions
            if req.images:
                raise UsageError("raw=True cannot carry images over the OpenAI protocol")
            body = {
                "model": model,
                "prompt": req.prompt,
                "stream": req.stream,
                **self._sampling(req.options),
            }
            result = yield from self._call(Call("completions.create", kwargs=body, model=model))
            if req.stream:
                return Stream(result, self._text_completion, model)
            return self._text_completion(result)
        messages: list[dict[str, Any]] = (
            [{"role": "system", "content": req.system}] if req.system else []
        )
        images = {"images": list(req.images)} if req.images else {}
        messages.append({"role": "user", "content": req.prompt, **images})
        chat = ChatRequest(
            model=model,
            stream=req.stream,
            options=req.options,
            format=req.format,
            messages=tuple(messages),
        )
        reply = yield from self.chat(chat)
        if req.stream:
            return Stream(reply.raw, lambda c: self._as_generate(self._chunk(c)), model)
        return self._as_generate(reply)

    def functiongemma(self, req: ChatRequest) -> Plan:
        """FunctionGemma with tools: the prompt Ollama's ``functiongemma`` renderer writes, sent
        raw, with the call tokens kept visible (the server's ``keep_control_tokens``), read by
        that parser's rules."""
        options = dict(req.options)
        for key, value in SERVERS[self.target].keep_control_tokens.items():
            options.setdefault(key, value)
        # Servers add <bos> themselves.
        prompt = _functiongemma.render(list(req.messages), list(req.tools)).removeprefix("<bos>")
        raw = GenerateRequest(
            model=req.model, options=options, keep_alive=req.keep_alive, prompt=prompt, raw=True
        )
        reply = yield from self.generate(raw)
        content, calls = _functiongemma.parse(reply.response or "")
        data = reply.model_dump(exclude={"response", "context", "thinking"})
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return ChatResponse(**data, message=ollama.Message.model_validate(message))

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
        if entry is None and not SERVERS[self.target].any_model_name:
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
        raise reply_error(self.host, self.target, "a version (no /version, /props or /api/version)")

    def list_gemma(self) -> Plan:
        served = yield from self.models()
        vision = yield from self.vision("")
        caps = ("completion",) if vision is False else ("completion", "vision")
        return [GemmaModel(str(m["id"]), 0, "", "", caps) for m in served]

    def vision_hint(self, model: str) -> str:
        return "a 4B/12B/27B GGUF started with its projector (llama-server --mmproj)"

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
