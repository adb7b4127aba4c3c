"""Ollama's fused Gemma 3 vision GGUF, read back and checked against Ollama's converter.

What Ollama writes for a Gemma3ForConditionalGeneration (ollama/ollama):

* keys: ``convert/convert_gemma3.go`` ``gemma3Model.KV``, default branch —
  ``gemma3.vision.{block_count, embedding_length, feed_forward_length, image_size, patch_size,
  num_channels (default 3), attention.head_count, attention.layer_norm_epsilon (default 1e-6)}``
  and ``gemma3.mm.tokens_per_image`` when the config sets ``mm_tokens_per_image``;
* names: the same file's ``Replacements`` (``vision_tower.vision_model.embeddings`` → ``v``,
  ``encoder.layers`` → ``blk``, ``self_attn.out_proj`` → ``attn_output``,
  ``multi_modal_projector`` → ``mm``, ``input_projection_weight`` → ``input_projection.weight``),
  which are what ``model/models/gemma3/model_vision.go`` binds (``patch_embedding``,
  ``position_embedding``, ``post_layernorm``, ``layer_norm1/2``, ``mlp.fc1/fc2``) and
  ``model.go`` binds (``mm_input_projection``, ``mm_soft_emb_norm``);
* types: ``convert/reader.go`` ``tensorBase.Kind`` — ``.bias`` and 1-D F32, everything else F16;
* values: ``convert/convert_gemma.go`` ``gemmaModel.Tensors`` adds 1 to ``*_norm.weight`` outside
  ``v.`` (here only ``mm.mm_soft_emb_norm.weight``).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
from _assets_vision import LAYOUTS, hf_checkpoint_vision, vision_tensors

from gemma3_pack._errors import CheckpointError, NotGemma3, NotGGUF
from gemma3_pack._export._fused import write_fused
from gemma3_pack._export._mmproj import write_mmproj
from gemma3_pack._gguf._reader import open_gguf

# gguf-py's reader spends ~20 s on the 262144-token vocabulary; it is used once, on the output.
pytestmark = pytest.mark.slow

F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16


def _expected_vision() -> dict[str, tuple[gguf.GGMLQuantizationType, list[int]]]:
    out = {
        "v.patch_embedding.weight": (F16, [14, 14, 3, 128]),
        "v.patch_embedding.bias": (F32, [128]),
        "v.position_embedding.weight": (F16, [128, 4096]),
        "v.post_layernorm.weight": (F32, [128]),
        "v.post_layernorm.bias": (F32, [128]),
        "mm.mm_input_projection.weight": (F16, [640, 128]),
        "mm.mm_soft_emb_norm.weight": (F32, [128]),
    }
    for i in range(2):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            out[f"v.blk.{i}.{part}.weight"] = (F16, [128, 128])
            out[f"v.blk.{i}.{part}.bias"] = (F32, [128])
        out[f"v.blk.{i}.mlp.fc1.weight"] = (F16, [128, 200])
        out[f"v.blk.{i}.mlp.fc1.bias"] = (F32, [200])
        out[f"v.blk.{i}.mlp.fc2.weight"] = (F16, [200, 128])
        out[f"v.blk.{i}.mlp.fc2.bias"] = (F32, [128])
        for ln in ("layer_norm1", "layer_norm2"):
            out[f"v.blk.{i}.{ln}.weight"] = (F32, [128])
            out[f"v.blk.{i}.{ln}.bias"] = (F32, [128])
    return out


@pytest.fixture(scope="module")
def fused(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fused") / "gemma3-vision.gguf"
    return write_fused(gguf_270m, hf_checkpoint_vision("release", text=False), out)


@pytest.fixture(scope="module")
def fused_reader(fused: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(fused)


def test_vision_keys_as_ollama_writes_them(fused_reader: gguf.GGUFReader) -> None:
    got = {
        k: (f.contents(), f.types[0])
        for k, f in fused_reader.fields.items()
        if k.startswith(("gemma3.vision.", "gemma3.mm."))
    }
    u32 = gguf.GGUFValueType.UINT32
    eps, eps_type = got.pop("gemma3.vision.attention.layer_norm_epsilon")
    assert eps == pytest.approx(1e-6, rel=1e-6) and eps_type == gguf.GGUFValueType.FLOAT32
    assert got == {
        "gemma3.vision.block_count": (2, u32),
        "gemma3.vision.embedding_length": (128, u32),
        "gemma3.vision.feed_forward_length": (200, u32),
        "gemma3.vision.image_size": (896, u32),
        "gemma3.vision.patch_size": (14, u32),
        "gemma3.vision.num_channels": (3, u32),
        "gemma3.vision.attention.head_count": (4, u32),
        "gemma3.mm.tokens_per_image": (256, u32),
    }
    assert fused_reader.fields["general.architecture"].contents() == "gemma3"


def _records(path: Path) -> tuple[dict[str, bytes], dict[str, tuple[str, list[int], bytes]]]:
    """Every KV record's raw bytes and every tensor's (type, shape, sha256), via our own parser."""
    with open_gguf(path) as h:
        kvs = {k: bytes(h.buf[kv.start : kv.end]) for k, kv in h.kvs.items()}
        tensors = {}
        for t in h.tensors:
            at = h.data_start + t.offset
            tensors[t.name] = (
                t.type_name,
                list(t.shape),
                hashlib.sha256(h.buf[at : at + (t.nbytes or 0)]).hexdigest(),
            )
    return kvs, tensors


def test_text_part_copied_byte_for_byte(
    fused: Path, gguf_270m: Path, fused_reader: gguf.GGUFReader
) -> None:
    text_kvs, text_tensors = _records(gguf_270m)
    fused_kvs, fused_tensors = _records(fused)
    assert list(fused_kvs)[: len(text_kvs)] == list(text_kvs)
    assert {k: fused_kvs[k] for k in text_kvs} == text_kvs
    assert {n: fused_tensors[n] for n in text_tensors} == text_tensors
    assert len(fused_tensors) == len(text_tensors) + 39
    # and gguf-py, an independent parser, sees the same text tensors in the fused file
    by_name = {t.name: t for t in fused_reader.tensors}
    for name in ("token_embd.weight", "blk.17.ffn_down.weight", "output_norm.weight"):
        data = by_name[name].data
        assert hashlib.sha256(data.tobytes()).hexdigest() == text_tensors[name][2]
    assert set(by_name) == set(fused_tensors)


def test_vision_tensor_names_types_shapes(fused_reader: gguf.GGUFReader) -> None:
    got = {t.name: (t.tensor_type, [int(d) for d in t.shape]) for t in fused_reader.tensors}
    vision = {n: v for n, v in got.items() if n.startswith(("v.", "mm."))}
    assert vision == _expected_vision()
    assert len(vision) == 16 * 2 + 7


def test_vision_values(fused_reader: gguf.GGUFReader) -> None:
    src = vision_tensors()
    t = {x.name: x.data for x in fused_reader.tensors}
    # Ollama adds 1 in float32 (its repacker works on []float32): exact, no bf16 rounding
    np.testing.assert_array_equal(
        t["mm.mm_soft_emb_norm.weight"], src["multi_modal_projector.mm_soft_emb_norm.weight"] + 1
    )
    np.testing.assert_array_equal(
        t["v.blk.1.layer_norm2.weight"],
        src["vision_tower.vision_model.encoder.layers.1.layer_norm2.weight"],
    )
    np.testing.assert_array_equal(
        t["mm.mm_input_projection.weight"],
        src["multi_modal_projector.mm_input_projection_weight"].astype(np.float16),
    )
    np.testing.assert_array_equal(
        t["v.patch_embedding.weight"],
        src["vision_tower.vision_model.embeddings.patch_embedding.weight"].astype(np.float16),
    )


def test_same_file_from_every_layout(fused: Path, gguf_270m: Path, tmp_path: Path) -> None:
    want = hashlib.sha256(fused.read_bytes()).hexdigest()
    for layout in LAYOUTS[1:]:
        out = write_fused(
            gguf_270m, hf_checkpoint_vision(layout, text=False), tmp_path / f"{layout}.gguf"
        )
        assert hashlib.sha256(out.read_bytes()).hexdigest() == want, layout


def test_refuses_wrong_inputs_and_writes_nothing(gguf_270m: Path, tmp_path: Path) -> None:
    ck = hf_checkpoint_vision("release", text=False)
    out = tmp_path / "out"
    out.mkdir()
    mmproj = write_mmproj(ck, tmp_path / "mmproj.gguf")
    with pytest.raises(NotGemma3, match="is a clip model, not gemma3"):
        write_fused(mmproj, ck, out / "f.gguf")
    fused = write_fused(gguf_270m, ck, tmp_path / "fused.gguf")
    with pytest.raises(NotGGUF, match="already has vision tensors"):
        write_fused(fused, ck, out / "f.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00")
    with pytest.raises(NotGGUF):
        write_fused(bad, ck, out / "f.gguf")
    # a projector onto another text width: refuse before writing
    import json

    other = tmp_path / "ck1152"
    shutil.copytree(ck, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["text_config"]["hidden_size"] = 1152
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="must be 128x1152"):
        write_fused(gguf_270m, other, out / "f.gguf")
    assert list(out.iterdir()) == []


def test_converter_recipe_smoke(gguf_270m: Path, fused: Path, tmp_path: Path) -> None:
    """converters/export_vision.py: projector + fused file from a model.* checkpoint."""
    import subprocess
    import sys

    recipe = Path(__file__).resolve().parent.parent / "converters" / "export_vision.py"
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(recipe),
            str(hf_checkpoint_vision("new", text=False)),
            "--out",
            str(out),
            "--name",
            "tiny",
            "--text-gguf",
            str(gguf_270m),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "gemma-3-270m-q4_k_m-ollama.gguf",
        "mmproj-tiny-F16.gguf",
    ]
    assert f"wrote {out / 'mmproj-tiny-F16.gguf'} (mmproj): ok" in proc.stdout
    assert (out / "gemma-3-270m-q4_k_m-ollama.gguf").read_bytes() == fused.read_bytes()
    bad = subprocess.run(
        [sys.executable, str(recipe), str(tmp_path / "missing"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: checkpoint folder not found: {tmp_path / 'missing'}"
    ]
