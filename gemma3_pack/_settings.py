"""The Gemma team's generation settings: one row per setting, one column per place it is spelled.

The same five numbers travel to six places under six spellings. This table is the only place they
are written; :data:`gemma3_pack._family.SAMPLING` (the Modelfile names), ``GGUF_SAMPLING`` (what the
exporter and the patcher write) and the request bodies the SDK sends to each server are read from it.

Sources for the spellings (see ``shared/reference``):

* Modelfile ``PARAMETER`` and Ollama's ``options``: Ollama's ``api.Options`` JSON names.
* GGUF: llama.cpp's ``general.sampling.*`` keys and their types (llama.cpp PR #17120).
* OpenAI protocol: ``temperature`` and ``top_p`` are standard fields; ``top_k``, ``min_p`` and the
  repeat penalty are not, and each server takes its own extra field. vLLM's
  ``ChatCompletionRequest`` takes ``top_k``, ``min_p`` and ``repetition_penalty``; llama-server's
  ``/v1/chat/completions`` reads ``top_k``, ``min_p`` and ``repeat_penalty``; Ollama's ``/v1``
  reads only the standard fields (its OpenAI shim drops the rest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BY_NAME",
    "GGUF_SAMPLING",
    "SAMPLING",
    "SETTINGS",
    "STOP",
    "Setting",
    "Target",
    "fields_for",
]

Target = Literal["ollama", "openai", "vllm", "llama-server"]
STOP = "<end_of_turn>"


@dataclass(frozen=True)
class Setting:
    """One generation setting and its spelling in every target (``None``: the target lacks it)."""

    name: str  # the Modelfile PARAMETER name, which is also Ollama's option name
    default: float | int
    gguf_key: str
    gguf_type: Literal["f32", "i32"]
    openai: str | None  # a standard OpenAI chat-completions field
    vllm: str | None  # vLLM's extra sampling field (sent in the request body)
    llama_server: str | None  # llama-server's field


SETTINGS: tuple[Setting, ...] = (
    Setting("temperature", 1.0, "general.sampling.temp", "f32", "temperature", None, None),
    Setting("top_k", 64, "general.sampling.top_k", "i32", None, "top_k", "top_k"),
    Setting("top_p", 0.95, "general.sampling.top_p", "f32", "top_p", None, None),
    Setting("min_p", 0.0, "general.sampling.min_p", "f32", None, "min_p", "min_p"),
    Setting(
        "repeat_penalty",
        1.0,
        "general.sampling.penalty_repeat",
        "f32",
        None,
        "repetition_penalty",
        "repeat_penalty",
    ),
)
BY_NAME = {s.name: s for s in SETTINGS}
# Derived views: Modelfile/Ollama names, and GGUF keys with their types.
SAMPLING: dict[str, float | int] = {s.name: s.default for s in SETTINGS}
GGUF_SAMPLING: dict[str, tuple[float | int, str]] = {
    s.gguf_key: (s.default, s.gguf_type) for s in SETTINGS
}


def fields_for(target: Target, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split Ollama-named ``values`` into (standard OpenAI fields, extra body fields) for ``target``.

    ``target`` names the server behind an OpenAI-compatible URL (``ollama`` is Ollama's ``/v1``).

    Names outside the table pass through unchanged as extra fields (``seed``, ``max_tokens`` ...
    are spelled the same everywhere, and a caller naming a server's own field means that field).
    For the plain ``openai`` target (server unknown) the extras take vLLM's spelling: vLLM before
    0.5 answers 400 to any field it does not know (``extra="forbid"``), while llama-server and
    Ollama ignore unknown fields (and llama-server's own repeat penalty defaults to Gemma's 1.0).
    """
    standard: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in values.items():
        row = BY_NAME.get(name)
        if row is None:
            extra[name] = value
        elif row.openai is not None:
            standard[row.openai] = value
        elif target == "vllm" and row.vllm:
            extra[row.vllm] = value
        elif target == "llama-server" and row.llama_server:
            extra[row.llama_server] = value
        elif target == "openai" and (row.vllm or row.llama_server):
            extra[row.vllm or row.llama_server or name] = value
        # target "ollama" over /v1: Ollama's OpenAI shim has no field for it; the Modelfile
        # of a gemma3-pack model carries the setting instead.
    return standard, extra
