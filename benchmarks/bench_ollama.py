"""Benchmark: gemma3-pack against the real Ollama daemon, as ratios measured in one run.

The daemon is Ollama 0.24.0 built from its Go module by ``tests/build_engines.py`` (run it first;
see tests/README.md), started on a free loopback port with its own models folder; the model is the
real Gemma 3 270M GGUF from PyPI, patched.

1. SDK overhead: ``gemma3_pack.Client.chat`` against raw ``ollama.Client.chat`` on the same model,
   same messages, same options dict (the Gemma settings + ``num_predict``, fixed seed), plain and
   streamed. Calls are interleaved (ABAB, order swapped every round); we compare medians, the
   median of paired ratios, and client CPU time (the daemon is another process).
2. Shipping an export folder (270M real weights, Q8_0, 293 MB): ``Client.create_from_export``
   against ``ollama create NAME -f <folder>/Modelfile`` (the real CLI), interleaved. "cold": the
   daemon does not have the blob (the model is deleted between runs, which prunes it); "warm": it
   has it, so both only HEAD-check and create.

    python benchmarks/bench_ollama.py [--calls 30] [--runs 3] [--num-predict 1]

Prints markdown tables and writes benchmarks/results/ollama.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _harness import ROOT, interleaved

RESULTS = ROOT / "benchmarks" / "results" / "ollama.json"


def bench_overhead(
    url: str, model: str, calls: int, num_predict: int
) -> dict[str, dict[str, float]]:
    import ollama

    from gemma3_pack import SAMPLING, Client

    options = {**SAMPLING, "num_predict": num_predict, "seed": 1}
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    raw = ollama.Client(url)
    ours = Client(url, model=model)

    def call_raw() -> None:
        raw.chat(model=model, messages=messages, options=options)

    def call_ours() -> None:
        ours.chat("Why is the sky blue?", options={"num_predict": num_predict, "seed": 1})

    def stream_raw() -> None:
        for _ in raw.chat(model=model, messages=messages, options=options, stream=True):
            pass

    def stream_ours() -> None:
        for _ in ours.chat(
            "Why is the sky blue?", options={"num_predict": num_predict, "seed": 1}, stream=True
        ):
            pass

    out = {
        "chat": interleaved(call_raw, call_ours, calls),
        "chat_stream": interleaved(stream_raw, stream_ours, calls),
    }
    raw.close()
    ours.close()
    return out


def bench_create(daemon: object, folder: Path, runs: int) -> dict[str, dict[str, float]]:
    import httpx

    from gemma3_pack import Client

    url = daemon.url  # type: ignore[attr-defined]
    sha = json.loads((folder / "export.json").read_text())["models"][0]["sha256"]
    client = Client(url, timeout=600)

    def delete(name: str) -> None:
        httpx.request("DELETE", f"{url}/api/delete", json={"model": name}, timeout=60)

    def sdk(name: str) -> None:
        client.create_from_export(folder, name, progress=False)

    def cli(name: str) -> None:
        result = daemon.cli("create", name, "-f", str(folder / "Modelfile"))  # type: ignore[attr-defined]
        if result.returncode != 0:
            raise RuntimeError(result.stderr)

    times: dict[str, list[float]] = {"sdk_cold": [], "cli_cold": [], "sdk_warm": [], "cli_warm": []}
    for i in range(runs):
        order = (("sdk", sdk), ("cli", cli)) if i % 2 == 0 else (("cli", cli), ("sdk", sdk))
        for label, fn in order:
            name = f"bench-{label}"
            assert not client.has_blob(f"sha256:{sha}"), "the blob must be gone for a cold run"
            t0 = time.perf_counter()
            fn(name)
            times[f"{label}_cold"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fn(name)
            times[f"{label}_warm"].append(time.perf_counter() - t0)
            delete(name)  # prunes the blob: the next run is cold again
    client.close()
    out: dict[str, dict[str, float]] = {}
    for kind in ("cold", "warm"):
        s, c = statistics.median(times[f"sdk_{kind}"]), statistics.median(times[f"cli_{kind}"])
        out[kind] = {"sdk_s": s, "cli_s": c, "ratio_sdk_vs_cli": s / c}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--num-predict", type=int, default=1)
    args = parser.parse_args()

    import _assets
    import _engines
    from _assets_ckpt import hf_checkpoint_270m

    from gemma3_pack import Client, export, patch_gguf

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        patched = patch_gguf(_assets.gguf_270m(), tmp / "gemma-3-270m.gguf").dst
        folder = tmp / "g3-export"
        export(hf_checkpoint_270m(), output_dir=folder, quants="Q8_0", name="g3", progress=False)
        with _engines.OllamaDaemon(_engines.ollama_binary(), tmp / "daemon") as daemon:
            with Client(daemon.url) as client:
                client.create_from_gguf(patched, "g3", progress=False)
                version = client.version()
            overhead = bench_overhead(daemon.url, "g3", args.calls, args.num_predict)
            create = bench_create(daemon, folder, args.runs)
        size_mb = sum(p.stat().st_size for p in folder.glob("*.gguf")) / 1e6

    print(
        f"## SDK overhead on a real Ollama {version} (270M, num_predict {args.num_predict}, "
        f"{args.calls} interleaved calls each, median)\n"
    )
    print(
        "| call | raw ollama.Client | gemma3_pack.Client | overhead: median | paired | client CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for k, o in overhead.items():
        print(
            f"| {k} | {o['raw_ms']:.1f} ms | {o['ours_ms']:.1f} ms | {o['overhead_pct']:+.1f} % | "
            f"{o['paired_overhead_pct']:+.1f} % | {o['raw_cpu_ms']:.2f} → {o['ours_cpu_ms']:.2f} ms |"
        )
    print(f"\n## Shipping an export folder ({size_mb:.0f} MB Q8_0, median of {args.runs})\n")
    print("| daemon has the blob | create_from_export | ollama create -f Modelfile | ratio |")
    print("|---|---:|---:|---:|")
    for kind, row in create.items():
        print(
            f"| {'no' if kind == 'cold' else 'yes'} ({kind}) | {row['sdk_s']:.2f} s | "
            f"{row['cli_s']:.2f} s | {row['ratio_sdk_vs_cli']:.2f}x |"
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "ollama",
        "ollama": version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "calls": args.calls,
        "runs": args.runs,
        "num_predict": args.num_predict,
        "export_mb": size_mb,
        "overhead": overhead,
        "create": create,
    }
    part = RESULTS.with_name(f".{RESULTS.name}.part")
    part.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(part, RESULTS)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
