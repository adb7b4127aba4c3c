"""Benchmark: the vision projector and the fused Ollama file vs llama.cpp's converter, in one run.

Input: a full-size Gemma 3 SigLIP tower (27 layers, width 1152, MLP 4304, 16 heads, 896 px / 14 px
patches; 417M parameters, ~0.83 GB bf16) with random weights and a projector onto the 640-wide
text model, so the fused file can use the real 270M text GGUF. Built once, cached beside the test
assets, in each of the three checkpoint layouts (hard links: one copy on disk).

Measured, each tool as its own process, wall time and peak RSS of that process alone:

* llama.cpp's ``convert_hf_to_gguf.py --outtype f16 --mmproj`` (llama-cpp-python's vendored copy),
  on every layout (it writes 0 tensors on ``model.*`` and crashes on transformers 5.x);
* gemma3-pack ``write_mmproj`` (f16) on every layout;
* gemma3-pack ``write_fused`` (270M Q4_K_M text + this tower) against ``cp`` of the same bytes.

    python benchmarks/bench_vision.py [--runs 3]

Prints a markdown table and writes benchmarks/results/vision.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import ROOT, child  # also puts tests/support/ on sys.path: the tests' cached assets

# isort: split
import _assets
import _assets_vision

RESULTS = ROOT / "benchmarks" / "results" / "vision.json"
SIGLIP = dict(
    _assets_vision.VISION_CONFIG,
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
)


def _shapes() -> dict[str, tuple[int, ...]]:
    h, f, p = SIGLIP["hidden_size"], SIGLIP["intermediate_size"], SIGLIP["patch_size"]
    t = "vision_tower.vision_model."
    out: dict[str, tuple[int, ...]] = {
        t + "embeddings.patch_embedding.weight": (h, 3, p, p),
        t + "embeddings.patch_embedding.bias": (h,),
        t + "embeddings.position_embedding.weight": ((896 // p) ** 2, h),
        t + "post_layernorm.weight": (h,),
        t + "post_layernorm.bias": (h,),
        "multi_modal_projector.mm_input_projection_weight": (h, 640),
        "multi_modal_projector.mm_soft_emb_norm.weight": (h,),
    }
    for i in range(SIGLIP["num_hidden_layers"]):
        layer = f"{t}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[f"{layer}self_attn.{proj}.weight"] = (h, h)
            out[f"{layer}self_attn.{proj}.bias"] = (h,)
        out[layer + "mlp.fc1.weight"], out[layer + "mlp.fc1.bias"] = (f, h), (f,)
        out[layer + "mlp.fc2.weight"], out[layer + "mlp.fc2.bias"] = (h, f), (h,)
        for norm in ("layer_norm1", "layer_norm2"):
            out[f"{layer}{norm}.weight"] = (h,)
            out[f"{layer}{norm}.bias"] = (h,)
    return out


def _write_streaming(path: Path, shapes: dict[str, tuple[int, ...]], layout: str) -> None:
    """bf16 safetensors written tensor by tensor (never the whole tower in memory)."""
    rng = np.random.default_rng(0)
    back = {_assets_vision.rename(n, layout): n for n in shapes}
    names = sorted(back)
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        n = int(np.prod(shapes[back[name]])) * 2
        header[name] = {
            "dtype": "BF16",
            "shape": list(shapes[back[name]]),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)) + head)
        for name in names:
            a = 0.02 * rng.standard_normal(shapes[back[name]], dtype=np.float32)
            fh.write((a.view(np.uint32) >> 16).astype("<u2").tobytes())


def siglip_checkpoints() -> dict[str, Path]:
    """The full-size tower in the three layouts (cached; the release file is hard-linked)."""
    root = _assets.cache_dir("bench", "siglip-full")
    out = {}
    for layout in _assets_vision.LAYOUTS:
        folder = root / layout
        out[layout] = folder
        if (folder / "config.json").is_file():
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{layout}.", dir=root))
        _write_streaming(tmp / "model.safetensors", _shapes(), layout)
        cfg = {
            "architectures": ["Gemma3ForConditionalGeneration"],
            "model_type": "gemma3",
            "mm_tokens_per_image": 256,
            "boi_token_index": 255999,
            "eoi_token_index": 256000,
            "image_token_index": 262144,
            "text_config": dict(_assets_vision._TEXT_CONFIG_270M),
            "vision_config": SIGLIP,
        }
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
        shutil.copy(
            _assets_vision.hf_checkpoint_vision("release", text=False) / "preprocessor_config.json",
            tmp,
        )
        os.replace(tmp, folder)
    return out


def _run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    run = child(cmd, env=env, cwd=cwd, check=False)
    return {"code": run.code, "wall": run.wall, "rss": run.rss, "err": run.stderr[-600:]}


def _gemma3_pack(snippet: str, *args: str) -> dict:
    return _run([sys.executable, "-c", snippet, *args])


def _median(runs: list[dict]) -> dict:
    return {
        "runs": len(runs),
        "wall_s": statistics.median(r["wall"] for r in runs),
        "peak_rss_mib": round(max(r["rss"] for r in runs) / 2**20),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from _oracle import reference_dir

    cks = siglip_checkpoints()
    ref = reference_dir()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ref / "gguf-py"), str(ref)]), HF_HUB_OFFLINE="1"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-vision-"))
    rows: dict[str, dict] = {}
    try:
        for layout, ck in cks.items():
            runs, tensors, error = [], None, None
            for _ in range(1 if layout != "release" else args.runs):
                out = work / f"ref-{layout}.gguf"
                r = _run(
                    [
                        sys.executable,
                        str(ref / "convert_hf_to_gguf.py"),
                        str(ck),
                        "--outtype",
                        "f16",
                        "--mmproj",
                        "--outfile",
                        str(out),
                    ],
                    env=env,
                    cwd=ref,
                )
                runs.append(r)
                if r["code"] != 0:
                    error = r["err"].strip().splitlines()[-1]
                    break
                import gguf

                tensors = len(gguf.GGUFReader(out).tensors)
                out.unlink()
            rows[f"llama.cpp convert --mmproj ({layout})"] = {
                **_median(runs),
                "tensors": tensors,
                "error": error,
            }
            runs = []
            for _ in range(args.runs):
                out = work / f"ours-{layout}.gguf"
                runs.append(
                    _gemma3_pack(
                        "import sys; from gemma3_pack import write_mmproj; "
                        "write_mmproj(sys.argv[1], sys.argv[2])",
                        str(ck),
                        str(out),
                    )
                )
                import gguf

                tensors = len(gguf.GGUFReader(out).tensors)
                out.unlink()
            rows[f"gemma3-pack write_mmproj ({layout})"] = {**_median(runs), "tensors": tensors}
        text = _assets.gguf_270m()
        runs = [_run(["cp", str(text), str(work / "cp.gguf")]) for _ in range(args.runs)]
        rows["cp of the 270M text GGUF"] = _median(runs)
        runs = []
        for _ in range(args.runs):
            runs.append(
                _gemma3_pack(
                    "import sys; from gemma3_pack import write_fused; "
                    "write_fused(sys.argv[1], sys.argv[2], sys.argv[3])",
                    str(text),
                    str(cks["new"]),
                    str(work / "fused.gguf"),
                )
            )
        rows["gemma3-pack write_fused (270M text + tower)"] = {
            **_median(runs),
            "bytes": (work / "fused.gguf").stat().st_size,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    anchor = rows["llama.cpp convert --mmproj (release)"]["wall_s"]
    for row in rows.values():
        row["x_reference"] = round(row["wall_s"] / anchor, 3)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "input": {
            "vision": SIGLIP,
            "bytes": (cks["release"] / "model.safetensors").stat().st_size,
            "maxrss_self_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        },
        "rows": rows,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| tool | wall s | x reference | peak RSS MiB | tensors / note |")
    print("|---|---:|---:|---:|---|")
    for name, row in rows.items():
        note = row.get("error") or row.get("tensors", row.get("bytes", ""))
        print(
            f"| {name} | {row['wall_s']:.2f} | {row['x_reference']:.2f} | "
            f"{row['peak_rss_mib']} | {note} |"
        )


if __name__ == "__main__":
    main()
