"""`gemma3-pack doctor` on a corpus of broken GGUFs built from the real 270M, one defect each
(and combinations), and on clean files: every defect found, nothing else found, every fix
re-checked clean and loaded by llama.cpp, the input never modified.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import _assets_shapes
import _llama_alloc
import numpy as np
import pytest
from _assets_vision import hf_checkpoint_vision
from conftest import assert_one_line_error
from gguf.constants import GGUFValueType, TokenType

from gemma3_pack import patch_gguf
from gemma3_pack._chat import _LAUNCH_TEMPLATE, OFFICIAL_TEMPLATE
from gemma3_pack._export._fused import write_fused
from gemma3_pack._export._mmproj import write_mmproj
from gemma3_pack._gguf._inspect import inspect_gguf
from gemma3_pack._gguf._patch import HeaderEdits, build_header, encode_kv
from gemma3_pack._gguf._reader import open_gguf
from gemma3_pack._lint._doctor import doctor_gguf
from gemma3_pack._modelfile import check_modelfile
from gemma3_pack._rules import RULES, Finding, rules_markdown

U32, F32, STR, BOOL = (
    GGUFValueType.UINT32,
    GGUFValueType.FLOAT32,
    GGUFValueType.STRING,
    GGUFValueType.BOOL,
)


def _rewrite(
    src: Path,
    dst: Path,
    *,
    set_: dict[str, tuple[Any, GGUFValueType]] | None = None,
    drop: tuple[str, ...] = (),
    token_types: dict[int, int] | None = None,
) -> Path:
    """A copy of ``src`` with header edits: keys set, keys dropped (renamed out of the way, as a
    converter that never wrote them), token types changed. Tensor data copied as is."""
    plan = HeaderEdits()
    with open_gguf(src) as h:
        for key, (value, vtype) in (set_ or {}).items():
            plan.records[key] = encode_kv(key, value, vtype)
        for key in drop:
            kv = h.kvs[key]
            plan.records[key] = encode_kv(f"removed.{key}", kv.value, kv.vtype)
        plan.token_types.update(token_types or {})
        header = build_header(h, plan)
        with open(dst, "wb") as out, open(src, "rb") as f:
            out.write(header)
            f.seek(h.data_start)
            shutil.copyfileobj(f, out, 16 << 20)
    return dst


@pytest.fixture(scope="module")
def clean(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 270M after `gemma3-pack patch`: the clean file every defect starts from."""
    out = tmp_path_factory.mktemp("doctor") / "gemma-3-270m-it-Q4_K_M.gguf"
    patch_gguf(gguf_270m, out)
    return out


OFFICIAL_LIKE = "{{ bos_token }}<start_of_turn>user\n{{ messages[0]['content'] }}<end_of_turn>\n"

