"""What llama.cpp really allocates, read from its own log.

Each probe runs in a fresh subprocess (llama.cpp logs through a process-wide callback, and a
crash must not take pytest down), loads the model on CPU through llama-cpp-python's C API with
exactly the context parameters given, creates the context and exits. llama.cpp prints every
buffer it allocates; we sum them by kind:

    load_tensors:   CPU_Mapped model buffer size =   235.16 MiB
    load_tensors:   CPU_REPACK model buffer size =    12.66 MiB
    llama_context:        CPU  output buffer size =     1.00 MiB
    llama_kv_cache:        CPU KV buffer size =    12.00 MiB        (once per cache: global, SWA)
    sched_reserve:        CPU compute buffer size =   514.50 MiB

``quantize_types`` asks llama.cpp's quantizer (dry run) which type it would give each tensor.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20
GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}

_PROBE = r"""
import json, sys
import llama_cpp as L
from llama_cpp import _logger
_logger.set_verbose(True)
a = json.loads(sys.argv[1])
L.llama_backend_init()
mp = L.llama_model_default_params()
mp.n_gpu_layers = 0
model = L.llama_model_load_from_file(a["path"].encode(), mp)
if not model:
    sys.exit("model load failed")
cp = L.llama_context_default_params()
cp.n_ctx = a["ctx"]
cp.n_seq_max = a["parallel"]
cp.n_batch = 2048
cp.n_ubatch = 512
cp.type_k = a["type_k"]
cp.type_v = a["type_v"]
cp.swa_full = a["swa_full"]
cp.kv_unified = a["unified"]
cp.flash_attn_type = -1 if a["flash_attn"] else 0
cp.n_threads = cp.n_threads_batch = 1
ctx = L.llama_init_from_model(model, cp)
if not ctx:
    sys.exit("context creation failed")
L.llama_free(ctx)
L.llama_model_free(model)
"""

_QUANT_PROBE = r"""
import ctypes, sys
import llama_cpp as L
from llama_cpp import _logger
_logger.set_verbose(True)
L.llama_backend_init()
p = L.llama_model_quantize_default_params()
p.ftype = int(sys.argv[2]); p.dry_run = True; p.allow_requantize = True; p.nthread = 1
rc = L.llama_model_quantize(sys.argv[1].encode(), sys.argv[3].encode(), ctypes.byref(p))
sys.exit(rc)
"""

_BUFFER = re.compile(
    r"(?P<what>CPU_Mapped model|CPU_REPACK model|CPU model|CPU  output|CPU KV|CPU compute)"
    r" buffer size =\s+(?P<mib>[0-9.]+) MiB"
)


@dataclass(frozen=True)
class Allocation:
    """Bytes per buffer kind, as llama.cpp logged them (rounded to 0.01 MiB by its printf)."""

    model: float
    repack: float
    kv: float
    compute: float
    output: float
    log: str


def allocate(
    path: Path,
    *,
    ctx: int,
    parallel: int = 1,
    kv_type: str = "f16",
    swa_full: bool = False,
    unified: bool = False,
    flash_attn: bool = True,
) -> Allocation:
    args = {
        "path": str(path),
        "ctx": ctx,
        "parallel": parallel,
        "type_k": GGML_TYPE[kv_type],
        "type_v": GGML_TYPE[kv_type],
        "swa_full": swa_full,
        "unified": unified,
        "flash_attn": flash_attn,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"llama.cpp probe failed ({proc.returncode}):\n{log[-3000:]}")
    sums = {"model": 0.0, "repack": 0.0, "kv": 0.0, "compute": 0.0, "output": 0.0}
    kind = {
        "CPU_Mapped model": "model",
        "CPU model": "model",
        "CPU_REPACK model": "repack",
        "CPU KV": "kv",
        "CPU compute": "compute",
        "CPU  output": "output",
    }
    for m in _BUFFER.finditer(log):
        sums[kind[m.group("what")]] += float(m.group("mib")) * MIB
    return Allocation(log=log, **sums)


_PLAN_LINE = re.compile(
    r"^\[\s*\d+/\s*\d+\]\s+(?P<name>\S+)\s+- \[[^\]]*\], type =\s+(?P<type>\w+), size =.*?"
    r"(?:->\s+[0-9.]+ MiB \((?P<new>\w+)\))?$",
    re.MULTILINE,
)


def quantize_types(path: Path, ftype: int, tmp: Path) -> dict[str, str]:
    """tensor name -> ggml type name (upper case) llama.cpp's quantizer would write at ``ftype``."""
    proc = subprocess.run(
        [sys.executable, "-c", _QUANT_PROBE, str(path), str(ftype), str(tmp / "dry-run.gguf")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"llama.cpp quantize dry run failed:\n{proc.stderr[-3000:]}")
    return {
        m.group("name"): (m.group("new") or m.group("type")).upper()
        for m in _PLAN_LINE.finditer(proc.stderr)
    }
