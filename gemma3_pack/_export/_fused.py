"""One GGUF with text and vision together, in the layout Ollama's own converter writes for Gemma 3.

Ollama's own Go engine (0.6–0.29) runs Gemma 3 vision only from such a fused file; from 0.11.11 a
separate llama.cpp projector also works there, on its fallback llama.cpp engine (observed on 0.24.0),
and Ollama ≥ 0.30 loads the fused file through its compatibility shim (observed on 0.34.4). The file is
the exported text GGUF, copied tensor for tensor and key for key, plus:

* keys as ``gemma3Model.KV`` writes them for Gemma3ForConditionalGeneration
  (ollama/ollama ``convert/convert_gemma3.go``): ``gemma3.vision.{block_count, embedding_length,
  feed_forward_length, image_size, patch_size, num_channels, attention.head_count,
  attention.layer_norm_epsilon}`` (uint32 / float32) and ``gemma3.mm.tokens_per_image``;
* tensors named by the same converter's ``Replacements`` (see ``_vision_names.ollama_name``), which
  are the names the Go model binds (``model/models/gemma3/model_vision.go``: ``patch_embedding``,
  ``position_embedding``, ``post_layernorm``, ``blk.N.{layer_norm1, layer_norm2, attn_q, attn_k,
  attn_v, attn_output, mlp.fc1, mlp.fc2}``; ``model.go``: ``mm.mm_input_projection``,
  ``mm.mm_soft_emb_norm``);
* storage as ``convert/reader.go tensorBase.Kind``: biases and 1-D tensors F32, the rest F16; and
  ``+1`` on ``mm_soft_emb_norm`` only (``gemmaModel.Tensors``: names ending ``_norm.weight`` outside
  ``v.``), added in float32 as Ollama's repacker does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import CheckpointError, NotGemma3, NotGGUF, OutputError
from .._files import atomic_path
from .._gguf._encode import encode_header, encode_kv, encode_tensor_info, padding
from .._gguf._patch import copy_range
from .._gguf._vision_names import ollama_name
from .._progress import NoBar, progress_bar
from ._mmproj import _open, read_f32, vision_plan

__all__ = ["ollama_vision_keys", "write_fused"]


def ollama_vision_keys(ck: Any, plan: Any = None) -> dict[str, tuple[Any, str]]:
    """The extra keys of a fused file: ``{key: (value, "u32" | "f32")}`` as Ollama writes them."""
    plan = plan if plan is not None else vision_plan(ck)
    v = plan.vision
    keys: dict[str, tuple[Any, str]] = {
        "gemma3.vision.block_count": (v["num_hidden_layers"], "u32"),
        "gemma3.vision.embedding_length": (v["hidden_size"], "u32"),
        "gemma3.vision.feed_forward_length": (v["intermediate_size"], "u32"),
        "gemma3.vision.image_size": (v["image_size"], "u32"),
        "gemma3.vision.patch_size": (v["patch_size"], "u32"),
        "gemma3.vision.num_channels": (v.get("num_channels") or 3, "u32"),
        "gemma3.vision.attention.head_count": (v["num_attention_heads"], "u32"),
        "gemma3.vision.attention.layer_norm_epsilon": (v.get("layer_norm_eps") or 1e-6, "f32"),
    }
    tokens = ck.config.get("mm_tokens_per_image")
    if tokens:  # Ollama writes it only when the config sets it
        keys["gemma3.mm.tokens_per_image"] = (int(tokens), "u32")
    return keys


def _vision_entries(plan: Any) -> list[tuple[str, Any, bool]]:
    """(Ollama name, VisionTensor, stored as F32?) for every vision tensor, in plan order."""
    out = []
    for vt in plan.tensors:
        name = ollama_name(vt.canonical)
        out.append((name, vt, len(vt.shape) == 1 or name.endswith(".bias")))
    return out


def _kv_record(key: str, value: Any, kind: str) -> bytes:
    """A u32 / f32 record (``kind`` as :func:`ollama_vision_keys` spells it)."""
    from gguf import GGUFValueType

    if kind == "u32":
        return encode_kv(key, int(value), GGUFValueType.UINT32)
    return encode_kv(key, float(value), GGUFValueType.FLOAT32)


def write_fused(
    text_gguf: str | os.PathLike[str],
    ckpt: Any,
    out_path: str | os.PathLike[str],
    *,
    progress: bool = False,
    plan: Any = None,
) -> Path:
    """Write Ollama's fused Gemma 3 vision GGUF: ``text_gguf`` + the checkpoint's vision tower.

    ``ckpt`` is the Gemma3ForConditionalGeneration checkpoint (folder or open checkpoint) the text
    GGUF was exported from. The text GGUF's key/value records, tensor records and tensor bytes are
    copied verbatim (so its tensor offsets do not change); the vision keys, tensor records and data
    are appended after them. The text GGUF is never modified; nothing is written on error.
    """
    from gguf import GGMLQuantizationType as Q

    from .._gguf._reader import open_gguf

    text_gguf = Path(text_gguf)
    ck = _open(ckpt)
    plan = plan if plan is not None else vision_plan(ck)  # the exporter passes its own
    extra = ollama_vision_keys(ck, plan)
    entries = _vision_entries(plan)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise OutputError(f"output folder {out_path.parent} does not exist; create it first")

    with open_gguf(text_gguf) as h:
        if h.architecture != "gemma3":
            raise NotGemma3(
                f"{text_gguf} is a {h.architecture or 'unknown'} model, not gemma3: "
                "fuse the Gemma 3 text GGUF exported from the same checkpoint"
            )
        if h.endian != "<":
            raise NotGGUF(f"{text_gguf} is a big-endian GGUF; fuse a little-endian one")
        if any(t.name.startswith(("v.", "mm.")) for t in h.tensors):
            raise NotGGUF(f"{text_gguf} already has vision tensors: pass the text-only GGUF")
        clash = sorted(set(extra) & set(h.kvs))
        if clash:
            raise NotGGUF(f"{text_gguf} already has {clash[0]}: pass the text-only GGUF")
        width = h.get("gemma3.embedding_length")
        if width != plan.text_hidden:
            raise CheckpointError(
                f"{text_gguf.name} is {width} wide but the checkpoint's projector maps onto "
                f"{plan.text_hidden}: fuse the text GGUF exported from this same checkpoint"
            )
        align = h.alignment

        # Vision data goes after the text data, each tensor aligned as gguf requires.
        text_data = h.data_end - h.data_start
        offset = text_data + padding(text_data, align)
        records, layout = [], []
        for name, vt, f32 in entries:
            nbytes = int(np.prod(vt.shape)) * (4 if f32 else 2)
            dims = tuple(reversed(vt.shape))  # GGUF stores the fastest-varying dimension first
            records.append(encode_tensor_info(name, dims, Q.F32 if f32 else Q.F16, offset))
            layout.append((offset, nbytes))
            offset += nbytes + padding(nbytes, align)

        kv_bytes = h.buf[h.kv_start : h.ti_start] + b"".join(
            _kv_record(k, v, kind) for k, (v, kind) in extra.items()
        )
        head = encode_header(
            len(h.tensors) + len(entries),
            len(h.kvs) + len(extra),
            [kv_bytes, h.buf[h.ti_start : h.ti_end], *records],
            alignment=align,
            lead=bytes(h.buf[0:8]),  # the text GGUF's own magic and version
        )

        with (
            atomic_path(out_path) as tmp,
            open(tmp, "wb") as out,
            progress_bar(
                len(h.tensors) + len(entries), "fused", progress=progress, unit="tensor"
            ) as bar,
        ):
            out.write(head)
            out.flush()
            # The text tensors, in-kernel where possible (copy_file_range/sendfile): they
            # never pass through this process, so memory stays flat whatever the model size.
            with open(text_gguf, "rb") as src:
                copy_range(src.fileno(), out.fileno(), h.data_start, len(head), text_data, NoBar())
            out.seek(len(head) + text_data)
            bar.update(len(h.tensors))
            written = text_data
            for (name, vt, f32), (at, _n) in zip(entries, layout, strict=True):
                out.write(b"\0" * (at - written))
                data = read_f32(ck, vt.source)
                if name.endswith("_norm.weight") and not name.startswith("v."):
                    data = data + np.float32(1.0)  # Gemma's (1 + w) RMSNorm, as Ollama's addOne
                blob = (data if f32 else data.astype(np.float16)).tobytes()
                out.write(blob)
                written = at + len(blob)
                bar.update(1)
            out.write(b"\0" * padding(written, align))
    return out_path
