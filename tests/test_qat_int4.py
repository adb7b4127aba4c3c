"""QAT int4 checkpoints (AWQ, compressed-tensors) -> Q4_0 GGUFs that hold the checkpoint's numbers.

The fixtures (``_assets_int4``) are the real Gemma 3 270M with every linear weight put on the
symmetric int4 grid and packed as the published AWQ converter and compressed-tensors do. The
exports are read back with the tests' own GGUF parser (``_oracle.read_gguf``) and their Q4_0 blocks
decoded here by hand; gguf-py's ``dequantize`` is the second witness. The naive route
(dequantize, then llama.cpp's Q4_0 quantizer) runs on the same fixture for comparison, and
llama.cpp runs every file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _assets_ckpt
import _assets_int4
import _oracle
import numpy as np
import pytest
from conftest import assert_one_line_error

from gemma3_pack import export

pytestmark = pytest.mark.slow

N_LINEARS = 18 * 7  # 18 layers x q, k, v, o, gate, up, down


def decode_q4_0(raw: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(codes - 8 as int16 (out, in), d as float32 (out, in/32)) of Q4_0 rows, decoded by hand.

    ggml's block_q4_0: fp16 d, then 16 bytes; low nibble of byte j is value j, high nibble
    value j + 16."""
    out, inp = shape
    blocks = np.asarray(raw).reshape(-1, 18)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32).reshape(out, inp // 32)
    lo, hi = blocks[:, 2:] & 0x0F, blocks[:, 2:] >> 4
    q = np.concatenate([lo, hi], axis=1).astype(np.int16) - 8
    return q.reshape(out, inp), d


def _by_hf_name(gguf_path: Path, prefix: str = "model.") -> dict[str, tuple[Any, np.ndarray]]:
    names = _assets_ckpt.gguf_to_hf_names(18)
    _, tensors = _oracle.read_gguf(gguf_path)
    return {
        prefix + names[name][len("model.") :]: (qtype, raw)
        for name, _, qtype, raw in tensors
        if name in names
    }


def assert_bit_exact(gguf_path: Path) -> int:
    """Every linear weight's Q4_0 blocks are the fixture's integers and scales; returns the count."""
    import gguf

    grid = _assets_int4.grid()
    found = _by_hf_name(gguf_path)
    n = 0
    for name, (q, s) in grid.items():
        qtype, raw = found[name]
        assert qtype.name == "Q4_0", (name, qtype)
        codes, d = decode_q4_0(raw, q.shape)
        assert np.array_equal(codes, q), name
        assert np.array_equal(d, s), name
        # second witness: gguf-py's own Q4_0 decoder gives exactly q * s
        values = gguf.quants.dequantize(np.asarray(raw), qtype).reshape(q.shape)
        assert np.array_equal(values, _assets_int4.dequantize(q, s)), name
        n += 1
    return n


@pytest.fixture(scope="module")
def awq_export(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("awq") / "out"
    return export(_assets_int4.int4_checkpoint("awq"), output_dir=out, progress=False)


@pytest.fixture(scope="module")
def exact_f32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The int4 values as F32 (exact): the reference llama.cpp runs the others against."""
    out = tmp_path_factory.mktemp("f32") / "out"
    res = export(_assets_int4.int4_checkpoint("awq"), output_dir=out, quants="F32", progress=False)
    return res.models[0].path


def test_awq_export_is_q4_0_bit_exact(awq_export: Any) -> None:
    assert awq_export.chosen_quants == ["Q4_0"]  # the default for an int4 checkpoint
    path = awq_export.models[0].path
    assert assert_bit_exact(path) == N_LINEARS
    keys, tensors = _oracle.read_gguf(path)
    assert keys["general.file_type"] == 2  # LLAMA_FTYPE_MOSTLY_Q4_0
    types = {name: qtype.name for name, _, qtype, _ in tensors}
    assert types["token_embd.weight"] == "F16"  # as in Google's own QAT GGUFs
    assert {t for n, t in types.items() if "norm" in n} == {"F32"}
    assert "output.weight" not in types  # tied, as for every other export
    # the embedding is the checkpoint's bf16 table, cast to F16
    emb = next(raw for name, _, _, raw in tensors if name == "token_embd.weight")
    base = _assets_int4._base_floats()["model.embed_tokens.weight"]
    assert np.array_equal(np.asarray(emb).view("<f2").reshape(base.shape), base.astype(np.float16))


def test_awq_manifest_and_card_name_the_repacked_tensors(awq_export: Any) -> None:
    manifest = json.loads(awq_export.manifest.read_text())
    int4 = manifest["int4"]
    assert int4["format"] == "awq" and int4["embedding_type"] == "F16"
    assert len(int4["repacked_losslessly"]) == N_LINEARS
    assert "blk.0.ffn_down.weight" in int4["repacked_losslessly"]
    card = awq_export.readme.read_text()
    assert "repacked losslessly" in card and "blk.N.ffn_down.weight" in card
    assert any("repacked into Q4_0 bit for bit" in n for n in awq_export.notes)


def test_compressed_tensors_export_equals_the_awq_one(awq_export: Any, tmp_path: Path) -> None:
    res = export(_assets_int4.int4_checkpoint("ct"), output_dir=tmp_path / "o", progress=False)
    assert assert_bit_exact(res.models[0].path) == N_LINEARS
    diff = _oracle.compare_gguf(res.models[0].path, awq_export.models[0].path)
    assert diff["tensors_differ"] == {} and diff["tensor_order_same"]
    assert json.loads(res.manifest.read_text())["int4"]["format"] == "compressed-tensors"


def test_naive_route_moves_qat_weights_off_the_grid(
    awq_export: Any, exact_f32: Path, tmp_path: Path
) -> None:
    """Dequantize -> BF16 -> llama.cpp's Q4_0 (d = max / -8) on the same values: most weights
    leave the grid they were trained on, and llama.cpp's answers drift; the repack does neither."""
    import gguf

    naive = (
        export(
            _assets_int4.dequantized_checkpoint("awq"),
            output_dir=tmp_path / "naive",
            quants="Q4_0",
            progress=False,
        )
        .models[0]
        .path
    )
    grid = _assets_int4.grid()
    found = _by_hf_name(naive)
    moved = total = 0
    for name, (q, s) in grid.items():
        qtype, raw = found[name]
        values = gguf.quants.dequantize(np.asarray(raw), qtype).reshape(q.shape)
        moved += int(np.sum(values != _assets_int4.dequantize(q, s)))
        total += q.size
    print(f"naive route: {moved} of {total} weights ({moved / total:.1%}) moved off the grid")
    assert moved > total // 2

    ref = _oracle.next_token_logits(exact_f32)
    ours = _oracle.next_token_logits(awq_export.models[0].path)
    theirs = _oracle.next_token_logits(naive)
    ours_cos = _oracle.cosine_rows(ours, ref).min()
    theirs_cos = _oracle.cosine_rows(theirs, ref).min()
    print(
        f"top-1 vs exact F32: repacked {_oracle.top1_agreement(ours, ref)}/12 (min cos "
        f"{ours_cos:.6f}), naive {_oracle.top1_agreement(theirs, ref)}/12 (min cos {theirs_cos:.6f})"
    )
    assert _oracle.top1_agreement(ours, ref) == len(_oracle.PROMPTS)
    assert ours_cos > theirs_cos


@pytest.mark.llama
def test_llama_cpp_runs_the_export_as_a_bf16_export_does(
    awq_export: Any, exact_f32: Path, tmp_path: Path
) -> None:
    """Against llama.cpp running the exact values in F32, the repacked Q4_0 picks the same next
    token as a BF16 export of the same values on every prompt. (Its logits differ a little more
    than BF16's: llama.cpp's Q4_0 kernel rounds the activations to Q8_0; the weights are exact.)"""
    bf16 = (
        export(
            _assets_int4.int4_checkpoint("awq"),
            output_dir=tmp_path / "b",
            quants="BF16",
            progress=False,
        )
        .models[0]
        .path
    )
    ref = _oracle.next_token_logits(exact_f32)
    ours = _oracle.next_token_logits(awq_export.models[0].path)
    theirs = _oracle.next_token_logits(bf16)
    assert _oracle.top1_agreement(ours, ref) == _oracle.top1_agreement(theirs, ref)
    assert _oracle.cosine_rows(ours, ref).min() > 0.999


def test_float_types_dequantize_exactly(tmp_path: Path) -> None:
    """-q F16 on the int4 checkpoint is tensor-for-tensor the F16 export of its exact values."""
    res = export(
        _assets_int4.int4_checkpoint("awq"), output_dir=tmp_path / "a", quants="F16", progress=False
    )
    ref = export(
        _assets_int4.dequantized_checkpoint("awq"),
        output_dir=tmp_path / "b",
        quants="F16",
        progress=False,
    )
    diff = _oracle.compare_gguf(res.models[0].path, ref.models[0].path)
    assert diff["tensors_differ"] == {} and diff["tensors_only_a"] == []
    assert any("dequantized exactly" in n and "stored exactly" in n for n in res.notes)
    found = _by_hf_name(res.models[0].path)
    for name, (q, s) in list(_assets_int4.grid().items())[:7]:
        values = np.asarray(found[name][1]).view("<f2").astype(np.float32).reshape(q.shape)
        assert np.array_equal(values, _assets_int4.dequantize(q, s)), name


def test_plan_export_decides_everything_and_writes_nothing(tmp_path: Path) -> None:
    from gemma3_pack._export import plan_export

    out = tmp_path / "o"
    plan = plan_export(
        _assets_int4.int4_checkpoint("ct"), output_dir=out, quants="Q4_0,F16", progress=False
    )
    assert plan.repack == ["Q4_0"] and plan.python_types == ["Q4_0", "F16"]
    assert plan.llama_types == [] and plan.vision is None and plan.embedding_type == "F16"
    types = {t.name: t.qtype for t in plan.tensors["Q4_0"]}
    assert types["token_embd.weight"] == "F16" and types["blk.17.ffn_down.weight"] == "Q4_0"
    assert len(plan.notes) == 2 and "dequantized exactly" in plan.notes[1]
    assert list(out.iterdir()) == []  # only the (empty) folder the disk check needs


@pytest.mark.parametrize("emb", ["Q8_0", "Q4_0"])
def test_embedding_type(emb: str, tmp_path: Path) -> None:
    res = export(
        _assets_int4.int4_checkpoint("awq"),
        output_dir=tmp_path / "o",
        embedding_type=emb.lower(),
        progress=False,
    )
    _, tensors = _oracle.read_gguf(res.models[0].path)
    assert {n: t.name for n, _, t, _ in tensors}["token_embd.weight"] == emb
    assert assert_bit_exact(res.models[0].path) == N_LINEARS


@pytest.mark.llama
def test_q6_k_embedding_keeps_the_repacked_blocks(tmp_path: Path) -> None:
    """--embedding-type Q6_K (a 256-wide model: Q6_K needs rows of 256): llama.cpp re-types
    token_embd only and copies every Q4_0 block of the repack unchanged."""
    rng = np.random.default_rng(3)
    h, f, hd = 256, 512, 128
    floats = {
        "model.embed_tokens.weight": rng.standard_normal((262144, h), dtype=np.float32) * 0.02,
        "model.norm.weight": np.zeros(h, np.float32),
    }
    for part, shape in {
        "self_attn.q_proj": (2 * hd, h),
        "self_attn.k_proj": (hd, h),
        "self_attn.v_proj": (hd, h),
        "self_attn.o_proj": (h, 2 * hd),
        "mlp.gate_proj": (f, h),
        "mlp.up_proj": (f, h),
        "mlp.down_proj": (h, f),
    }.items():
        floats[f"model.layers.0.{part}.weight"] = (
            rng.standard_normal(shape, dtype=np.float32) * 0.05
        )
    for part in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm"):
        floats[f"model.layers.0.{part}.weight"] = np.zeros(h, np.float32)
    floats["model.layers.0.post_feedforward_layernorm.weight"] = np.zeros(h, np.float32)
    floats["model.layers.0.self_attn.q_norm.weight"] = np.zeros(hd, np.float32)
    floats["model.layers.0.self_attn.k_norm.weight"] = np.zeros(hd, np.float32)
    src = tmp_path / "ckpt"
    src.mkdir()
    _assets_int4.write_safetensors(
        src / "model.safetensors", _assets_int4.quantize_tensors(floats, "awq")
    )
    config = {
        **_assets_ckpt.TEXT_CONFIG_270M,
        "architectures": ["Gemma3ForCausalLM"],
        "hidden_size": h,
        "intermediate_size": f,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": hd,
        "layer_types": ["sliding_attention"],
        "quantization_config": _assets_int4.AWQ_CONFIG,
    }
    (src / "config.json").write_text(json.dumps(config))
    for file in _assets_ckpt.hf_checkpoint_270m().iterdir():
        if file.name.startswith("tokenizer") or file.name == "special_tokens_map.json":
            (src / file.name).write_bytes(file.read_bytes())
    q6 = export(src, output_dir=tmp_path / "q6", embedding_type="Q6_K", progress=False)
    f16 = export(src, output_dir=tmp_path / "f16", progress=False)
    keys, ours = _oracle.read_gguf(q6.models[0].path)
    _, ref = _oracle.read_gguf(f16.models[0].path)
    types = {n: t.name for n, _, t, _ in ours}
    assert types["token_embd.weight"] == "Q6_K" and keys["general.file_type"] == 2
    assert sorted(n for n, t in types.items() if t == "Q4_0") == sorted(
        n for n, _, t, _ in ref if t.name == "Q4_0"
    )
    blocks = {n: np.asarray(raw) for n, _, _, raw in ref}
    for name, _, qtype, raw in ours:
        if qtype.name == "Q4_0":
            assert np.array_equal(np.asarray(raw), blocks[name]), name
    assert json.loads(q6.manifest.read_text())["int4"]["embedding_type"] == "Q6_K"
    assert not list((tmp_path / "q6").glob(".*"))  # the F16-embedding intermediate is gone


def test_vision_awq_gets_the_mmproj_and_the_fused_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gemma3ForConditionalGeneration (release layout): the text model is repacked bit for bit, the
    projector is the one the float checkpoint gives, and the fused Ollama file holds the same
    Q4_0 blocks. The vision plan is computed once for all three."""
    import _assets_vision

    from gemma3_pack._export import _fused, _mmproj
    from gemma3_pack._export._mmproj import write_mmproj

    calls: list[int] = []
    real = _mmproj.vision_plan

    def counted(ck: Any) -> Any:
        calls.append(1)
        return real(ck)

    monkeypatch.setattr(_mmproj, "vision_plan", counted)
    monkeypatch.setattr(_fused, "vision_plan", counted)
    res = export(
        _assets_int4.int4_checkpoint("awq", vision=True),
        output_dir=tmp_path / "o",
        ollama_format="fused",
        progress=False,
    )
    assert len(calls) == 1
    monkeypatch.undo()
    model = res.models[0].path
    assert res.mmproj is not None and res.fused is not None
    assert assert_bit_exact(model) == N_LINEARS
    ref = write_mmproj(
        _assets_vision.hf_checkpoint_vision("release", text=False), tmp_path / "ref-mmproj.gguf"
    )
    diff = _oracle.compare_gguf(res.mmproj.path, ref)
    assert diff["tensors_differ"] == {} and diff["tensors_only_a"] == diff["tensors_only_b"] == []
    _, ours = _oracle.read_gguf(model)
    _, fused = _oracle.read_gguf(res.fused.path)
    fused_blocks = {n: raw for n, _, _, raw in fused}
    for name, _, qtype, raw in ours:
        if qtype.name == "Q4_0":
            assert np.array_equal(np.asarray(fused_blocks[name]), np.asarray(raw)), name
    assert "FROM" in res.modelfile.read_text()


# --------------------------------------------------------------------------------------------
# refusals: one line, exit 2, nothing written


def _tiny_floats() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    t = {
        "model.embed_tokens.weight": rng.standard_normal((512, 64), dtype=np.float32) * 0.02,
        "model.norm.weight": np.zeros(64, np.float32),
    }
    for part, shape in {
        "self_attn.q_proj": (64, 64),
        "self_attn.k_proj": (32, 64),
        "self_attn.v_proj": (32, 64),
        "self_attn.o_proj": (64, 64),
        "mlp.gate_proj": (128, 64),
        "mlp.up_proj": (128, 64),
        "mlp.down_proj": (64, 128),
    }.items():
        t[f"model.layers.0.{part}.weight"] = rng.standard_normal(shape, dtype=np.float32) * 0.05
    for part, n in {
        "input_layernorm": 64,
        "post_attention_layernorm": 64,
        "pre_feedforward_layernorm": 64,
        "post_feedforward_layernorm": 64,
        "self_attn.q_norm": 32,
        "self_attn.k_norm": 32,
    }.items():
        t[f"model.layers.0.{part}.weight"] = np.zeros(n, np.float32)
    return t


TINY_CONFIG = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "vocab_size": 512,
    "attn_logit_softcapping": None,
}


def _tiny(folder: Path, fmt: str, *, qc: dict[str, Any] | None = None, edit: Any = None) -> Path:
    folder.mkdir(parents=True)
    tensors = _assets_int4.quantize_tensors(_tiny_floats(), fmt)
    if edit is not None:
        edit(tensors)
    _assets_int4.write_safetensors(folder / "model.safetensors", tensors)
    base = _assets_int4.AWQ_CONFIG if fmt == "awq" else _assets_int4.CT_CONFIG
    config = {**TINY_CONFIG, "quantization_config": qc if qc is not None else base}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _set_word(name: str, word: int) -> Any:
    def edit(t: dict[str, tuple[str, np.ndarray]]) -> None:
        kind, arr = t[name]
        arr = arr.copy()
        arr.view(np.uint32).reshape(-1)[3] = word
        t[name] = (kind, arr)

    return edit


def _set_scale(name: str, value: float, dtype: str = "F32") -> Any:
    def edit(t: dict[str, tuple[str, np.ndarray]]) -> None:
        arr = t[name][1].astype(np.float32).copy()
        arr.reshape(-1)[5] = value
        t[name] = (dtype, arr)

    return edit


def _ct(**weights: Any) -> dict[str, Any]:
    qc = json.loads(json.dumps(_assets_int4.CT_CONFIG))
    qc["config_groups"]["group_0"]["weights"].update(weights)
    return qc


AWQ = _assets_int4.AWQ_CONFIG
Q = "model.layers.0.self_attn.q_proj"
REFUSALS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "awq-zero-point-7": (
        "awq",
        {"edit": _set_word(Q + ".qzeros", 0x88887888)},
        ("zero point other than 8", "0x88887888"),
    ),
    "awq-group-128": ("awq", {"qc": {**AWQ, "group_size": 128}}, ("group size 128", "group 32")),
    "awq-8-bit": ("awq", {"qc": {**AWQ, "bits": 8}}, ("8-bit",)),
    "awq-gemv": ("awq", {"qc": {**AWQ, "version": "gemv"}}, ("gemv",)),
    "awq-scale-too-big": (
        "awq",
        {"edit": _set_scale(Q + ".scales", 1e5)},
        ("100000.0", "fp16"),
    ),
    "awq-scale-subnormal": (
        "awq",
        {"edit": _set_scale(Q + ".scales", 1e-6)},
        ("fp16 (Q4_0's scale type) cannot hold",),
    ),
    "awq-scale-f32-bits": (
        "awq",
        {"edit": _set_scale(Q + ".scales", 0.01)},  # 0.01 in f32 has more bits than fp16
        ("cannot hold exactly",),
    ),
    "ct-asymmetric": ("ct", {"qc": _ct(symmetric=False)}, ("asymmetric",)),
    "ct-act-order": ("ct", {"qc": _ct(actorder="group")}, ("act-order",)),
    "ct-channel": ("ct", {"qc": _ct(strategy="channel", group_size=None)}, ("channel",)),
    "gptq-act-order": (
        "awq",
        {"qc": {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": True}},
        ("gptq", "act-order"),
    ),
    "bitsandbytes": (
        "awq",
        {"qc": {"quant_method": "bitsandbytes", "load_in_4bit": True}},
        ("bitsandbytes",),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_one_line_and_write_nothing(cli: Any, case: str, tmp_path: Path) -> None:
    fmt, kwargs, needles = REFUSALS[case]
    src = _tiny(tmp_path / "ckpt", fmt, **kwargs)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in src.iterdir())
    out = tmp_path / "out"
    result = cli("export", str(src), "-o", str(out))
    assert_one_line_error(result, *needles)
    assert not out.exists()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in src.iterdir()) == before


def test_embedding_type_refusals(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = _assets_int4.int4_checkpoint("awq")
    result = cli("export", str(src), "-o", str(out), "--embedding-type", "Q6_K")
    assert_one_line_error(result, "divisible by 256", "640")
    result = cli(
        "export", str(_assets_ckpt.hf_checkpoint_270m()), "-o", str(out), "--embedding-type", "F16"
    )
    assert_one_line_error(result, "--embedding-type", "int4")
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# llama.cpp's own server


@pytest.mark.llama_server
@pytest.mark.usefixtures("llama_server_bin")
def test_llama_server_runs_the_int4_vision_export_with_its_mmproj(tmp_path: Path) -> None:
    """llama-server loads the repacked Q4_0 text model with the int4 checkpoint's projector and
    answers a chat turn with an image (256 image tokens between <start_of_image> and <end_of_image>)."""
    import base64
    import io

    from _engines_llama import llama_server
    from PIL import Image

    res = export(
        _assets_int4.int4_checkpoint("awq", vision=True), output_dir=tmp_path / "o", progress=False
    )
    assert res.mmproj is not None
    y, x = np.mgrid[0:896, 0:896]
    rgb = np.stack([(x * 255) // 896, (y * 255) // 896, ((x // 64 + y // 64) % 2) * 255], -1)
    png = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(png, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    text = {"type": "text", "text": "What is in this picture?"}
    with_image = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, text]}
    ]
    args = ("--jinja", "--ctx-size", "4096", "--parallel", "1", "--seed", "1")
    with llama_server(res.models[0].path, *args, "--mmproj", str(res.mmproj.path)) as srv:
        n_with = srv.post("/v1/chat/completions/input_tokens", {"messages": with_image}).json()
        n_without = srv.post(
            "/v1/chat/completions/input_tokens", {"messages": [{"role": "user", "content": [text]}]}
        ).json()
        reply = srv.post(
            "/v1/chat/completions", {"messages": with_image, "max_tokens": 8, "seed": 1}
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] >= 1
    assert n_with["input_tokens"] - n_without["input_tokens"] == 256 + 2


def test_converter_recipe_smoke(tmp_path: Path) -> None:
    """converters/export_qat_int4.py: the compressed-tensors fixture -> Q4_0, repack reported."""
    import subprocess
    import sys

    recipe = Path(__file__).resolve().parent.parent / "converters" / "export_qat_int4.py"
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(recipe),
            str(_assets_int4.int4_checkpoint("ct")),
            "--out",
            str(out),
            "--embedding-type",
            "Q8_0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"compressed-tensors, {N_LINEARS} tensors repacked losslessly" in proc.stdout
    assert "token_embd Q8_0" in proc.stdout and ": ok" in proc.stdout
    assert assert_bit_exact(next(out.glob("*-Q4_0.gguf"))) == N_LINEARS
