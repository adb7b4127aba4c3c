"""Benchmark: the SDK's cost over the official ollama client, as ratios measured in one run.

1. Per-call overhead of ``gemma3_pack.Client.chat`` against raw ``ollama.Client.chat`` on the same
   loopback daemon (tests/support/_loopback.py, run in its own process so it does not share our GIL). Both
   send the same options dict and get the same reply; calls are interleaved (ABAB, order swapped
   every round) and we compare medians. Goal: <= 5 %.
2. Blob upload throughput vs file size (sparse files, so the disk is not the bottleneck):
   ``ollama.Client.create_blob`` (hash in 32 KiB chunks, then POST the file object) against
   ``Client.upload_blob`` (hash in 1 MiB chunks, HEAD, POST a generator) and against
   ``upload_blob`` with the sha256 taken from export.json (no hashing pass). The first byte of the
   file changes before every upload, so the daemon never already has it.

    python benchmarks/bench_client.py [--calls 300] [--sizes 64,256,1024] [--runs 3]

Prints a markdown table and writes benchmarks/results/client.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, interleaved

RESULTS = ROOT / "benchmarks" / "results" / "client.json"
SERVER = (
    "import sys, time; sys.path.insert(0, {tests!r})\n"
    "from _loopback import LoopbackOllama\n"
    "with LoopbackOllama() as s:\n"
    "    s.add_model('gemma3:4b', vision=True)\n"
    "    print(s.url, flush=True)\n"
    "    sys.stdin.read()\n"
)


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tests=str(ROOT / "tests" / "support"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def bench_overhead(url: str, calls: int) -> dict[str, float]:
    import ollama

    from gemma3_pack import SAMPLING
    from gemma3_pack._sdk._client import Client

    raw = ollama.Client(url)
    ours = Client(url)
    messages = [{"role": "user", "content": "Why is the sky blue?"}]

    def call_raw() -> None:
        raw.chat(model="gemma3:4b", messages=messages, options=dict(SAMPLING))

    def call_ours() -> None:
        ours.chat("Why is the sky blue?")

    def stream_raw() -> None:
        for _ in raw.chat(
            model="gemma3:4b", messages=messages, options=dict(SAMPLING), stream=True
        ):
            pass

    def stream_ours() -> None:
        for _ in ours.chat("Why is the sky blue?", stream=True):
            pass

    out: dict[str, float] = {}
    for label, a, b in (("chat", call_raw, call_ours), ("chat_stream", stream_raw, stream_ours)):
        # interleaved ABAB medians, paired ratios (robust to load drift) and client CPU only (the
        # daemon runs in another process: the SDK's own cost per call)
        measured = interleaved(a, b, calls, warmup=20)
        out.update({f"{label}_{key}": value for key, value in measured.items()})
    raw.close()
    ours.close()
    return out


def bench_upload(url: str, sizes_mb: list[int], runs: int) -> list[dict[str, float]]:
    import ollama

    from gemma3_pack._sdk._client import Client

    raw = ollama.Client(url)
    ours = Client(url)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size_mb in sizes_mb:
            path = Path(tmp) / f"blob-{size_mb}.gguf"
            with open(path, "wb") as fh:
                fh.truncate(size_mb * 1024 * 1024)
            counter = 0

            def fresh(path: Path = path) -> None:
                nonlocal counter
                counter += 1
                with open(path, "r+b") as fh:
                    fh.write(counter.to_bytes(8, "little"))

            def sha_of(path: Path = path) -> str:
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                return h.hexdigest()

            times: dict[str, list[float]] = {
                "ollama_create_blob": [],
                "upload_blob": [],
                "upload_blob_known_sha": [],
            }
            for _ in range(runs):
                for label in times:
                    fresh()
                    known = sha_of() if label == "upload_blob_known_sha" else None
                    t0 = time.perf_counter()
                    if label == "ollama_create_blob":
                        raw.create_blob(path)
                    else:
                        ours.upload_blob(path, sha256=known, progress=False)
                    times[label].append(time.perf_counter() - t0)
            row: dict[str, float] = {"size_mb": size_mb}
            for label, values in times.items():
                best = min(values)
                row[f"{label}_s"] = best
                row[f"{label}_mb_s"] = size_mb / best
            row["ratio_upload_blob_vs_ollama"] = row["upload_blob_s"] / row["ollama_create_blob_s"]
            rows.append(row)
            path.unlink()
    raw.close()
    ours.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--sizes", default="64,256,1024", help="blob sizes in MiB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    proc, url = start_server()
    try:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        overhead = bench_overhead(url, args.calls)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        uploads = bench_upload(url, [int(s) for s in args.sizes.split(",")], args.runs)
        rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)

    print(f"## Client overhead ({args.calls} interleaved calls each, median)\n")
    print(
        "| call | raw ollama.Client (wall / client CPU) | gemma3_pack.Client (wall / client CPU)"
        " | overhead: median wall | paired wall | client CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for k in ("chat", "chat_stream"):
        o = overhead
        print(
            f"| {k} | {o[k + '_raw_ms']:.3f} / {o[k + '_raw_cpu_ms']:.3f} ms | "
            f"{o[k + '_ours_ms']:.3f} / {o[k + '_ours_cpu_ms']:.3f} ms | "
            f"{o[k + '_overhead_pct']:+.1f} % | {o[k + '_paired_overhead_pct']:+.1f} % | "
            f"{o[k + '_cpu_overhead_pct']:+.1f} % |"
        )
    print(f"\n## Blob upload (best of {args.runs}; MiB/s, loopback daemon hashes the body too)\n")
    print("| size | ollama create_blob | upload_blob | upload_blob, sha from export.json | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for row in uploads:
        print(
            f"| {row['size_mb']:,} MiB | {row['ollama_create_blob_mb_s']:.0f} MiB/s "
            f"({row['ollama_create_blob_s']:.2f} s) | {row['upload_blob_mb_s']:.0f} MiB/s "
            f"({row['upload_blob_s']:.2f} s) | {row['upload_blob_known_sha_mb_s']:.0f} MiB/s "
            f"({row['upload_blob_known_sha_s']:.2f} s) | {row['ratio_upload_blob_vs_ollama']:.2f}x |"
        )
    growth_mb = (rss2 - rss1) / 1024
    print(
        f"\nPeak RSS grew by {growth_mb:.1f} MiB while uploading files up to "
        f"{max(r['size_mb'] for r in uploads):,} MiB (streaming, never the whole file)."
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "client",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "calls": args.calls,
        "runs": args.runs,
        "overhead": overhead,
        "uploads": uploads,
        "rss_kib": {"start": rss0, "after_overhead": rss1, "after_uploads": rss2},
    }
    tmp = RESULTS.with_name(f".{RESULTS.name}.part")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
