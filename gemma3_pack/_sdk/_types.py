"""What the client hands a backend, and what a backend hands back: requests, plan steps, models.

* :class:`ChatRequest` / :class:`GenerateRequest` (after ollama-python's ``_types.py``: both share
  :class:`BaseRequest`) are built once by the client from the public arguments — messages
  normalised, images encoded, Gemma's sampling settings merged under the caller's options, the
  ``format=`` schema and its reply parser — and passed as they are to every layer below.
* A backend never does I/O: its methods are *plans*, generators that yield :class:`Call` /
  :class:`Each` / :class:`Blocking` steps and receive their results; a :class:`Stream` result is
  handed to the caller item by item. The client drives a plan with ``client(...)`` or
  ``await client(...)``, which is the whole difference between ``Client`` and ``AsyncClient``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ollama
import pydantic

from .._errors import ServerResponseError, UsageError
from .._family import SAMPLING

__all__ = [
    "BaseRequest",
    "Blocking",
    "Call",
    "ChatRequest",
    "Each",
    "GemmaModel",
    "GenerateRequest",
    "OptionsLike",
    "Plan",
    "Stream",
    "merge_options",
    "parse_format",
    "reply_error",
    "server_kind",
]

OptionsLike = Mapping[str, Any] | ollama.Options | None


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


# --------------------------------------------------------------------------- requests


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


def parse_format(fmt: Any) -> tuple[Any, Callable[[str], Any] | None]:
    """(what to send as the format, how to parse the reply): a pydantic model class becomes its
    JSON schema and validates the reply into an instance; a schema dict parses it as JSON."""
    if isinstance(fmt, type) and issubclass(fmt, pydantic.BaseModel):
        return fmt.model_json_schema(), fmt.model_validate_json
    if isinstance(fmt, Mapping):
        return fmt, json.loads
    if fmt == "json":  # JSON mode: the text is JSON by the server's word; returned as text
        return fmt, None
    if fmt is not None:
        raise UsageError(
            f'format must be "json", a JSON schema dict or a pydantic model class, not {fmt!r}'
        )
    return None, None


@dataclass(frozen=True)
class BaseRequest:
    """What every request carries (ollama-python's ``BaseGenerateRequest``)."""

    model: str | None = None  # None until the client has resolved its default
    stream: bool = False
    options: dict[str, Any] = field(default_factory=lambda: dict(SAMPLING))  # merged
    format: Any = None  # what the server gets: "json", a JSON schema dict, or None
    parse: Callable[[str], Any] | None = field(default=None, compare=False, repr=False)
    keep_alive: float | str | None = None


@dataclass(frozen=True)
class ChatRequest(BaseRequest):
    """One chat request. ``messages`` are normalised, images base64; ``tools`` are the JSON
    schemas of the caller's tools (Gemma 3 reads them in its first turn, which the client writes;
    FunctionGemma from its own renderer)."""

    messages: tuple[dict[str, Any], ...] = ()
    tools: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class GenerateRequest(BaseRequest):
    """One completion request; ``raw=True`` sends ``prompt`` to the model verbatim."""

    prompt: str = ""
    system: str | None = None
    images: tuple[str, ...] = ()  # base64
    raw: bool = False


# --------------------------------------------------------------------------- replies


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


def server_kind(server: str) -> str:
    """``an Ollama`` / ``a vllm`` ...: how an error names the server it expected."""
    return "an Ollama" if server == "ollama" else f"a {server}"


def reply_error(host: str, server: str, what: str) -> ServerResponseError:
    return ServerResponseError(f"{host} sent a reply that is not {what}", server=server)
