"""Small GGUFs for the file tests, written by gguf-py (a Gemma-3-shaped vocab, a CLIP projector),
the 270M rewritten with its turn tokens typed NORMAL, and a flat-memory range hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from gemma3_pack._gguf._patch import HeaderEdits, write_plan
from gemma3_pack._gguf._reader import open_gguf


def sha256(path: Path, start: int = 0, end: int | None = None) -> str:
    """Hash a byte range in 16 MiB chunks (memory flat)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = (end if end is not None else os.path.getsize(path)) - start
        while left > 0:
            chunk = f.read(min(left, 16 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def tiny_gguf(
    path: Path,
    *,
    arch: str = "gemma3",
    kv: dict[str, Any] | None = None,
    turn_types: int = 3,
    n_vocab: int = 300,
    alignment: int | None = None,
) -> Path:
    """A small GGUF written by gguf-py (a Gemma-3-shaped vocab unless arch says otherwise)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    if arch != "clip":
        w.add_context_length(32768)
        w.add_block_count(18)
        w.add_embedding_length(8)
        w.add_sliding_window(512)
        tokens = [f"t{i}" for i in range(n_vocab)]
        tokens[:5] = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
        tokens[105:107] = ["<start_of_turn>", "<end_of_turn>"]
        types = [gguf.TokenType.NORMAL] * n_vocab
        types[:5] = [gguf.TokenType.CONTROL] * 5
        types[105:107] = [turn_types, turn_types]
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores([0.0] * n_vocab)
        w.add_token_types(types)
        w.add_bos_token_id(2)
        w.add_eos_token_id(1)
        w.add_add_bos_token(True)
    for key, value in (kv or {}).items():
        if isinstance(value, tuple):
            w.add_key_value(key, value[0], value[1])
        elif isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_string(key, value)
    w.add_tensor("token_embd.weight", np.arange(8 * n_vocab, dtype=np.float32).reshape(n_vocab, 8))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_mmproj(path: Path, *, projector: str = "gemma3") -> Path:
    import gguf

    return tiny_gguf(
        path,
        arch="clip",
        kv={
            "general.type": "mmproj",
            "clip.projector_type": projector,
            "clip.has_vision_encoder": True,
            "clip.use_gelu": True,
            "clip.vision.image_size": 896,
            "clip.vision.patch_size": 14,
            "clip.vision.block_count": 27,
            "clip.vision.embedding_length": 1152,
            "clip.vision.projection_dim": 640,
            "clip.vision.image_mean": ([0.5, 0.5, 0.5], gguf.GGUFValueType.ARRAY),
        },
    )


def make_bad_export(src: Path, dst: Path) -> Path:
    """The 270M rewritten (by our writer) with <start_of_turn>/<end_of_turn> typed NORMAL."""
    with open_gguf(src) as h:
        write_plan(h, HeaderEdits(token_types={105: 1, 106: 1}), dst)
    return dst
