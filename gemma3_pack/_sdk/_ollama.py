"""Ollama's native API (``/api/*``) through the official ``ollama`` client, as a backend.

Plans only (see :mod:`gemma3_pack._sdk._types`): what to send, and what the reply means.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import ollama
from ollama import ProgressResponse, ShowResponse
from ollama._types import CreateRequest

from .._errors import ModelNotFound, ServerResponseError, UsageError
from .._family import VARIANTS, get_variant
from ._translate import translate_common
from ._transport import check_host, clean_text, default_timeout, guarded
from ._types import (
    Call,
    ChatRequest,
    Each,
    GemmaModel,
    GenerateRequest,
    Plan,
    Stream,
    reply_error,
)

__all__ = ["OllamaBackend"]


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


def _vision_suggestion(model: str) -> str:
    """A vision-capable tag of the same kind as ``model`` (QAT stays QAT)."""
    try:
        kind = get_variant(model).kind
    except UsageError:
        kind = "it-qat" if "qat" in model else "it"
    tag = VARIANTS[f"gemma3-4b-{kind}"].ollama_tag
    return tag or "gemma3:4b"


def _same(item: Any) -> Any:
    return item


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
        return translate_common(err, self.host, self.name, self.timeout)

    # -- plans ------------------------------------------------------------------------------

    def resolve_model(self, model: str | None) -> Plan:
        """``model``, or the SDK's default (``gemma3:4b``)."""
        yield from ()
        return model or self.DEFAULT_MODEL

    @staticmethod
    def _chat_kwargs(req: ChatRequest) -> dict[str, Any]:
        return {
            "model": req.model,
            "messages": list(req.messages),
            "stream": req.stream,
            "options": dict(req.options),
            "format": req.format,
            "keep_alive": req.keep_alive,
        }

    def chat(self, req: ChatRequest) -> Plan:
        result = yield Call("chat", kwargs=self._chat_kwargs(req), model=req.model)
        return Stream(result, _same, req.model) if req.stream else result

    def functiongemma(self, req: ChatRequest) -> Plan:
        """FunctionGemma with tools: the tools go to Ollama's own ``functiongemma`` renderer and
        parser (the model's RENDERER/PARSER), which keep the call tokens in the reply."""
        tools = [{"type": "function", "function": s} for s in req.tools]
        kwargs = {**self._chat_kwargs(req), "tools": tools}
        return (yield Call("chat", kwargs=kwargs, model=req.model))

    def generate(self, req: GenerateRequest) -> Plan:
        result = yield Call(
            "generate",
            kwargs={
                "model": req.model,
                "prompt": req.prompt,
                "system": req.system,
                "images": list(req.images) or None,
                "stream": req.stream,
                "options": dict(req.options),
                "format": req.format,
                "keep_alive": req.keep_alive,
                "raw": req.raw or None,
            },
            model=req.model,
        )
        return Stream(result, _same, req.model) if req.stream else result

    def show(self, model: str) -> Plan:
        return (yield Call("show", (model,), model=model))

    def vision(self, model: str) -> Plan:
        """Whether ``model`` takes images (None: the server cannot say)."""
        return _has_vision((yield from self.show(model)))

    def vision_hint(self, model: str) -> str:
        """What to use instead of ``model`` for images: a vision tag of the same kind."""
        return _vision_suggestion(model)

    def version(self) -> Plan:
        response = yield Call("_request_raw", ("GET", "/api/version"))
        try:
            data = response.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, 4,300-digit ints, too deep
            data = None
        if not (isinstance(data, dict) and isinstance(data.get("version"), str)):
            raise reply_error(self.host, self.name, 'an Ollama version (expected {"version": "…"})')
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
