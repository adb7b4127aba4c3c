"""The vision projector file: contents as llama.cpp's reference writes them, from every layout.

The fixture is a Gemma3ForConditionalGeneration checkpoint with a small random SigLIP tower
(2 layers, width 128, MLP 200) at Gemma 3's real geometry (896 px, 14 px patches, 256 tokens).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from _assets_vision import LAYOUTS, VISION_CONFIG, hf_checkpoint_vision, vision_tensors
from conftest import assert_one_line_error

from gemma3_pack._errors import CheckpointError, UsageError
from gemma3_pack._export._mmproj import MMPROJ_PATTERN, mmproj_filename, write_mmproj
from gemma3_pack._gguf._vision_names import canonical, ollama_name

N_LAYERS = VISION_CONFIG["num_hidden_layers"]
N_TENSORS = 16 * N_LAYERS + 7


def _fields(path: Path) -> dict[str, object]:
    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


def _tensors(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


@pytest.fixture(scope="module")
def release_f16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mmproj") / mmproj_filename("tiny-vision")
    return write_mmproj(
        hf_checkpoint_vision("release", text=False), out, name="Tiny Vision", basename="tiny-vision"
    )


def test_metadata_is_llama_cpp_clip_gemma3(release_f16: Path) -> None:
    f = _fields(release_f16)
    assert f.pop("clip.vision.attention.layer_norm_epsilon") == pytest.approx(1e-6, rel=1e-6)
    assert f == {
        "general.architecture": "clip",
        "general.type": "mmproj",
        "general.name": "Tiny Vision",
        "general.basename": "tiny-vision",
        "general.size_label": "918K",
        "general.file_type": 1,
        "general.quantization_version": 2,
        "clip.has_vision_encoder": True,
        "clip.projector_type": "gemma3",
        "clip.use_gelu": True,
        "clip.vision.projection_dim": 640,
        "clip.vision.image_size": 896,
        "clip.vision.patch_size": 14,
        "clip.vision.embedding_length": 128,
        "clip.vision.feed_forward_length": 200,
        "clip.vision.block_count": 2,
        "clip.vision.attention.head_count": 4,
        "clip.vision.image_mean": [0.5, 0.5, 0.5],
        "clip.vision.image_std": [0.5, 0.5, 0.5],
    }
    # 896/14 = 64 patches a side pooled to sqrt(256) = 16: the default 4, so no scale_factor key
    assert "clip.vision.projector.scale_factor" not in f


def test_tensor_names_types_and_shapes(release_f16: Path) -> None:
    t = _tensors(release_f16)
    assert len(t) == N_TENSORS == 39
    F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16
    expect = {  # name: (ggml type, ggml shape)
        "v.patch_embd.weight": (F32, [14, 14, 3, 128]),
        "v.patch_embd.bias": (F32, [128]),
        "v.position_embd.weight": (F32, [128, 4096]),
        "v.post_ln.weight": (F32, [128]),
        "v.post_ln.bias": (F32, [128]),
        "mm.input_projection.weight": (F16, [640, 128]),  # HF (128, 640), not transposed
        "mm.soft_emb_norm.weight": (F32, [128]),
    }
    for i in range(N_LAYERS):
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            expect[f"v.blk.{i}.{part}.weight"] = (F16, [128, 128])
            expect[f"v.blk.{i}.{part}.bias"] = (F32, [128])
        expect[f"v.blk.{i}.ffn_up.weight"] = (F16, [128, 200])  # fc1
        expect[f"v.blk.{i}.ffn_up.bias"] = (F32, [200])
        expect[f"v.blk.{i}.ffn_down.weight"] = (F16, [200, 128])  # fc2
        expect[f"v.blk.{i}.ffn_down.bias"] = (F32, [128])
        for ln in ("ln1", "ln2"):
            expect[f"v.blk.{i}.{ln}.weight"] = (F32, [128])
            expect[f"v.blk.{i}.{ln}.bias"] = (F32, [128])
    got = {n: (x.tensor_type, [int(d) for d in x.shape]) for n, x in t.items()}
    assert got == expect


def test_values_plus_one_only_on_soft_emb_norm(release_f16: Path) -> None:
    src = vision_tensors()
    t = _tensors(release_f16)
    # (1 + w) in float32, as the reference converter writes it
    np.testing.assert_array_equal(
        t["mm.soft_emb_norm.weight"].data, src["multi_modal_projector.mm_soft_emb_norm.weight"] + 1
    )
    # SigLIP LayerNorms are plain LayerNorms: stored as is
    np.testing.assert_array_equal(
        t["v.blk.0.ln1.weight"].data,
        src["vision_tower.vision_model.encoder.layers.0.layer_norm1.weight"],
    )
    np.testing.assert_array_equal(
        t["v.post_ln.bias"].data, src["vision_tower.vision_model.post_layernorm.bias"]
    )
    # matrices: F16 of the source, projector not transposed, patch embedding exact in F32
    np.testing.assert_array_equal(
        t["mm.input_projection.weight"].data,
        src["multi_modal_projector.mm_input_projection_weight"].astype(np.float16),
    )
    np.testing.assert_array_equal(
        t["v.blk.1.ffn_down.weight"].data,
        src["vision_tower.vision_model.encoder.layers.1.mlp.fc2.weight"].astype(np.float16),
    )
    np.testing.assert_array_equal(
        t["v.patch_embd.weight"].data,
        src["vision_tower.vision_model.embeddings.patch_embedding.weight"],
    )


@pytest.mark.slow
def test_tensor_for_tensor_equal_to_llama_cpp_reference(release_f16: Path) -> None:
    """llama.cpp's convert_hf_to_gguf.py --mmproj (llama-cpp-python's vendored copy), release
    layout: same tensors, same order, same types and shapes, same bytes; same metadata except
    the names we choose (general.name / basename)."""
    from _oracle import compare_gguf, reference_convert

    ref = reference_convert(hf_checkpoint_vision("release", text=False), outtype="f16", mmproj=True)
    diff = compare_gguf(ref, release_f16)
    assert diff["tensors_differ"] == {}
    assert diff["tensors_only_a"] == diff["tensors_only_b"] == []
    assert diff["tensor_order_same"]
    assert diff["keys_only_a"] == []
    assert diff["keys_only_b"] == ["general.basename"]
    assert diff["keys_differ"] == {"general.name": ("Vision v1 Release Notext", "Tiny Vision")}


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["new", "tf5"])
def test_reference_converter_loses_vision_on_other_layouts(layout: str) -> None:
    """The bug we beat: llama.cpp's converter writes an mmproj with no tensors for
    model.vision_tower.* checkpoints and crashes on transformers 5.x's vision_tower.*."""
    from _oracle import gguf_summary, reference_convert

    ck = hf_checkpoint_vision(layout, text=False)
    if layout == "new":
        _keys, tensors = gguf_summary(reference_convert(ck, outtype="f16", mmproj=True))
        assert tensors == {}
    else:
        with pytest.raises(RuntimeError, match="Can not map tensor"):
            reference_convert(ck, outtype="f16", mmproj=True)


