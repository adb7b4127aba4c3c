"""Which checkpoint tensors go into the text GGUF, under which name, in which type, transformed how.

This mirrors llama.cpp's ``Gemma3Model.modify_tensors`` + ``ModelBase.prepare_tensors``:

* ``language_model.`` is removed wherever it occurs (release ``language_model.model.*`` and
  transformers-4.52 ``model.language_model.*`` both become ``model.*``), vision and projector
  tensors are left to the mmproj, and the rest is named by gguf-py's own table;
* every ``*norm.weight`` gets +1 (Gemma's RMSNorm multiplies by ``1 + w``), computed in float32
  for bf16 sources and in the source dtype for f16/f32 ones, exactly as the reference does;
* norms and 1-D tensors are stored F32; the rest in the requested type, falling back to F16 when a
  row does not split into quant blocks (the reference's QuantError fallback);
* ``lm_head.weight`` is dropped when the embeddings are tied or it equals the embedding (the
  reference keeps it, and llama.cpp then treats the model as untied for quantization);
* the embedding is trimmed to the vocabulary size; no transposes, no pre-scaling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .._errors import CheckpointError
from ._reader import CheckpointReader

__all__ = ["TYPES", "PlannedTensor", "is_text_tensor", "plan_tensors", "text_name"]

# Types written directly in Python (gguf.quants) -> GGMLQuantizationType name.
TYPES = ("F32", "F16", "BF16", "Q8_0")
_VISION_MARKERS = (
    "vision_tower",
    "multi_modal_projector",
    "vision_model",
    "projector.",
    "patch_embedding",
    "mm_input_projection",
    "mm_soft_emb_norm",
)
EMBED_CHUNK_BYTES = 64 * 1024 * 1024  # f32 bytes converted at once for big tensors


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor: where it comes from and how it is stored."""

    name: str  # GGUF name
    source: str  # checkpoint name
    shape: tuple[int, ...]  # logical numpy shape (rows, cols)
    qtype: str  # GGMLQuantizationType name
    norm: bool  # gets +1
    rows: int  # rows taken from the source (the embedding may be trimmed)


def text_name(hf_name: str) -> str | None:
    """The reference's name after prefix stripping, or None for vision/projector tensors."""
    if any(m in hf_name for m in _VISION_MARKERS):
        return None
    return hf_name.replace("language_model.", "")


def is_text_tensor(hf_name: str) -> bool:
    return text_name(hf_name) is not None


def _ordered_sources(ckpt: CheckpointReader) -> list[str]:
    """Checkpoint order as the reference walks it: files in index order, names sorted per file."""
    by_file: dict[object, list[str]] = {}
    for name in ckpt.names():
        by_file.setdefault(ckpt.info(name).file, []).append(name)
    return [n for names in by_file.values() for n in sorted(names)]


def _lm_head_is_tied(ckpt: CheckpointReader, head: str, embed: str) -> bool:
    if ckpt.text_config.get("tie_word_embeddings", True):
        return True
    if ckpt.shape(head) != ckpt.shape(embed):
        return False
    a, b = ckpt.raw(head), ckpt.raw(embed)
    step = max(1, EMBED_CHUNK_BYTES // max(1, a[0].nbytes))
    return all(np.array_equal(a[i : i + step], b[i : i + step]) for i in range(0, a.shape[0], step))


def _row_fits(qtype: str, cols: int) -> bool:
    import gguf

    block, _ = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    return cols % block == 0


def plan_tensors(
    ckpt: CheckpointReader,
    outtype: str,
    *,
    n_layers: int,
    n_vocab: int,
    embedding_type: str | None = None,
) -> list[PlannedTensor]:
    """The text GGUF's tensors, in the reference converter's order.

    ``embedding_type`` overrides the type of ``token_embd`` (QAT int4 exports keep it F16).
    """
    import gguf

    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, n_layers)
    sources = [(s, text_name(s)) for s in _ordered_sources(ckpt)]
    stripped = {t: s for s, t in sources if t is not None}
    embed = stripped.get("model.embed_tokens.weight")
    if embed is None:
        raise CheckpointError(
            "no embed_tokens.weight in the checkpoint: not a Gemma 3 language model"
        )
    head = stripped.get("lm_head.weight")
    drop_head = head is not None and _lm_head_is_tied(ckpt, head, embed)
    out: list[PlannedTensor] = []
    for src, name in sources:
        if name is None or (src == head and drop_head):
            continue
        gname = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise CheckpointError(f"cannot map tensor {src!r} to a Gemma 3 GGUF name")
        shape = ckpt.shape(src)
        rows = shape[0]
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            if rows < n_vocab:
                raise CheckpointError(
                    f"{src} has {rows} rows but the vocabulary has {n_vocab} tokens: "
                    "the tokenizer does not belong to these weights (try --tokenizer-from)"
                )
            rows = n_vocab
            shape = (n_vocab, *shape[1:])
        norm = name.endswith("norm.weight")
        if len(shape) == 1 or name.endswith("_norm.weight") or norm or not name.endswith(".weight"):
            qtype = "F32"
        elif embedding_type and name == "model.embed_tokens.weight":
            fits = embedding_type in ("F32", "F16", "BF16") or _row_fits(embedding_type, shape[-1])
            qtype = embedding_type if fits else "F16"
        elif outtype in ("F32", "F16", "BF16") or _row_fits(outtype, shape[-1]):
            qtype = outtype
        else:
            qtype = "F16"
        out.append(PlannedTensor(gname, src, shape, qtype, norm, rows))
    return out