# name -> (header edits, the codes doctor must report — exactly these)
DEFECTS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "turn-token-normal": (
        {"token_types": {106: int(TokenType.NORMAL)}},
        {"turn-token-not-control"},
    ),
    "both-turn-tokens-user-defined": (
        {"token_types": {105: int(TokenType.USER_DEFINED), 106: int(TokenType.USER_DEFINED)}},
        {"turn-token-not-control"},
    ),
    "unofficial-template": (
        {"set_": {"tokenizer.chat_template": (OFFICIAL_LIKE, STR)}},
        {"template-not-official"},
    ),
    "literal-bos-template": (
        {"set_": {"tokenizer.chat_template": ("<bos>" + OFFICIAL_LIKE[15:], STR)}},
        {"template-not-official", "double-bos"},
    ),
    "launch-era-template": (
        {"set_": {"tokenizer.chat_template": (_LAUNCH_TEMPLATE, STR)}},
        {"template-launch-era"},
    ),
    "official-template-without-bos": (
        {
            "set_": {
                "tokenizer.chat_template": (OFFICIAL_TEMPLATE.removeprefix("{{ bos_token }}"), STR)
            }
        },
        {"template-no-bos"},
    ),
    "sampling-off-spec": (
        {"set_": {"general.sampling.temp": (0.7, F32)}},
        {"sampling-off-spec"},
    ),
    "sampling-missing": (
        {"drop": ("general.sampling.top_k", "general.sampling.min_p")},
        {"sampling-missing"},
    ),
    "eot-wrong": ({"set_": {"tokenizer.ggml.eot_token_id": (107, U32)}}, {"eot-unusual"}),
    "eot-missing": ({"drop": ("tokenizer.ggml.eot_token_id",)}, {"eot-missing"}),
    "eos-wrong": ({"set_": {"tokenizer.ggml.eos_token_id": (5, U32)}}, {"eos-unusual"}),
    "add-bos-false": ({"set_": {"tokenizer.ggml.add_bos_token": (False, BOOL)}}, {"add-bos-false"}),
    "rope-scaling-on-270m": (
        {
            "set_": {
                "gemma3.rope.scaling.type": ("linear", STR),
                "gemma3.rope.scaling.factor": (8.0, F32),
            }
        },
        {"rope-scaling"},
    ),
    "sliding-window-wrong": (
        {"set_": {"gemma3.attention.sliding_window": (1024, U32)}},
        {"sliding-window-wrong"},
    ),
    "sliding-window-missing": (
        {"drop": ("gemma3.attention.sliding_window",)},
        {"sliding-window-missing"},
    ),
    "sliding-window-pattern": (
        {"set_": {"gemma3.attention.sliding_window_pattern": (4, U32)}},
        {"sliding-window-pattern"},
    ),
    "context-length-8k": (
        {"set_": {"gemma3.context_length": (8192, U32)}},
        {"context-length"},
    ),
    "name-missing": ({"drop": ("general.name",)}, {"name-missing"}),
    "basename-missing": ({"drop": ("general.basename",)}, {"basename-missing"}),
    "file-type-mislabelled": (
        {"set_": {"general.file_type": (32, U32)}},  # says BF16, holds a Q4_K_M mix
        {"embedding-type-unusual", "filename-quant"},
    ),
    "everything-at-once": (
        {
            "set_": {
                "general.sampling.temp": (0.7, F32),
                "tokenizer.ggml.add_bos_token": (False, BOOL),
                "gemma3.rope.scaling.factor": (8.0, F32),
                "gemma3.context_length": (8192, U32),
                "gemma3.attention.sliding_window": (4096, U32),
            },
            "drop": ("general.name", "tokenizer.ggml.eot_token_id"),
            "token_types": {105: int(TokenType.NORMAL)},
        },
        {
            "sampling-off-spec",
            "add-bos-false",
            "rope-scaling",
            "context-length",
            "sliding-window-wrong",
            "name-missing",
            "eot-missing",
            "turn-token-not-control",
        },
    ),
}


def _codes(report: Any) -> set[str]:
    return {f.code for f in report.findings}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clean_file_has_no_findings(clean: Path) -> None:
    r = doctor_gguf(clean)
    assert r.findings == [] and r.ok


@pytest.mark.llama
@pytest.mark.parametrize("defect", list(DEFECTS))
def test_defect_found_fixed_rechecked_and_loadable(
    clean: Path, tmp_path: Path, defect: str
) -> None:
    edits, expected = DEFECTS[defect]
    broken = _rewrite(clean, tmp_path / "gemma-3-270m-it-Q4_K_M.gguf", **edits)
    before = _sha(broken)
    r = doctor_gguf(broken)
    assert _codes(r) == expected
    assert all(f.level == RULES[f.code].level for f in r.findings)

    fixed = tmp_path / "fixed-Q4_K_M.gguf"
    r = doctor_gguf(broken, fix=fixed)
    assert _sha(broken) == before  # the input is never modified
    assert r.after is not None and r.fixed == str(fixed)
    unfixable = {f.code for f in r.findings if f.fix not in ("doctor", "patch")}
    assert _codes(r.after) == unfixable
    assert unfixable <= {"embedding-type-unusual", "filename-quant"}
    if not unfixable:
        # every tensor byte is the clean file's: only the header changed
        with open_gguf(fixed) as a, open_gguf(clean) as b:
            assert [(t.name, t.offset, t.nbytes) for t in a.tensors] == [
                (t.name, t.offset, t.nbytes) for t in b.tensors
            ]
            assert a.buf[a.data_start :] == b.buf[b.data_start :]
    _llama_alloc.allocate(fixed, ctx=512)  # raises unless llama.cpp loads it