def test_every_layout_gives_the_same_bytes(release_f16: Path, tmp_path: Path) -> None:
    want = release_f16.read_bytes()
    for layout in LAYOUTS:
        out = write_mmproj(
            hf_checkpoint_vision(layout, text=False),
            tmp_path / f"{layout}.gguf",
            name="Tiny Vision",
            basename="tiny-vision",
        )
        assert out.read_bytes() == want, layout


def test_layout_names_fold_to_release_spelling() -> None:
    assert (
        canonical("model.vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight")
        == "vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight"
    )
    assert (
        canonical("vision_tower.encoder.layers.3.mlp.fc1.weight")
        == "vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight"
    )
    assert (
        canonical("model.multi_modal_projector.mm_input_projection_weight")
        == "multi_modal_projector.mm_input_projection.weight"
    )
    assert canonical("vision_tower.vision_model.head.mlp.fc1.weight") is None
    assert canonical("model.language_model.layers.0.mlp.up_proj.weight") is None
    assert canonical("language_model.model.embed_tokens.weight") is None


@pytest.mark.parametrize(
    ("hf", "ollama"),
    [
        # convert/convert_gemma3.go Replacements, applied as Go's strings.Replacer
        ("vision_tower.vision_model.embeddings.patch_embedding.weight", "v.patch_embedding.weight"),
        (
            "vision_tower.vision_model.embeddings.position_embedding.weight",
            "v.position_embedding.weight",
        ),
        ("vision_tower.vision_model.post_layernorm.bias", "v.post_layernorm.bias"),
        (
            "vision_tower.vision_model.encoder.layers.7.self_attn.out_proj.weight",
            "v.blk.7.attn_output.weight",
        ),
        ("vision_tower.vision_model.encoder.layers.7.self_attn.q_proj.bias", "v.blk.7.attn_q.bias"),
        ("vision_tower.vision_model.encoder.layers.7.mlp.fc2.weight", "v.blk.7.mlp.fc2.weight"),
        (
            "vision_tower.vision_model.encoder.layers.7.layer_norm1.weight",
            "v.blk.7.layer_norm1.weight",
        ),
        ("multi_modal_projector.mm_input_projection.weight", "mm.mm_input_projection.weight"),
        ("multi_modal_projector.mm_soft_emb_norm.weight", "mm.mm_soft_emb_norm.weight"),
    ],
)
def test_ollama_names(hf: str, ollama: str) -> None:
    assert ollama_name(hf) == ollama


