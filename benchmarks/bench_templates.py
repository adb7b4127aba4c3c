"""Benchmark: rendering the Gemma 3 chat template — Jinja (sandboxed) vs Go text/template.

The anchors are the two engines the conformance test compares: jinja2's sandboxed render of
Google's template (what Hugging Face and llama-cpp-python do) and Go's text/template running our
Ollama TEMPLATE (what Ollama does). For Go we time both the batch mode the tests use (the whole
corpus in ONE renderer process) and one process per conversation (what a naive preview would
do), and report how many conversations agree. All numbers come from the same run.

    python benchmarks/bench_templates.py [--repeat 5]

Prints a markdown table and writes benchmarks/results/templates.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from _harness import ROOT  # also puts tests/support/ on sys.path: the tests' cached assets

# isort: split
import _assets
from test_go_conformance import CORPUS, _reference

from gemma3_pack._chat import render_chat, render_ollama_batch
from gemma3_pack._modelfile import LIBRARY_TEMPLATE_4B19, LIBRARY_TEMPLATE_E0A4

RESULTS = ROOT / "benchmarks" / "results" / "templates.json"


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cache = str(_assets.cache_dir("go-render"))
    go = str(_assets.go_binary())
    convs = [m for _, m in CORPUS]
    render_ollama_batch(convs[:1], go_binary=go, cache_dir=cache)  # build once, outside timing
    render_chat(convs[0])  # compile the Jinja template once

    def jinja() -> None:
        for m in convs:
            render_chat(m, add_generation_prompt=m[-1]["role"] != "assistant")

    jinja_s = _best(jinja, args.repeat)
    batch_s = _best(lambda: render_ollama_batch(convs, go_binary=go, cache_dir=cache), args.repeat)
    each_s = _best(
        lambda: [render_ollama_batch([m], go_binary=go, cache_dir=cache) for m in convs], 1
    )

    agree = {}
    for label, template in (
        ("gemma3-pack TEMPLATE", None),
        ("ollama.com 4b19ac7dd2fb", LIBRARY_TEMPLATE_4B19),
        ("ollama.com e0a42594d802", LIBRARY_TEMPLATE_E0A4),
    ):
        kw = {} if template is None else {"template": template}
        outs = render_ollama_batch(convs, go_binary=go, cache_dir=cache, **kw)
        agree[label] = sum(o == _reference(m) for o, m in zip(outs, convs, strict=True))

    n = len(convs)
    rows = [
        ("Jinja sandboxed (official), in-process", jinja_s, 1.0),
        ("Go text/template, one batch process", batch_s, batch_s / jinja_s),
        ("Go text/template, one process per conversation", each_s, each_s / jinja_s),
    ]
    print(f"{n} conversations; best of {args.repeat} (per-process: 1 run)\n")
    print("| renderer | total ms | ms / conversation | x Jinja |")
    print("|---|---|---|---|")
    for label, secs, ratio in rows:
        print(f"| {label} | {secs * 1e3:.1f} | {secs * 1e3 / n:.2f} | {ratio:.1f} |")
    print("\n| Ollama TEMPLATE | renders == official Jinja (minus `<bos>`) |")
    print("|---|---|")
    for label, count in agree.items():
        print(f"| {label} | {count}/{n} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "conversations": n,
                "seconds": {"jinja": jinja_s, "go_batch": batch_s, "go_per_process": each_s},
                "agreement": agree,
                "machine": {"python": platform.python_version(), "platform": platform.platform()},
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