def test_size_facts_on_a_header_that_claims_4b(clean: Path, tmp_path: Path) -> None:
    # the 270M's header saying 34 blocks: doctor holds it to the 4B's facts (header only; such a
    # file's tensors do not match, so it is checked, fixed and re-checked, not loaded)
    claims = _rewrite(
        clean, tmp_path / "claims-4b-Q4_K_M.gguf", set_={"gemma3.block_count": (34, U32)}
    )
    r = doctor_gguf(claims)
    assert _codes(r) == {
        "rope-scaling",
        "sliding-window-wrong",
        "context-length",
        "vocab-size-unusual",
        "image-token-not-control",
    }
    fixed = doctor_gguf(claims, fix=tmp_path / "fixed-Q4_K_M.gguf")
    assert fixed.after is not None and _codes(fixed.after) == {"vocab-size-unusual"}
    with open_gguf(tmp_path / "fixed-Q4_K_M.gguf") as h:
        assert h.get("gemma3.rope.scaling.type") == "linear"
        assert h.get("gemma3.rope.scaling.factor") == 8.0
        assert h.get("gemma3.attention.sliding_window") == 1024
        assert h.get("gemma3.context_length") == 131072
        assert [int(h.array_item("tokenizer.ggml.token_type", i)) for i in (255999, 256000)] == [
            int(TokenType.CONTROL)
        ] * 2


def test_raw_real_270m_needs_the_patch(gguf_270m: Path, tmp_path: Path) -> None:
    r = doctor_gguf(gguf_270m)
    assert _codes(r) == {"template-missing", "sampling-missing", "eot-missing"}
    fixed = doctor_gguf(gguf_270m, fix=tmp_path / "gemma-3-270m-Q4_K_M.gguf")
    assert fixed.after is not None and fixed.after.findings == []


def test_file_names_apps_parse(clean: Path, tmp_path: Path) -> None:
    plain = tmp_path / "gemma-3-270m-it.gguf"
    shutil.copyfile(clean, plain)
    (f,) = doctor_gguf(plain).findings
    assert f.code == "filename-quant" and "gemma-3-270m-it-Q4_K_M.gguf" in f.message
    like_mmproj = tmp_path / "mmproj-gemma-3-270m-Q4_K_M.gguf"
    shutil.copyfile(clean, like_mmproj)
    assert _codes(doctor_gguf(like_mmproj)) == {"model-named-like-mmproj"}


@pytest.fixture(scope="module")
def tiny_mmproj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("doctor-mmproj") / "mmproj-tiny-vision-F16.gguf"
    return write_mmproj(
        hf_checkpoint_vision("release", text=False), out, name="Tiny", basename="tiny-vision"
    )


def test_pairs_that_do_not_belong_together(clean: Path, tiny_mmproj: Path) -> None:
    # the tiny projector maps onto 640-wide embeddings: the 270M's width, but 270M is text-only
    r = doctor_gguf(clean, tiny_mmproj)
    assert _codes(r) == {"pair-text-only-size", "pair-basename"}
    # onto a 1B-wide model it is the wrong width (the 7-layer shape is no released size)
    wide = doctor_gguf(_assets_shapes.synthetic_gguf("1b"), tiny_mmproj)
    assert "pair-width" in _codes(wide)
    assert "pair-text-only-size" not in _codes(wide)
    assert _codes(doctor_gguf(clean, clean)) == {"pair-not-mmproj"}


