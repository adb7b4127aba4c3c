"""A Gemma3ForConditionalGeneration test checkpoint, in the three layouts found in the wild.

Real 270M text weights (engineer D1's ``hf_checkpoint_270m``, when that fixture is present) plus a
small random SigLIP tower and projector that keeps Gemma 3's real geometry where runtimes depend
on it: 896-pixel images, 14-pixel patches, 4096 positions pooled 4x4 into 256 tokens per image,
and a projector onto the 640-wide text model. The width is shrunk (128, 4 heads, 2 layers) and the
MLP width (200) is not a multiple of 32, so the Q8_0 → F16 fallback is exercised as on the real
4304-wide tower.

Layouts (tensor-name prefixes):

    release  vision_tower.vision_model.*        multi_modal_projector.*        language_model.model.*
    new      model.vision_tower.vision_model.*  model.multi_modal_projector.*  model.language_model.*
    tf5      vision_tower.*                     multi_modal_projector.*        language_model.model.*

The tower's values are identical in every layout (same seed), so any layout must export to the
same mmproj. Files are bf16 safetensors written without torch; folders are built in a temporary
directory and renamed into the cache, so concurrent builders never see half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
from _assets import CACHE

VISION_CONFIG = {
    "model_type": "siglip_vision_model",
    "hidden_size": 128,
    "intermediate_size": 200,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_channels": 3,
    "image_size": 896,
    "patch_size": 14,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu_pytorch_tanh",
    "attention_dropout": 0.0,
    "vision_use_head": False,
}
TEXT_HIDDEN = 640
SEED = 20250312  # Gemma 3's release date
VERSION = "v1"  # bump when the fixture's contents change

_TOWER = {
    "release": "vision_tower.vision_model.",
    "new": "model.vision_tower.vision_model.",
    "tf5": "vision_tower.",
}
_PROJ = {
    "release": "multi_modal_projector.",
    "new": "model.multi_modal_projector.",
    "tf5": "multi_modal_projector.",
}
LAYOUTS = tuple(_TOWER)

# Gemma 3 270M's text config (google/gemma-3-270m config.json), used when D1's text fixture is not
# available; the vision-only tests do not read text tensors.
_TEXT_CONFIG_270M = {
    "model_type": "gemma3_text",
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_hidden_layers": 18,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "vocab_size": 262144,
    "max_position_embeddings": 32768,
    "sliding_window": 512,
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "rms_norm_eps": 1e-6,
    "query_pre_attn_scalar": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "final_logit_softcapping": None,
    "attn_logit_softcapping": None,
    "layer_types": [
        "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)
    ],
}


def vision_tensors() -> dict[str, np.ndarray]:
    """The random tower and projector in release-layout names, as float32 (bf16-representable)."""
    rng = np.random.default_rng(SEED)
    h, f = VISION_CONFIG["hidden_size"], VISION_CONFIG["intermediate_size"]
    p, c = VISION_CONFIG["patch_size"], VISION_CONFIG["num_channels"]
    n_pos = (VISION_CONFIG["image_size"] // p) ** 2
    t = "vision_tower.vision_model."

    def w(*shape: int, scale: float = 0.02, mean: float = 0.0) -> np.ndarray:
        return (mean + scale * rng.standard_normal(shape)).astype(np.float32)

    out = {
        t + "embeddings.patch_embedding.weight": w(h, c, p, p, scale=0.05),
        t + "embeddings.patch_embedding.bias": w(h),
        t + "embeddings.position_embedding.weight": w(n_pos, h),
        t + "post_layernorm.weight": w(h, mean=1.0, scale=0.05),
        t + "post_layernorm.bias": w(h),
    }
    for i in range(VISION_CONFIG["num_hidden_layers"]):
        layer = f"{t}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[f"{layer}self_attn.{proj}.weight"] = w(h, h)
            out[f"{layer}self_attn.{proj}.bias"] = w(h)
        out[layer + "mlp.fc1.weight"] = w(f, h)
        out[layer + "mlp.fc1.bias"] = w(f)
        out[layer + "mlp.fc2.weight"] = w(h, f)
        out[layer + "mlp.fc2.bias"] = w(h)
        for norm in ("layer_norm1", "layer_norm2"):
            out[f"{layer}{norm}.weight"] = w(h, mean=1.0, scale=0.05)
            out[f"{layer}{norm}.bias"] = w(h)
    out["multi_modal_projector.mm_input_projection_weight"] = w(h, TEXT_HIDDEN, scale=0.05)
    out["multi_modal_projector.mm_soft_emb_norm.weight"] = w(h, scale=0.3)
    return {k: _round_bf16(v) for k, v in out.items()}


def _round_bf16(a: np.ndarray) -> np.ndarray:
    bits = a.astype(np.float32).view(np.uint32)
    bits = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


def rename(name: str, layout: str) -> str:
    """A release-layout vision name in ``layout``'s spelling."""
    if name.startswith("vision_tower.vision_model."):
        return _TOWER[layout] + name[len("vision_tower.vision_model.") :]
    if name.startswith("multi_modal_projector."):
        return _PROJ[layout] + name[len("multi_modal_projector.") :]
    raise ValueError(name)


