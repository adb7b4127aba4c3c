"""QAT int4 test checkpoints (AWQ and compressed-tensors) built from the real Gemma 3 270M weights.

Nobody may download Google's int4 checkpoints here, so the fixtures are made the way the published
ones were: every linear weight of the real 270M (``_assets_ckpt.hf_checkpoint_270m``) is put on the
symmetric int4 grid — one scale per 32 inputs, ``s = bf16(max|w| / 7)``, ``q = clip(round(w / s),
-7, 7)`` as Google's QAT grid (convert_flax.py asserts codes in [-8, 7]; QAT uses [-7, 7]) — and
then packed, independently of the exporter's reader:

* AWQ "gemm", as gau-nernst/gemma3-int4 ``convert_flax.py`` (``convert_awq``) writes it:
  ``qweight`` int32 ``(in, out/8)`` with code ``q + 8`` of column ``8j + k`` in nibble slot
  ``[0, 4, 1, 5, 2, 6, 3, 7][k]`` (high to low bits the columns ``7 5 3 1 6 4 2 0``),
  ``qzeros`` ``0x88888888`` words ``(in/32, out/8)``, ``scales`` bf16 ``(in/32, out)``;
* compressed-tensors ``pack-quantized`` (``pack_to_int32``): ``weight_packed`` int32
  ``(out, in/8)``, code ``q + 8`` of column ``8j + i`` in bits ``4i..``, ``weight_scale`` bf16
  ``(out, in/32)``, ``weight_shape`` int64 ``[out, in]``.

Embedding and norms stay bf16 (the embedding is exactly the 270M's). ``grid()`` returns the
integers and scales themselves, which the tests compare the exported Q4_0 blocks against. Vision
forms (Gemma3ForConditionalGeneration, release layout) add the small SigLIP tower of
``_assets_vision`` in bf16, unquantized as in the published checkpoints.
"""

from __future__ import annotations

import functools
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 1
FORMATS = ("awq", "ct")
LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
AWQ_SLOT_OF_COLUMN = (0, 4, 1, 5, 2, 6, 3, 7)  # column k of a group of 8 -> nibble slot
AWQ_CONFIG = {
    "quant_method": "awq",
    "bits": 4,
    "group_size": 32,
    "zero_point": True,
    "version": "gemm",
    "modules_to_not_convert": ["vision_tower", "multi_modal_projector"],
}
CT_CONFIG = {
    "quant_method": "compressed-tensors",
    "format": "pack-quantized",
    "quantization_status": "compressed",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "format": "pack-quantized",
            "weights": {
                "num_bits": 4,
                "type": "int",
                "symmetric": True,
                "strategy": "group",
                "group_size": 32,
                "actorder": None,
                "dynamic": False,
                "observer": "minmax",
            },
            "input_activations": None,
            "output_activations": None,
        }
    },
    "ignore": ["lm_head", "re:.*vision_tower.*", "re:.*multi_modal_projector.*"],
}


def bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 -> nearest-even bf16, returned as float32."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    bits = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


