"""Names of Gemma 3 vision tensors: one canonical spelling, and what each GGUF dialect calls it.

Gemma3ForConditionalGeneration checkpoints spell the SigLIP tower and the projector three ways:

    release (Google's upload)       vision_tower.vision_model.*        multi_modal_projector.*
    new (transformers 4.52+ saves)  model.vision_tower.vision_model.*  model.multi_modal_projector.*
    tf5 (transformers 5.x saves)    vision_tower.*  (no vision_model.) multi_modal_projector.*

llama.cpp's converter only understands the first: it silently drops the second (an mmproj with zero
tensors) and crashes on the third. We fold all three into the release spelling first
(:func:`canonical`), and only then map to a GGUF dialect, so every layout yields the same file:

* llama.cpp's mmproj names come from gguf-py's own table (``MODEL_ARCH.MMPROJ``);
* Ollama's fused names come from Ollama's converter, a single ``strings.Replacer`` pass
  (ollama/ollama ``convert/convert_gemma3.go`` ``gemma3Model.Replacements``), reproduced in
  :data:`OLLAMA_RENAMES` and applied the same way by :func:`ollama_name`.
"""

from __future__ import annotations

import re

__all__ = [
    "OLLAMA_RENAMES",
    "TENSORS_OUTSIDE_LAYERS",
    "TENSORS_PER_LAYER",
    "canonical",
    "expected_names",
    "is_vision",
    "ollama_name",
]

#: Tensors per SigLIP encoder layer: q/k/v/out projections, fc1/fc2, two LayerNorms, each w+b.
TENSORS_PER_LAYER = 16
#: patch embedding w+b, position embedding, post LayerNorm w+b, projector matrix, soft-emb norm.
TENSORS_OUTSIDE_LAYERS = 7

_TOWER = "vision_tower.vision_model."
_PROJ = "multi_modal_projector."

# One entry per layout: (prefix as stored, prefix in the release spelling). Longest first, so
# ``model.vision_tower.vision_model.`` wins over ``vision_tower.``.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.vision_tower.vision_model.", _TOWER),
    ("model.multi_modal_projector.", _PROJ),
    ("model.vision_tower.", _TOWER),
    ("vision_tower.vision_model.", _TOWER),
    ("vision_tower.", _TOWER),
    ("multi_modal_projector.", _PROJ),
)


def canonical(name: str) -> str | None:
    """The release-layout spelling of a vision or projector tensor name, or None for other tensors.

    HF stores the projector matrix as a bare Parameter (``mm_input_projection_weight``); it is given
    the usual ``.weight`` suffix here, as both upstream converters do.
    """
    for stored, release in _PREFIXES:
        if name.startswith(stored):
            rest = name[len(stored) :]
            if release == _TOWER and rest.startswith("head."):
                return None  # SigLIP's pooling head: unused by Gemma 3, dropped by llama.cpp too
            out = release + rest
            if out.endswith("_weight"):
                out = out[: -len("_weight")] + ".weight"
            return out
    return None


def is_vision(name: str) -> bool:
    """Whether a checkpoint tensor belongs to the vision tower or the projector (any layout)."""
    return canonical(name) is not None


def expected_names(n_layers: int) -> list[str]:
    """Every canonical tensor a Gemma 3 vision tower with ``n_layers`` layers must have."""
    names = [
        _TOWER + "embeddings.patch_embedding.weight",
        _TOWER + "embeddings.patch_embedding.bias",
        _TOWER + "embeddings.position_embedding.weight",
        _TOWER + "post_layernorm.weight",
        _TOWER + "post_layernorm.bias",
        _PROJ + "mm_input_projection.weight",
        _PROJ + "mm_soft_emb_norm.weight",
    ]
    for i in range(n_layers):
        layer = f"{_TOWER}encoder.layers.{i}."
        for part in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.out_proj",
            "mlp.fc1",
            "mlp.fc2",
            "layer_norm1",
            "layer_norm2",
        ):
            names += [f"{layer}{part}.weight", f"{layer}{part}.bias"]
    return names


#: Ollama's replacement pairs for Gemma 3, in its order (convert/convert_gemma3.go). Only the pairs
#: that can touch a vision or projector name matter here; the text ones are kept so that the pass
#: behaves exactly like Go's ``strings.NewReplacer`` over the same list.
OLLAMA_RENAMES: tuple[tuple[str, str], ...] = (
    ("lm_head", "output"),
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("vision_tower.vision_model.embeddings", "v"),
    ("vision_tower.vision_model", "v"),
    ("vision_model.vision_model.embeddings", "v"),
    ("vision_model.vision_model", "v"),
    ("language_model.", ""),
    ("model.layers", "blk"),
    ("encoder.layers", "blk"),
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.out_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.down_proj", "ffn_down"),
    ("mlp.up_proj", "ffn_up"),
    ("post_attention_layernorm", "post_attention_norm"),
    ("pre_feedforward_layernorm", "ffn_norm"),
    ("post_feedforward_layernorm", "post_ffw_norm"),
    ("input_projection_weight", "input_projection.weight"),
    ("multi_modal_projector", "mm"),
)

# Go's generic Replacer scans left to right; at each position the first pair (in argument order)
# whose old string matches wins. A regex alternation in the same order does exactly that.
_OLLAMA_RE = re.compile("|".join(re.escape(old) for old, _ in OLLAMA_RENAMES))
_OLLAMA_MAP: dict[str, str] = {}
for _old, _new in OLLAMA_RENAMES:
    _OLLAMA_MAP.setdefault(_old, _new)


def ollama_name(canonical_name: str) -> str:
    """The tensor name Ollama's converter gives a canonical vision/projector name.

    ``mm_input_projection.weight`` is passed in its HF spelling (``mm_input_projection_weight``) to
    Ollama's replacer, exactly as the safetensors key reaches it.
    """
    hf = canonical_name
    if hf.endswith("mm_input_projection.weight"):
        hf = hf[: -len(".weight")] + "_weight"
    return _OLLAMA_RE.sub(lambda m: _OLLAMA_MAP[m.group(0)], hf)
