#!/usr/bin/env python3
"""Write shape-faithful, zero-filled, SPARSE Gemma 3 GGUF files (text model only).

llama.cpp's memory allocations depend only on the GGUF header and tensor table, not on the
weight values, so each file is: the real gemma3 keys + the real Gemma 3 tokenizer (262144
tokens, from gemma3_tokenizer.npz) + the tensor infos that llama.cpp's converter and
llama-quantize would produce, followed by a hole up to the full size (ftruncate), so a 16 GB
27B file takes ~7 MB of disk and a fraction of a second to write.

Keys/tensor names follow conversion/gemma.py (Gemma3Model) and gguf-py of llama.cpp
0c1e57098 (llama-cpp-python 0.3.36 vendor/). token_embd has 262144 rows: the converter trims
the 262208-row HF embedding to the tokenizer's 262144 tokens; output is tied (no output.weight).
Type mix follows src/llama-quant.cpp (llama_tensor_get_type, no imatrix):
  q4_0   : token_embd Q6_K (tied output), every other 2-D weight Q4_0, norms F32 (ftype 2)
  q4_k_m : token_embd Q6_K, attn_v/ffn_down Q6_K on use_more_bits() layers else Q4_K,
           other 2-D weights Q4_K, norms F32 (ftype 15); block-size fallbacks as in llama.cpp
  bf16   : every 2-D weight BF16, norms F32 (ftype 32) - input for llama-quantize --dry-run checks

Needs only numpy and the vendored gguf-py (gpu/gguf-py). Usage:
  python3 gpu/make_ggufs.py --out DIR [--models 4b,12b,27b] [--ftypes q4_0,q4_k_m] [--manifest FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.modules.setdefault(
    "yaml", types.ModuleType("yaml")
)  # gguf-py imports yaml only for model cards
sys.path.insert(0, os.path.join(HERE, "vendor", "gguf-py"))
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402

# Real text-model shapes (Google's configs). vocab is the GGUF vocab (tokenizer size).
SHAPES = {
    "270m": dict(
        n_layer=18,
        n_embd=640,
        n_ff=2048,
        n_head=4,
        n_head_kv=1,
        head_dim=256,
        swa=512,
        n_ctx_train=32768,
        rope_linear=None,
        size_label="270M",
    ),
    "1b": dict(
        n_layer=26,
        n_embd=1152,
        n_ff=6912,
        n_head=4,
        n_head_kv=1,
        head_dim=256,
        swa=512,
        n_ctx_train=32768,
        rope_linear=None,
        size_label="1B",
    ),
    "4b": dict(
        n_layer=34,
        n_embd=2560,
        n_ff=10240,
        n_head=8,
        n_head_kv=4,
        head_dim=256,
        swa=1024,
        n_ctx_train=131072,
        rope_linear=8.0,
        size_label="4B",
    ),
    "12b": dict(
        n_layer=48,
        n_embd=3840,
        n_ff=15360,
        n_head=16,
        n_head_kv=8,
        head_dim=256,
        swa=1024,
        n_ctx_train=131072,
        rope_linear=8.0,
        size_label="12B",
    ),
    "27b": dict(
        n_layer=62,
        n_embd=5376,
        n_ff=21504,
        n_head=32,
        n_head_kv=16,
        head_dim=128,
        swa=1024,
        n_ctx_train=131072,
        rope_linear=8.0,
        size_label="27B",
    ),
}
N_VOCAB = 262144
RMS_EPS = 1e-6
ROPE_BASE = 1_000_000.0
ROPE_BASE_SWA = 10_000.0
FTYPES = {
    "q4_0": (2, QT.Q4_0),
    "q4_k_m": (15, QT.Q4_K),
    "q8_0": (7, QT.Q8_0),
    "bf16": (32, QT.BF16),
}
ALIGN = 32


def use_more_bits(
    i: int, n: int
) -> bool:  # llama-quant.cpp, C integer semantics (i >= n/8 when the % is reached)
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def fallback(t: QT, ncols: int) -> QT:  # tensor_type_fallback
    bs = gguf.GGML_QUANT_SIZES[t][0]
    if ncols % bs == 0:
        return t
    t2 = {QT.Q4_K: QT.Q5_0, QT.Q5_K: QT.Q5_1, QT.Q6_K: QT.Q8_0}.get(t, t)
    if ncols % gguf.GGML_QUANT_SIZES[t2][0] != 0:
        t2 = QT.F16
    return t2


def tensor_type(name: str, ne: tuple[int, ...], ftype: str, i_layer: int, n_layer: int) -> QT:
    if len(ne) < 2 or name.endswith("_norm.weight"):
        return QT.F32
    default = FTYPES[ftype][1]
    if ftype == "bf16":
        return QT.BF16
    ncols = ne[0]
    t = default
    if name == "token_embd.weight":  # tied embeddings: quantized like the output tensor
        if ncols % gguf.GGML_QUANT_SIZES[default][0] != 0:
            t = QT.Q8_0
        elif default != QT.Q8_0:
            t = QT.Q6_K
    elif (
        ftype == "q4_k_m"
        and (name.endswith("attn_v.weight") or name.endswith("ffn_down.weight"))
        and use_more_bits(i_layer, n_layer)
    ):
        t = QT.Q6_K
    return fallback(t, ncols)


def tensor_list(s: dict) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, ne (ggml order: ne0 = row length), layer) in the converter's order (as in the real 270M GGUF)."""
    E, F, H, HKV, D = s["n_embd"], s["n_ff"], s["n_head"], s["n_head_kv"], s["head_dim"]
    out = [("output_norm.weight", (E,), -1), ("token_embd.weight", (E, N_VOCAB), -1)]
    for i in range(s["n_layer"]):
        blk = [
            ("attn_k.weight", (E, HKV * D)),
            ("attn_k_norm.weight", (D,)),
            ("attn_norm.weight", (E,)),
            ("attn_output.weight", (H * D, E)),
            ("attn_q.weight", (E, H * D)),
            ("attn_q_norm.weight", (D,)),
            ("attn_v.weight", (E, HKV * D)),
            ("ffn_down.weight", (F, E)),
            ("ffn_gate.weight", (E, F)),
            ("ffn_norm.weight", (E,)),
            ("ffn_up.weight", (E, F)),
            ("post_attention_norm.weight", (E,)),
            ("post_ffw_norm.weight", (E,)),
        ]
        out += [(f"blk.{i}.{n}", ne, i) for n, ne in blk]
    return out


