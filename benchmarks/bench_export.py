"""Benchmark: `gemma3-pack export` vs llama.cpp's reference converter, as ratios in one run.

* 270M, bf16 safetensors -> BF16 GGUF: our export and ``convert_hf_to_gguf.py --outtype bf16``
  (llama-cpp-python 0.3.36 sdist, torch CPU), each a fresh subprocess, alternating round by
  round. Wall time around the process, peak RSS of that child from ``os.wait4``.
  Targets (issue 3): time <= 0.5x, peak RSS <= 0.25x.
* Memory vs model size: the same export on the 4B-shaped checkpoint (2 layers at 4B width,
  262208-row embedding, 1.7 GB) — our peak RSS should stay flat while the input triples; the
  reference's figure for it is the one recorded when the test oracle converted it.
* Quantization: each type from the 270M BF16 export (Q8_0 written by gguf-py from the checkpoint;
  the rest by llama.cpp's quantizer from the BF16 file), 2 threads.

    python benchmarks/bench_export.py [--rounds 2] [--skip-reference]

Prints a markdown table and writes benchmarks/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, child  # also puts tests/ on sys.path: the tests' cached assets

# isort: split
import _assets_ckpt
import _oracle

RESULTS = ROOT / "benchmarks" / "results" / "export.json"
EXPORT_SNIPPET = (
    "import sys; from gemma3_pack import export; "
    "export(sys.argv[1], output_dir=sys.argv[2], quants=sys.argv[3], name='bench', progress=False)"
)


def ours(ckpt: Path, quants: str = "BF16") -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one export in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        run = child([sys.executable, "-c", EXPORT_SNIPPET, str(ckpt), tmp, quants])
    return run.wall, run.rss


def checkpoint_bytes(ckpt: Path) -> int:
    return sum(p.stat().st_size for p in ckpt.glob("*.safetensors"))


def quantize_timings(ckpt: Path) -> dict[str, float]:
    from gemma3_pack import export
    from gemma3_pack._export._quantize import native_stderr_captured, quantize

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = export(ckpt, output_dir=tmp, quants="BF16", name="q", progress=False)
        out["BF16 (from checkpoint)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        export(ckpt, output_dir=tmp, quants="Q8_0", name="q", progress=False)
        out["Q8_0 (from checkpoint, Python)"] = time.perf_counter() - t0
        for q in ("Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"):
            t0 = time.perf_counter()
            with native_stderr_captured():  # llama.cpp prints a line per tensor
                quantize(res.models[0].path, Path(tmp) / f"q-{q}.gguf", q, nthread=2)
            out[f"{q} (llama.cpp, from BF16)"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()

    ck270 = _assets_ckpt.hf_checkpoint_270m()
    ck4b = _assets_ckpt.hf_checkpoint_4b_shaped()
    ours_270, ref_270 = [], []
    for _ in range(args.rounds):
        ours_270.append(ours(ck270))
        if not args.skip_reference:
            ref_270.append(_oracle.reference_peak(ck270, "bf16"))
    ours_4b = ours(ck4b)
    # the reference's 4B-shaped figure is the one recorded when the test oracle built its cached
    # output (a fresh 4B reference run costs ~1 min and 5.8 GB); its time ratio is indicative only
    ref_4b = _oracle.reference_stats(ck4b, outtype="bf16")

    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    o_t, o_m = med(ours_270, 0), med(ours_270, 1)
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "270m_bf16": {"input_bytes": checkpoint_bytes(ck270), "ours_s": o_t, "ours_rss": o_m},
        "4b_shaped_bf16": {
            "input_bytes": checkpoint_bytes(ck4b),
            "ours_s": ours_4b[0],
            "ours_rss": ours_4b[1],
            "reference_s": ref_4b.get("wall_s"),
            "reference_rss": ref_4b.get("peak_rss_bytes"),
        },
    }
    if ref_270:
        r_t, r_m = med(ref_270, 0), med(ref_270, 1)
        result["270m_bf16"].update(
            reference_s=r_t, reference_rss=r_m, time_ratio=o_t / r_t, rss_ratio=o_m / r_m
        )
    result["quantize_s"] = quantize_timings(ck270)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    mb = 1e6
    a, b = result["270m_bf16"], result["4b_shaped_bf16"]
    print("| checkpoint (bf16 -> BF16 GGUF) | input | gemma3-pack | reference | ratio |")
    print("|---|---|---|---|---|")
    if ref_270:
        print(
            f"| 270M wall time | {a['input_bytes'] / mb:,.0f} MB | {a['ours_s']:.1f} s | "
            f"{a['reference_s']:.1f} s | **{a['time_ratio']:.2f}x** |"
        )
        print(
            f"| 270M peak RSS | | {a['ours_rss'] / mb:,.0f} MB | {a['reference_rss'] / mb:,.0f} MB"
            f" | **{a['rss_ratio']:.2f}x** |"
        )
    if b["reference_s"]:
        print(
            f"| 4B-shaped wall time | {b['input_bytes'] / mb:,.0f} MB | {b['ours_s']:.1f} s | "
            f"{b['reference_s']:.1f} s | {b['ours_s'] / b['reference_s']:.2f}x |"
        )
        print(
            f"| 4B-shaped peak RSS | | {b['ours_rss'] / mb:,.0f} MB | "
            f"{b['reference_rss'] / mb:,.0f} MB | {b['ours_rss'] / b['reference_rss']:.2f}x |"
        )
    print(
        f"\nOur peak RSS, 4B-shaped vs 270M: {b['ours_rss'] / a['ours_rss']:.2f}x for "
        f"{b['input_bytes'] / a['input_bytes']:.2f}x the input.\n"
    )
    print("| type (270M) | seconds |")
    print("|---|---|")
    for k, v in result["quantize_s"].items():
        print(f"| {k} | {v:.1f} |")


if __name__ == "__main__":
    main()
