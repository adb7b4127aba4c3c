"""Benchmark: memory and time on hostile inputs, against the anchors, in one run.

1. A GGUF whose ``tokenizer.ggml.tokens`` holds 1 M empty strings (8 MB of zeros that are a hole in
   a sparse file): peak RSS and wall time of a fresh process parsing the header with our reader
   (``open_gguf``) and with gguf-py's ``GGUFReader`` (the anchor), same file, same run; then ours
   alone on 12.5 M (the issue's case; gguf-py needed 19 GB and 380 s for it, so it is not rerun).
   Target (issue 12): memory bounded by the bytes the walk must touch, not ~12x the array span.
2. The Modelfile parser on a quoted SYSTEM value of 0.2, 1, 2 and 10 MB (words and newlines):
   seconds per MB must stay flat (linear); the quadratic parser took 15.7 s for 200 KB.

    python benchmarks/bench_hostile.py

Prints a markdown table and writes benchmarks/results/hostile.json. Peak RSS is measured per child
with ``os.wait4`` from a launcher that has imported nothing heavy (see tests/support/_hostile.py).
"""

from __future__ import annotations

import json
import os
import platform
import struct
import tempfile
import time
from pathlib import Path

from _harness import ROOT, python

RESULTS = ROOT / "benchmarks" / "results" / "hostile.json"

PARSE_OURS = (
    "import sys\nfrom gemma3_pack._gguf._reader import open_gguf\n"
    "with open_gguf(sys.argv[1]) as h:\n    assert h.kvs['tokenizer.ggml.tokens'].count\n"
)
PARSE_GGUF_PY = "import sys, gguf\nr = gguf.GGUFReader(sys.argv[1])\nassert r.fields\n"


def sparse_tokens(path: Path, n: int = 12_500_000) -> Path:
    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 2)
    body += s("general.architecture") + struct.pack("<I", 8) + s("gemma3")
    body += s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, n)
    path.write_bytes(body)
    with open(path, "r+b") as f:
        f.truncate(len(body) + 8 * n)
    return path


def child(code: str, arg: str) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit code) of ``python -c code arg`` alone."""
    run = python(code, arg, check=False)
    return run.wall, run.rss_mib, run.code


def modelfile_seconds(megabytes: float) -> float:
    from gemma3_pack._modelfile import parse_modelfile

    line = "word " * 200 + "\n"
    text = 'FROM gemma3:4b\nSYSTEM """' + line * int(megabytes * 1e6 / len(line)) + '"""\n'
    t0 = time.perf_counter()
    spec = parse_modelfile(text)
    seconds = time.perf_counter() - t0
    assert spec.system is not None and len(spec.system) > megabytes * 0.9e6
    return seconds


ANCHOR_TOKENS = 1_000_000  # gguf-py on the full 12.5 M file peaked at 19 GB and took 380 s here


def main() -> None:
    rows: dict[str, object] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        small = sparse_tokens(Path(tmp) / "small.gguf", ANCHOR_TOKENS)
        ours_small, anchor = child(PARSE_OURS, str(small)), child(PARSE_GGUF_PY, str(small))
        big = sparse_tokens(Path(tmp) / "big.gguf")
        ours_big = child(PARSE_OURS, str(big))
    rows["sparse_tokens"] = {
        f"ours_{ANCHOR_TOKENS}": {"seconds": ours_small[0], "rss_mib": ours_small[1]},
        f"gguf_py_{ANCHOR_TOKENS}": {"seconds": anchor[0], "rss_mib": anchor[1]},
        "ours_12500000": {"seconds": ours_big[0], "rss_mib": ours_big[1]},
    }
    per_mb = {mb: modelfile_seconds(mb) / mb for mb in (0.2, 1, 2, 10)}
    rows["modelfile_seconds_per_mb"] = per_mb
    print("| input | ours | anchor (gguf-py GGUFReader) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| {ANCHOR_TOKENS:,} empty tokens (sparse): peak RSS | {ours_small[1]:.0f} MiB | "
        f"{anchor[1]:.0f} MiB | {ours_small[1] / anchor[1]:.2f}x |"
    )
    print(
        f"| same: wall time | {ours_small[0]:.2f} s | {anchor[0]:.2f} s | "
        f"{ours_small[0] / anchor[0]:.2f}x |"
    )
    print(
        f"| 12,500,000 empty tokens: peak RSS, time | {ours_big[1]:.0f} MiB, {ours_big[0]:.2f} s | | |"
    )
    for mb, s in per_mb.items():
        print(f"| Modelfile SYSTEM of {mb:g} MB | {s:.2f} s/MB | | |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
