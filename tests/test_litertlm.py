"""``export --format litertlm`` and ``doctor model.litertlm``.

Fast part (no LiteRT): the section reader and every doctor rule on hand-built bundles (the builder in
``_litertlm_bundle.py`` is read identically by Google's ``litertlm_peek``, and the real exporter's
output is read by the same reader below), the CLI's refusals (exit 2, one line, nothing written).

Real part (``litert`` marker; the ``[litert]`` venv that ``tests/build_engines.py`` builds, like the
engines: without it these tests fail at once with one line naming that step): ONE export, of a
LoRA adapter merged onto the real 270M weights, to an F32 GGUF and float + int8 ``.litertlm`` in one
command (short KV cache and prefill: two conversions of ~3-5 min on 2 cores, peak ~6.5 GB); then
Google's LiteRT-LM runtime runs both bundles with the chat template, start and stop tokens from
their own metadata, and its greedy replies are compared with llama.cpp's on the F32 GGUF of the same
merged weights: float equal token for token, int8 agreement measured and bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import _assets_ckpt
import _litert_env
import _litertlm_bundle as B
import pytest
from conftest import assert_one_line_error, run_cli

from gemma3_pack._chat import OFFICIAL_TEMPLATE
from gemma3_pack._export._litertlm import RECIPES, split_formats
from gemma3_pack._lint._litertlm_doctor import LITERTLM_RULES, doctor_litertlm
from gemma3_pack._lint._litertlm_read import NotLiteRTLM, read_litertlm

CKPT_ARGS = ("--litert-cache", "256", "--litert-prefill", "32")
PROMPTS = ["Why is the sky blue?", "Write a haiku about the sea.", "What is 12 times 7?"]
N_TOKENS = 16


# --------------------------------------------------------------------------- hand-built bundles


def _vocab() -> list[str]:
    pieces = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"p{i}" for i in range(4, 262144)]
    pieces[105], pieces[106] = "<start_of_turn>", "<end_of_turn>"
    return pieces


VOCAB = _vocab()


def bundle(tmp_path: Path, *, skip: str = "", vocab: list[str] | None = None, **md) -> Path:
    md.setdefault("template", OFFICIAL_TEMPLATE)
    sections = [
        ("TFLiteModel", b"\x1c\0\0\0TFL3" + b"\0" * 64, {"model_type": "tf_lite_prefill_decode"}),
        ("SP_Tokenizer", B.sp_model(vocab or VOCAB), {}),
        ("LlmMetadataProto", B.llm_metadata(**md), {}),
    ]
    sections = [s for s in sections if s[0] != skip]
    return B.build_litertlm(tmp_path / "model.litertlm", sections)


def codes(path: Path) -> list[str]:
    return [f.code for f in doctor_litertlm(path).findings]


def test_reader_reads_every_section_and_field(tmp_path):
    p = bundle(tmp_path, start="<bos>", stops=(106, 1, "<end_of_turn>"), max_tokens=1280)
    b = read_litertlm(p)
    assert b.version == (1, 7, 0)
    assert b.system == {"author": "gemma3-pack tests"}
    assert [(s.data_type, s.begin % B.BLOCK) for s in b.sections] == [
        ("TFLiteModel", 0),
        ("SP_Tokenizer", 0),
        ("LlmMetadataProto", 0),
    ]
    assert b.sections[0].items == {"model_type": "tf_lite_prefill_decode"}
    assert b.sections[-1].end <= b.size == p.stat().st_size
    md = b.metadata
    assert md is not None
    assert (md.start_token, md.stop_tokens) == ("<bos>", [106, 1, "<end_of_turn>"])
    assert (md.max_num_tokens, md.model_type) == (1280, "gemma3")
    assert md.sampler == {"type": "top_k", "top_k": 64, "top_p": 0.95, "temperature": 1.0}
    assert md.jinja_prompt_template == OFFICIAL_TEMPLATE
    assert b.tokenizer == "sentencepiece" and len(b.vocab or []) == 262144
    assert b.token_id("<end_of_turn>") == 106


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["litertlm-context"]),
        ({"stops": (1,)}, ["litertlm-stop-end-of-turn", "litertlm-context"]),
        ({"stops": ("<end_of_turn>",)}, ["litertlm-stop-eos", "litertlm-context"]),
        ({"start": 105}, ["litertlm-start-token", "litertlm-context"]),
        ({"start": None}, ["litertlm-start-token", "litertlm-context"]),
        ({"template": None}, ["litertlm-template-missing", "litertlm-context"]),
        ({"template": "{{ messages }}"}, ["litertlm-template-not-official", "litertlm-context"]),
        ({"model_type": 5}, ["litertlm-model-type", "litertlm-context"]),
        ({"model_type": 1, "max_tokens": None}, []),
        ({"skip": "TFLiteModel"}, ["litertlm-no-model", "litertlm-context"]),
        ({"skip": "SP_Tokenizer"}, ["litertlm-no-tokenizer", "litertlm-context"]),
        ({"skip": "LlmMetadataProto"}, ["litertlm-no-metadata"]),
        ({"vocab": VOCAB[:1000]}, ["litertlm-vocab", "litertlm-context"]),
    ],
)
def test_doctor_rules(tmp_path, kwargs, expected):
    assert codes(bundle(tmp_path, **kwargs)) == expected
    assert set(expected) <= set(LITERTLM_RULES)


def test_doctor_cli_exit_codes_and_json(tmp_path):
    good = bundle(tmp_path)
    res = run_cli("doctor", str(good))
    assert res.code == 0, res.stderr
    assert "ready for LiteRT-LM and AI Edge Gallery" in res.stdout
    res = run_cli("doctor", str(good), "--json")
    data = json.loads(res.stdout)
    assert (data["kind"], data["ok"], data["template"]) == ("litertlm", True, "official")
    (tmp_path / "bad").mkdir()
    bad = bundle(tmp_path / "bad", stops=(1,))
    res = run_cli("doctor", str(bad))
    assert res.code == 1
    assert "error   litertlm-stop-end-of-turn" in res.stdout


def test_doctor_refuses_bad_files_in_one_line(tmp_path):
    good = bundle(tmp_path)
    data = good.read_bytes()
    cut = tmp_path / "cut.litertlm"
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("doctor", str(cut)), "truncated or corrupt")
    junk = tmp_path / "junk.litertlm"
    junk.write_bytes(os.urandom(4096))
    assert_one_line_error(run_cli("doctor", str(junk)), "not a .litertlm")
    header = tmp_path / "header.litertlm"  # header end past the file
    header.write_bytes(data[:24] + (10**9).to_bytes(8, "little") + data[32:100])
    assert_one_line_error(run_cli("doctor", str(header)), "truncated or corrupt")
    assert_one_line_error(
        run_cli("doctor", str(good), "--fix", "-o", str(tmp_path / "o")), "re-export"
    )
    with pytest.raises(NotLiteRTLM):
        read_litertlm(tmp_path)
    assert good.read_bytes() == data  # never modified


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("formats", "quants", "expected"),
    [
        ("gguf", None, (["gguf"], None, None)),
        ("litertlm", None, (["litertlm"], None, None)),
        ("litertlm", "int8,float", (["litertlm"], None, ["int8", "float"])),
        ("litertlm,gguf", "Q4_0,INT4", (["gguf", "litertlm"], "Q4_0", ["int4"])),
        ("gguf,litertlm", "Q8_0", (["gguf", "litertlm"], "Q8_0", None)),
    ],
)
def test_split_formats(formats, quants, expected):
    assert split_formats(formats, quants) == expected


@pytest.fixture
def fake_litert(tmp_path):
    """A 'Python' that passes the extra's probe: the checks after it run without the stack."""
    exe = tmp_path / "fake-python"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return {"GEMMA3_PACK_LITERT_PYTHON": str(exe)}


