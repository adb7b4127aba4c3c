"""Reference oracles for the exporter tests: llama.cpp's own converter and llama.cpp inference.

``reference_convert`` runs ``convert_hf_to_gguf.py`` from the llama-cpp-python sdist that matches the
installed binding (the exact llama.cpp commit whose runtime the tests load models with). The sdist is
fetched with pip (a package registry, cached by pip) and only the converter, its ``conversion``
package and its vendored ``gguf-py`` are extracted into the test cache — nothing is copied into the
repository. The converter runs in a subprocess with the vendored gguf-py first on ``PYTHONPATH``,
exactly as upstream runs it.

``next_token_logits`` / ``top1_agreement`` compare models through llama-cpp-python, and
``compare_gguf`` lists key-for-key and tensor-for-tensor differences between two GGUF files.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _assets
import numpy as np

# Prompts with an unambiguous-ish continuation, used for next-token agreement checks.
PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "1, 2, 3, 4, 5,",
    "def fibonacci(n):\n    if n <",
    "The quick brown fox jumps over the lazy",
    "Water boils at a temperature of 100 degrees",
    "<start_of_turn>user\nWhat is the largest planet in our solar system?<end_of_turn>\n"
    "<start_of_turn>model\n",
    "Monday, Tuesday, Wednesday,",
    "To be or not to be, that is the",
    "import numpy as",
    "Der Hund bellt, die Katze",
    "Roses are red, violets are",
    "The chemical symbol for gold is",
)

_MEMBERS = (
    "vendor/llama.cpp/convert_hf_to_gguf.py",
    "vendor/llama.cpp/conversion/",
    "vendor/llama.cpp/gguf-py/",
)


# --------------------------------------------------------------------------------------------
# the reference converter


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def reference_dir() -> Path:
    """Folder holding llama.cpp's ``convert_hf_to_gguf.py`` (+ conversion/, gguf-py/), cached."""
    ver = llama_cpp_version()
    root = _assets.cache_dir("oracle")
    final = root / f"llama.cpp-{ver}"
    if (final / "convert_hf_to_gguf.py").is_file():
        return final
    sdist = _assets.llama_cpp_sdist(ver)
    tmp = Path(tempfile.mkdtemp(prefix=".llama.cpp.", dir=root))
    try:
        top = f"llama_cpp_python-{ver}/"
        with tarfile.open(sdist) as tar:
            wanted = [
                m
                for m in tar.getmembers()
                if any(m.name[len(top) :].startswith(p) for p in _MEMBERS)
            ]
            if not any(m.name.endswith("convert_hf_to_gguf.py") for m in wanted):
                raise RuntimeError(f"{sdist.name} has no vendor/llama.cpp/convert_hf_to_gguf.py")
            for member in wanted:
                member.name = member.name[len(top) + len("vendor/llama.cpp/") :]
            tar.extractall(tmp, members=wanted, filter="data")
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent session won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _fingerprint(ckpt: Path) -> str:
    """Identity of a checkpoint folder's contents (names, sizes, mtimes) for cache keys."""
    h = hashlib.sha256(str(ckpt.resolve()).encode())
    for f in sorted(ckpt.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _run_reference(ckpt: Path, outfile: Path, *, outtype: str, mmproj: bool) -> dict[str, float]:
    """Run the converter in a fresh child of a fresh child; return its wall time and peak RSS."""
    ref = reference_dir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ref / "gguf-py"), str(ref)])
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [
        sys.executable,
        str(ref / "convert_hf_to_gguf.py"),
        str(ckpt),
        "--outtype",
        outtype,
        "--outfile",
        str(outfile),
    ]
    if mmproj:
        cmd.append("--mmproj")
    # The middle process only measures: RUSAGE_CHILDREN of a fresh process sees just the converter.
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "sys.stderr.write(p.stderr[-4000:])\n"
        "print(json.dumps({'code': p.returncode, 'wall': wall, 'rss': rss}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env, cwd=ref
    )
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    if stats["code"] != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py failed on {ckpt}:\n{proc.stderr}")
    return {"wall_s": stats["wall"], "peak_rss_bytes": stats["rss"]}


def _find_output(folder: Path, outfile: Path) -> Path:
    if outfile.is_file():
        return outfile
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        raise RuntimeError(f"reference converter wrote {[f.name for f in found]} in {folder}")
    return found[0]