def nbytes(t: QT, ne: tuple[int, ...]) -> int:
    bs, ts = gguf.GGML_QUANT_SIZES[t]
    assert ne[0] % bs == 0, (t, ne)
    n = ne[0] // bs * ts
    for d in ne[1:]:
        n *= d
    return n


def pad(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


_TOK = None
_PACK_CACHE: dict = {}
_orig_pack_val = gguf.GGUFWriter._pack_val


def _fast_pack_val(self, val, vtype, add_vtype, sub_type=None):
    """GGUFWriter._pack_val, but the three 262144-entry tokenizer arrays are packed once with
    numpy (byte-identical to the per-item path) and reused for every file."""
    if (
        vtype == gguf.GGUFValueType.ARRAY
        and isinstance(val, list)
        and len(val) > 4096
        and sub_type is None
    ):
        key = (id(val), add_vtype)
        if key not in _PACK_CACHE:
            ltype = gguf.GGUFValueType.get_type(val[0])
            head = (
                (np.uint32(vtype).tobytes() if add_vtype else b"")
                + np.uint32(ltype).tobytes()
                + np.uint64(len(val)).tobytes()
            )
            if ltype == gguf.GGUFValueType.STRING:
                lens = np.array([len(x) for x in val], dtype="<u8")
                body = b"".join(
                    n + x for n, x in zip((v.tobytes() for v in lens), val, strict=True)
                )
            elif ltype == gguf.GGUFValueType.FLOAT32:
                body = np.asarray(val, dtype="<f4").tobytes()
            elif ltype == gguf.GGUFValueType.INT32:
                body = np.asarray(val, dtype="<i4").tobytes()
            else:
                return _orig_pack_val(self, val, vtype, add_vtype, sub_type)
            _PACK_CACHE[key] = head + body
        return _PACK_CACHE[key]
    return _orig_pack_val(self, val, vtype, add_vtype, sub_type)


gguf.GGUFWriter._pack_val = _fast_pack_val


def load_tokenizer() -> dict:
    global _TOK
    if _TOK is None:
        z = np.load(os.path.join(HERE, "vendor", "gemma3_tokenizer.npz"), allow_pickle=False)
        blob, off = z["tok_blob"].tobytes(), z["tok_offsets"]
        toks = [blob[off[i] : off[i + 1]] for i in range(len(off) - 1)]
        meta = json.loads(z["meta"].tobytes().decode())
        _TOK = dict(
            tokens=toks,
            scores=[float(x) for x in z["scores"]],
            types=[int(x) for x in z["token_type"]],
            meta=meta,
        )
        assert len(toks) == N_VOCAB, len(toks)
    return _TOK


def write_model(path: str, model: str, ftype: str) -> dict:
    s = SHAPES[model]
    tok = load_tokenizer()
    w = gguf.GGUFWriter(path, "gemma3")
    arch = "gemma3"
    w.add_type("model")
    w.add_name(f"Gemma 3 {s['size_label']} (shape-only, zero weights)")
    w.add_basename("gemma-3")
    w.add_size_label(s["size_label"])
    w.add_uint32(f"{arch}.context_length", s["n_ctx_train"])
    w.add_uint32(f"{arch}.embedding_length", s["n_embd"])
    w.add_uint32(f"{arch}.block_count", s["n_layer"])
    w.add_uint32(f"{arch}.feed_forward_length", s["n_ff"])
    w.add_uint32(f"{arch}.attention.head_count", s["n_head"])
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", RMS_EPS)
    w.add_uint32(f"{arch}.attention.key_length", s["head_dim"])
    w.add_uint32(f"{arch}.attention.value_length", s["head_dim"])
    w.add_float32(f"{arch}.rope.freq_base", ROPE_BASE)
    w.add_float32(f"{arch}.rope.freq_base_swa", ROPE_BASE_SWA)
    if s["rope_linear"]:
        w.add_string(f"{arch}.rope.scaling.type", "linear")
        w.add_float32(f"{arch}.rope.scaling.factor", s["rope_linear"])
    w.add_uint32(f"{arch}.attention.sliding_window", s["swa"])
    w.add_uint32(f"{arch}.attention.head_count_kv", s["n_head_kv"])
    sc = tok["meta"]["scalars"]
    w.add_tokenizer_model(sc["tokenizer.ggml.model"]["value"])
    w.add_tokenizer_pre(sc["tokenizer.ggml.pre"]["value"])
    w.add_token_list(tok["tokens"])
    w.add_token_scores(tok["scores"])
    w.add_token_types(tok["types"])
    for k, v in sc.items():
        if k in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
            continue
        {"UINT32": w.add_uint32, "BOOL": w.add_bool, "STRING": w.add_string, "INT32": w.add_int32}[
            v["type"]
        ](k, v["value"])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(FTYPES[ftype][0])

    n_layer = s["n_layer"]
    tensors = []
    for name, ne, il in tensor_list(s):
        t = tensor_type(name, ne, ftype, il, n_layer)
        nb = nbytes(t, ne)
        # GGUFWriter wants the numpy-order shape (reversed ggml ne)
        w.add_tensor_info(name, tuple(reversed(ne)), np.dtype(np.float32), nb, raw_dtype=t)
        tensors.append((name, ne, t, nb, il))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    data_start = fout.tell()
    total = data_start + sum(pad(nb) for _, _, _, nb, _ in tensors)
    fout.truncate(total)  # sparse: the tensor data is a hole that reads as zeros
    fout.close()
    w.fout = None
    w.state = gguf.gguf_writer.WriterState.WEIGHTS

    per_type: dict[str, int] = {}
    per_layer = [0] * n_layer
    for _name, _ne, t, nb, il in tensors:
        per_type[t.name] = per_type.get(t.name, 0) + nb
        if il >= 0:
            per_layer[il] += nb
    return {
        "file": os.path.basename(path),
        "model": model,
        "ftype": ftype,
        "file_type": FTYPES[ftype][0],
        "shape": {**s, "n_vocab": N_VOCAB},
        "file_size": total,
        "data_offset": data_start,
        "n_tensors": len(tensors),
        "tensor_bytes": sum(nb for *_, nb, _ in tensors),
        "bytes_per_type": per_type,
        "token_embd": {"type": tensors[1][2].name, "bytes": tensors[1][3]},
        "output_norm_bytes": tensors[0][3],
        "layer_bytes": per_layer,
        "tensor_types": {
            k: sorted(
                {
                    t.name
                    for n, _, t, _, _ in tensors
                    if (n.split(".", 2)[-1] if n.startswith("blk.") else n) == k
                }
            )
            for k in dict.fromkeys(
                n.split(".", 2)[-1] if n.startswith("blk.") else n for n, *_ in tensors
            )
        },
        "q6k_layers": {
            k: [il for n, _, t, _, il in tensors if n.endswith(k) and t == QT.Q6_K]
            for k in ("attn_v.weight", "ffn_down.weight")
        }
        if ftype == "q4_k_m"
        else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="4b,12b,27b")
    ap.add_argument("--ftypes", default="q4_0")
    ap.add_argument("--manifest", default=None, help="default: OUT/manifest.json")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    man = {
        "generator": "gpu/make_ggufs.py",
        "llama_cpp": "0c1e57098 (llama-cpp-python 0.3.36)",
        "files": [],
    }
    for m in a.models.split(","):
        for ft in a.ftypes.split(","):
            t0 = time.time()
            p = os.path.join(a.out, f"gemma3-{m}-{ft}.gguf")
            info = write_model(p, m, ft)
            st = os.stat(p)
            info["disk_bytes"] = st.st_blocks * 512
            man["files"].append(info)
            print(
                f"{p}: {info['file_size']} bytes ({info['file_size'] / 2**30:.3f} GiB logical, "
                f"{info['disk_bytes'] / 2**20:.1f} MiB on disk), {info['n_tensors']} tensors, {time.time() - t0:.1f}s",
                flush=True,
            )
    mp = a.manifest or os.path.join(a.out, "manifest.json")
    with open(mp, "w") as f:
        json.dump(man, f, indent=1)
    print(f"manifest: {mp}")


if __name__ == "__main__":
    main()