def nbytes(t: PlannedTensor) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t.qtype]]
    return int(np.prod(t.shape[:-1], dtype=np.int64)) * (t.shape[-1] // block) * size


def nbytes_rows(t: PlannedTensor, rows: int) -> int:
    return nbytes(t) // max(1, t.rows) * rows if len(t.shape) > 1 else nbytes(t)


def _convert(ckpt: CheckpointReader, t: PlannedTensor, start: int, stop: int) -> np.ndarray:
    """Rows start:stop of a planned tensor, transformed and encoded as the GGUF stores them."""
    import gguf

    typed = ckpt.typed_rows(t.source, t.qtype, start, stop)  # e.g. int4 repacked into Q4_0
    if typed is not None:
        return typed
    dtype = ckpt.dtype(t.source)
    raw = ckpt.raw(t.source)[start:stop]
    if t.qtype == "BF16" and dtype == "BF16" and not t.norm:
        return np.ascontiguousarray(raw)  # bf16 -> f32 -> bf16 is the identity: copy the bits
    if t.norm:
        if dtype == "BF16":
            data = ckpt.read_rows(t.source, start, stop) + np.float32(1.0)
        else:  # the reference adds in the source dtype when it is f16/f32
            src = np.asarray(raw)
            data = (src + src.dtype.type(1.0)).astype(np.float32)
    else:
        data = ckpt.read_rows(t.source, start, stop)
    qt = gguf.GGMLQuantizationType[t.qtype]
    if qt == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if qt == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data, qt)


class ChunkedTensor:
    """Duck-typed array for ``GGUFWriter.write_tensor_data``: converts and writes row chunks.

    The writer only uses ``.nbytes``, ``.tofile`` and ``.byteswap``; this keeps memory at one chunk
    (~64 MB of float32) whatever the tensor's size — the 262k-row embedding included.
    """

    def __init__(
        self,
        ckpt: CheckpointReader,
        t: PlannedTensor,
        on_bytes: Callable[[int], object] | None = None,
    ) -> None:
        self.ckpt, self.t, self.nbytes = ckpt, t, nbytes(t)
        self.on_bytes = on_bytes
        row_f32 = int(np.prod(t.shape[1:], dtype=np.int64)) * 4 if len(t.shape) > 1 else 4
        self.step = t.rows if len(t.shape) == 1 else max(1, EMBED_CHUNK_BYTES // row_f32)

    def tofile(self, fh: BinaryIO) -> None:
        for start in range(0, self.t.rows, self.step):
            stop = min(self.t.rows, start + self.step)
            chunk = _convert(self.ckpt, self.t, start, stop)
            chunk.tofile(fh)
            del chunk
            self.ckpt.release(self.t.source, start, stop)
            if self.on_bytes is not None:
                self.on_bytes(nbytes_rows(self.t, stop - start))

    def byteswap(self, inplace: bool = False) -> ChunkedTensor:
        raise NotImplementedError("gemma3-pack writes little-endian GGUFs only")