def reference_convert(ckpt: Path, *, outtype: str = "bf16", mmproj: bool = False) -> Path:
    """The GGUF llama.cpp's reference converter makes from ``ckpt`` (cached by contents).

    Cache key: (checkpoint path + file names/sizes/mtimes, outtype, mmproj, llama-cpp-python
    version). The run's wall time and peak RSS are stored beside it as ``stats.json``.
    """
    ckpt = Path(ckpt)
    key = (
        f"{ckpt.name}-{_fingerprint(ckpt)}-{outtype}{'-mmproj' if mmproj else ''}"
        f"-{llama_cpp_version()}"
    )
    root = _assets.cache_dir("oracle", "converted")
    final = root / key
    name = "mmproj.gguf" if mmproj else "model.gguf"
    if (final / name).is_file():
        return final / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        stats = _run_reference(ckpt, tmp / name, outtype=outtype, mmproj=mmproj)
        out = _find_output(tmp, tmp / name)
        if out != tmp / name:
            out.rename(tmp / name)
        (tmp / "stats.json").write_text(json.dumps(stats) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / name


def reference_stats(ckpt: Path, *, outtype: str = "bf16", mmproj: bool = False) -> dict[str, float]:
    """Wall time and peak RSS recorded when ``reference_convert`` built its cached output."""
    out = reference_convert(ckpt, outtype=outtype, mmproj=mmproj)
    return json.loads((out.parent / "stats.json").read_text())


def reference_peak(ckpt: Path, outtype: str = "bf16", *, mmproj: bool = False) -> tuple[float, int]:
    """A fresh (uncached) reference conversion: (wall seconds, peak RSS bytes). For benchmarks."""
    with tempfile.TemporaryDirectory(dir=_assets.cache_dir("oracle")) as tmp:
        stats = _run_reference(Path(ckpt), Path(tmp) / "out.gguf", outtype=outtype, mmproj=mmproj)
    return stats["wall_s"], int(stats["peak_rss_bytes"])


# --------------------------------------------------------------------------------------------
# llama.cpp inference


def next_token_logits(
    gguf_path: Path, prompts: Sequence[str] = PROMPTS, *, n_ctx: int = 512
) -> np.ndarray:
    """Logits (float32, [len(prompts), n_vocab]) of the token after each prompt, via llama.cpp.

    Prompts are tokenized by the model itself with BOS added and special tokens parsed, so
    ``<start_of_turn>`` is one token. The KV cache is reset between prompts.
    """
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(gguf_path), n_ctx=n_ctx, logits_all=False, verbose=False, n_threads=2, seed=0
    )
    try:
        rows = []
        for prompt in prompts:
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            llm.reset()
            llm.eval(tokens)
            # With logits_all=False llama-cpp-python no longer copies logits into llm.scores;
            # read the last position's row straight from the context.
            ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            rows.append(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32))
        return np.stack(rows)
    finally:
        llm.close()


