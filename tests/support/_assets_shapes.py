"""Synthetic Gemma 3 GGUFs at real widths: what llama.cpp allocates for 1B and 4B shapes.

Memory depends on widths, head counts, vocabulary and the layer pattern, not on the weights, so
these files have a few layers at full width, the real vocabulary (copied from the real 270M, and
for 4B+ padded to 262208 like Google's), the real sliding-window pattern, and zero tensor data
(written in chunks, never held in memory). The layer tensors mix ggml types the way a Q4_K_M
file does (Q4_0 matrices, Q8_0 attn_v, Q6_K ffn_down) so the plan's byte counts are checked on
more than one type. Built once per shape under the test cache.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import _assets
import numpy as np

BUILD_VERSION = "1"


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context: int
    window: int
    rope_scaling: float | None = None


# Widths of gemma-3-1b and gemma-3-4b (gemma3_pack._family); 7 and 6 layers keep the real
# 5-local:1-global pattern (layer 5 global) at a fraction of the size.
SHAPES = {
    "1b": Shape("1b", 7, 1152, 4, 1, 256, 6912, 262144, 32768, 512),
    "4b": Shape("4b", 6, 2560, 8, 4, 256, 10240, 262208, 131072, 1024, 8.0),
}


class _Zeros:
    """A tensor GGUFWriter can write without it existing: ``nbytes`` zero bytes in chunks."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def tofile(self, fp: BinaryIO) -> None:
        chunk = bytes(1 << 24)
        left = self.nbytes
        while left:
            n = min(left, len(chunk))
            fp.write(chunk[:n])
            left -= n

    def byteswap(self, inplace: bool = False) -> _Zeros:
        return self


def _types(shape: Shape) -> list[tuple[str, tuple[int, ...], str]]:
    s = shape
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    out: list[tuple[str, tuple[int, ...], str]] = [
        ("token_embd.weight", (s.hidden, s.vocab), "Q4_0"),
        ("output_norm.weight", (s.hidden,), "F32"),
    ]
    for i in range(s.layers):
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", (s.hidden,), "F32"),
            (b + "attn_q.weight", (s.hidden, q), "Q4_0"),
            (b + "attn_k.weight", (s.hidden, kv), "Q4_0"),
            (b + "attn_v.weight", (s.hidden, kv), "Q8_0"),
            (b + "attn_output.weight", (q, s.hidden), "Q4_0"),
            (b + "attn_q_norm.weight", (s.head_dim,), "F32"),
            (b + "attn_k_norm.weight", (s.head_dim,), "F32"),
            (b + "post_attention_norm.weight", (s.hidden,), "F32"),
            (b + "ffn_norm.weight", (s.hidden,), "F32"),
            (b + "ffn_gate.weight", (s.hidden, s.ffn), "Q4_0"),
            (b + "ffn_up.weight", (s.hidden, s.ffn), "Q4_0"),
            (b + "ffn_down.weight", (s.ffn, s.hidden), "Q6_K" if s.hidden % 256 == 0 else "Q8_0"),
            (b + "post_ffw_norm.weight", (s.hidden,), "F32"),
        ]
    return out


def _vocab(n: int) -> tuple[list[str], list[float], list[int]]:
    import _oracle

    keys, _ = _oracle.read_gguf(_assets.gguf_270m())
    tokens = list(keys["tokenizer.ggml.tokens"])
    scores = list(keys["tokenizer.ggml.scores"])
    types = list(keys["tokenizer.ggml.token_type"])
    if n > len(tokens):  # 4B+: <image_soft_token> then [PADn] up to 262208
        extra = ["<image_soft_token>"] + [f"[PAD{i}]" for i in range(len(tokens) + 1, n)]
        tokens += extra
        scores += [-1000.0] * len(extra)
        types += [3] + [5] * (len(extra) - 1)
    return tokens, scores, types


def _build(shape: Shape, out: Path) -> None:
    import gguf

    s = shape
    w = gguf.GGUFWriter(out, arch="gemma3")
    w.add_name(f"synthetic gemma-3-{s.name} shape ({s.layers} layers)")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_context_length(s.context)
    w.add_embedding_length(s.hidden)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    w.add_key_length(s.head_dim)
    w.add_value_length(s.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1_000_000.0)
    w.add_sliding_window(s.window)
    if s.rope_scaling:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(s.rope_scaling)
    tokens, scores, types = _vocab(s.vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    data: list[_Zeros] = []
    for name, ne, tname in _types(s):
        qtype = gguf.GGMLQuantizationType[tname]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
        row_bytes = ne[0] // block * size
        nbytes = rows * row_bytes
        if tname == "F32":
            w.add_tensor_info(name, list(reversed(ne)), np.dtype(np.float32), nbytes)
        else:
            byte_shape = [*reversed(ne[1:]), row_bytes]
            w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=qtype)
        data.append(_Zeros(nbytes))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in data:
        w.write_tensor_data(t)  # type: ignore[arg-type]  # duck-typed: nbytes/tofile/byteswap
    w.close()


def synthetic_gguf(name: str) -> Path:
    """The cached synthetic GGUF for shape ``name`` ("1b" or "4b"), built atomically on first use."""
    shape = SHAPES[name]
    folder = _assets.cache_dir("plan-shapes", f"v{BUILD_VERSION}")
    path = folder / f"gemma-3-{name}-shape-{shape.layers}l.gguf"
    if path.is_file():
        return path
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
    os.close(fd)
    try:
        _build(shape, Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def tensor_types(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, ne, ggml type) of every tensor the synthetic file for ``name`` holds."""
    return _types(SHAPES[name])


__all__: list[Any] = ["SHAPES", "Shape", "synthetic_gguf", "tensor_types"]
