"""LoRA merging, the 4B-shaped config, QAT's quant recipe, and a killed export.

LoRA: the merged tensors must equal a numpy merge (W + alpha/r · B @ A in float32, rounded to
bf16 like the base) bit for bit, untouched tensors must equal the base export, and the merged
model must predict differently from its base through llama.cpp.
4B-shaped: Google's minimal 4B config.json (2 text layers at 4B width, 262208-row embedding,
sharded) — every key and tensor as the reference converter writes them, including linear rope
scaling 8, sliding window 1024, context 131072 and the 262208-token vocabulary.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import _assets_ckpt
import _oracle
import numpy as np
import pytest

from gemma3_pack import export
from gemma3_pack._export._readers._open import open_checkpoint
from gemma3_pack._gguf._reader import open_gguf


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even (independent of gguf-py)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


class Tensor:
    """One tensor of a GGUF, read through the project's fast header parser (no token parsing)."""

    def __init__(self, path: Path, name: str) -> None:
        with open_gguf(path) as h:
            info = next(t for t in h.tensors if t.name == name)
            self.type_name = info.type_name
            self.shape = list(info.shape)
            assert info.nbytes is not None
            self.raw = np.fromfile(
                path, dtype=np.uint8, count=info.nbytes, offset=h.data_start + info.offset
            )

    def bf16(self) -> np.ndarray:
        assert self.type_name == "BF16"
        return self.raw.view(np.uint16)


def tensor(path: Path, name: str) -> Tensor:
    return Tensor(path, name)


@pytest.mark.slow
@pytest.mark.parametrize("rslora", [False, True], ids=["lora", "rslora"])
def test_lora_merge_equals_numpy_reference(tmp_path: Path, rslora: bool) -> None:
    base = _assets_ckpt.hf_checkpoint_270m()
    adapter = _assets_ckpt.lora_adapter(base, r=8, alpha=16, rslora=rslora)
    res = export(adapter, output_dir=tmp_path / "lora", quants="BF16", name="ft", progress=False)
    out = res.models[0].path
    scale = _assets_ckpt.lora_scale(r=8, alpha=16, rslora=rslora)
    assert scale == (16 / 8**0.5 if rslora else 2.0)
    from safetensors.numpy import load_file

    lora = load_file(str(adapter / "adapter_model.safetensors"))
    ck = open_checkpoint(base)
    for layer in (0, 17):
        for target, gname in (("q_proj", "attn_q"), ("v_proj", "attn_v")):
            stem = f"base_model.model.model.layers.{layer}.self_attn.{target}"
            w = ck.read(f"model.layers.{layer}.self_attn.{target}.weight")
            want = bf16_round(
                w
                + np.float32(scale)
                * (
                    lora[stem + ".lora_B.weight"].astype(np.float32)
                    @ lora[stem + ".lora_A.weight"].astype(np.float32)
                )
            )
            got = tensor(out, f"blk.{layer}.{gname}.weight").bf16()
            assert np.array_equal(got.reshape(want.shape), want), (layer, target)
            # and the merge really changed the weight
            assert not np.array_equal(
                want, ck.raw(f"model.layers.{layer}.self_attn.{target}.weight")
            )
    # an untouched tensor is the base's, byte for byte
    k_base = ck.raw("model.layers.0.self_attn.k_proj.weight")
    assert np.array_equal(tensor(out, "blk.0.attn_k.weight").bf16().reshape(k_base.shape), k_base)
    manifest = json.loads((res.output_dir / "export.json").read_text())
    assert manifest["name"] == "ft"


@pytest.mark.slow
@pytest.mark.llama
def test_lora_changes_the_next_token_distribution(tmp_path: Path) -> None:
    base = _assets_ckpt.hf_checkpoint_270m()
    adapter = _assets_ckpt.lora_adapter(base)
    merged = export(adapter, output_dir=tmp_path / "m", quants="Q8_0", name="ft", progress=False)
    plain = export(base, output_dir=tmp_path / "b", quants="Q8_0", name="base", progress=False)
    a = _oracle.next_token_logits(merged.models[0].path, _oracle.PROMPTS[:4])
    b = _oracle.next_token_logits(plain.models[0].path, _oracle.PROMPTS[:4])
    assert a.shape == b.shape
    assert float(np.abs(a - b).max()) > 0.5
    assert float(_oracle.cosine_rows(a, b).min()) < 0.9999


