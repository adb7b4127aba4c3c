"""The family table is the one source of truth; check it against real files and known facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemma3_pack import UsageError, get_variant
from gemma3_pack._family import GGUF_SAMPLING, SAMPLING, SIZES, TOKENS, VARIANTS, size_for_layers


@pytest.fixture(scope="module")
def reader_270m(gguf_270m: Path):
    import gguf

    return gguf.GGUFReader(gguf_270m)


def test_270m_row_matches_the_real_gguf(reader_270m) -> None:
    reader = reader_270m

    def val(key: str):
        return reader.fields[key].contents()

    s = SIZES["270m"]
    assert val("gemma3.block_count") == s.num_layers == 18
    assert val("gemma3.embedding_length") == s.hidden_size == 640
    assert val("gemma3.feed_forward_length") == s.intermediate_size == 2048
    assert val("gemma3.attention.head_count") == s.num_heads == 4
    assert val("gemma3.attention.head_count_kv") == s.num_kv_heads == 1
    assert val("gemma3.attention.key_length") == s.head_dim == 256
    assert val("gemma3.context_length") == s.context_length == 32768
    assert val("gemma3.attention.sliding_window") == s.sliding_window == 512
    assert val("gemma3.rope.freq_base") == s.rope_theta
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == s.vocab_size == 262144
    assert val("general.size_label") == s.params


def test_token_ids_match_the_real_vocab(reader_270m) -> None:
    tokens = reader_270m.fields["tokenizer.ggml.tokens"]
    for text, idx in TOKENS.items():
        assert bytes(tokens.parts[tokens.data[idx]]).decode() == text


def test_token_ids_match_googles_tokenizer_config(npm_tokenizer: Path) -> None:
    config = json.loads((npm_tokenizer / "tokenizer_config.json").read_text())
    decoder = {int(k): v["content"] for k, v in config["added_tokens_decoder"].items()}
    for text, idx in TOKENS.items():
        assert decoder[idx] == text


@pytest.mark.parametrize(
    (
        "size",
        "layers",
        "hidden",
        "heads",
        "kv",
        "head_dim",
        "ffn",
        "vocab",
        "ctx",
        "window",
        "scaling",
    ),
    [
        ("270m", 18, 640, 4, 1, 256, 2048, 262144, 32768, 512, None),
        ("1b", 26, 1152, 4, 1, 256, 6912, 262144, 32768, 512, None),
        ("4b", 34, 2560, 8, 4, 256, 10240, 262208, 131072, 1024, 8.0),
        ("12b", 48, 3840, 16, 8, 256, 15360, 262208, 131072, 1024, 8.0),
        ("27b", 62, 5376, 32, 16, 128, 21504, 262208, 131072, 1024, 8.0),
    ],
)
def test_architecture_table(
    size, layers, hidden, heads, kv, head_dim, ffn, vocab, ctx, window, scaling
) -> None:
    s = SIZES[size]
    assert (
        s.num_layers,
        s.hidden_size,
        s.num_heads,
        s.num_kv_heads,
        s.head_dim,
        s.intermediate_size,
        s.vocab_size,
        s.context_length,
        s.sliding_window,
        s.rope_scaling_factor,
    ) == (layers, hidden, heads, kv, head_dim, ffn, vocab, ctx, window, scaling)
    assert s.multimodal == (size in {"4b", "12b", "27b"})
    assert size_for_layers(layers) is s


def test_vision_tower_facts() -> None:
    v = SIZES["4b"].vision
    assert v is not None
    assert (v.image_size, v.patch_size, v.tokens_per_image) == (896, 14, 256)
    # 64x64 patches pooled 4x4 -> 16x16 = 256 tokens per image
    assert ((v.image_size // v.patch_size) // 4) ** 2 == v.tokens_per_image


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gemma3-4b-it", "gemma3-4b-it"),
        ("gemma3:4b", "gemma3-4b-it"),
        ("GEMMA3:27B-IT-QAT", "gemma3-27b-it-qat"),
        ("google/gemma-3-12b-it-qat-q4_0-unquantized", "gemma3-12b-it-qat"),
        ("google/gemma-3-270m", "gemma3-270m-pt"),
        ("1b-it", "gemma3-1b-it"),
        ("gemma3", "gemma3-4b-it"),
    ],
)
def test_get_variant(query: str, expected: str) -> None:
    assert get_variant(query).name == expected


def test_unknown_variant_lists_choices() -> None:
    with pytest.raises(UsageError, match="gemma3-4b-it"):
        get_variant("gemma3:9b")


def test_quant_policy() -> None:
    assert VARIANTS["gemma3-270m-it"].default_quants[0] == "Q8_0"
    assert VARIANTS["gemma3-4b-it"].quant_by_target == {
        "desktop": "Q4_K_M",
        "android": "Q4_0",
        "ios": "Q4_K_M",
    }
    assert all(v.default_quants == ("Q4_0",) for v in VARIANTS.values() if v.qat)
    assert VARIANTS["gemma3-4b-it-qat"].ollama_tag == "gemma3:4b-it-qat"
    assert VARIANTS["gemma3-4b-it-qat"].from_ref == "gemma3:4b-it-qat"
    assert (
        VARIANTS["gemma3-270m-it-qat"].from_ref == "hf.co/google/gemma-3-270m-it-qat-q4_0-gguf:Q4_0"
    )


def test_sampling_settings_agree_between_modelfile_and_gguf_names() -> None:
    assert SAMPLING == {
        "temperature": 1.0,
        "top_k": 64,
        "top_p": 0.95,
        "min_p": 0.0,
        "repeat_penalty": 1.0,
    }
    by_gguf = {k.rsplit(".", 1)[1]: v for k, (v, _) in GGUF_SAMPLING.items()}
    assert by_gguf == {"temp": 1.0, "top_k": 64, "top_p": 0.95, "min_p": 0.0, "penalty_repeat": 1.0}


def test_variants_command_json(cli) -> None:
    result = cli("variants", "--json")
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["variant"] for r in rows] == list(VARIANTS)
    four = next(r for r in rows if r["variant"] == "gemma3-4b-it")
    assert (
        four["vision"] is True and four["context"] == 131072 and four["ollama_tag"] == "gemma3:4b"
    )