def write_safetensors_bf16(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A bf16 safetensors file written by hand (numpy has no bf16; torch is not needed).

    Values are rounded to nearest even, as torch's ``.to(torch.bfloat16)`` does."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        raw = (_round_bf16(tensors[name]).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(tensors[name].shape),
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


def _text_source(layout: str) -> Path | None:
    """D1's real-270M text checkpoint in the matching text layout, if that fixture exists."""
    try:
        from _assets_ckpt import hf_checkpoint_270m  # type: ignore[import-not-found]
    except ImportError:
        return None
    # transformers 5.x keeps the release spelling for the text model (language_model.model.*).
    return Path(hf_checkpoint_270m(layout="release" if layout == "tf5" else layout))


def _build(out: Path, layout: str, text: Path | None) -> None:
    vision = {rename(k, layout): v for k, v in vision_tensors().items()}
    write_safetensors_bf16(out / "model-vision.safetensors", vision)
    weight_map = {name: "model-vision.safetensors" for name in vision}
    text_config = dict(_TEXT_CONFIG_270M)
    top: dict[str, object] = {}
    if text is not None:
        src_cfg = json.loads((text / "config.json").read_text())
        text_config.update(src_cfg.get("text_config", src_cfg))
        if "text_config" in src_cfg:  # keep eos_token_id, tie_word_embeddings, ...
            top = {k: v for k, v in src_cfg.items() if k not in ("text_config", "vision_config")}
        text_config["model_type"] = "gemma3_text"
        for src in sorted(text.iterdir()):
            if (
                src.name in ("config.json", "model.safetensors.index.json")
                or src.is_dir()
                or src.name.startswith(".")
            ):
                continue
            dst = out / ("model-text-" + src.name if src.suffix == ".safetensors" else src.name)
            try:
                os.link(src, dst)  # same cache filesystem: no 500 MB copy
            except OSError:
                shutil.copy2(src, dst)
            if src.suffix == ".safetensors":
                with src.open("rb") as fh:
                    (size,) = struct.unpack("<Q", fh.read(8))
                with src.open("rb") as fh:
                    fh.seek(8)
                    keys = [k for k in json.loads(fh.read(size)) if k != "__metadata__"]
                weight_map.update(dict.fromkeys(keys, dst.name))
    for drop in ("architectures", "torch_dtype", "dtype", "transformers_version"):
        text_config.pop(drop, None)
    config = {
        **top,
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "boi_token_index": 255999,
        "eoi_token_index": 256000,
        "image_token_index": 262144,
        "mm_tokens_per_image": 256,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "text_config": text_config,
        "vision_config": VISION_CONFIG,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Gemma3ImageProcessor",
                "processor_class": "Gemma3Processor",
                "do_normalize": True,
                "do_rescale": True,
                "do_resize": True,
                "do_convert_rgb": None,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "image_seq_length": 256,
                "rescale_factor": 0.00392156862745098,
                "resample": 2,
                "size": {"height": 896, "width": 896},
                "do_pan_and_scan": None,
            },
            indent=2,
        )
        + "\n"
    )
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, indent=2)
        + "\n"
    )


def hf_checkpoint_vision(layout: str = "release", *, text: bool = True) -> Path:
    """The cached Gemma3ForConditionalGeneration fixture folder for ``layout``.

    ``text=False`` (or no text fixture available) gives the vision tower and config only, which is
    all the mmproj and the fused writer's vision part read.
    """
    if layout not in _TOWER:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    src = _text_source(layout) if text else None
    name = f"vision-{VERSION}-{layout}-{'text' if src is not None else 'notext'}"
    out = CACHE / "checkpoints" / name
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out.parent))
    try:
        _build(tmp, layout, src)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            if not (out / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
