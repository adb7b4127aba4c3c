"""A tiny Gemma 3 checkpoint (2 layers, width 64, the real 262,144-token vocab) written as
safetensors with the real tokenizer files beside it: the input of the export refusal and hostile
suites."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

TINY_CONFIG = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "vocab_size": 262144,
    "max_position_embeddings": 2048,
    "sliding_window": 512,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
    "query_pre_attn_scalar": 32,
    "torch_dtype": "float32",
}


def tiny_tensors(vocab: int = 262144) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = {
        "model.embed_tokens.weight": rng.standard_normal((vocab, 64), dtype=np.float32) * 0.02,
        "model.norm.weight": np.zeros(64, np.float32),
    }
    for i in range(2):
        p = f"model.layers.{i}."
        for name, shape in {
            "self_attn.q_proj": (64, 64),
            "self_attn.k_proj": (32, 64),
            "self_attn.v_proj": (32, 64),
            "self_attn.o_proj": (64, 64),
            "mlp.gate_proj": (128, 64),
            "mlp.up_proj": (128, 64),
            "mlp.down_proj": (64, 128),
        }.items():
            t[p + name + ".weight"] = rng.standard_normal(shape, dtype=np.float32) * 0.05
        for name, n in {
            "input_layernorm": 64,
            "post_attention_layernorm": 64,
            "pre_feedforward_layernorm": 64,
            "post_feedforward_layernorm": 64,
            "self_attn.q_norm": 32,
            "self_attn.k_norm": 32,
        }.items():
            t[p + name + ".weight"] = rng.standard_normal(n, dtype=np.float32) * 0.1
    return t


def make_ckpt(
    folder: Path,
    tokenizer_dir: Path | None = None,
    *,
    config: dict | None = None,
    tensors: dict[str, np.ndarray] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or TINY_CONFIG))
    save_file(tensors if tensors is not None else tiny_tensors(), str(folder / "model.safetensors"))
    if tokenizer_dir is not None:
        for name in (
            "tokenizer.model",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ):
            if (tokenizer_dir / name).is_file():
                shutil.copy(tokenizer_dir / name, folder / name)
    return folder
