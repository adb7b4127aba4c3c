"""Quant names from ``-q``, the imatrix reader, and llama.cpp's whole-file quantizer.

The exporter no longer calls :func:`quantize`: it quantizes while streaming, with ggml's kernels
(``gemma3_pack._export._ggml``) and llama.cpp's type per tensor (``gemma3_pack._quants``). :func:`quantize`
(``llama_cpp.llama_model_quantize`` on a float GGUF, the optional ``[quantize]`` extra) stays as the
reference route the tests and benchmarks compare with. QAT checkpoints get ggml-org's recipe: Q4_0
with Q8_0 embedding/output.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._errors import MissingDependency, NotGGUF, QuantizeError, UsageError
from .._files import atomic_path
from .._quants import GGML, QUANTS, VALID_TYPES

__all__ = [
    "LLAMA_TYPES",
    "PYTHON_TYPES",
    "VALID_TYPES",
    "check_quants",
    "load_imatrix",
    "native_stderr_captured",
    "quantize",
]

PYTHON_TYPES = ("F32", "F16", "BF16", "Q8_0")  # one type for every tensor
# llama_ftype (llama.h) of the llama.cpp mixes, from the one table of quant types
LLAMA_TYPES: dict[str, int] = {
    q.name: q.ftype for q in QUANTS.values() if q.name not in PYTHON_TYPES
}
GGML_TYPE_Q8_0 = GGML["Q8_0"].id
GGML_TYPES = {n: GGML[n].id for n in ("F16", "Q4_0", "Q8_0", "Q6_K")}  # --embedding-type choices
INSTALL = "pip install 'gemma3-pack[quantize]'"


def check_quants(quants: Sequence[str]) -> list[str]:
    """Normalise names (case-insensitive, de-duplicated); unknown ones are a UsageError."""
    out: list[str] = []
    for q in quants:
        name = q.strip().upper()
        if name not in VALID_TYPES:
            raise UsageError(f"unknown quant type {q!r}: choose from {', '.join(VALID_TYPES)}")
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError(f"no quant type given: choose from {', '.join(VALID_TYPES)}")
    return out


def _llama() -> object:
    try:
        import llama_cpp
    except ImportError as err:
        raise MissingDependency(
            f"K-quants and Q4_0/Q5_x need llama.cpp's quantizer: {INSTALL} "
            f"(F32, F16, BF16 and Q8_0 work without it)"
        ) from err
    return llama_cpp


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[Path]:
    """Send C-level stderr (llama.cpp prints a line per tensor) to a temp file meanwhile.

    Python-level writes to ``sys.stderr`` are flushed first; callers print their own summary after.
    The file's tail is what a QuantizeError quotes.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    fd, name = tempfile.mkstemp(prefix="gemma3-pack-quantize-", suffix=".log")
    try:
        os.dup2(fd, 2)
        yield Path(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        Path(name).unlink(missing_ok=True)


def _disk_nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 64 << 20
    except OSError:
        return False


def _last_error(log: Path | None) -> str:
    if log is None or not log.is_file():
        return ""
    lines = [ln.strip() for ln in log.read_text("utf-8", "replace").splitlines() if ln.strip()]
    errs = [ln for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
    return (errs or lines or [""])[-1][:200]


def load_imatrix(path: Path) -> dict[str, Any]:
    """A GGUF imatrix (``llama-imatrix`` output) as normalised per-tensor vectors.

    Like ``tools/quantize/quantize.cpp``: value = ``in_sum2 / count`` per expert slice, 1 where the
    count is zero; NaN or Inf is refused.
    """
    import gguf
    import numpy as np

    from .._gguf._reader import open_gguf

    with open_gguf(path) as h:  # our validating reader first: FIFOs, truncation, key types
        if h.problems:
            raise NotGGUF(f"{path} is not a valid imatrix GGUF ({h.problems[0]})")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, KeyError, IndexError, struct.error) as err:
        raise NotGGUF(
            f"{path} is not a GGUF imatrix (produce one with llama-imatrix): {err}"
        ) from None
    tensors = {t.name: t for t in reader.tensors}
    out: dict[str, Any] = {}  # name -> float32 vector
    for name, t in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name[: -len(".in_sum2")]
        counts = tensors.get(base + ".counts")
        if counts is None:
            raise NotGGUF(f"{path}: {base} has in_sum2 but no counts; not an imatrix file")
        sums = np.asarray(t.data, dtype=np.float32).reshape(-1)
        cnt = np.asarray(counts.data, dtype=np.float32).reshape(-1)
        if not cnt.size or sums.size % cnt.size:
            raise NotGGUF(
                f"{path}: {base} has {sums.size} sums for {cnt.size} counts; not an imatrix file"
            )
        # one float32 array per tensor, computed in place (no Python float per value)
        by_expert = sums.reshape(cnt.size, -1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # checked below
            values = np.where(cnt[:, None] > 0, by_expert / cnt[:, None], np.float32(1))
        values = values.astype(np.float32, copy=False).reshape(-1)
        if not np.all(np.isfinite(values)):
            raise NotGGUF(f"{path}: imatrix entry {base} has NaN or Inf values")
        out[base] = values
    if not out:
        raise NotGGUF(f"{path} holds no imatrix data (no *.in_sum2 tensors)")
    return out


def quantize(
    src: Path,
    dst: Path,
    quant: str,
    *,
    qat: bool = False,
    embedding_type: str | None = None,
    imatrix: dict[str, Any] | None = None,
    nthread: int = 0,
    log: Path | None = None,
) -> int:
    """Quantize ``src`` (F32/F16/BF16 GGUF) to ``dst`` atomically; returns the output size."""
    if quant not in LLAMA_TYPES:
        raise UsageError(
            f"{quant} is not a llama.cpp quant type: choose from {', '.join(LLAMA_TYPES)}"
        )
    lc = _llama()
    params = lc.llama_model_quantize_default_params()  # type: ignore[attr-defined]
    params.ftype = LLAMA_TYPES[quant]
    params.nthread = nthread
    if qat:  # ggml-org's recipe for QAT checkpoints (llama.cpp PR #15588)
        params.token_embedding_type = GGML_TYPE_Q8_0
        params.output_tensor_type = GGML_TYPE_Q8_0
    if embedding_type is not None:  # token_embd alone; same-type tensors are copied as they are
        params.token_embedding_type = GGML_TYPES[embedding_type]
    keep = []
    if imatrix:
        arr_t = lc.llama_model_imatrix_data * (len(imatrix) + 1)  # type: ignore[attr-defined]
        entries = arr_t()
        import numpy as np

        for i, (name, vals) in enumerate(imatrix.items()):
            buf = np.ascontiguousarray(vals, dtype=np.float32)  # no Python float per value
            keep.append(buf)
            entries[i].name = name.encode()
            entries[i].data = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = len(vals)
        entries[len(imatrix)].name = None
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, type(params.imatrix))
    with atomic_path(dst) as tmp:
        rc = lc.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))  # type: ignore[attr-defined]
        if rc != 0:
            detail = _last_error(log)
            full = _disk_nearly_full(dst.parent)  # checked while the partial file still holds it
            if full or "iostream" in detail:
                # llama.cpp's writer reports ENOSPC as "basic_ios::clear: iostream error"
                why = "No space left on device" if full else "the disk is full or failing"
                raise QuantizeError(
                    f"cannot write {dst} ({quant}, llama.cpp's quantizer): {why}: free space "
                    "or choose another output folder"
                )
            raise QuantizeError(
                f"llama.cpp's quantizer failed on {src.name} -> {quant} (code {rc})"
                + (f": {detail}" if detail else "")
            )
    return dst.stat().st_size
