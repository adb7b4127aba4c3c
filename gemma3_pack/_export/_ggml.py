"""ggml's own quantizer, through ctypes: the functions ``llama-quantize`` itself calls.

llama-cpp-python (the ``[quantize]`` extra) ships ``libggml-base``, which exports
``ggml_quantize_chunk`` / ``ggml_quantize_init`` / ``ggml_quantize_requires_imatrix`` /
``ggml_row_size`` / ``ggml_validate_row_data``. Only that library is loaded (not ``libllama``), so
the binding costs milliseconds. ctypes releases the GIL for the duration of each call, so
:func:`quantize_rows` splits a chunk of rows across a small thread pool and every core quantizes.
Rows are independent in every ggml type, so the split does not change a byte.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import importlib.util
import os
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import MissingDependency, QuantizeError
from .._quants import GGML

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "available",
    "library_path",
    "quantize_rows",
    "requires_imatrix",
    "row_size",
    "submit_rows",
    "threads",
]

INSTALL = "pip install 'gemma3-pack[quantize]'"
_ROWS_PER_TASK_BYTES = 4 << 20  # f32 bytes per task: small enough to keep every core busy


def available() -> bool:
    """Whether ggml's quantizer can be loaded (llama-cpp-python installed)."""
    try:
        _lib()
    except MissingDependency:
        return False
    return True


def library_path() -> Path:
    """Where llama-cpp-python's ``libggml-base`` is; MissingDependency when it is not installed."""
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):  # e.g. sys.modules["llama_cpp"] is None: import blocked
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(
            f"quantized types need ggml's quantizer from llama-cpp-python: {INSTALL} "
            "(F32, F16 and BF16 work without it)"
        )
    for folder in spec.submodule_search_locations:
        for sub in ("lib", "."):
            for pattern in ("libggml-base.so*", "libggml-base.dylib", "ggml-base.dll"):
                found = sorted((Path(folder) / sub).glob(pattern))
                if found:
                    return found[0]
    raise MissingDependency(
        f"llama-cpp-python is installed but its libggml-base library was not found: {INSTALL}"
    )


@functools.cache
def _lib() -> Any:
    lib = ctypes.CDLL(str(library_path()))  # CDLL: the GIL is released during each call
    i64, sz, vp, fp = ctypes.c_int64, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p
    for name, res, args in (
        ("ggml_quantize_init", None, [ctypes.c_int]),
        ("ggml_quantize_requires_imatrix", ctypes.c_bool, [ctypes.c_int]),
        ("ggml_quantize_chunk", sz, [ctypes.c_int, fp, vp, i64, i64, i64, fp]),
        ("ggml_row_size", sz, [ctypes.c_int, i64]),
        ("ggml_blck_size", i64, [ctypes.c_int]),
        ("ggml_type_size", sz, [ctypes.c_int]),
        ("ggml_validate_row_data", ctypes.c_bool, [ctypes.c_int, vp, sz]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    for t in GGML.values():  # our table must be this library's
        if (lib.ggml_blck_size(t.id), lib.ggml_type_size(t.id)) != (t.block, t.size):
            raise MissingDependency(
                f"this llama-cpp-python's ggml disagrees on {t.name}'s block layout: {INSTALL}"
            )
    return lib


def requires_imatrix(type_name: str) -> bool:
    return bool(_lib().ggml_quantize_requires_imatrix(GGML[type_name].id))


def row_size(type_name: str, n: int) -> int:
    return int(_lib().ggml_row_size(GGML[type_name].id, n))


def threads() -> int:
    """Worker threads for quantizing: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def quantize_rows(
    type_name: str,
    rows: np.ndarray,
    *,
    imatrix: np.ndarray | None = None,
    pool: Executor | None = None,
    validate: bool = True,
) -> np.ndarray:
    """``rows`` (float32, C-contiguous, rows x width) as ``type_name`` blocks, bytes as uint8.

    ``imatrix`` (float32, one weight per column) is what llama-quantize passes for the tensor.
    With a ``pool`` the rows are split into tasks run on its threads. Each result is checked
    with ``ggml_validate_row_data`` (NaN/Inf scales), as llama-quantize does.
    """
    return submit_rows(type_name, rows, imatrix=imatrix, pool=pool, validate=validate)()


def submit_rows(
    type_name: str,
    rows: np.ndarray,
    *,
    imatrix: np.ndarray | None = None,
    pool: Executor | None = None,
    validate: bool = True,
) -> Callable[[], np.ndarray]:
    """:func:`quantize_rows` started on ``pool``: returns ``wait``, which gives the blocks.

    The caller can prepare the next rows while ggml quantizes these. ``wait`` must be called
    (it keeps ``rows`` and the output alive while the C code reads and writes them), also when
    something else failed in between; it raises what a task raised, after all have ended.
    """
    import numpy as np

    lib = _lib()
    t = GGML[type_name]
    n_rows, width = rows.shape
    if rows.dtype != np.float32 or not rows.flags.c_contiguous:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
    if width % t.block:
        raise QuantizeError(f"rows of {width} do not split into {type_name} blocks of {t.block}")
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
        if imatrix.shape != (width,):
            raise QuantizeError(f"imatrix of {imatrix.size} values for rows of {width}")
    elif lib.ggml_quantize_requires_imatrix(t.id):
        raise QuantizeError(f"{type_name} needs an importance matrix (--imatrix)")
    lib.ggml_quantize_init(t.id)  # once, before the threads (it allocates tables for some types)
    rsize = int(lib.ggml_row_size(t.id, width))
    out = np.empty((n_rows, rsize), dtype=np.uint8)
    src = rows.ctypes.data
    dst = out.ctypes.data
    imx = imatrix.ctypes.data if imatrix is not None else None
    step = max(1, _ROWS_PER_TASK_BYTES // max(1, width * 4))

    def run(start: int) -> None:
        n = min(step, n_rows - start)
        done = lib.ggml_quantize_chunk(
            t.id, src + start * width * 4, dst + start * rsize, 0, n, width, imx
        )
        if done != n * rsize:
            raise QuantizeError(f"ggml wrote {done} bytes for {n} rows of {type_name}")
        if validate and not lib.ggml_validate_row_data(t.id, dst + start * rsize, done):
            raise QuantizeError(
                f"quantized data validation failed ({type_name}): the weights hold NaN or Inf"
            )

    starts = range(0, n_rows, step)
    if pool is None or len(starts) == 1:
        for s in starts:
            run(s)
        return lambda: out
    futures = [pool.submit(run, s) for s in starts]

    def wait() -> np.ndarray:
        keep = (rows, imatrix)  # the C code reads these until every task has ended
        concurrent.futures.wait(futures)
        for f in futures:
            f.result()
        del keep
        return out

    return wait
