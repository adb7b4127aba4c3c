"""Gemma 3 text hyper-parameters, filled from the family table the way transformers would.

Google's 4B/12B/27B ``config.json`` is minimal (no heads, head_dim, rope_theta or vocab_size in
``text_config``); llama.cpp's converter fills the gaps from ``transformers.AutoConfig``. We fill
them from :mod:`gemma3_pack._family` instead, keyed off the layer count, so no transformers import is
needed and the values agree with the reference (Gemma3TextConfig defaults are the 4B's shapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import CheckpointError
from .._family import SIZES, VARIANTS, Size, Variant, size_for_layers

__all__ = ["TextHParams", "match_variant", "text_hparams"]


@dataclass(frozen=True)
class TextHParams:
    """What the GGUF's ``gemma3.*`` keys are written from."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int
    rms_norm_eps: float
    rope_theta: float
    rope_local_theta: float  # transformers always supplies one, so the reference always writes it
    rope_scaling_factor: float | None  # linear scaling of the global layers (4B+)
    sliding_window: int | None
    final_logit_softcapping: float | None
    vocab_size: int
    size: Size | None  # the released size with this layer count and width, if any


def _rope(text: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(global theta, local theta, linear factor) from either config spelling."""
    params = text.get("rope_parameters") or {}
    full = params.get("full_attention") if isinstance(params, dict) else None
    slide = params.get("sliding_attention") if isinstance(params, dict) else None
    theta = (full or {}).get("rope_theta", text.get("rope_theta"))
    local = (slide or {}).get("rope_theta", text.get("rope_local_base_freq"))
    scaling = full if full and full.get("rope_type") == "linear" else text.get("rope_scaling")
    factor = None
    if isinstance(scaling, dict) and scaling.get("rope_type", scaling.get("type")) == "linear":
        factor = float(scaling["factor"])
    return theta, local, factor


def text_hparams(text: dict[str, Any], vocab_rows: int) -> TextHParams:
    """Merge a checkpoint's text config with Gemma3TextConfig's defaults."""
    try:
        layers = int(text["num_hidden_layers"])
        hidden = int(text["hidden_size"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            "config.json lacks num_hidden_layers/hidden_size: not a complete Gemma 3 config"
        ) from None
    # transformers' Gemma3TextConfig defaults are the 4B shapes; the family table agrees.
    d = SIZES["4b"]
    size = size_for_layers(layers)
    if size is not None and size.hidden_size != hidden:
        size = None
    theta, local, factor = _rope(text)
    window = text.get("sliding_window", d.sliding_window)
    softcap = text.get("final_logit_softcapping")
    return TextHParams(
        num_layers=layers,
        hidden_size=hidden,
        intermediate_size=int(text.get("intermediate_size", d.intermediate_size)),
        num_heads=int(text.get("num_attention_heads", d.num_heads)),
        num_kv_heads=int(text.get("num_key_value_heads", d.num_kv_heads)),
        head_dim=int(text.get("head_dim", d.head_dim)),
        context_length=int(text.get("max_position_embeddings", d.context_length)),
        rms_norm_eps=float(text.get("rms_norm_eps", d.rms_norm_eps)),
        rope_theta=float(theta if theta is not None else d.rope_theta),
        rope_local_theta=float(local if local is not None else d.rope_local_theta),
        rope_scaling_factor=factor,
        sliding_window=int(window) if window else None,
        final_logit_softcapping=float(softcap) if softcap else None,
        vocab_size=vocab_rows,
        size=size,
    )


def match_variant(hp: TextHParams, *, qat: bool, instruct: bool) -> Variant | None:
    """The published variant this checkpoint derives from (by layer count and width)."""
    if hp.size is None:
        return None
    kind = "it-qat" if qat else ("it" if instruct else "pt")
    return VARIANTS.get(f"gemma3-{hp.size.name}-{kind}")
