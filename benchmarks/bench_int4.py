"""Benchmark: QAT int4 (AWQ) checkpoint -> Q4_0 GGUF, gemma3-pack vs the only other route, one run.

* ours: ``gemma3-pack export <awq>`` (the int4 weights repacked into Q4_0, F16 embeddings), one
  fresh subprocess;
* the alternative a user has today (llama.cpp's converter refuses ``quant_method: awq``): dequantize
  the AWQ checkpoint to a bf16 checkpoint (torch + safetensors, AutoAWQ's unpacking), then
  ``convert_hf_to_gguf.py --outtype bf16`` (llama-cpp-python 0.3.36 sdist), then llama.cpp's
  quantizer to Q4_0 (``llama_model_quantize``, 2 threads) — each step a fresh subprocess.

Wall time around each process; peak RSS of each program (RUSAGE_CHILDREN of a small middle
process). The fixture is ``tests/support/_assets_int4.int4_checkpoint("awq")`` (real 270M weights on the
int4 grid). Also counts how many weights the alternative moves off the QAT grid, and our peak RSS
on a 4B-shaped AWQ checkpoint (4B widths, 2 layers, 262208-row embedding) to show it stays flat.

    python benchmarks/bench_int4.py

Prints a markdown table and writes benchmarks/results/int4.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from _harness import ROOT, child  # also puts tests/support/ on sys.path: the tests' cached assets

# isort: split
import _assets
import _assets_ckpt
import _assets_int4
import _oracle

RESULTS = ROOT / "benchmarks" / "results" / "int4.json"
EXPORT_SNIPPET = (
    "import sys; from gemma3_pack import export; "
    "export(sys.argv[1], output_dir=sys.argv[2], name='bench', progress=False)"
)
# What a user writes without gemma3-pack: load the AWQ tensors, unpack (AutoAWQ's
# dequantize_gemm order), save a bf16 checkpoint next to the tokenizer and config.
DEQUANT_SNIPPET = r"""
import json, shutil, sys
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True)
sd = load_file(str(src / "model.safetensors"))
order = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])  # AWQ_REVERSE_ORDER
shifts = torch.arange(0, 32, 4, dtype=torch.int32)
def unpack(x):
    w = (x[:, :, None] >> shifts[None, None, :]) & 0xF
    w = w[:, :, order].reshape(x.shape[0], -1)
    return w
out = {}
for k in list(sd):
    if k.endswith(".qweight"):
        stem = k[: -len(".qweight")]
        w, z = unpack(sd[k]), unpack(sd[stem + ".qzeros"])
        s = sd[stem + ".scales"].float()
        w = (w - z.repeat_interleave(32, 0)).float() * s.repeat_interleave(32, 0)
        out[stem + ".weight"] = w.T.contiguous().to(torch.bfloat16)
    elif not k.endswith((".qzeros", ".scales")):
        out[k] = sd[k]
save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
cfg = json.loads((src / "config.json").read_text()); cfg.pop("quantization_config")
(dst / "config.json").write_text(json.dumps(cfg))
for f in src.iterdir():
    if f.name != "config.json" and not f.name.endswith(".safetensors"):
        shutil.copyfile(f, dst / f.name)
"""
QUANT_SNIPPET = (
    "import sys; from pathlib import Path; "
    "from gemma3_pack._export._quantize import quantize; "
    "quantize(Path(sys.argv[1]), Path(sys.argv[2]), 'Q4_0', nthread=2)"
)


def run_child(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one program run in a fresh process."""
    run = child(argv)
    return run.wall, run.rss


def off_grid(gguf_path: Path) -> tuple[int, int]:
    import gguf
    import numpy as np

    grid = _assets_int4.grid()
    names = _assets_ckpt.gguf_to_hf_names(18)
    _, tensors = _oracle.read_gguf(gguf_path)
    moved = total = 0
    for name, _, qtype, raw in tensors:
        hf = names.get(name)
        if hf in grid:
            q, s = grid[hf]
            values = gguf.quants.dequantize(np.asarray(raw), qtype).reshape(q.shape)
            moved += int(np.sum(values != _assets_int4.dequantize(q, s)))
            total += q.size
    return moved, total