def test_refusals_write_nothing(tmp_path, fake_litert):
    ckpt = _assets_ckpt.hf_checkpoint_270m()
    out = tmp_path / "out"
    no_extra = {"GEMMA3_PACK_LITERT_PYTHON": str(tmp_path / "missing-python")}
    cases = [
        ((str(ckpt), "--format", "litertlm"), no_extra, ("[litert]", "pip install")),
        ((str(ckpt), "--format", "gguf,litertlm", "-q", "Q8_0,int8"), no_extra, ("[litert]",)),
        ((str(ckpt), "--format", "litertlm", "-q", "Q4_K_M"), fake_litert, ("float, int8, int4",)),
        ((str(ckpt), "-q", "int8"), fake_litert, ("add --format litertlm",)),
        ((str(ckpt), "--format", "tflite"), fake_litert, ("unknown --format",)),
        ((str(ckpt), "--format", "litertlm", "--litert-cache", "8"), fake_litert, ("16 to",)),
        (
            (str(_assets_ckpt.hf_checkpoint_4b_shaped(layers=2)), "--format", "litertlm"),
            fake_litert,
            ("270M, 1B and 4B", "--format gguf"),
        ),
    ]
    for args, env, needles in cases:
        res = run_cli("export", *args, "-o", str(out), env=env)
        assert_one_line_error(res, *needles)
        assert not out.exists() or not any(out.iterdir()), (args, list(out.iterdir()))


def test_vision_checkpoint_refused_without_text_only(tmp_path, fake_litert):
    import _assets_vision

    ckpt = _assets_vision.hf_checkpoint_vision("release")
    out = tmp_path / "out"
    res = run_cli("export", str(ckpt), "--format", "litertlm", "-o", str(out), env=fake_litert)
    assert_one_line_error(res, "vision tower", "--text-only")
    assert not out.exists() or not any(out.iterdir())