@pytest.mark.slow
@pytest.mark.oracle
def test_4b_shaped_config_matches_reference(tmp_path: Path) -> None:
    ckpt = _assets_ckpt.hf_checkpoint_4b_shaped()
    ref = _oracle.reference_convert(ckpt, outtype="bf16")
    res = export(ckpt, output_dir=tmp_path, quants="BF16", name="g4", progress=False)
    ours = res.models[0].path
    diff = _oracle.compare_gguf(ref, ours)
    assert diff["tensors_differ"] == {} and diff["tensor_order_same"] is True
    assert diff["tensors_only_a"] == [] and diff["tensors_only_b"] == []
    identity = {
        "general.name",
        "general.basename",
        "general.finetune",
        "general.version",
        "general.size_label",
    }
    assert set(diff["keys_differ"]) <= identity
    assert set(diff["keys_only_a"]) <= identity
    keys = _oracle.gguf_summary(ours)[0]
    assert keys["gemma3.rope.scaling.type"] == "linear"
    assert keys["gemma3.rope.scaling.factor"] == 8.0
    assert keys["gemma3.attention.sliding_window"] == 1024
    assert keys["gemma3.context_length"] == 131072
    assert keys["gemma3.rope.freq_base"] == 1_000_000.0
    assert keys["gemma3.rope.freq_base_swa"] == 10_000.0
    assert (keys["gemma3.attention.head_count"], keys["gemma3.attention.head_count_kv"]) == (8, 4)
    assert len(keys["tokenizer.ggml.tokens"]) == 262208
    assert tensor(ours, "token_embd.weight").shape == [2560, 262208]


@pytest.mark.slow
@pytest.mark.llama
def test_qat_recipe_keeps_q8_0_embeddings(tmp_path: Path) -> None:
    """QAT: Q4_0 with a Q8_0 token embedding (plain Q4_0 gives Q6_K at 4B width)."""
    ckpt = _assets_ckpt.hf_checkpoint_4b_shaped()
    qat = export(ckpt, output_dir=tmp_path / "qat", qat=True, name="g4", progress=False)
    assert [m.quant for m in qat.models] == ["Q4_0"]  # the QAT default, chosen for us
    assert tensor(qat.models[0].path, "token_embd.weight").type_name == "Q8_0"
    assert tensor(qat.models[0].path, "blk.0.ffn_up.weight").type_name == "Q4_0"
    plain = export(
        ckpt, output_dir=tmp_path / "plain", quants="Q4_0", qat=False, name="g4", progress=False
    )
    assert tensor(plain.models[0].path, "token_embd.weight").type_name == "Q6_K"


@pytest.mark.slow
def test_killed_export_leaves_no_final_named_file(tmp_path: Path) -> None:
    ckpt = _assets_ckpt.hf_checkpoint_270m()
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import sys, time
        from gemma3_pack._export import _tensors
        from gemma3_pack import export
        orig = _tensors.ChunkedTensor.tofile
        def tofile(self, fh):
            orig(self, fh)
            fh.flush()
            print("FIRST", flush=True)
            time.sleep(60)
        _tensors.ChunkedTensor.tofile = tofile
        export({str(ckpt)!r}, output_dir={str(out)!r}, quants="BF16", name="g3", progress=False)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        _kill_after_first_tensor(proc)
    names = sorted(p.name for p in out.iterdir())
    assert "g3-BF16.gguf" not in names
    assert not {"export.json", "SHA256SUMS", "Modelfile", "README.md"} & set(names)
    assert all(n.startswith(".") and n.endswith(".part") for n in names), names


def _kill_after_first_tensor(proc: subprocess.Popen) -> None:
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and "FIRST" not in line:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
        assert "FIRST" in line, "the export never wrote its first tensor"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_export_lora_recipe_smoke(tmp_path: Path) -> None:
    """converters/export_lora.py runs end to end and its output inspects clean."""
    adapter = _assets_ckpt.lora_adapter(_assets_ckpt.hf_checkpoint_270m())
    recipe = Path(__file__).resolve().parent.parent / "converters" / "export_lora.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(recipe),
            str(adapter),
            "-q",
            "Q8_0",
            "-o",
            str(tmp_path),
            "--name",
            "ft",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["inspect_ok"] is True
    assert [Path(m["path"]).name for m in doc["export"]["models"]] == ["ft-Q8_0.gguf"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pair", "fused"])
def test_vision_checkpoint_gets_its_second_output(tmp_path: Path, fmt: str) -> None:
    """Gemma3ForConditionalGeneration: the text GGUF plus the projector, wired into the folder."""
    import _assets_vision

    ckpt = _assets_vision.hf_checkpoint_vision("release")
    res = export(
        ckpt,
        output_dir=tmp_path,
        quants="Q8_0",
        name="vis",
        ollama_format=fmt,  # type: ignore[arg-type]
        progress=False,
    )
    manifest = json.loads((tmp_path / "export.json").read_text())
    assert manifest["architecture"] == "Gemma3ForConditionalGeneration"
    assert manifest["mmproj"]["path"] == "mmproj-vis-F16.gguf"
    assert res.mmproj is not None and res.mmproj.path == tmp_path / "mmproj-vis-F16.gguf"
    from_lines = [
        ln for ln in (tmp_path / "Modelfile").read_text().splitlines() if ln.startswith("FROM ")
    ]
    sums = (tmp_path / "SHA256SUMS").read_text()
    if fmt == "pair":
        assert manifest["fused"] is None
        assert from_lines == ["FROM ./vis-Q8_0.gguf", "FROM ./mmproj-vis-F16.gguf"]
    else:
        assert manifest["fused"]["path"] == "vis-Q8_0-ollama.gguf"
        assert from_lines == ["FROM ./vis-Q8_0-ollama.gguf"]
        assert "vis-Q8_0-ollama.gguf" in sums
    assert "mmproj-vis-F16.gguf" in sums
