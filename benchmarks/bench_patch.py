"""Benchmark: `gemma3-pack patch` vs `cp` vs gguf-py's `gguf-new-metadata`, as ratios in one run.

Each tool runs as its own subprocess on the same input with the page cache warm, writing a fresh
output (the previous one deleted and dirty pages synced between runs, outside the timing); the
tools take turns round by round, so a busy machine slows all of them alike. Wall time is measured around the process;
peak RSS comes from ``os.wait4`` (that child alone). For patch we also record the time it spends
after start-up (its own ``seconds``), since interpreter and import start-up (~0.3 s) is a fixed
cost, not throughput.

Files: the real Gemma 3 270M Q4_K_M GGUF (PyPI, 253 MB) and an F16 copy of it (~540 MB, made once
with llama.cpp's quantizer and cached beside the test assets).

    python benchmarks/bench_patch.py [--runs 5] [--anchor-runs 1] [--skip-anchor]

Prints a markdown table and writes benchmarks/results/patch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import ROOT, child  # also puts tests/support/ on sys.path: the tests' cached assets

# isort: split
import _assets

RESULTS = ROOT / "benchmarks" / "results" / "patch.json"
PATCH_SNIPPET = (
    "import json,sys; from gemma3_pack._gguf import patch_gguf; "
    "r = patch_gguf(sys.argv[1], sys.argv[2], force=True); "
    "print(json.dumps({'seconds': r.seconds, 'method': r.copy_method}))"
)


def f16_copy() -> Path:
    """The 270M dequantized to F16 by llama.cpp (cached; built atomically)."""
    out = _assets.cache_dir("bench") / "gemma-3-270m-f16.gguf"
    if out.is_file():
        return out
    import llama_cpp

    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(
        str(_assets.gguf_270m()).encode(), str(tmp).encode(), params
    )
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize returned {rc}")
    os.replace(tmp, out)
    return out


def _console_script(name: str) -> str:
    """A console script of this interpreter's environment (the venv's bin/ may not be on PATH)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def run(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one child process."""
    measured = child(cmd)
    return measured.wall, measured.rss // 2**20, measured.stdout


def bench_file(
    src: Path, work: Path, runs: int, anchor_runs: int, skip_anchor: bool, template: Path
) -> dict[str, dict[str, float | int | str]]:
    dst = work / "out.gguf"
    tools: dict[str, tuple[list[str], int]] = {
        "cp": (["cp", str(src), str(dst)], runs),
        "gemma3-pack patch": ([sys.executable, "-c", PATCH_SNIPPET, str(src), str(dst)], runs),
    }
    if not skip_anchor:
        tools["gguf-new-metadata"] = (
            [
                _console_script("gguf-new-metadata"),
                "--chat-template-file",
                str(template),
                "--force",
                str(src),
                str(dst),
            ],
            anchor_runs,
        )
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    samples: dict[str, dict[str, list]] = {
        name: {"wall": [], "rss": [], "inner": [], "method": []} for name in tools
    }
    # interleaved rounds (cp, patch, anchor, cp, patch, ...) with the previous output flushed
    # to disk first, so every tool meets the same load and no one pays for another's write-back
    for i in range(max(n for _, n in tools.values())):
        for name, (cmd, n) in tools.items():
            if i >= n:
                continue
            dst.unlink(missing_ok=True)
            os.sync()
            wall, peak, out = run(cmd)
            s = samples[name]
            s["wall"].append(wall)
            s["rss"].append(peak)
            if out.strip().startswith("{"):
                info = json.loads(out)
                s["inner"].append(info["seconds"])
                s["method"].append(info["method"])
    rows: dict[str, dict[str, float | int | str]] = {}
    for name, s in samples.items():
        row: dict[str, float | int | str] = {
            "runs": len(s["wall"]),
            "wall_s": statistics.median(s["wall"]),
            "peak_rss_mib": max(s["rss"]),
        }
        if s["inner"]:
            row["after_startup_s"] = statistics.median(s["inner"])
            row["copy_method"] = s["method"][0]
        rows[name] = row
    dst.unlink(missing_ok=True)
    cp = float(rows["cp"]["wall_s"])
    for row in rows.values():
        row["x_cp"] = float(row["wall_s"]) / cp
        if "after_startup_s" in row:
            row["after_startup_x_cp"] = float(row["after_startup_s"]) / cp
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of cp and patch (median)")
    ap.add_argument("--anchor-runs", type=int, default=1, help="runs of gguf-new-metadata")
    ap.add_argument("--skip-anchor", action="store_true", help="do not run gguf-new-metadata")
    args = ap.parse_args()

    from gemma3_pack._chat import OFFICIAL_TEMPLATE

    files = {"270M Q4_K_M": _assets.gguf_270m(), "270M F16": f16_copy()}
    results: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()[0],
        },
        "files": {},
    }
    lines = [
        "| file | size | tool | wall s (median) | after start-up s | x cp | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(dir=_assets.cache_dir("bench")) as tmp:
        work = Path(tmp)
        template = work / "gemma3.jinja"
        template.write_text(OFFICIAL_TEMPLATE, encoding="utf-8")
        for label, src in files.items():
            rows = bench_file(src, work, args.runs, args.anchor_runs, args.skip_anchor, template)
            size = src.stat().st_size
            results["files"][label] = {"path": str(src), "bytes": size, "tools": rows}  # type: ignore[index]
            for tool, row in rows.items():
                after = (
                    f"{row['after_startup_s']:.3f} ({row['after_startup_x_cp']:.2f}x)"
                    if "after_startup_s" in row
                    else "-"
                )
                lines.append(
                    f"| {label} | {size / 1e6:,.0f} MB | {tool} | {row['wall_s']:.3f} | "
                    f"{after} | {row['x_cp']:.2f} | {row['peak_rss_mib']} |"
                )
    table = "\n".join(lines)
    results["machine"]["load_average_at_end"] = os.getloadavg()[0]  # type: ignore[index]
    print(table)
    print(
        f"\nload average {results['machine']['load_average_at_start']:.1f} -> "  # type: ignore[index]
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (noisy when high)"
    )
    results["markdown"] = table
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
