#!/usr/bin/env python3
"""Write shape-faithful, zero-filled, SPARSE Gemma 3 vision projectors (mmproj, arch "clip").

The header llama.cpp's converter writes for Gemma 3's SigLIP-So400m (`convert_hf_to_gguf.py
--mmproj --outtype f16`, `Gemma3VisionModel`): the clip.* keys clip.cpp's `load_hparams` needs and
the 439 tensors (27 blocks x 16 + 7): 2-D weights F16, `mm.input_projection` F16 (forced),
`.embeddings.` (patch and position embeddings) and 1-D tensors F32. `clip.vision.projection_dim`
is the text model's hidden size, so there is one file per text width (4B 2560, 12B 3840,
27B 5376). Usage:  python3 make_mmproj.py --out DIR [--widths 2560,3840,5376] [--manifest FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.modules.setdefault("yaml", types.ModuleType("yaml"))
sys.path.insert(0, os.path.join(HERE, "vendor", "gguf-py"))
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402

D, F, N_LAYER, HEADS, IMAGE, PATCH = 1152, 4304, 27, 16, 896, 14
ALIGN = 32
WIDTHS = {2560: "4b", 3840: "12b", 5376: "27b"}


def tensor_list(text_hidden: int) -> list[tuple[str, tuple[int, ...], QT]]:
    """(name, ne in ggml order, type) as the converter writes them (HF order)."""
    patches = (IMAGE // PATCH) ** 2
    out = [
        ("mm.input_projection.weight", (text_hidden, D), QT.F16),
        ("mm.soft_emb_norm.weight", (D,), QT.F32),
        ("v.patch_embd.bias", (D,), QT.F32),
        ("v.patch_embd.weight", (PATCH, PATCH, 3, D), QT.F32),
        ("v.position_embd.weight", (D, patches), QT.F32),
    ]
    for i in range(N_LAYER):
        b = f"v.blk.{i}."
        for proj in ("attn_k", "attn_v", "attn_q", "attn_out"):
            out += [(b + proj + ".bias", (D,), QT.F32), (b + proj + ".weight", (D, D), QT.F16)]
        out += [
            (b + "ln1.bias", (D,), QT.F32),
            (b + "ln1.weight", (D,), QT.F32),
            (b + "ln2.bias", (D,), QT.F32),
            (b + "ln2.weight", (D,), QT.F32),
            (b + "ffn_up.bias", (F,), QT.F32),
            (b + "ffn_up.weight", (D, F), QT.F16),
            (b + "ffn_down.bias", (D,), QT.F32),
            (b + "ffn_down.weight", (F, D), QT.F16),
        ]
    out += [("v.post_ln.bias", (D,), QT.F32), ("v.post_ln.weight", (D,), QT.F32)]
    return out


def nbytes(t: QT, ne: tuple[int, ...]) -> int:
    bs, ts = gguf.GGML_QUANT_SIZES[t]
    n = ne[0] // bs * ts
    for d in ne[1:]:
        n *= d
    return n


def write(path: str, text_hidden: int) -> dict:
    w = gguf.GGUFWriter(path, "clip")
    w.add_type("mmproj")
    w.add_name("Gemma 3 SigLIP (shape-only, zero weights)")
    w.add_file_type(1)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_uint32("clip.vision.projection_dim", text_hidden)
    w.add_uint32("clip.vision.image_size", IMAGE)
    w.add_uint32("clip.vision.patch_size", PATCH)
    w.add_uint32("clip.vision.embedding_length", D)
    w.add_uint32("clip.vision.feed_forward_length", F)
    w.add_uint32("clip.vision.block_count", N_LAYER)
    w.add_uint32("clip.vision.attention.head_count", HEADS)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_string("clip.projector_type", "gemma3")
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_bool("clip.use_gelu", True)
    tensors = tensor_list(text_hidden)
    for name, ne, t in tensors:
        w.add_tensor_info(
            name, tuple(reversed(ne)), np.dtype(np.float32), nbytes(t, ne), raw_dtype=t
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    start = fout.tell()
    total = start + sum((nbytes(t, ne) + ALIGN - 1) // ALIGN * ALIGN for _, ne, t in tensors)
    fout.truncate(total)
    fout.close()
    w.fout = None
    w.state = gguf.gguf_writer.WriterState.WEIGHTS
    return {
        "file": os.path.basename(path),
        "projection_dim": text_hidden,
        "file_size": total,
        "data_offset": start,
        "n_tensors": len(tensors),
        "tensor_bytes": sum(nbytes(t, ne) for _, ne, t in tensors),
        "tensors": [[n, list(ne), t.name] for n, ne, t in tensors],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--widths", default="2560,3840,5376")
    ap.add_argument("--manifest", default=None)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    files = []
    for wd in (int(x) for x in a.widths.split(",")):
        files.append(write(os.path.join(a.out, f"mmproj-{WIDTHS.get(wd, wd)}-f16.gguf"), wd))
        print(files[-1]["file"], files[-1]["tensor_bytes"], files[-1]["n_tensors"])
    if a.manifest:
        with open(a.manifest, "w") as f:
            json.dump({"generator": "benchmarks/gpu/make_mmproj.py", "files": files}, f, indent=1)


if __name__ == "__main__":
    main()