@pytest.mark.parametrize(
    ("dtype", "ffn_down", "attn", "ftype"),
    [
        ("f32", "F32", "F32", 0),
        ("bf16", "BF16", "BF16", 32),
        # Q8_0 needs rows of 32: fc2's 200 columns fall back to F16, as llama.cpp's QuantError path
        ("q8_0", "F16", "Q8_0", 7),
    ],
)
def test_dtypes_and_fallbacks(
    tmp_path: Path, dtype: str, ffn_down: str, attn: str, ftype: int
) -> None:
    out = write_mmproj(
        hf_checkpoint_vision("tf5", text=False), tmp_path / mmproj_filename("t", dtype), dtype=dtype
    )  # type: ignore[arg-type]
    t = _tensors(out)
    assert t["v.blk.0.ffn_down.weight"].tensor_type.name == ffn_down
    assert t["v.blk.0.attn_q.weight"].tensor_type.name == attn
    assert t["v.blk.0.ffn_up.weight"].tensor_type.name == attn  # 128 columns: quantizable
    assert t["mm.input_projection.weight"].tensor_type.name == "F16"  # always (llama.cpp#13025)
    assert t["v.position_embd.weight"].tensor_type.name == "F32"
    assert _fields(out)["general.file_type"] == ftype
    src = vision_tensors()["vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight"]
    back = gguf.quants.dequantize(
        t["v.blk.0.attn_q.weight"].data, t["v.blk.0.attn_q.weight"].tensor_type
    ).reshape(src.shape)
    np.testing.assert_allclose(back, src, atol=np.abs(src).max() / 100)


def test_filename_matches_phone_apps_pattern() -> None:
    assert mmproj_filename("gemma-3-4b-it") == "mmproj-gemma-3-4b-it-F16.gguf"
    assert mmproj_filename("x", "q8_0") == "mmproj-x-Q8_0.gguf"
    for dtype in ("f16", "bf16", "f32", "q8_0"):
        assert MMPROJ_PATTERN.search(mmproj_filename("my-model", dtype))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown mmproj type 'q4_k'"):
        mmproj_filename("x", "q4_k")  # type: ignore[arg-type]


def _copy_without(
    src: Path, dst: Path, drop: str | None = None, config_edit: dict[str, object] | None = None
) -> Path:
    from _assets_vision import write_safetensors_bf16

    dst.mkdir()
    for f in ("preprocessor_config.json",):
        shutil.copy(src / f, dst / f)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(config_edit or {})
    (dst / "config.json").write_text(json.dumps(cfg))
    tensors = {k: v for k, v in vision_tensors().items() if k != drop}
    write_safetensors_bf16(dst / "model.safetensors", tensors)
    return dst


def test_missing_vision_tensor_is_an_error_and_nothing_is_written(tmp_path: Path) -> None:
    ck = _copy_without(
        hf_checkpoint_vision("release", text=False),
        tmp_path / "ck",
        drop="vision_tower.vision_model.encoder.layers.1.mlp.fc2.weight",
    )
    out = tmp_path / "out" / "mmproj-x-F16.gguf"
    out.parent.mkdir()
    with pytest.raises(
        CheckpointError,
        match=r"vision tower is incomplete: 1 of the 39 tensors"
        r".*layers\.1\.mlp\.fc2\.weight",
    ):
        write_mmproj(ck, out)
    assert list(out.parent.iterdir()) == []


def test_projector_width_must_match_text_model(tmp_path: Path) -> None:
    src = hf_checkpoint_vision("release", text=False)
    cfg = json.loads((src / "config.json").read_text())
    text = {**cfg["text_config"], "hidden_size": 1152}
    ck = _copy_without(src, tmp_path / "ck", config_edit={"text_config": text})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        CheckpointError,
        match=r"mm_input_projection_weight is 128x640 but must "
        r"be 128x1152",
    ):
        write_mmproj(ck, out / "mmproj-x-F16.gguf")
    assert list(out.iterdir()) == []


def test_text_only_checkpoint_has_no_projector(tmp_path: Path) -> None:
    src = hf_checkpoint_vision("release", text=False)
    cfg = json.loads((src / "config.json").read_text())
    del cfg["vision_config"]
    ck = tmp_path / "ck"
    shutil.copytree(src, ck)
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no vision_config"):
        write_mmproj(ck, tmp_path / "mmproj-x-F16.gguf")
    assert not (tmp_path / "mmproj-x-F16.gguf").exists()


