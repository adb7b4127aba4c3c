#!/usr/bin/env python3
"""alloc.json (parse_log.py's output of one GPU run) -> the compact case list the tests read.

    python3 benchmarks/gpu/to_cases.py OUT/alloc.json tests/data/cuda_alloc/cases.json --run NAME

Keeps, per case that loaded (rc 0): the probe's parameters and llama_get_memory_breakdown() per
buffer type in bytes (model / context = KV / compute), plus the log's output-buffer and mmproj
lines. Cases already in the output file under another run are kept (one file, several runs).
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    run = sys.argv[sys.argv.index("--run") + 1] if "--run" in sys.argv else "run"
    try:
        with open(dst) as f:
            old = json.load(f)
    except FileNotFoundError:
        old = {"cases": []}
    with open(src) as f:
        cases = json.load(f)["cases"]
    out = [c for c in old["cases"] if c["run"] != run]
    for c in cases:
        if c.get("end", {}).get("rc") != 0:
            continue
        a = c["probe"]["args"]
        out.append(
            {
                "run": run,
                "name": c["case"]["name"],
                "model": c["case"]["model"],
                "args": c["case"]["args"],
                "params": {
                    k: a[k]
                    for k in (
                        "ngl",
                        "n_ctx",
                        "fa",
                        "n_batch",
                        "n_ubatch",
                        "n_seq",
                        "type_k",
                        "type_v",
                        "swa_full",
                        "kv_unified",
                    )
                },
                "mmproj": c["case"].get("mmproj"),
                "breakdown": {
                    b["buft"]: {k: b[f"{k}_bytes"] for k in ("model", "context", "compute")}
                    for b in c["breakdown"]
                    if b["buft"] != "TOTAL"
                },
                "buffers_mib": [
                    {k: b[k] for k in ("backend", "kind", "mib", "cache") if k in b}
                    for b in c["buffers"]
                ],
                "offloaded_layers": c["context"].get("offloaded_layers"),
            }
        )
    with open(dst, "w") as f:
        json.dump(
            {
                "source": "benchmarks/gpu/run.sh on an NVIDIA H200 (llama.cpp 0c1e57098, CUDA 13.0)",
                "cases": out,
            },
            f,
            indent=1,
        )
    print(f"{dst}: {len(out)} cases")


if __name__ == "__main__":
    main()
