"""A 27B-shaped checkpoint for the export benchmark: full Gemma 3 27B widths, a few layers, sharded.

Built like ``tests/support/_assets_ckpt.hf_checkpoint_4b_shaped`` (random small-magnitude bf16 weights with a
fixed seed, ``language_model.model.*`` keys, the 262208-row embedding, two shards plus the HF index,
the tests' tokenizer files) with Google's ``google/gemma-3-27b-it`` config.json, whose text_config
names the 27B's heads (32 query, 16 KV, head_dim 128) and ``query_pre_attn_scalar`` 168;
``num_hidden_layers`` is set to ``layers``. Cached beside the tests' checkpoints (3.65 GB for one
layer, +0.83 GB per further layer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _harness  # noqa: F401  (puts tests/ on sys.path)

# isort: split
import _assets_ckpt

CONFIG_27B: dict[str, Any] = {
    **json.loads(json.dumps(_assets_ckpt.CONFIG_4B)),
    "text_config": {
        "head_dim": 128,
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "model_type": "gemma3_text",
        "num_attention_heads": 32,
        "num_hidden_layers": 62,
        "num_key_value_heads": 16,
        "query_pre_attn_scalar": 168,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
}


def hf_checkpoint_27b_shaped(*, layers: int = 1) -> Path:
    """The 27B-shaped checkpoint with ``layers`` text layers (built once, then cached)."""
    if layers < 1:
        raise ValueError("layers must be >= 1")
    key = f"g3-27b-shaped-l{layers}-v{_assets_ckpt.FIXTURE_VERSION}"
    hidden, ffn, heads, kv, head_dim, vocab = 5376, 21504, 32, 16, 128, 262208

    def build(folder: Path) -> None:
        import torch

        gen = torch.Generator().manual_seed(27)
        p = "language_model.model."

        def rand(*shape: int, scale: float = 0.02) -> Any:
            out = torch.empty(*shape, dtype=torch.bfloat16)
            step = max(1, (1 << 26) // max(1, shape[-1]))  # ~256 MB of float32 at a time
            for s in range(0, shape[0], step):
                chunk = torch.randn(min(step, shape[0] - s), *shape[1:], generator=gen)
                out[s : s + step] = (chunk * scale).to(torch.bfloat16)
            return out

        tensors = _assets_ckpt.text_tensors(
            rand, p, layers, hidden, ffn, heads, kv, head_dim, vocab
        )
        _assets_ckpt._save_shards(folder, tensors, 2)
        config = json.loads(json.dumps(CONFIG_27B))
        config["text_config"]["num_hidden_layers"] = layers
        _assets_ckpt._write_json(folder / "config.json", config)
        _assets_ckpt._write_json(
            folder / "generation_config.json",
            {**_assets_ckpt.GENERATION_CONFIG, "transformers_version": "4.50.0.dev0"},
        )
        _assets_ckpt._write_tokenizer(folder)

    return _assets_ckpt._cached(key, "gemma-3-27b-it", build)


if __name__ == "__main__":
    import sys

    print(hf_checkpoint_27b_shaped(layers=int(sys.argv[1]) if len(sys.argv) > 1 else 1))