def prompt_tokens(gguf_path: Path, prompts: Sequence[str] = PROMPTS) -> list[list[int]]:
    """The token ids llama.cpp feeds for each prompt (BOS + special tokens parsed)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=64, vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(p.encode("utf-8"), add_bos=True, special=True) for p in prompts]
    finally:
        llm.close()


def top1_agreement(a: np.ndarray, b: np.ndarray) -> int:
    """How many rows of two logit matrices have the same arg-max token."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"row counts differ: {a.shape} vs {b.shape}")
    n = min(a.shape[1], b.shape[1])  # a 262208-row model vs a 262144-row one: compare shared ids
    return int(np.sum(np.argmax(a[:, :n], axis=1) == np.argmax(b[:, :n], axis=1)))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair of logit rows (float64)."""
    n = min(a.shape[1], b.shape[1])
    x, y = a[:, :n].astype(np.float64), b[:, :n].astype(np.float64)
    return np.sum(x * y, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


# --------------------------------------------------------------------------------------------
# GGUF comparison


_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_NUMPY = {
    0: "<u1",
    1: "<i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "<?",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}


class _Cursor:
    """Little-endian reader over a memory map (GGUF v2/v3)."""

    def __init__(self, buf: Any) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos]).decode("utf-8", "replace")

    def value(self, vtype: int) -> Any:
        if vtype == 8:
            return self.string()
        if vtype == 9:
            itype, count = self.unpack("<I"), self.unpack("<Q")
            if itype in _NUMPY:  # numbers in one go: a 262144-entry score array is instant
                arr = np.frombuffer(self.buf, dtype=_NUMPY[itype], count=count, offset=self.pos)
                self.pos += arr.nbytes
                return arr.tolist()
            return [self.value(itype) for _ in range(count)]
        return self.unpack(_SCALARS[vtype])


def read_gguf(path: Path) -> tuple[dict[str, Any], list[tuple[str, list[int], Any, np.ndarray]]]:
    """(metadata, [(tensor name, ne dims, GGMLQuantizationType, raw bytes as a uint8 memmap)]).

    A small independent GGUF parser (``struct`` + numpy; gguf-py's reader spends tens of seconds
    on the 262144-entry vocabulary arrays). Raw bytes are shaped (rows, bytes per row) — what
    ``gguf.quants.dequantize`` takes.
    """
    import gguf

    mm = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(mm)
    if cur.unpack("<I") != 0x46554747:  # b"GGUF"
        raise ValueError(f"{path} is not a GGUF file")
    cur.unpack("<I")  # version
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    keys: dict[str, Any] = {}
    for _ in range(n_kv):
        name = cur.string()
        keys[name] = cur.value(cur.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = [cur.unpack("<Q") for _ in range(cur.unpack("<I"))]
        ttype, offset = cur.unpack("<I"), cur.unpack("<Q")
        infos.append((name, dims, ttype, offset))
    align = int(keys.get("general.alignment", 32))
    base = (cur.pos + align - 1) // align * align
    tensors = []
    for name, dims, ttype, offset in infos:
        qtype = gguf.GGMLQuantizationType(ttype)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        row_bytes = dims[0] // block * type_size
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        start = base + offset
        raw = mm[start : start + rows * row_bytes].reshape(rows, row_bytes)
        tensors.append((name, dims, qtype, raw))
    return keys, tensors


@functools.lru_cache(maxsize=16)
def _summary(path: str, size: int, mtime_ns: int) -> tuple[dict[str, Any], dict[str, Any]]:
    del size, mtime_ns  # cache key only
    keys, infos = read_gguf(Path(path))
    tensors = {
        name: {
            "type": qtype.name,
            "shape": dims,
            "sha256": hashlib.sha256(memoryview(raw)).hexdigest(),
        }
        for name, dims, qtype, raw in infos
    }
    return keys, tensors


def gguf_summary(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(metadata key → value, tensor name → {type, shape, sha256}) of a GGUF file.

    Shapes are GGUF ``ne`` order (innermost first), as gguf-py's reader reports them. Parsed by
    ``read_gguf``; cached per (path, size, mtime). Callers get copies they may modify.
    """
    st = Path(path).stat()
    keys, tensors = _summary(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    return copy.deepcopy(keys), copy.deepcopy(tensors)


def compare_gguf(a: Path, b: Path) -> dict[str, Any]:
    """Key-for-key and tensor-for-tensor differences between GGUF ``a`` and GGUF ``b``.

    Returns ``{"keys_only_a", "keys_only_b", "keys_differ": {key: (a, b)}, "tensors_only_a",
    "tensors_only_b", "tensors_differ": {name: {field: (a, b)}}, "tensor_order_same"}``; every
    collection is empty when the files carry the same metadata and byte-identical tensors. Long
    array values are summarised (length + first differing index) to keep failures readable.
    """
    keys_a, tens_a = gguf_summary(a)
    keys_b, tens_b = gguf_summary(b)
    differ: dict[str, Any] = {}
    for key in sorted(keys_a.keys() & keys_b.keys()):
        va, vb = keys_a[key], keys_b[key]
        if va != vb:
            if isinstance(va, list) and isinstance(vb, list) and max(len(va), len(vb)) > 8:
                first = next(
                    (i for i, (x, y) in enumerate(zip(va, vb, strict=False)) if x != y),
                    min(len(va), len(vb)),
                )
                differ[key] = (f"len {len(va)}", f"len {len(vb)}", f"first diff at {first}")
            else:
                differ[key] = (va, vb)
    tdiff: dict[str, dict[str, Any]] = {}
    for name in sorted(tens_a.keys() & tens_b.keys()):
        d = {
            f: (tens_a[name][f], tens_b[name][f])
            for f in ("type", "shape", "sha256")
            if tens_a[name][f] != tens_b[name][f]
        }
        if d:
            tdiff[name] = d
    return {
        "keys_only_a": sorted(keys_a.keys() - keys_b.keys()),
        "keys_only_b": sorted(keys_b.keys() - keys_a.keys()),
        "keys_differ": differ,
        "tensors_only_a": sorted(tens_a.keys() - tens_b.keys()),
        "tensors_only_b": sorted(tens_b.keys() - tens_a.keys()),
        "tensors_differ": tdiff,
        "tensor_order_same": list(tens_a) == list(tens_b),
    }