def to_grid(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 (out, in) in [-7, 7], s float32 (out, in/32) bf16 values, fp16 normal or 0)."""
    out, inp = w.shape
    g = w.astype(np.float32).reshape(out, inp // 32, 32)
    s = bf16_round(np.abs(g).max(axis=-1) / 7.0)
    s = np.where((s > 0) & (s < 2.0**-14), np.float32(2.0**-14), s)
    safe = np.where(s == 0, np.float32(1), s)
    q = np.clip(np.rint(g / safe[..., None]), -7, 7).astype(np.int8)
    return q.reshape(out, inp), s


def dequantize(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``q * s`` as float32 (exact)."""
    out, inp = q.shape
    return (q.reshape(out, inp // 32, 32).astype(np.float32) * s[..., None]).reshape(out, inp)


def pack_awq(q: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """qweight / qzeros / scales for one (out, in) weight, as convert_flax.py's convert_awq."""
    out, inp = q.shape
    codes = (q.T.astype(np.int64) + 8).astype(np.uint32).reshape(inp, out // 8, 8)  # (in, out)
    word = np.zeros((inp, out // 8), dtype=np.uint32)
    for col in range(8):
        word |= codes[..., col] << np.uint32(4 * AWQ_SLOT_OF_COLUMN[col])
    return {
        "qweight": word.view(np.int32),
        "qzeros": np.full((inp // 32, out // 8), 0x88888888, dtype=np.uint32).view(np.int32),
        "scales": np.ascontiguousarray(s.T),  # written as bf16
    }


def pack_ct(q: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """weight_packed / weight_scale / weight_shape, as compressed-tensors' pack_to_int32."""
    out, inp = q.shape
    codes = (q.astype(np.int64) + 8).astype(np.uint32).reshape(out, inp // 8, 8)
    word = np.zeros((out, inp // 8), dtype=np.uint32)
    for i in range(8):
        word |= codes[..., i] << np.uint32(4 * i)
    return {
        "weight_packed": word.view(np.int32),
        "weight_scale": s,
        "weight_shape": np.array([out, inp], dtype=np.int64),
    }


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """A safetensors file from ``name -> (dtype, array)``; BF16 arrays are float32 rounded here."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        if dtype == "BF16" and arr.dtype == np.uint16:  # already bf16 bits
            raw = np.ascontiguousarray(arr, dtype="<u2").tobytes()
        elif dtype == "BF16":
            raw = (bf16_round(arr).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            np_dtype = {"F16": "<f2", "F32": "<f4", "I32": "<i4", "I64": "<i8", "I8": "i1"}[dtype]
            raw = np.ascontiguousarray(arr, dtype=np_dtype).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)))
        fh.write(head)
        for blob in blobs:
            fh.write(blob)


def is_linear(name: str) -> bool:
    return name.endswith(".weight") and any(f".{part}." in name for part in LINEARS)


def quantize_tensors(
    floats: dict[str, np.ndarray], fmt: str, *, scale_dtype: str = "BF16"
) -> dict[str, tuple[str, np.ndarray]]:
    """Every linear weight on the int4 grid and packed as ``fmt``; the rest stays as given."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for name, w in floats.items():
        if not is_linear(name) or "vision_tower" in name:
            out[name] = ("BF16" if scale_dtype == "BF16" or w.dtype == np.uint16 else "F32", w)
            continue
        q, s = to_grid(w)
        stem = name.removesuffix(".weight")
        packed = pack_awq(q, s) if fmt == "awq" else pack_ct(q, s)
        for part, arr in packed.items():
            kind = {np.dtype(np.int32): "I32", np.dtype(np.int64): "I64"}.get(
                arr.dtype, scale_dtype
            )
            out[f"{stem}.{part}"] = (kind, arr)
    return out


@functools.cache
def _base_floats() -> dict[str, np.ndarray]:
    """The real 270M bf16 checkpoint as float32 arrays, ``model.*`` names."""
    import _assets_ckpt
    import torch
    from safetensors.torch import load_file

    base = _assets_ckpt.hf_checkpoint_270m()
    return {
        k: v.to(torch.float32).numpy()
        for k, v in load_file(str(base / "model.safetensors")).items()
    }


def grid() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``model.*`` linear name -> (q int8 (out, in), s float32 (out, in/32)) of the fixtures."""
    return {n: to_grid(w) for n, w in _base_floats().items() if is_linear(n)}


def int4_checkpoint(fmt: str = "awq", *, vision: bool = False) -> Path:
    """The cached int4 fixture: ``fmt`` ``"awq"`` or ``"ct"``, text (Gemma3ForCausalLM) or vision
    (Gemma3ForConditionalGeneration, release key layout ``language_model.model.*``)."""
    import _assets_ckpt
    import _assets_vision

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}")
    key = f"g3-270m-int4-{fmt}-{'vision' if vision else 'text'}-v{VERSION}-f{_assets_ckpt.FIXTURE_VERSION}"
    folder_name = f"gemma-3-270m-it-int4-{fmt}"
    base = _assets_ckpt.hf_checkpoint_270m()

    def build(folder: Path) -> None:
        floats = dict(_base_floats())
        if vision:
            floats = {"language_model." + k: v for k, v in floats.items()}
            floats.update(_assets_vision.vision_tensors())
        write_safetensors(folder / "model.safetensors", quantize_tensors(floats, fmt))
        text = {**_assets_ckpt.TEXT_CONFIG_270M}
        qc = AWQ_CONFIG if fmt == "awq" else CT_CONFIG
        if vision:
            config: dict[str, Any] = {
                "architectures": ["Gemma3ForConditionalGeneration"],
                "model_type": "gemma3",
                "boi_token_index": 255999,
                "eoi_token_index": 256000,
                "eos_token_id": [1, 106],
                "image_token_index": 262144,
                "mm_tokens_per_image": 256,
                "initializer_range": 0.02,
                "tie_word_embeddings": True,
                "torch_dtype": "bfloat16",
                "text_config": text,
                "vision_config": _assets_vision.VISION_CONFIG,
                "quantization_config": qc,
            }
        else:
            config = {"architectures": ["Gemma3ForCausalLM"], **text, "quantization_config": qc}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for f in base.iterdir():
            if f.name.startswith("tokenizer") or f.name in (
                "special_tokens_map.json",
                "generation_config.json",
            ):
                shutil.copyfile(f, folder / f.name)
        if vision:
            (folder / "preprocessor_config.json").write_text(
                json.dumps(
                    {
                        "image_processor_type": "Gemma3ImageProcessor",
                        "image_mean": [0.5, 0.5, 0.5],
                        "image_std": [0.5, 0.5, 0.5],
                        "image_seq_length": 256,
                        "size": {"height": 896, "width": 896},
                    }
                )
            )

    return _assets_ckpt._cached(key, folder_name, build)


def dequantized_checkpoint(fmt: str = "awq") -> Path:
    """The text fixture's exact values as a float checkpoint (the naive route's input, and the F16
    comparison's source): linears ``q * s`` in F16 (exact: at most 12 significant bits, all in
    fp16's normal range), embedding and norms in their own bf16."""
    import _assets_ckpt

    src = int4_checkpoint(fmt)
    key = f"g3-270m-int4-{fmt}-dequantized-f16-v{VERSION}-f{_assets_ckpt.FIXTURE_VERSION}"

    def build(folder: Path) -> None:
        floats = dict(_base_floats())
        g = grid()
        tensors: dict[str, tuple[str, np.ndarray]] = {}
        for n, w in floats.items():
            if n in g:
                exact = dequantize(*g[n])
                assert np.array_equal(exact.astype(np.float16).astype(np.float32), exact), n
                tensors[n] = ("F16", exact)
            else:
                tensors[n] = ("BF16", w)
        write_safetensors(folder / "model.safetensors", tensors)
        config = json.loads((src / "config.json").read_text())
        config.pop("quantization_config")
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for f in src.iterdir():
            if f.name != "config.json" and not f.name.endswith(".safetensors"):
                shutil.copyfile(f, folder / f.name)

    return _assets_ckpt._cached(key, "gemma-3-270m-it-int4-dequantized", build)


def int4_checkpoint_4b_shaped() -> Path:
    """``_assets_ckpt.hf_checkpoint_4b_shaped()`` (4B widths, 2 layers, 262208-row embedding) with
    its linears on the int4 grid, AWQ-packed: the benchmark's memory-vs-size check."""
    import _assets_ckpt
    import torch
    from safetensors.torch import load_file

    src = _assets_ckpt.hf_checkpoint_4b_shaped()
    key = f"g3-4b-shaped-int4-awq-v{VERSION}-f{_assets_ckpt.FIXTURE_VERSION}"

    def build(folder: Path) -> None:
        tensors: dict[str, tuple[str, np.ndarray]] = {}
        for shard in sorted(src.glob("*.safetensors")):
            for name, t in load_file(str(shard)).items():
                if is_linear(name):
                    tensors.update(quantize_tensors({name: t.float().numpy()}, "awq"))
                else:  # bf16 bits as they are
                    tensors[name] = ("BF16", t.view(torch.int16).numpy().view(np.uint16))
        write_safetensors(folder / "model.safetensors", tensors)
        config = json.loads((src / "config.json").read_text())
        config["quantization_config"] = AWQ_CONFIG
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for f in src.iterdir():
            if not f.name.endswith(".safetensors") and f.name not in (
                "config.json",
                "model.safetensors.index.json",
            ):
                shutil.copyfile(f, folder / f.name)

    return _assets_ckpt._cached(key, "gemma-3-4b-it-int4-awq", build)
