"""What a backend is (:class:`Backend`), and the table the client picks one from (:data:`BACKENDS`).

A backend builds requests for one protocol, maps its replies to the SDK's types
(``ollama.ChatResponse`` & co on every backend) and translates its library's errors into
:mod:`gemma3_pack._errors` (the rest through :mod:`gemma3_pack._sdk._translate`). It never does I/O:
its methods are plans (see :mod:`gemma3_pack._sdk._types`) that the client drives sync or async.

* :mod:`gemma3_pack._sdk._ollama`: Ollama's native API through the official ``ollama`` client;
* :mod:`gemma3_pack._sdk._openai`: the OpenAI chat-completions protocol (llama-server, vLLM,
  Ollama's ``/v1``) through the official ``openai`` client; each server's quirks are a row there.

A new backend is one module with a class that has these methods, and one row in :data:`BACKENDS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from .._errors import UsageError
from ._ollama import OllamaBackend
from ._openai import OpenAIBackend
from ._types import ChatRequest, GenerateRequest, Plan

__all__ = ["BACKENDS", "Backend", "BackendName", "make_backend"]

BackendName = Literal["auto", "ollama", "openai", "vllm", "llama-server"]


class Backend(Protocol):
    """One protocol the client speaks. Every method returning :data:`Plan` is a generator that
    yields the I/O it needs; the value it returns is the method's result."""

    @property
    def name(self) -> str:
        """``ollama`` or ``openai``: which wrapped client ``.lib`` is."""

    @property
    def host(self) -> str:
        """The server's base URL, as errors name it."""

    @property
    def DEFAULT_MODEL(self) -> str | None:
        """The model when none was given (None: ask the server, see :meth:`resolve_model`)."""

    @property
    def lib(self) -> Any:
        """The wrapped official client: the target of every :class:`Call` step."""

    def close(self) -> Any:
        """Close the connection pool (a coroutine on the async client)."""

    def translate(self, err: BaseException, model: str | None) -> Exception | None:
        """``err`` (raised by ``lib``) as one of :mod:`gemma3_pack._errors`; None: not known."""

    def resolve_model(self, model: str | None) -> Plan:
        """``model``, or the one to use when none was given."""

    def chat(self, req: ChatRequest) -> Plan:
        """A ``ChatResponse``, or a :class:`Stream` of them when ``req.stream``."""

    def functiongemma(self, req: ChatRequest) -> Plan:
        """FunctionGemma with ``req.tools``, in its own prompt and reply format: a ChatResponse."""

    def generate(self, req: GenerateRequest) -> Plan:
        """A ``GenerateResponse``, or a :class:`Stream` of them when ``req.stream``."""

    def show(self, model: str) -> Plan:
        """A ``ShowResponse``; ``ModelNotFound`` when the server lacks ``model``."""

    def vision(self, model: str) -> Plan:
        """Whether ``model`` takes images (None: the server cannot say)."""

    def vision_hint(self, model: str) -> str:
        """What to use instead of ``model`` when it takes no images."""

    def version(self) -> Plan:
        """The server's version string."""

    def list_gemma(self) -> Plan:
        """The Gemma 3 models the server has, as ``GemmaModel``s."""

    def require_ollama(self, what: str) -> None:
        """Raise ``NotSupportedByServer`` unless ``what`` (pull, create, blobs) is available."""

    def progress(self, what: str, kwargs: dict[str, Any], on_item: Callable[[Any], None]) -> Plan:
        """``pull`` or ``create`` as a stream of progress lines; returns the last one."""

    def has_blob(self, digest: str) -> Plan:
        """Whether the server has the blob ``sha256:<hex>``."""

    def post_blob(self, digest: str, path: Path, bar: Any) -> Plan:
        """Upload ``path`` as the blob ``digest`` (streamed, ``bar`` advanced)."""


# The backend for each ``backend=`` name: the client's whole choice is a lookup here.
BACKENDS: dict[str, Callable[..., Backend]] = {
    "ollama": OllamaBackend,
    "openai": OpenAIBackend,
    "vllm": functools.partial(OpenAIBackend, target="vllm"),
    "llama-server": functools.partial(OpenAIBackend, target="llama-server"),
}


def make_backend(
    host: str | None, backend: BackendName, *, is_async: bool, **kwargs: Any
) -> Backend:
    """The backend for ``host``: a URL ending in ``/v1`` (or ``backend=``) means OpenAI protocol."""
    if backend == "auto":
        path = (host or "").split("://")[-1].partition("/")[2].rstrip("/")
        backend = "openai" if path.endswith("v1") else "ollama"
    make = BACKENDS.get(backend) if isinstance(backend, str) else None
    if make is None:
        *names, last = ["auto", *BACKENDS]
        raise UsageError(f"backend must be {', '.join(names)} or {last}, not {backend!r}")
    return make(host, is_async=is_async, **kwargs)