def main() -> None:
    awq = _assets_int4.int4_checkpoint("awq")
    awq4b = _assets_int4.int4_checkpoint_4b_shaped()
    input_4b = sum(p.stat().st_size for p in awq4b.glob("*.safetensors"))
    input_bytes = sum(p.stat().st_size for p in awq.glob("*.safetensors"))
    with tempfile.TemporaryDirectory(dir=_assets.cache_dir("oracle")) as tmp:
        t = Path(tmp)
        ours = run_child([sys.executable, "-c", EXPORT_SNIPPET, str(awq), str(t / "ours")])
        ours_4b = run_child([sys.executable, "-c", EXPORT_SNIPPET, str(awq4b), str(t / "ours4b")])
        ours_file = t / "ours" / "bench-Q4_0.gguf"
        deq = run_child([sys.executable, "-c", DEQUANT_SNIPPET, str(awq), str(t / "bf16-ckpt")])
        conv = _oracle._run_reference(
            t / "bf16-ckpt", t / "ref-bf16.gguf", outtype="bf16", mmproj=False
        )
        quant = run_child(
            [
                sys.executable,
                "-c",
                QUANT_SNIPPET,
                str(t / "ref-bf16.gguf"),
                str(t / "ref-q4_0.gguf"),
            ]
        )
        ours_moved = off_grid(ours_file)  # after the timed runs: this loads the whole grid
        alt_moved = off_grid(t / "ref-q4_0.gguf")
        sizes = {
            "ours": ours_file.stat().st_size,
            "alternative": (t / "ref-q4_0.gguf").stat().st_size,
        }
    steps = {
        "dequantize to bf16 checkpoint (torch)": deq,
        "convert_hf_to_gguf.py --outtype bf16": (conv["wall_s"], int(conv["peak_rss_bytes"])),
        "llama.cpp quantize Q4_0 (2 threads)": quant,
    }
    alt_s = sum(s for s, _ in steps.values())
    alt_rss = max(r for _, r in steps.values())
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "fixture": "270M real weights on the int4 grid, AWQ gemm packing",
        "input_bytes": input_bytes,
        "ours": {"s": ours[0], "rss": ours[1], "bytes": sizes["ours"], "off_grid": ours_moved[0]},
        "alternative": {
            "steps": {k: {"s": s, "rss": r} for k, (s, r) in steps.items()},
            "s": alt_s,
            "rss": alt_rss,
            "bytes": sizes["alternative"],
            "off_grid": alt_moved[0],
        },
        "weights": ours_moved[1],
        "4b_shaped": {"input_bytes": input_4b, "ours_s": ours_4b[0], "ours_rss": ours_4b[1]},
        "time_ratio": ours[0] / alt_s,
        "rss_ratio": ours[1] / alt_rss,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    mb = 1e6
    print(f"AWQ fixture: {input_bytes / mb:,.0f} MB, {ours_moved[1]:,} int4 weights\n")
    print("| route | wall time | peak RSS | Q4_0 file | weights off the QAT grid |")
    print("|---|---|---|---|---|")
    print(
        f"| gemma3-pack export (repack) | {ours[0]:.1f} s | {ours[1] / mb:,.0f} MB | "
        f"{sizes['ours'] / mb:,.0f} MB | {ours_moved[0]:,} |"
    )
    for k, (s, r) in steps.items():
        print(f"| {k} | {s:.1f} s | {r / mb:,.0f} MB | | |")
    print(
        f"| alternative, total | {alt_s:.1f} s | {alt_rss / mb:,.0f} MB (max) | "
        f"{sizes['alternative'] / mb:,.0f} MB | {alt_moved[0]:,} ({alt_moved[0] / alt_moved[1]:.1%}) |"
    )
    print(
        f"\nratios: time **{result['time_ratio']:.2f}x**, peak RSS **{result['rss_ratio']:.2f}x**"
    )
    print(
        f"4B-shaped AWQ ({input_4b / mb:,.0f} MB, {input_4b / input_bytes:.1f}x the input): "
        f"{ours_4b[0]:.1f} s, peak RSS {ours_4b[1] / mb:,.0f} MB ({ours_4b[1] / ours[1]:.2f}x)"
    )


if __name__ == "__main__":
    main()
