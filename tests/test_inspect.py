"""`inspect_gguf`: the report on the real 270M before and after patching, and each lint finding.

Expected values for the real file were read with gguf-py's GGUFReader (tensor type counts) and
llama.cpp (metadata); see /work/shared/reference/llamacpp.md §1 and measured.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _tiny_gguf import make_bad_export, tiny_gguf, tiny_mmproj

from gemma3_pack._chat import OFFICIAL_TEMPLATE
from gemma3_pack._gguf import inspect_gguf, patch_gguf
from gemma3_pack._gguf._inspect import MMPROJ_NAME


@pytest.fixture(scope="module")
def patched_270m(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "gemma-3-270m.gemma3.gguf"
    patch_gguf(gguf_270m, out)
    return out


def codes(report) -> dict[str, str]:
    return {f.code: f.level for f in report.findings}


def test_real_270m_as_published(gguf_270m: Path) -> None:
    r = inspect_gguf(gguf_270m)
    assert (r.kind, r.architecture, r.name, r.size_label, r.file_type) == (
        "model",
        "gemma3",
        "Gemma 3 270m",
        "270M",
        "Q4_K_M",
    )
    assert (
        r.context_length,
        r.sliding_window,
        r.embedding_length,
        r.block_count,
        r.vocab_size,
    ) == (32768, 512, 640, 18, 262144)
    assert r.tensor_count == 236
    assert {t: v["count"] for t, v in r.tensor_types.items()} == {
        "Q8_0": 10,
        "Q5_0": 81,
        "Q4_K": 27,
        "Q6_K": 9,
        "F32": 109,
    }
    assert sum(v["bytes"] for v in r.tensor_types.values()) == r.file_size - 6525120
    assert (r.template_present, r.template_kind, r.sampling) == (False, None, {})
    assert (r.add_bos_token, r.eot_token_id) == (True, None)
    assert {t["name"]: (t["id"], t["text"], t["type"]) for t in r.special_tokens} == {
        "<pad>": (0, "<pad>", "CONTROL"),
        "<eos>": (1, "<eos>", "CONTROL"),
        "<bos>": (2, "<bos>", "CONTROL"),
        "<unk>": (3, "<unk>", "CONTROL"),
        "<mask>": (4, "<mask>", "CONTROL"),
        "<start_of_turn>": (105, "<start_of_turn>", "CONTROL"),
        "<end_of_turn>": (106, "<end_of_turn>", "CONTROL"),
        "<start_of_image>": (255999, "<start_of_image>", "USER_DEFINED"),
        "<end_of_image>": (256000, "<end_of_image>", "USER_DEFINED"),
    }
    assert codes(r) == {
        "template-missing": "error",
        "sampling-missing": "warning",
        "eot-missing": "info",
    }
    assert not r.ok


def test_real_270m_after_patch_is_clean(patched_270m: Path) -> None:
    r = inspect_gguf(patched_270m)
    assert (r.template_present, r.template_kind, r.template_length) == (
        True,
        "official",
        len(OFFICIAL_TEMPLATE),
    )
    assert r.sampling == {
        "general.sampling.temp": 1.0,
        "general.sampling.top_k": 64,
        "general.sampling.top_p": 0.95,
        "general.sampling.min_p": 0.0,
        "general.sampling.penalty_repeat": 1.0,
    }
    assert r.eot_token_id == 106
    assert r.findings == [] and r.ok
    assert "findings: none" in r.to_text() and str(patched_270m) in r.to_text()


def test_cli_json_and_strict(cli, gguf_270m: Path, patched_270m: Path) -> None:
    before = cli("inspect", str(gguf_270m), "--json", "--strict")
    assert before.code == 1
    data = json.loads(before.stdout)
    assert data["ok"] is False and data["vocab_size"] == 262144
    assert [f["code"] for f in data["findings"]] == [
        "template-missing",
        "sampling-missing",
        "eot-missing",
    ]
    after = cli("inspect", str(patched_270m), "--strict")
    assert after.code == 0, after.stderr
    assert "chat template       official (1532 chars)" in after.stdout
    # without --strict, findings do not fail the command
    assert cli("inspect", str(gguf_270m)).code == 0


def test_bad_export_is_flagged(gguf_270m: Path, tmp_path: Path) -> None:
    r = inspect_gguf(make_bad_export(gguf_270m, tmp_path / "bad.gguf"))
    turn = [f for f in r.findings if f.code == "turn-token-not-control"]
    assert [f.level for f in turn] == ["error", "error"]
    assert "<start_of_turn> (105) is typed NORMAL" in turn[0].message


@pytest.mark.parametrize(
    ("kv", "expected"),
    [
        (
            {
                "tokenizer.chat_template": "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}"
            },
            {"template-not-official": "warning"},
        ),
        (
            {"tokenizer.chat_template": OFFICIAL_TEMPLATE.replace("model\n", "assistant\n")},
            {"template-not-official": "warning"},
        ),
        (
            {"tokenizer.chat_template": OFFICIAL_TEMPLATE.removeprefix("{{ bos_token }}")},
            {"template-no-bos": "info"},
        ),
        (
            {"tokenizer.chat_template": "<bos>{% for m in messages %}<start_of_turn>{% endfor %}"},
            {"template-not-official": "warning", "double-bos": "warning"},
        ),
        ({"general.sampling.temp": 0.7}, {"sampling-off-spec": "warning"}),
        ({"tokenizer.ggml.eot_token_id": 1}, {"eot-unusual": "warning"}),
    ],
)
def test_lint_findings(kv: dict[str, object], expected: dict[str, str], tmp_path: Path) -> None:
    r = inspect_gguf(
        tiny_gguf(
            tmp_path / "lint.gguf",
            kv={
                "tokenizer.chat_template": OFFICIAL_TEMPLATE,
                "tokenizer.ggml.eot_token_id": 106,
                "general.sampling.temp": 1.0,
                "general.sampling.top_k": 64,
                "general.sampling.top_p": 0.95,
                "general.sampling.min_p": 0.0,
                "general.sampling.penalty_repeat": 1.0,
                **kv,
            },
        )
    )
    assert codes(r) == expected


def test_tiny_model_gets_no_findings_when_complete(tmp_path: Path) -> None:
    r = inspect_gguf(patch_gguf(tiny_gguf(tmp_path / "m.gguf"), tmp_path / "p.gguf").dst)
    assert r.findings == []


def test_mmproj_report(tmp_path: Path) -> None:
    r = inspect_gguf(tiny_mmproj(tmp_path / "mmproj-gemma-3-4b-f16.gguf"))
    assert r.kind == "mmproj" and r.architecture == "clip"
    assert r.projector == {
        "projector_type": "gemma3",
        "image_size": 896,
        "patch_size": 14,
        "vision_blocks": 27,
        "embedding_length": 1152,
        "projection_dim": 640,
        "use_gelu": True,
        "name_matches_apps": True,
    }
    assert r.findings == [] and r.vocab_size is None
    badly_named = inspect_gguf(tiny_mmproj(tmp_path / "gemma-3-4b-vision.gguf"))
    assert codes(badly_named) == {"mmproj-name": "warning"}
    assert "mmproj-gemma-3-4b-vision.gguf" in badly_named.findings[0].message


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("mmproj-model-f16.gguf", True),
        ("gemma-3-4b-it-mmproj-f16.gguf", True),
        ("MMPROJ_gemma3.gguf", True),
        ("gemma3.mmproj.Q8_0.gguf", True),
        ("gemma-3-4b-vision.gguf", False),
        ("mmproj.gguf", False),
        ("mmprojector-x.gguf", False),
    ],
)
def test_app_file_name_rule(name: str, matches: bool) -> None:
    assert bool(MMPROJ_NAME.search(name)) is matches


def test_text_model_named_like_a_projector(tmp_path: Path) -> None:
    src = patch_gguf(tiny_gguf(tmp_path / "m.gguf"), tmp_path / "gemma-mmproj-q4.gguf").dst
    assert codes(inspect_gguf(src)) == {"model-named-like-mmproj": "warning"}


def test_other_architectures_are_reported_not_linted(tmp_path: Path) -> None:
    r = inspect_gguf(tiny_gguf(tmp_path / "llama.gguf", arch="llama"))
    assert (r.kind, r.architecture, r.context_length) == ("other", "llama", 32768)
    assert codes(r) == {"not-gemma3": "error"}
