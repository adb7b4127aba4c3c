"""The fused layout's vision keys (as Ollama's converter writes them) and the split projector's CLIP keys,\nand a raw GGUF builder over them: the split/fuse hostile corpus and its fuzzer start here."""

from __future__ import annotations

from pathlib import Path

from _hostile import F32, STR, U32, raw_gguf, tensor_info

_VISION = {  # the fused layout's vision keys, as Ollama's converter writes them (1 layer)
    "gemma3.vision.block_count": (U32, 1),
    "gemma3.vision.embedding_length": (U32, 8),
    "gemma3.vision.feed_forward_length": (U32, 16),
    "gemma3.vision.image_size": (U32, 896),
    "gemma3.vision.patch_size": (U32, 14),
    "gemma3.vision.attention.head_count": (U32, 2),
    "gemma3.vision.attention.layer_norm_epsilon": (F32, 1e-6),
    "gemma3.mm.tokens_per_image": (U32, 256),
}


_CLIP = {
    "general.architecture": (STR, "clip"),
    "clip.projector_type": (STR, "gemma3"),
    "clip.vision.projection_dim": (U32, 8),
    "clip.vision.block_count": (U32, 1),
    "clip.vision.embedding_length": (U32, 8),
    "clip.vision.feed_forward_length": (U32, 16),
    "clip.vision.image_size": (U32, 896),
    "clip.vision.patch_size": (U32, 14),
    "clip.vision.attention.head_count": (U32, 2),
    "clip.vision.attention.layer_norm_epsilon": (F32, 1e-6),
}


def _with_tensors(
    path: Path, records: list[bytes], names: list[str], shapes: dict | None = None
) -> Path:
    shapes = shapes or {}
    infos = [tensor_info(n, shapes.get(n, (8,)), 0, 32 * i) for i, n in enumerate(names)]
    return raw_gguf(path, records, infos, b"\0" * 32 * len(names))