@pytest.mark.parametrize("layout", ["release", "new", "tf5"])
def test_vision_lora_merges_into_the_tower(tmp_path: Path, layout: str) -> None:
    """A PEFT adapter that also tuned the vision tower: its deltas reach the mmproj.

    PEFT names modules as the model holds them (``base_model.model.<module>.lora_A.weight``);
    the exporter's LoRA reader merges ``W + alpha/r · B @ A`` on read, and the mmproj writer reads
    through it. One target is fc2, whose 200-wide rows are not a multiple of 32.
    """
    from _assets_vision import rename, write_safetensors_bf16

    from gemma3_pack._export._readers._lora import open_lora

    base = hf_checkpoint_vision(layout, text=False)
    rng = np.random.default_rng(7)
    r, alpha = 4, 8
    targets = {
        "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj": (128, 128),
        "vision_tower.vision_model.encoder.layers.1.mlp.fc2": (128, 200),
        "multi_modal_projector.mm_input_projection": None,
    }  # a bare Parameter: not LoRA-able
    lora: dict[str, np.ndarray] = {}
    for module, shape in targets.items():
        if shape is None:
            continue
        name = rename(module + ".weight", layout).removesuffix(".weight")
        lora[f"base_model.model.{name}.lora_A.weight"] = rng.standard_normal((r, shape[1])) * 0.1
        lora[f"base_model.model.{name}.lora_B.weight"] = rng.standard_normal((shape[0], r)) * 0.1
    lora = {k: v.astype(np.float32) for k, v in lora.items()}
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    write_safetensors_bf16(adapter / "adapter_model.safetensors", lora)
    (adapter / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": r,
                "lora_alpha": alpha,
                "base_model_name_or_path": str(base),
                "target_modules": ["q_proj", "fc2"],
            }
        )
    )

    out = write_mmproj(open_lora(adapter, base), tmp_path / "mmproj-lora-F32.gguf", dtype="f32")
    t = _tensors(out)
    src = vision_tensors()

    def bf16(a: np.ndarray) -> np.ndarray:  # adapter stored in bf16; the merge is f32
        bits = a.astype(np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32)

    for module, gguf_name in (
        ("vision_tower.vision_model.encoder.layers.0.self_attn.q_proj", "v.blk.0.attn_q.weight"),
        ("vision_tower.vision_model.encoder.layers.1.mlp.fc2", "v.blk.1.ffn_down.weight"),
    ):
        name = rename(module + ".weight", layout).removesuffix(".weight")
        a = bf16(lora[f"base_model.model.{name}.lora_A.weight"])
        b = bf16(lora[f"base_model.model.{name}.lora_B.weight"])
        merged = src[module + ".weight"] + np.float32(alpha / r) * (b @ a)
        # the exporter keeps the base dtype (bf16) for merged weights, as PEFT's merge would
        np.testing.assert_allclose(t[gguf_name].data, bf16(merged), rtol=0, atol=1e-6)
        assert not np.array_equal(t[gguf_name].data, src[module + ".weight"])
    np.testing.assert_array_equal(  # untouched tensors stay exactly the base
        t["v.blk.0.attn_k.weight"].data,
        src["vision_tower.vision_model.encoder.layers.0.self_attn.k_proj.weight"],
    )


def test_export_refuses_a_broken_tower_before_writing_anything(tmp_path: Path, cli: Any) -> None:
    """export() checks the vision tower with the other inputs: no text GGUF is left behind."""
    import os

    from gemma3_pack._export import export

    src = hf_checkpoint_vision("release")  # with the real 270M text weights
    ck = tmp_path / "ck"
    ck.mkdir()
    for f in src.iterdir():
        if f.name != "config.json":
            try:
                os.link(f, ck / f.name)  # same filesystem: no 500 MB copy
            except OSError:
                shutil.copy(f, ck / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg["vision_config"]["num_hidden_layers"] = 3  # the checkpoint holds 2
    (ck / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="vision tower is incomplete: 16 of the 55 tensors"):
        export(ck, output_dir=out, quants="Q8_0", progress=False)
    assert not out.exists() or list(out.iterdir()) == []
    # the CLI: one line, exit 2, nothing written
    result = cli("export", str(ck), "-o", str(out), "-q", "Q8_0")
    assert_one_line_error(result, "vision tower is incomplete", "layers.2.self_attn.q_proj")
    assert not out.exists() or list(out.iterdir()) == []
