"""Quant types: one row per type, and llama.cpp's choice of type per tensor.

Two column tables, in the manner of gguf-py's ``GGML_QUANT_SIZES`` / ``LlamaFileType``:

* :data:`GGML` — tensor types (``ggml_type``): id, elements per block, bytes per block.
* :data:`QUANTS` — file types, what ``export -q`` names: llama.cpp's ``llama_ftype``, the default
  tensor type, how gemma3-pack writes it (``float``: converted by numpy; ``ggml``: ggml's own
  quantizer through :mod:`gemma3_pack._export._ggml`), Ollama's spelling when ``ollama create --quantize``
  makes it, and bits per weight of the default type.

:func:`tensor_types` is ``llama_tensor_get_type`` (``src/llama-quant.cpp``) for Gemma 3: the mix per
file type (``attn_v``/``ffn_down`` promotions, the output policy for the tied ``token_embd``), the QAT
recipe (Q8_0 embedding and output), an explicit token-embedding type, the imatrix-dependent rules,
and the row-width fallbacks. The exporter writes exactly these types; the tests compare them with
``llama-quantize`` tensor for tensor. Nothing here imports numpy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GGML",
    "OLLAMA_QUANTIZE",
    "QUANTS",
    "VALID_TYPES",
    "GgmlType",
    "Quant",
    "TensorSpec",
    "ggml_by_id",
    "row_bytes",
    "tensor_bytes",
    "tensor_types",
]


@dataclass(frozen=True)
class GgmlType:
    """A tensor type (``enum ggml_type``, ggml.h)."""

    name: str
    id: int
    block: int  # elements per block
    size: int  # bytes per block

    @property
    def quantized(self) -> bool:
        return self.block > 1

    @property
    def bpw(self) -> float:
        return self.size * 8 / self.block


GGML: dict[str, GgmlType] = {
    t.name: t
    for t in (
        GgmlType("F32", 0, 1, 4),
        GgmlType("F16", 1, 1, 2),
        GgmlType("Q4_0", 2, 32, 18),
        GgmlType("Q4_1", 3, 32, 20),
        GgmlType("Q5_0", 6, 32, 22),
        GgmlType("Q5_1", 7, 32, 24),
        GgmlType("Q8_0", 8, 32, 34),
        GgmlType("Q2_K", 10, 256, 84),
        GgmlType("Q3_K", 11, 256, 110),
        GgmlType("Q4_K", 12, 256, 144),
        GgmlType("Q5_K", 13, 256, 176),
        GgmlType("Q6_K", 14, 256, 210),
        GgmlType("IQ4_NL", 20, 32, 18),
        GgmlType("IQ4_XS", 23, 256, 136),
        GgmlType("BF16", 30, 1, 2),
    )
}

Writer = Literal["float", "ggml"]


@dataclass(frozen=True)
class Quant:
    """A file type: what ``-q`` names."""

    name: str
    ftype: int  # llama_ftype (llama.h), general.file_type
    default: str  # the default tensor type (llama_ftype_get_default_type)
    writer: Writer
    ollama: str | None = None  # spelled as `ollama create --quantize` accepts it, if it does

    @property
    def bpw(self) -> float:
        """Bits per weight of the default tensor type (the mix adds a little: see the docs)."""
        return GGML[self.default].bpw


QUANTS: dict[str, Quant] = {
    q.name: q
    for q in (
        Quant("F32", 0, "F32", "float", "f32"),
        Quant("F16", 1, "F16", "float", "f16"),
        Quant("BF16", 32, "BF16", "float", "bf16"),
        Quant("Q8_0", 7, "Q8_0", "ggml", "q8_0"),
        Quant("Q4_0", 2, "Q4_0", "ggml"),
        Quant("Q4_1", 3, "Q4_1", "ggml"),
        Quant("Q5_0", 8, "Q5_0", "ggml"),
        Quant("Q5_1", 9, "Q5_1", "ggml"),
        Quant("Q2_K", 10, "Q2_K", "ggml"),
        Quant("Q3_K_S", 11, "Q3_K", "ggml"),
        Quant("Q3_K_M", 12, "Q3_K", "ggml"),
        Quant("Q3_K_L", 13, "Q3_K", "ggml"),
        Quant("Q4_K_S", 14, "Q4_K", "ggml", "q4_K_S"),
        Quant("Q4_K_M", 15, "Q4_K", "ggml", "q4_K_M"),
        Quant("Q5_K_S", 16, "Q5_K", "ggml"),
        Quant("Q5_K_M", 17, "Q5_K", "ggml"),
        Quant("Q6_K", 18, "Q6_K", "ggml"),
        Quant("IQ4_NL", 25, "IQ4_NL", "ggml"),
        Quant("IQ4_XS", 30, "IQ4_XS", "ggml"),
    )
}
VALID_TYPES: tuple[str, ...] = tuple(QUANTS)
# What `ollama create --quantize` accepts (>= v0.7.0), in the order Ollama's docs list them.
OLLAMA_QUANTIZE: tuple[str, ...] = tuple(
    QUANTS[n].ollama or n for n in ("Q4_K_M", "Q4_K_S", "Q8_0", "F16", "F32", "BF16")
)

_BY_ID = {t.id: t for t in GGML.values()}


def ggml_by_id(type_id: int) -> GgmlType | None:
    return _BY_ID.get(type_id)


def row_bytes(type_name: str, ne0: int) -> int:
    t = GGML[type_name]
    return ne0 // t.block * t.size


def tensor_bytes(type_name: str, shape: Sequence[int]) -> int:
    """Bytes of a tensor; ``shape`` in numpy order (rows first, the row width last)."""
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return row_bytes(type_name, shape[-1]) * rows


@dataclass(frozen=True)
class TensorSpec:
    """What the type choice reads of a tensor: GGUF name, numpy shape, its type in the BF16 file."""

    name: str
    shape: tuple[int, ...]  # numpy order: (rows, row width)
    type: str  # the type the float export stores it in (F32 for norms)


# tensor_type_fallback: a row that does not split into the type's blocks
_FALLBACK = {"IQ4_XS": "IQ4_NL", "Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0"}
_FALLBACK |= {"Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_LAYER = re.compile(r"^blk\.(\d+)\.")


def _fallback(type_name: str, ne0: int) -> str:
    if ne0 % GGML[type_name].block == 0:
        return type_name
    smaller = _FALLBACK.get(type_name, type_name)
    return smaller if ne0 % GGML[smaller].block == 0 else "F16"


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (
        ("attn_qkv.weight", "attn_v"),
        ("attn_kv_b.weight", "attn_v"),
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"),
        ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ):
        if key in name:
            return cat
    return "other"


def _allows_quantization(t: TensorSpec) -> bool:
    """tensor_allows_quantization, the parts that can apply to a Gemma 3 text GGUF."""
    return (
        len(t.shape) >= 2
        and t.name.endswith("weight")
        and "_norm.weight" not in t.name
        and "ffn_gate_inp.weight" not in t.name
    )


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _mix(
    quant: str, cat: str, new: str, ne0: int, *, i: int, n: int, gqa: int, tied: bool, imx: bool
) -> str:
    """llama_tensor_get_type_impl for the file types of :data:`QUANTS` (dense, not Falcon/70B)."""
    if cat == "output" or (tied and cat == "token_embd"):
        if ne0 % GGML[new].block:
            return "Q8_0"
        return new if new == "Q8_0" else "Q6_K"
    if cat == "attn_v":
        if quant == "Q2_K":
            return "Q4_K" if gqa >= 4 else "Q3_K"
        if quant == "Q3_K_M":
            return "Q5_K" if i < 2 else "Q4_K"
        if quant == "Q3_K_L":
            return "Q5_K"
        if quant in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
            return "Q5_K"
        if quant in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
            return "Q6_K"
        if quant == "Q4_K_S" and i < 4:
            return "Q5_K"
        return new
    if cat == "ffn_down":
        if quant == "Q2_K":
            return "Q3_K"
        if quant == "Q3_K_M":
            return "Q5_K" if i < n // 16 else "Q4_K"
        if quant == "Q3_K_L":
            return "Q5_K"
        if quant == "Q4_K_M":
            return "Q6_K" if _more_bits(i, n) else new
        if i < n // 8 and quant in ("IQ4_NL", "IQ4_XS") and not imx:
            return "Q5_K"
        if quant == "Q5_K_M" and _more_bits(i, n):
            return "Q6_K"
        if quant == "Q4_K_S" and i < n // 8:
            return "Q5_K"
        if quant in ("Q4_0", "Q5_0") and imx and i < n // 8:
            return "Q4_1" if quant == "Q4_0" else "Q5_1"
        return new
    if cat == "attn_output":
        return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(quant, new)
    return new


def tensor_types(
    tensors: Sequence[TensorSpec],
    quant: str,
    *,
    n_layers: int,
    n_head: int,
    n_head_kv: int,
    qat: bool = False,
    embedding_type: str | None = None,
    imatrix: bool = False,
) -> list[str]:
    """The ggml type of each tensor when llama.cpp quantizes the float export to ``quant``.

    ``qat`` is ggml-org's QAT recipe (``--token-embedding-type q8_0 --output-tensor-type q8_0``);
    ``embedding_type`` an explicit ``--token-embedding-type`` (taken as is: llama.cpp applies no
    width fallback to it); ``imatrix`` whether an importance matrix is given (it changes the mix of
    Q4_0/Q5_0/IQ4 files). Float file types keep every tensor's float type.
    """
    q = QUANTS[quant]
    default = q.default
    if not GGML[default].quantized:
        return [t.type for t in tensors]
    tied = not any(t.name == "output.weight" for t in tensors)
    emb = embedding_type or ("Q8_0" if qat else None)
    out_type = "Q8_0" if qat else None
    gqa = n_head // max(1, n_head_kv)
    n_v = sum(1 for t in tensors if _category(t.name) == "attn_v")
    out: list[str] = []
    for t in tensors:
        if not _allows_quantization(t):
            out.append(t.type)
            continue
        cat = _category(t.name)
        if emb is not None and cat == "token_embd":
            out.append(emb)
            continue
        if out_type is not None and cat == "output":
            out.append(out_type)
            continue
        m = _LAYER.match(t.name)
        layer = int(m.group(1)) if m else 0
        n = n_v if cat == "attn_v" else n_layers
        new = _mix(quant, cat, default, t.shape[-1], i=layer, n=n, gqa=gqa, tied=tied, imx=imatrix)
        out.append(_fallback(new, t.shape[-1]))
    return out