def test_projector_alone_and_misnamed(tiny_mmproj: Path, tmp_path: Path) -> None:
    assert doctor_gguf(tiny_mmproj).findings == []
    bad = tmp_path / "tiny-vision-F16.gguf"
    shutil.copyfile(tiny_mmproj, bad)
    assert _codes(doctor_gguf(bad)) == {"mmproj-name"}
    no_gelu = _rewrite(
        tiny_mmproj, tmp_path / "mmproj-x.gguf", set_={"clip.use_gelu": (False, BOOL)}
    )
    r = doctor_gguf(no_gelu, fix=tmp_path / "mmproj-fixed.gguf")
    assert _codes(r) == {"mmproj-gelu"}
    assert r.after is not None and r.after.findings == []


def test_fused_ollama_layout_is_reported(clean: Path, tmp_path: Path) -> None:
    fused = write_fused(
        clean, hf_checkpoint_vision("release", text=False), tmp_path / "gemma-3-270m-Q4_K_M.gguf"
    )
    (f,) = doctor_gguf(fused).findings
    assert f.code == "fused-vision" and f.level == "warning"


def test_rule_table_is_the_one_table(tmp_path: Path) -> None:
    # every code inspect, doctor and the Modelfile linter can emit is a row, with the row's level
    text = rules_markdown()
    for code, rule in RULES.items():
        assert f"| `{code}` | {rule.level} |" in text
    mf = tmp_path / "Modelfile"
    mf.write_text('FROM ./x.gguf\nTEMPLATE "{{ .Prompt }}"\nPARAMETER temperature 0.2\n')
    found = check_modelfile(mf)
    assert {f.code for f in found} >= {"template-not-gemma", "no-stop", "off-spec-parameter"}
    for f in found:
        assert isinstance(f, Finding)  # one Finding class for all three linters
        assert f.code in RULES and RULES[f.code].level == f.level, f
        assert f.fix == RULES[f.code].fix


def test_every_rule_has_exactly_one_check() -> None:
    # a lint rule is its row in RULES plus the one check registered under its code (inspect,
    # doctor and the Modelfile linter register theirs on import)
    import gemma3_pack._lint._litertlm_doctor  # noqa: F401  (registers the .litertlm checks)
    from gemma3_pack._rules import Checks, checked_codes

    assert set(checked_codes()) == set(RULES)
    with pytest.raises(ValueError, match="two checks"):
        Checks("gguf")("template-missing")(lambda subject: iter(()))
    with pytest.raises(ValueError, match="not one of"):
        Checks("modelfile")("template-missing")


def test_inspect_findings_carry_the_rule_fix(gguf_270m: Path) -> None:
    r = inspect_gguf(gguf_270m)
    assert {f.code: f.fix for f in r.findings} == {
        "template-missing": "patch",
        "sampling-missing": "patch",
        "eot-missing": "patch",
    }


def test_cli_doctor(cli, clean: Path, gguf_270m: Path, tmp_path: Path) -> None:
    r = cli("doctor", str(clean))
    assert r.code == 0 and "no findings" in r.stdout
    r = cli("doctor", str(gguf_270m), "--json")
    assert r.code == 1
    assert {f["code"] for f in json.loads(r.stdout)["findings"]} == {
        "template-missing",
        "sampling-missing",
        "eot-missing",
    }
    out = tmp_path / "fixed-Q4_K_M.gguf"
    r = cli("doctor", str(gguf_270m), "--fix", "-o", str(out))
    assert r.code == 0 and out.is_file() and "checked again: no findings" in r.stdout
    r = cli("doctor", "--rules")
    assert r.code == 0 and r.stdout.strip() == rules_markdown()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("doctor",), "give a GGUF"),
        (("doctor", "missing.gguf"), "missing.gguf"),
        (("doctor", "{gguf}", "--fix"), "-o"),
        (("doctor", "{gguf}", "-o", "x.gguf"), "--fix"),
        (("doctor", "{gguf}", "--fix", "-o", "{gguf}"), "input"),
    ],
)
def test_cli_doctor_bad_input(cli, clean: Path, args: tuple[str, ...], needle: str) -> None:
    before = _sha(clean)
    assert_one_line_error(cli(*(a.format(gguf=clean) for a in args)), needle)
    assert _sha(clean) == before