# --------------------------------------------------------------------------- the real thing


@pytest.fixture(scope="module")
def litert_py() -> Path:
    """The ``[litert]`` Python; missing, these tests fail with one line naming tests/build_engines.py."""
    return _litert_env.python()


@pytest.fixture(scope="module")
def lora_export(litert_py, tmp_path_factory):
    """One command: LoRA merged onto the real 270M -> F32 GGUF + float and int8 .litertlm."""
    base = _assets_ckpt.hf_checkpoint_270m()
    lora = _assets_ckpt.lora_adapter(base)
    out = tmp_path_factory.mktemp("litertlm") / "out"
    res = run_cli(
        "export",
        str(lora),
        "--base",
        str(base),
        "--format",
        "gguf,litertlm",
        "-q",
        "F32,float,int8",
        *CKPT_ARGS,
        "--name",
        "g3-lora",
        "-o",
        str(out),
        "--json",
        env={"GEMMA3_PACK_LITERT_PYTHON": str(litert_py)},
        timeout=3600,
    )
    assert res.code == 0, res.stderr[-3000:]
    return out, json.loads(res.stdout)


def _run_litert(py: Path, model: Path, tmp: Path, score: list | None = None) -> dict:
    spec = tmp / f"{model.stem}.json"
    spec.write_text(
        json.dumps(
            {"model": str(model), "prompts": PROMPTS, "max_tokens": N_TOKENS, "score": score or []}
        )
    )
    runner = Path(__file__).parent / "support" / "_litertlm_runner.py"
    proc = subprocess.run(
        [str(py), str(runner), str(spec)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _llama_greedy(gguf: Path) -> list[list[int]]:
    """llama.cpp's greedy tokens for the same chat prompts (Google's template, as LiteRT-LM renders)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, n_threads=2, verbose=False)
    out = []
    for p in PROMPTS:
        text = f"<bos><start_of_turn>user\n{p}<end_of_turn>\n<start_of_turn>model\n"
        toks = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        gen: list[int] = []
        for t in llm.generate(toks, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            if t in (1, 106) or len(gen) >= N_TOKENS:
                break
            gen.append(t)
        out.append(gen)
    llm.close()
    return out


def _agree(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@pytest.fixture(scope="module")
def runs(lora_export, litert_py, tmp_path_factory):
    out, _ = lora_export
    tmp = tmp_path_factory.mktemp("runs")
    llama = _llama_greedy(out / "g3-lora-F32.gguf")
    floats = _run_litert(litert_py, out / "g3-lora-float.litertlm", tmp)
    int8 = _run_litert(litert_py, out / "g3-lora-int8.litertlm", tmp)
    return llama, floats, int8


@pytest.mark.slow
@pytest.mark.litert
def test_export_writes_checked_bundles_beside_the_ggufs(lora_export):
    out, data = lora_export
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "Modelfile",
        "README.md",
        "SHA256SUMS",
        "export.json",
        "g3-lora-F32.gguf",
        "g3-lora-float.litertlm",
        "g3-lora-int8.litertlm",
    ]  # no work folder or temp file left
    assert [(e["recipe"], Path(e["path"]).name) for e in data["litertlm"]] == [
        ("float", "g3-lora-float.litertlm"),
        ("int8", "g3-lora-int8.litertlm"),
    ]
    manifest = json.loads((out / "export.json").read_text())
    assert [m["path"] for m in manifest["models"]] == ["g3-lora-F32.gguf"]
    assert [e["path"] for e in manifest["litertlm"]] == [
        "g3-lora-float.litertlm",
        "g3-lora-int8.litertlm",
    ]
    assert manifest["litertlm_settings"]["cache_length"] == 256
    sums = dict(
        reversed(line.split("  ", 1)) for line in (out / "SHA256SUMS").read_text().splitlines()
    )
    for e in manifest["litertlm"]:
        digest = hashlib.sha256((out / e["path"]).read_bytes()).hexdigest()
        assert sums[e["path"]] == e["sha256"] == digest
        assert e["size"] == (out / e["path"]).stat().st_size
    drift = manifest["litertlm"][1]["drift_vs_float"]
    print(f"int8 vs float .litertlm: {drift}")
    assert "drift_vs_float" not in manifest["litertlm"][0]
    assert 0 < drift["kl"] < 0.1 and drift["top1"] >= 0.8 and drift["n"] >= 100, drift
    card = (out / "README.md").read_text()
    assert "g3-lora-F32.gguf" in card and "`g3-lora-int8.litertlm` | int8" in card
    assert f"| {drift['kl']:.4f} | {100 * drift['top1']:.1f} % |" in card
    floats, int8 = (
        (out / "g3-lora-float.litertlm").stat().st_size,
        (out / "g3-lora-int8.litertlm").stat().st_size,
    )
    assert int8 < 0.4 * floats  # int8 weights (the tied embedding too)


@pytest.mark.slow
@pytest.mark.litert
@pytest.mark.parametrize("recipe", ["float", "int8"])
def test_written_metadata_is_what_litert_lm_needs(lora_export, recipe):
    out, _ = lora_export
    path = out / f"g3-lora-{recipe}.litertlm"
    report = doctor_litertlm(path)
    assert report.ok, report.to_text()
    assert [f.code for f in report.findings] == ["litertlm-context"]
    b = read_litertlm(path)
    md = b.metadata
    assert md is not None
    assert b.token_id(str(md.start_token)) == 2 or md.start_token == 2
    assert {106, 1} <= {t for t in md.stop_tokens if isinstance(t, int)}
    assert report.template == "official" and md.max_num_tokens == 256
    assert md.model_type == "gemma3"
    assert run_cli("doctor", str(path)).code == 0


@pytest.mark.slow
@pytest.mark.litert
@pytest.mark.llama
def test_float_litertlm_answers_like_llama_cpp(runs):
    """Google's runtime, the file's own template and stop tokens: greedy tokens equal llama.cpp's
    on the F32 GGUF of the same merged LoRA weights."""
    llama, floats, _ = runs
    assert floats["bos"] == 2 and [106] in floats["stop"] and [1] in floats["stop"]
    for want, got in zip(llama, floats["replies"], strict=True):
        lite = got["tokens"]
        # the runtime returns text; re-tokenized, only the cut at N_TOKENS may merge differently
        assert len(lite) >= N_TOKENS - 2, got
        assert lite[: N_TOKENS - 2] == want[: N_TOKENS - 2], (want, got)


@pytest.mark.slow
@pytest.mark.litert
@pytest.mark.llama
def test_float_litertlm_logits_equal_llama_cpp(lora_export, litert_py, tmp_path):
    """The drift harness itself, checked: the float bundle run teacher-forced by LiteRT's
    interpreter gives llama.cpp's next-token distributions on the F32 GGUF (same weights)."""
    import numpy as np

    from gemma3_pack._export._litertlm import eval_tokens

    out, _ = lora_export
    tokens = eval_tokens(_assets_ckpt.hf_checkpoint_270m(), 160)
    b = read_litertlm(out / "g3-lora-float.litertlm")
    section = b.of_type("TFLiteModel")[0]
    npy = tmp_path / "float.npy"
    script = (
        "import sys, json, numpy as np; sys.path.insert(0, sys.argv[1]); import _litertlm_eval as E; "
        "a = json.loads(sys.argv[2]); "
        "np.save(a['npy'], np.stack(E._logits(a['path'], a['begin'], a['size'], a['tokens'])))"
    )
    args = {
        "npy": str(npy),
        "path": str(b.path),
        "begin": section.begin,
        "size": section.size,
        "tokens": tokens,
    }
    export_dir = Path(__file__).resolve().parent.parent / "gemma3_pack" / "_export"
    proc = subprocess.run(
        [str(litert_py), "-c", script, str(export_dir), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lite = np.load(npy).astype(np.float64)
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(
        model_path=str(out / "g3-lora-F32.gguf"),
        n_ctx=256,
        n_threads=2,
        verbose=False,
        logits_all=True,
    )
    llm.eval(tokens)
    ref = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    llm.close()
    ref -= ref.max(axis=1, keepdims=True)
    ref -= np.log(np.exp(ref).sum(axis=1, keepdims=True))
    kl = (np.exp(ref) * (ref - lite)).sum(axis=1)
    print(f"float .litertlm vs llama.cpp F32: KL mean {kl.mean():.2e} max {kl.max():.2e}")
    assert len(tokens) >= 100
    assert kl.mean() < 1e-4 and kl.max() < 1e-3, (kl.mean(), kl.max())
    assert (ref.argmax(axis=1) == lite.argmax(axis=1)).all()


@pytest.mark.slow
@pytest.mark.litert
@pytest.mark.llama
def test_int8_litertlm_agreement_is_bounded(runs):
    llama, _, int8 = runs
    agree = [_agree(w, g["tokens"]) for w, g in zip(llama, int8["replies"], strict=True)]
    print(f"int8 vs llama.cpp F32: greedy tokens equal before the first difference: {agree}")
    assert all(a >= 1 for a in agree), agree  # the first token of every reply
    assert sum(agree) >= 3 * 3, agree


def test_recipes_are_the_documented_ones():
    assert RECIPES == {"float": "none", "int8": "dynamic_wi8_afp32", "int4": "dynamic_wi4_afp32"}
