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

import collections
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .._errors import CheckpointError
from .._quants import GGML, tensor_bytes
from ._readers._reader import CheckpointReader
from ._readers._source import bf16_to_f32

__all__ = [
    "FLOAT_TYPES",
    "ChunkedTensor",
    "PlannedTensor",
    "Rows",
    "Sink",
    "encode",
    "encode_later",
    "is_text_tensor",
    "plan_tensors",
    "text_name",
]

# converted by numpy (F32, F16, BF16); every other type by ggml
FLOAT_TYPES = tuple(n for n, t in GGML.items() if not t.quantized)
# gguf-py's numpy ports of ggml's reference quantizers, used only without llama-cpp-python (Q8_0
# exports and int4 embeddings need no extra); the tests check they give ggml's bytes.
_NUMPY_FALLBACK = ("Q8_0", "Q4_0")
_VISION_MARKERS = (
    "vision_tower",
    "multi_modal_projector",
    "vision_model",
    "projector.",
    "patch_embedding",
    "mm_input_projection",
    "mm_soft_emb_norm",
)
# f32 bytes converted at once for big tensors: below glibc's 32 MiB mmap threshold, so the chunks'
# arrays are reused from the heap instead of being mapped and faulted in afresh for every chunk
EMBED_CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor: where it comes from and how it is stored."""

    name: str  # GGUF name
    source: str  # checkpoint name
    shape: tuple[int, ...]  # logical numpy shape (rows, cols)
    qtype: str  # GGMLQuantizationType name
    norm: bool  # gets +1
    rows: int  # rows taken from the source (the embedding may be trimmed)
    via: str | None = None  # quantized from this float file's values (llama-quantize's input)


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
    return cols % GGML[qtype].block == 0


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
    return tensor_bytes(t.qtype, t.shape)


def nbytes_rows(t: PlannedTensor, rows: int) -> int:
    return nbytes(t) // max(1, t.rows) * rows if len(t.shape) > 1 else nbytes(t)


class Rows:
    """Rows ``start:stop`` of one source tensor, read once, in every form the outputs ask for.

    ``f32()`` is the exact value (with the norm's +1); ``stored(qtype)`` its float encoding as the
    converter writes it (F32/F16/BF16; bf16 -> BF16 copies the bits); ``through(qtype)`` the float32
    value after that encoding, i.e. what llama.cpp's quantizer reads back from a float GGUF.
    """

    def __init__(self, ckpt: CheckpointReader, t: PlannedTensor, start: int, stop: int) -> None:
        self.ckpt, self.t, self.start, self.stop = ckpt, t, start, stop
        self._f32: np.ndarray | None = None
        self._stored: dict[str, np.ndarray] = {}
        self._through: dict[str, np.ndarray] = {}

    def f32(self) -> np.ndarray:
        if self._f32 is None:
            ckpt, t = self.ckpt, self.t
            if t.norm and ckpt.dtype(t.source) != "BF16":  # the reference adds in f16/f32 there
                src = np.asarray(ckpt.raw(t.source)[self.start : self.stop])
                self._f32 = (src + src.dtype.type(1.0)).astype(np.float32)
            else:
                data = ckpt.read_rows(t.source, self.start, self.stop)
                self._f32 = data + np.float32(1.0) if t.norm else data
        return self._f32

    def stored(self, qtype: str) -> np.ndarray:
        if qtype not in self._stored:
            t = self.t
            if qtype == "BF16" and self._bf16_source():
                raw = self.ckpt.raw(t.source)[self.start : self.stop]
                out = np.ascontiguousarray(raw)  # bf16 -> f32 -> bf16 is the identity
            elif qtype == "F32":
                out = np.ascontiguousarray(self.f32(), dtype=np.float32)
            elif qtype == "F16":
                out = self.f32().astype(np.float16)
            else:
                import gguf

                out = gguf.quants.quantize(self.f32(), gguf.GGMLQuantizationType.BF16)
            self._stored[qtype] = out
        return self._stored[qtype]

    def _bf16_source(self) -> bool:
        """Whether these rows' BF16 encoding is the source's own bytes (a bf16 tensor without
        the norm's +1): bf16 -> f32 -> bf16 is the identity."""
        return not self.t.norm and self.ckpt.dtype(self.t.source) == "BF16"

    def span(self, t: PlannedTensor) -> tuple[Path, int, int] | None:
        """Where the file holds these rows exactly as ``t`` stores them (path, offset, bytes), or
        None. bf16 weights stored as BF16 are the source's bytes unchanged: an output can take
        them straight from the file, without reading them through memory."""
        if t.via is not None or t.qtype != "BF16" or not self._bf16_source():
            return None
        return self.ckpt.file_span(t.source, self.start, self.stop)

    def through(self, qtype: str) -> np.ndarray:
        if qtype not in self._through:
            if qtype == "BF16" and self._bf16_source():
                return self.f32()  # bf16 values through BF16: the same float32s, converted once
            enc = self.stored(qtype)
            if qtype == "BF16":
                out = bf16_to_f32(np.ascontiguousarray(enc).view(np.uint16))
            else:
                out = np.asarray(enc, dtype=np.float32)
            self._through[qtype] = out
        return self._through[qtype]


def encode(
    rows: Rows,
    t: PlannedTensor,
    *,
    imatrix: np.ndarray | None = None,
    pool: Executor | None = None,
) -> np.ndarray:
    """Rows of planned tensor ``t`` (same source as ``rows``) encoded as the GGUF stores them.

    Float types are converted by numpy; every quantized type by ggml's own quantizer, from the
    exact values, or from the values of the ``t.via`` float file when ``t`` reproduces
    ``llama-quantize`` run on that file. int4 readers hand Q4_0 blocks out as they are.
    """
    return encode_later(rows, t, imatrix=imatrix, pool=pool)()


def encode_later(
    rows: Rows,
    t: PlannedTensor,
    *,
    imatrix: np.ndarray | None = None,
    pool: Executor | None = None,
) -> Callable[[], np.ndarray]:
    """:func:`encode`, with ggml's work started on ``pool`` and not waited for: returns ``wait``
    (which must be called, see :func:`~._ggml.submit_rows`)."""
    if t.via is None:
        typed = rows.ckpt.typed_rows(t.source, t.qtype, rows.start, rows.stop)
        if typed is not None:
            return lambda: typed
    if t.qtype in FLOAT_TYPES:
        if t.via is None or t.via == t.qtype:
            done = rows.stored(t.qtype)
        else:
            data = rows.through(t.via)
            done = data.astype(np.float16) if t.qtype == "F16" else data
        return lambda: done
    from ._ggml import available, submit_rows

    data = rows.through(t.via) if t.via else rows.f32()
    if imatrix is None and t.qtype in _NUMPY_FALLBACK and not available():
        import gguf  # without llama-cpp-python: gguf-py's port, byte-identical (tests prove it)

        blocks = gguf.quants.quantize(data, gguf.GGMLQuantizationType[t.qtype])
        return lambda: blocks
    return submit_rows(t.qtype, data.reshape(-1, t.shape[-1]), imatrix=imatrix, pool=pool)


def _ready(value: object) -> Callable[[], object]:
    return lambda: value


@dataclass
class Sink:
    """One output of a multi-output pass: the planned tensor and where its bytes go."""

    t: PlannedTensor
    fh: BinaryIO | None = None  # None: the file handed to ``ChunkedTensor.tofile``
    imatrix: np.ndarray | None = None
    written: int = 0


class ChunkedTensor:
    """Duck-typed array for ``GGUFWriter.write_tensor_data``: converts and writes row chunks.

    The writer only uses ``.nbytes``, ``.tofile`` and ``.byteswap``; this keeps memory at one chunk
    (~64 MB of float32) whatever the tensor's size — the 262k-row embedding included. With
    ``sinks`` every chunk read is also encoded into each further output (another quant type of the
    same source tensor) and written to that output's file: one read, all outputs.
    """

    def __init__(
        self,
        ckpt: CheckpointReader,
        t: PlannedTensor,
        on_bytes: Callable[[int], object] | None = None,
        *,
        sinks: list[Sink] | None = None,
        pool: Executor | None = None,
    ) -> None:
        self.ckpt, self.t, self.nbytes = ckpt, t, nbytes(t)
        self.on_bytes = on_bytes
        self.sinks = sinks if sinks is not None else [Sink(t)]
        self.pool = pool
        row_f32 = int(np.prod(t.shape[1:], dtype=np.int64)) * 4 if len(t.shape) > 1 else 4
        self.step = t.rows if len(t.shape) == 1 else max(1, EMBED_CHUNK_BYTES // row_f32)

    def tofile(self, fh: BinaryIO) -> None:
        """Encode and write every chunk to every output, in order.

        Pipelined by one chunk: ggml quantizes chunk k on the pool while this thread reads and
        converts chunk k+1; chunk k is written once its blocks are ready. Memory is two chunks.
        """
        pending: collections.deque[tuple[int, int, list[Callable[[], object]]]] = (
            collections.deque()
        )
        try:
            for start in range(0, self.t.rows, self.step):
                stop = min(self.t.rows, start + self.step)
                rows = Rows(self.ckpt, self.t, start, stop)
                jobs: list[Callable[[], object]] = []
                for sink in self.sinks:
                    out = sink.fh or fh
                    span = rows.span(sink.t) if hasattr(out, "copy_range") else None
                    if span is not None:
                        jobs.append(_ready(span))
                    else:
                        jobs.append(
                            encode_later(rows, sink.t, imatrix=sink.imatrix, pool=self.pool)
                        )
                del rows
                pending.append((start, stop, jobs))
                if len(pending) > 1 or self.pool is None:
                    self._write(fh, *pending.popleft())
            while pending:
                self._write(fh, *pending.popleft())
        finally:
            for _, _, jobs in pending:  # after an error: let ggml finish with the buffers
                for wait in jobs:
                    with contextlib.suppress(Exception):
                        wait()

    def _write(self, fh: BinaryIO, start: int, stop: int, jobs: list[Callable[[], object]]) -> None:
        for k, (sink, wait) in enumerate(zip(self.sinks, jobs, strict=True)):
            out = sink.fh or fh
            try:
                done = wait()
            except BaseException:
                for later in jobs[k + 1 :]:  # the others still hold ggml's buffers
                    with contextlib.suppress(Exception):
                        later()
                raise
            if isinstance(done, tuple):
                out.copy_range(*done)  # type: ignore[attr-defined]
                sink.written += done[2]
                continue
            chunk = np.ascontiguousarray(done)
            out.write(chunk.data.cast("B"))
            sink.written += chunk.nbytes
        self.ckpt.release(self.t.source, start, stop)
        if self.on_bytes is not None:
            self.on_bytes(nbytes_rows(self.t, stop - start))

    def byteswap(self, inplace: bool = False) -> ChunkedTensor:
        raise NotImplementedError("gemma3-pack writes little-endian GGUFs only")
