"""Benchmark: the SDK's per-call cost over the official ``openai`` client, as ratios in one run.

``gemma3_pack.Client(url).chat`` against raw ``openai.OpenAI(...).chat.completions.create`` with the
same body (Gemma's sampling fields, ``stop``), on a loopback OpenAI-compatible server
(tests/support/_loopback_openai.py, llama-server flavour, in its own process so it does not share our GIL).
Calls are interleaved (ABAB, order swapped every round); medians and paired ratios are reported, plus
client CPU per call. What the SDK adds per call: message normalisation, option merging, the guard
transport (line cap, redirect check) and mapping the reply to ``ollama.ChatResponse``.

    python benchmarks/bench_openai.py [--calls 300]

Prints a markdown table and writes benchmarks/results/openai.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

from _harness import ROOT, interleaved

RESULTS = ROOT / "benchmarks" / "results" / "openai.json"
SERVER = (
    "import sys; sys.path.insert(0, {tests!r})\n"
    "from _loopback_openai import LoopbackOpenAI\n"
    "with LoopbackOpenAI('llama-server', models=('g',)) as s:\n"
    "    s.chunks = ['Rayleigh', ' scattering', '.']\n"
    "    print(s.url, flush=True)\n"
    "    sys.stdin.read()\n"
)
BODY = {
    "stop": ["<end_of_turn>"],
    "temperature": 1.0,
    "top_p": 0.95,
    "extra_body": {"top_k": 64, "min_p": 0.0, "repeat_penalty": 1.0},
}


def bench(url: str, calls: int) -> dict[str, dict[str, float]]:
    import openai

    from gemma3_pack import Client

    raw = openai.OpenAI(base_url=url, api_key="no-key", max_retries=0)
    ours = Client(url, backend="llama-server", model="g")
    messages = [{"role": "user", "content": "Why is the sky blue?"}]

    def chat_raw() -> None:
        raw.chat.completions.create(model="g", messages=messages, **BODY)  # type: ignore[call-overload]

    def chat_ours() -> None:
        ours.chat("Why is the sky blue?")

    def stream_raw() -> None:
        for _ in raw.chat.completions.create(model="g", messages=messages, stream=True, **BODY):  # type: ignore[call-overload]
            pass

    def stream_ours() -> None:
        for _ in ours.chat("Why is the sky blue?", stream=True):
            pass

    out = {
        "chat": interleaved(chat_raw, chat_ours, calls, warmup=20),
        "chat_stream": interleaved(stream_raw, stream_ours, calls, warmup=20),
    }
    raw.close()
    ours.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tests=str(ROOT / "tests" / "support"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        results = bench(proc.stdout.readline().strip(), args.calls)
    finally:
        proc.stdin.close()
        proc.wait(10)
    print(f"## Client overhead over raw openai ({args.calls} interleaved calls each, median)\n")
    print(
        "| call | raw openai (wall / CPU) | gemma3_pack.Client (wall / CPU) | median | paired | CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        print(
            f"| {label} | {r['raw_ms']:.3f} / {r['raw_cpu_ms']:.3f} ms | "
            f"{r['ours_ms']:.3f} / {r['ours_cpu_ms']:.3f} ms | {r['overhead_pct']:+.1f} % | "
            f"{r['paired_overhead_pct']:+.1f} % | {r['cpu_overhead_pct']:+.1f} % |"
        )
    import openai

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "calls": args.calls,
        "openai": openai.__version__,
        "python": platform.python_version(),
        "results": results,
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