def test_fix_refuses_existing_output(cli, clean: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken-Q4_K_M.gguf"
    out.write_text("mine")
    assert_one_line_error(cli("doctor", str(clean), "--fix", "-o", str(out)), "exists")
    assert out.read_text() == "mine"


# --- layout conversions -------------------------------------------------------------------------


def _tensor_bytes(path: Path) -> dict[str, tuple[tuple[int, ...], str, bytes]]:
    with open_gguf(path) as h:
        return {
            t.name: (
                t.shape,
                t.type_name,
                bytes(h.buf[h.data_start + t.offset : h.data_start + t.offset + (t.nbytes or 0)]),
            )
            for t in h.tensors
        }


@pytest.fixture(scope="module")
def fused_270m(clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fused") / "gemma-3-270m-vision-Q4_K_M.gguf"
    return write_fused(clean, hf_checkpoint_vision("release", text=False), out)


def test_split_fused_gives_the_llama_cpp_pair(
    clean: Path, fused_270m: Path, tiny_mmproj: Path, tmp_path: Path
) -> None:
    from gemma3_pack._gguf._layout import split_fused

    before = _sha(fused_270m)
    text, mm = split_fused(fused_270m, tmp_path / "t-Q4_K_M.gguf", tmp_path / "mmproj-t.gguf")
    assert _sha(fused_270m) == before
    assert _sha(text) == _sha(clean)  # the text GGUF comes back byte for byte
    got, want = _tensor_bytes(mm), _tensor_bytes(tiny_mmproj)  # llama.cpp names, types, shapes
    assert {n: v[:2] for n, v in got.items()} == {n: v[:2] for n, v in want.items()}
    widened = {n for n in got if got[n][2] != want[n][2]}
    assert widened == {"v.patch_embd.weight", "v.position_embd.weight"}  # F16 -> F32, exact
    for n in widened:
        a = np.frombuffer(got[n][2], np.float32)
        b = np.frombuffer(want[n][2], np.float32)
        assert np.array_equal(a, b.astype(np.float16).astype(np.float32))
    r = doctor_gguf(mm)
    assert r.findings == []


@pytest.mark.llama
@pytest.mark.slow
def test_split_pair_runs_in_mtmd(fused_270m: Path, tmp_path: Path) -> None:
    from _vision_ref import assert_matches_reference as _assert_matches_reference
    from _vision_ref import clip_embedding as _clip_embedding
    from _vision_ref import image as _image

    from gemma3_pack._gguf._layout import split_fused

    text, mm = split_fused(fused_270m, tmp_path / "t-Q4_K_M.gguf", tmp_path / "mmproj-t.gguf")
    rgb = _image()
    _assert_matches_reference(_clip_embedding(text, mm, rgb), rgb)


def test_fuse_pair_gives_ollamas_layout_and_round_trips(
    clean: Path, fused_270m: Path, tmp_path: Path
) -> None:
    from gemma3_pack._gguf._layout import fuse_pair, split_fused

    text, mm = split_fused(fused_270m, tmp_path / "t-Q4_K_M.gguf", tmp_path / "mmproj-t.gguf")
    refused = fuse_pair(text, mm, tmp_path / "fused-Q4_K_M.gguf")
    got, want = _tensor_bytes(refused), _tensor_bytes(fused_270m)
    assert set(got) == set(want)
    differ = {n for n in got if got[n] != want[n]}
    assert differ == {"v.patch_embedding.weight", "v.position_embedding.weight"}  # kept F32
    with open_gguf(refused) as a, open_gguf(fused_270m) as b:
        assert {k: v.value for k, v in a.kvs.items()} == {k: v.value for k, v in b.kvs.items()}
    text2, mm2 = split_fused(refused, tmp_path / "t2-Q4_K_M.gguf", tmp_path / "mmproj-t2.gguf")
    assert _sha(text2) == _sha(clean) and _tensor_bytes(mm2) == _tensor_bytes(mm)


def test_layout_conversions_refuse_and_write_nothing(
    clean: Path, fused_270m: Path, tiny_mmproj: Path, tmp_path: Path
) -> None:
    from gemma3_pack._errors import InputError, NotGemma3, OutputError
    from gemma3_pack._gguf._layout import fuse_pair, split_fused

    with pytest.raises(InputError, match="already a text-only"):
        split_fused(clean, tmp_path / "a.gguf", tmp_path / "b.gguf")
    with pytest.raises(NotGemma3):
        fuse_pair(fused_270m, tiny_mmproj, tmp_path / "c.gguf")
    with pytest.raises(InputError, match="wide"):
        fuse_pair(_assets_shapes.synthetic_gguf("1b"), tiny_mmproj, tmp_path / "d.gguf")
    with pytest.raises(OutputError, match="input"):
        split_fused(fused_270m, fused_270m, tmp_path / "e.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_split_and_fuse(cli, fused_270m: Path, tmp_path: Path) -> None:
    out = tmp_path / "gemma-3-270m-Q4_K_M.gguf"
    r = cli("doctor", str(fused_270m), "--split", "-o", str(out))
    # written, and the pair's check finds an error (a 270M takes no projector): exit 1, as
    # doctor exits without --split (issue 19)
    assert r.code == 1, r.stderr
    mm = tmp_path / "mmproj-gemma-3-270m-Q4_K_M.gguf"
    assert out.is_file() and mm.is_file() and "error   pair-text-only-size" in r.stdout
    fused = tmp_path / "fused-Q4_K_M.gguf"
    r = cli("doctor", str(out), str(mm), "--fuse", "-o", str(fused), "--json")
    assert r.code == 0, r.stderr
    assert [f["code"] for f in json.loads(r.stdout)["findings"]] == ["fused-vision"]
    assert_one_line_error(
        cli("doctor", str(out), "--fuse", "-o", str(tmp_path / "x.gguf")), "MMPROJ"
    )


@pytest.mark.ollama
@pytest.mark.slow
def test_fused_from_a_pair_answers_images_in_ollama(
    ollama_daemon, fused_270m: Path, tmp_path: Path
) -> None:
    """The fused file `--fuse` writes (patch/position embeddings kept F32) runs on Ollama's own
    Go engine: the image adds its 256 tokens (+ markers) to the prompt, and a reply comes back."""
    import io
    import uuid

    import httpx
    from PIL import Image

    from gemma3_pack import Client
    from gemma3_pack._gguf._layout import fuse_pair, split_fused

    text, mm = split_fused(fused_270m, tmp_path / "t-Q4_K_M.gguf", tmp_path / "mmproj-t.gguf")
    fused = fuse_pair(text, mm, tmp_path / "refused-Q4_K_M.gguf")
    name = f"h6-fused-{uuid.uuid4().hex[:6]}"
    buf = io.BytesIO()
    Image.new("RGB", (896, 896), (200, 30, 30)).save(buf, format="PNG")
    short = {"num_predict": 4, "seed": 7}
    url = str(ollama_daemon.url)
    try:
        with Client(url, timeout=600) as client:
            assert client.create_from_gguf(fused, name, progress=False).status == "success"
        with Client(url, model=name, timeout=300) as client:
            assert client.has_vision()
            with_image = client.chat(
                "Describe the picture.", images=[buf.getvalue()], options=short
            )
            text_only = client.chat("Describe the picture.", options=short)
        extra = (with_image.prompt_eval_count or 0) - (text_only.prompt_eval_count or 0)
        assert with_image.done and 0 < (with_image.eval_count or 0) <= 4
        assert 256 <= extra <= 256 + 8
    finally:
        httpx.request("DELETE", f"{url}/api/delete", json={"model": name}, timeout=60)
