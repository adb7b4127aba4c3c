"""Modelfiles: render <-> parse round trips, Ollama's grammar, lint, create kwargs, CLI, drift.

The parser cases follow Ollama's own parser tests (parser/parser_test.go): quoting, multi-line
values, comments, case-insensitive commands, accumulated stops and errors with line numbers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, assert_one_line_error

from gemma3_pack._chat import LICENSE_NOTICE, OLLAMA_TEMPLATE
from gemma3_pack._errors import InputNotFound, ModelfileError, NotGGUF, OutputError, UsageError
from gemma3_pack._family import SAMPLING, VARIANTS
from gemma3_pack._modelfile import (
    LIBRARY_TEMPLATE_4B19,
    LIBRARY_TEMPLATE_E0A4,
    REGENERATE,
    Finding,
    ModelfileSpec,
    check_modelfile,
    create_kwargs,
    parse_modelfile,
    render_modelfile,
    spec_for_gguf,
    spec_for_variant,
    variant_modelfile,
    write_modelfile,
)

PUBLISHED = [v for v in VARIANTS.values() if v.from_ref is not None]


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    """A file with GGUF magic; Modelfile code only checks the magic, never the contents."""
    path = tmp_path / "models" / "my gemma.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(24))
    return path


# ------------------------------------------------------------------------------ render


def test_render_4b_exact_text() -> None:
    text = render_modelfile(spec_for_variant("gemma3-4b-it", num_ctx=8192, system="Be brief."))
    assert text == (
        "FROM gemma3:4b\n"
        f'TEMPLATE """{OLLAMA_TEMPLATE}"""\n'
        "PARAMETER temperature 1\n"
        "PARAMETER top_k 64\n"
        "PARAMETER top_p 0.95\n"
        "PARAMETER min_p 0\n"
        "PARAMETER repeat_penalty 1\n"
        "PARAMETER num_ctx 8192\n"
        'PARAMETER stop "<end_of_turn>"\n'
        "SYSTEM Be brief.\n"
        f'LICENSE """{LICENSE_NOTICE}"""\n'
    )
    # No newline before the closing """ of TEMPLATE: Ollama would render it into every prompt.
    assert '}}"""\n' in text and '\n"""' not in text


@pytest.mark.parametrize(
    ("variant", "from_"),
    [
        ("gemma3-4b-it", "gemma3:4b"),
        ("gemma3:12b", "gemma3:12b"),
        ("gemma3-1b-it-qat", "gemma3:1b-it-qat"),
        ("gemma3-270m-it-qat", "hf.co/google/gemma-3-270m-it-qat-q4_0-gguf:Q4_0"),
    ],
)
def test_spec_for_variant_from(variant: str, from_: str) -> None:
    spec = spec_for_variant(variant)
    assert spec.from_ == [from_]
    assert spec.parameters == SAMPLING and spec.parameters is not SAMPLING
    assert spec.stop == ["<end_of_turn>"] and spec.license == LICENSE_NOTICE


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("gemma3-4b-pt",), "no published Ollama model"),
        (("gemma3-9b-it",), "unknown Gemma 3 variant"),
    ],
)
def test_spec_for_variant_refuses(args, needle) -> None:
    with pytest.raises(UsageError, match=needle):
        spec_for_variant(*args)


@pytest.mark.parametrize(
    ("num_ctx", "needle"), [(0, "positive"), (-5, "positive"), (True, "positive"), (40000, "32768")]
)
def test_num_ctx_checked(num_ctx, needle) -> None:
    with pytest.raises(UsageError, match=needle):
        spec_for_variant("gemma3-1b-it", num_ctx=num_ctx)


@pytest.mark.parametrize("variant", PUBLISHED, ids=[v.name for v in PUBLISHED])
def test_round_trip_every_variant(variant) -> None:
    spec = spec_for_variant(variant, num_ctx=4096)
    assert parse_modelfile(render_modelfile(spec)) == spec


TRICKY_SYSTEMS = [
    "plain",
    'He said "hi"',
    '"quoted at both ends"',
    '"starts with a quote',
    'ends with a quote"',
    'ends with two quotes""',
    "  leading and trailing spaces  ",
    "\ttab first",
    "multi\nline\nprompt",
    'multi-line "with" quotes\nsecond line ends in a quote"\nthird',
    "\nstarts with a newline",
    "ends with a newline\n",
    "# looks like a comment\nFROM evil:latest\nPARAMETER temperature 9",
    "{{ .System }} {{ .Prompt }} }}",
    "日本語 · عربي · עברית · 🦙✨",
    "",
    '"',
    '""',
    "a\r\nwindows line",
]


@pytest.mark.parametrize("system", TRICKY_SYSTEMS, ids=[repr(s)[:30] for s in TRICKY_SYSTEMS])
def test_round_trip_tricky_system_prompts(system: str) -> None:
    spec = spec_for_variant("gemma3-1b-it", system=system)
    spec.messages = [("user", system or "x"), ("assistant", "ok " + system)]
    text = render_modelfile(spec)
    assert parse_modelfile(text) == spec


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('three """ quotes', '"""'),
        ("zero\u200dwidth joiner", "U+200D"),
        ("nul \x00 byte", "U+0000"),
        ("no-break\u00a0space", "U+00A0"),
    ],
)
def test_unquotable_values_are_refused(value: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle.replace("+", r"\+")) as info:
        render_modelfile(spec_for_variant("gemma3-1b-it", system=value))
    assert "\n" not in str(info.value)


def test_template_with_triple_quotes_is_refused() -> None:
    spec = ModelfileSpec(from_=["gemma3:1b"], template='{{ .Prompt }}"""')
    with pytest.raises(UsageError, match="TEMPLATE"):
        render_modelfile(spec)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (ModelfileSpec(from_=[]), "FROM"),
        (ModelfileSpec(from_=["x"], parameters={"Temperature": 1}), "unknown parameter"),
        (ModelfileSpec(from_=["x"], parameters={"stop": 1}), "ModelfileSpec.stop"),
        (ModelfileSpec(from_=["x"], stop=[""]), "empty stop"),
        (ModelfileSpec(from_=["x"], messages=[("tool", "x")]), "MESSAGE role"),
    ],
)
def test_render_refuses_bad_specs(spec, needle) -> None:
    with pytest.raises(UsageError, match=needle):
        render_modelfile(spec)


def test_write_is_atomic_and_checks_folder(tmp_path: Path) -> None:
    spec = spec_for_variant("gemma3-1b-it")
    out = write_modelfile(spec, tmp_path / "Modelfile")
    assert out.read_text(encoding="utf-8") == render_modelfile(spec)
    with pytest.raises(OutputError, match="does not exist"):
        write_modelfile(spec, tmp_path / "missing" / "Modelfile")
    bad = ModelfileSpec(from_=["x"], system='a """ b')
    with pytest.raises(UsageError):
        write_modelfile(bad, tmp_path / "Modelfile")
    assert out.read_text(encoding="utf-8") == render_modelfile(spec)  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Modelfile"]  # no temp files left


# ------------------------------------------------------------------------------ gguf specs


def test_spec_for_gguf_absolute_and_relative(fake_gguf: Path, tmp_path: Path) -> None:
    mmproj = fake_gguf.with_name("mmproj-my gemma-F16.gguf")
    mmproj.write_bytes(fake_gguf.read_bytes())
    spec = spec_for_gguf(fake_gguf, mmproj)
    assert spec.from_ == [str(fake_gguf.resolve()), str(mmproj.resolve())]
    beside = spec_for_gguf(fake_gguf, mmproj, relative_to=fake_gguf.parent)
    assert beside.from_ == ["./my gemma.gguf", "./mmproj-my gemma-F16.gguf"]
    above = spec_for_gguf(fake_gguf, relative_to=tmp_path / "elsewhere")
    assert above.from_ == [str(fake_gguf)]  # outside the folder: absolute, not "../"
    text = render_modelfile(beside)
    assert text.startswith("FROM ./my gemma.gguf\nFROM ./mmproj-my gemma-F16.gguf\nTEMPLATE")
    assert parse_modelfile(text).from_ == beside.from_


def test_spec_for_gguf_real_270m(gguf_270m: Path) -> None:
    spec = spec_for_gguf(gguf_270m, num_ctx=2048)
    assert spec.from_ == [str(gguf_270m.resolve())]
    assert spec.parameters["num_ctx"] == 2048


def test_spec_for_gguf_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="does not exist"):
        spec_for_gguf(tmp_path / "nope.gguf")
    with pytest.raises(NotGGUF, match="is a folder, not a GGUF"):  # as open_gguf says it
        spec_for_gguf(tmp_path)
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(NotGGUF, match="not a GGUF"):
        spec_for_gguf(text)


# ------------------------------------------------------------------------------ num_ctx="auto"


@pytest.mark.parametrize(
    "budget",
    [dict(memory="16GB"), dict(gpu="rtx4090"), dict(gpu=["12GB", "12GB"])],
    ids=["memory", "gpu", "two-gpus"],
)
def test_num_ctx_auto_in_the_library_is_the_planners(cli, budget: dict) -> None:
    """``num_ctx="auto"`` is the planner's largest context, and the CLI is this same call."""
    from gemma3_pack._memory._plan_gpu import auto_context

    spec = spec_for_variant("gemma3-12b-it", num_ctx="auto", tools=True, **budget)
    n = auto_context("gemma3-12b-it", budget.get("memory"), gpu=budget.get("gpu"))
    assert spec.parameters["num_ctx"] == n
    assert 256 <= n <= 131072 and n % 256 == 0
    gpus = budget.get("gpu", [])
    flags = (
        ["--memory", budget["memory"]]
        if "memory" in budget
        else [a for g in ([gpus] if isinstance(gpus, str) else gpus) for a in ("--gpu", g)]
    )
    r = cli("modelfile", "gemma3-12b-it", "--num-ctx", "auto", *flags, "--tools", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["spec"] == spec.to_dict()


def test_num_ctx_auto_for_a_gguf_plans_that_file(gguf_270m: Path) -> None:
    from gemma3_pack._memory._plan_gpu import auto_context

    spec = spec_for_gguf(gguf_270m, num_ctx="auto", memory="1GB")
    assert spec.parameters["num_ctx"] == auto_context(str(gguf_270m), "1GB")
    assert spec.from_ == [str(gguf_270m.resolve())]


AUTO_REFUSALS = [
    (dict(num_ctx="auto"), ["--num-ctx", "auto"], "needs --memory or --gpu"),
    (dict(num_ctx=4096, memory="16GB"), ["--num-ctx", "4096", "--memory", "16GB"], "only go"),
    (dict(gpu="24GB"), ["--gpu", "24GB"], "only go with --num-ctx auto"),
    (dict(num_ctx="lots"), ["--num-ctx", "lots"], "a number of tokens or `auto`"),
    (
        dict(num_ctx="auto", memory="16GB", gpu="24GB"),
        ["--num-ctx", "auto", "--memory", "16GB", "--gpu", "24GB"],
        "not both",
    ),
    (dict(num_ctx="auto", gpu="4GB"), ["--num-ctx", "auto", "--gpu", "4GB"], "does not fit"),
]


@pytest.mark.parametrize(
    ("kwargs", "flags", "needle"), AUTO_REFUSALS, ids=[n for _, _, n in AUTO_REFUSALS]
)
def test_num_ctx_auto_refusals_are_the_clis(cli, kwargs: dict, flags: list, needle: str) -> None:
    """The library refuses what the CLI refuses, with the very same one-line message."""
    with pytest.raises(UsageError, match=re.escape(needle)) as err:
        spec_for_variant("gemma3-27b-it", **kwargs)
    r = cli("modelfile", "gemma3-27b-it", *flags)
    assert_one_line_error(r, needle)
    assert r.stderr.strip() == f"error: {err.value}"


# ------------------------------------------------------------------------------ create kwargs


def test_create_kwargs_for_a_variant() -> None:
    kwargs = create_kwargs(spec_for_variant("gemma3-4b-it", system="S"))
    assert kwargs == {
        "from_": "gemma3:4b",
        "template": OLLAMA_TEMPLATE,
        "parameters": {
            "temperature": 1.0,
            "top_k": 64,
            "top_p": 0.95,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "stop": ["<end_of_turn>"],
        },
        "system": "S",
        "license": LICENSE_NOTICE,
    }
    import inspect

    import ollama  # the kwargs are exactly Client.create's parameters

    params = inspect.signature(ollama.Client.create).parameters
    assert set(kwargs) <= set(params)


def test_create_kwargs_for_files(fake_gguf: Path) -> None:
    spec = spec_for_gguf(fake_gguf)
    digest = "sha256:" + "ab" * 32
    kwargs = create_kwargs(spec, {"my gemma.gguf": digest})
    assert kwargs["files"] == {"my gemma.gguf": digest} and "from_" not in kwargs
    with pytest.raises(UsageError, match="create_blob"):
        create_kwargs(spec)
    with pytest.raises(UsageError, match="sha256"):
        create_kwargs(spec, {"my gemma.gguf": "ab"})


def test_create_kwargs_messages_and_licenses() -> None:
    spec = parse_modelfile(
        "FROM gemma3:1b\nLICENSE A\nLICENSE B\nMESSAGE user hi\nMESSAGE assistant hello there\n"
    )
    kwargs = create_kwargs(spec)
    assert kwargs["license"] == ["A", "B"]
    assert kwargs["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
    ]
    assert "template" not in kwargs and "parameters" not in kwargs


# ------------------------------------------------------------------------------ parser

PARSES = [
    (
        "unquoted to end of line",
        "FROM foo\nSYSTEM You are a file parser. Always parse things.",
        {"system": "You are a file parser. Always parse things."},
    ),
    (
        "triple-quoted multi-line",
        'FROM foo\nSYSTEM """\nYou are a multiline file parser.\n"""',
        {"system": "\nYou are a multiline file parser.\n"},
    ),
    (
        "single-quoted multi-line",
        'FROM foo\nSYSTEM "line one\nline two"',
        {"system": "line one\nline two"},
    ),
    (
        "quotes inside triple",
        'FROM foo\nSYSTEM """You are a "parser"."""',
        {"system": 'You are a "parser".'},
    ),
    ("empty quoted", 'FROM foo\nSYSTEM ""', {"system": ""}),
    ("empty triple", 'FROM foo\nSYSTEM """"""', {"system": ""}),
    ("outer whitespace trimmed", "FROM foo\nSYSTEM    padded   \t", {"system": "padded"}),
    ("quoted keeps inner whitespace", 'FROM foo\nSYSTEM "  padded  "', {"system": "  padded  "}),
    (
        "case-insensitive commands",
        "from foo\nsYsTeM hi\nparameter top_k 40",
        {"system": "hi", "parameters": {"top_k": 40}},
    ),
    (
        "comments and blank lines",
        "# a comment\n\n   \nFROM foo\n# SYSTEM ignored\n",
        {"from_": ["foo"], "system": None},
    ),
    ("hash mid-line is data", "FROM foo # not a comment", {"from_": ["foo # not a comment"]}),
    (
        "tab separator",
        "FROM\tfoo\nPARAMETER\tnum_ctx\t4096",
        {"from_": ["foo"], "parameters": {"num_ctx": 4096}},
    ),
    ("BOM", "\ufeffFROM foo", {"from_": ["foo"]}),
    ("CRLF", "FROM foo\r\nSYSTEM hi\r\n", {"system": "hi"}),
    (
        "stops accumulate",
        'FROM foo\nPARAMETER stop "<end_of_turn>"\nPARAMETER stop <eos>\n'
        'PARAMETER stop "  spaced "',
        {"stop": ["<end_of_turn>", "<eos>", "  spaced "]},
    ),
    (
        "typed parameters",
        "FROM foo\nPARAMETER temperature 0.7\nPARAMETER seed -1\nPARAMETER use_mmap false",
        {"parameters": {"temperature": 0.7, "seed": -1, "use_mmap": False}},
    ),
    ("deprecated parameter skipped", "FROM foo\nPARAMETER mirostat 2", {"parameters": {}}),
    ("last TEMPLATE wins", 'FROM foo\nTEMPLATE a\nTEMPLATE """b"""', {"template": "b"}),
    (
        "two FROM lines",
        "FROM ./m.gguf\nFROM ./mmproj.gguf",
        {"from_": ["./m.gguf", "./mmproj.gguf"]},
    ),
    (
        "messages",
        "FROM foo\nMESSAGE system Be nice.\nMESSAGE user Hey: there!",
        {"messages": [("system", "Be nice."), ("user", "Hey: there!")]},
    ),
    (
        "other commands kept",
        "FROM foo\nADAPTER ./lora.gguf\nREQUIRES 0.14.0",
        {"extra": [("adapter", "./lora.gguf"), ("requires", "0.14.0")]},
    ),
    ("control characters dropped like Ollama", "FROM foo\nSYSTEM a\x07b", {"system": "ab"}),
]


@pytest.mark.parametrize(("case", "text", "expected"), PARSES, ids=[p[0] for p in PARSES])
def test_parse(case: str, text: str, expected: dict) -> None:
    spec = parse_modelfile(text)
    for key, value in expected.items():
        assert getattr(spec, key) == value, key


PARSE_ERRORS = [
    ("unknown command", "FROM foo\nINSTRUCTION do it", "(line 2): command must be one of"),
    ("command without value", "FROM foo\nSYSTEM\n", "(line 3): command must be one of"),
    ("bad message role", "FROM foo\nMESSAGE badguy hi", "(line 2): message role must be one of"),
    ("capitalised role", "FROM foo\nMESSAGE User hi", "message role must be one of"),
    ("unterminated triple", 'FROM foo\nSYSTEM """never closed\nmore', "(line 2): unexpected EOF"),
    ("unterminated single", 'FROM foo\nSYSTEM "', "(line 2): unexpected EOF"),
    ("mismatched quotes", 'FROM foo\nSYSTEM """ "', "unexpected EOF"),
    ("bad parameter name", "FROM foo\nPARAMETER top-k 3", "(line 2): unexpected EOF"),
    ("unknown parameter", "FROM foo\n\nPARAMETER Temperature 1", "(line 3): unknown parameter"),
    ("bad int", "FROM foo\nPARAMETER top_k 6.4", "(line 2): invalid int value [6.4]"),
    ("bad float", "FROM foo\nPARAMETER top_p high", "invalid float value [high]"),
    ("no FROM", "SYSTEM hi", "no FROM line"),
    ("dangling command", "FROM foo\nPARAMETER", "unexpected EOF"),
]


@pytest.mark.parametrize(("case", "text", "needle"), PARSE_ERRORS, ids=[p[0] for p in PARSE_ERRORS])
def test_parse_errors(case: str, text: str, needle: str) -> None:
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ lint

GOOD = render_modelfile(spec_for_variant("gemma3-4b-it"))


def _swap(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


LINTS = [
    ("clean", GOOD, []),
    ("ollama.com 270m template is fine", _swap(OLLAMA_TEMPLATE, LIBRARY_TEMPLATE_4B19), []),
    ("no FROM", GOOD.replace("FROM gemma3:4b\n", ""), [("error", "no-from")]),
    (
        "no TEMPLATE",
        GOOD.split("TEMPLATE")[0] + "PARAMETER stop <end_of_turn>\n",
        [("warning", "no-template")],
    ),
    (
        "system as own turn",
        _swap(OLLAMA_TEMPLATE, LIBRARY_TEMPLATE_E0A4),
        [("warning", "template-system-turn")],
    ),
    (
        "trailing newline in TEMPLATE",
        _swap(f'{OLLAMA_TEMPLATE}"""', f'{OLLAMA_TEMPLATE}\n"""'),
        [("warning", "template-custom"), ("error", "template-trailing-newline")],
    ),
    (
        "non-Gemma TEMPLATE",
        _swap(OLLAMA_TEMPLATE, "<|im_start|>{{ .Prompt }}<|im_end|>"),
        [("error", "template-not-gemma")],
    ),
    (
        "legacy TEMPLATE",
        _swap(OLLAMA_TEMPLATE, "<start_of_turn>user\n{{ .Prompt }}<end_of_turn>"),
        [("warning", "template-legacy")],
    ),
    (
        "<bos> in TEMPLATE",
        _swap("{{- $first := true }}", "<bos>{{- $first := true }}"),
        [("warning", "template-custom"), ("error", "template-bos")],
    ),
    (
        "image token in TEMPLATE",
        _swap(
            "{{ .Content }}<end_of_turn>\n{{ $first",
            "<start_of_image>{{ .Content }}<end_of_turn>\n{{ $first",
        ),
        [("warning", "template-custom"), ("error", "template-image-token")],
    ),
    ("missing stop", _swap('PARAMETER stop "<end_of_turn>"\n', ""), [("error", "no-stop")]),
    (
        "off-spec params",
        _swap("temperature 1\n", "temperature 0.1\n").replace("top_k 64", "top_k 40"),
        [("warning", "off-spec-parameter"), ("warning", "off-spec-parameter")],
    ),
    (
        "unknown parameter",
        GOOD + "PARAMETER Top_K 64\nPARAMETER tfs_z 1\n",
        [("error", "unknown-parameter"), ("error", "unknown-parameter")],
    ),
    (
        "deprecated parameter",
        GOOD + "PARAMETER penalize_newline true\n",
        [("warning", "deprecated-parameter")],
    ),
    ("bad value", GOOD + "PARAMETER num_ctx lots\n", [("error", "bad-parameter-value")]),
    (
        "mmproj as ADAPTER",
        GOOD + "ADAPTER ./mmproj-gemma-3-4b-F16.gguf\n",
        [("error", "mmproj-as-adapter")],
    ),
    ("unknown command", GOOD + "SAMPLER greedy\n", [("error", "syntax")]),
    (
        "local GGUF without sampling settings",
        f'FROM ./model.gguf\nTEMPLATE """{OLLAMA_TEMPLATE}"""\nPARAMETER stop <end_of_turn>\n'
        "PARAMETER top_k 64\n",
        [("warning", "unset-parameter")] * 3,
    ),
    (
        "library tag inherits ollama.com's settings",
        f'FROM gemma3:4b\nTEMPLATE """{OLLAMA_TEMPLATE}"""\nPARAMETER stop <end_of_turn>\n',
        [],
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), LINTS, ids=[c[0] for c in LINTS])
def test_lint(case: str, text: str, expected: list[tuple[str, str]]) -> None:
    findings = check_modelfile(text)
    assert [(f.level, f.code) for f in findings] == expected
    for f in findings:
        assert f.message and "\n" not in f.message


def test_unset_parameters_name_ollama_defaults() -> None:
    findings = check_modelfile(
        "FROM hf.co/someone/gemma-3-4b-it-GGUF:Q4_K_M\n"
        "PARAMETER stop <end_of_turn>\nPARAMETER temperature 1\n"
        "PARAMETER repeat_penalty 1\n"
    )
    unset = [f.message for f in findings if f.code == "unset-parameter"]
    assert unset == [
        "top_k is not set: Ollama's default 40 applies, the Gemma team's is 64; "
        "add PARAMETER top_k 64",
        "top_p is not set: Ollama's default 0.9 applies, the Gemma team's is 0.95; "
        "add PARAMETER top_p 0.95",
    ]


def test_lint_reports_line_numbers() -> None:
    findings = check_modelfile(
        "FROM gemma3:1b\nPARAMETER stop <end_of_turn>\nPARAMETER temperature 0.2\nFOO bar\n"
    )
    assert findings == [Finding("syntax", "error", findings[0].message, 4)]
    assert findings[0].message.startswith("(line 4): command must be one of")
    off = check_modelfile("FROM gemma3:1b\nPARAMETER stop <end_of_turn>\n\nPARAMETER top_p 0.5")
    codes = [(f.code, f.line) for f in off]
    assert ("off-spec-parameter", 4) in codes


def test_lint_reads_files_in_utf8_and_utf16(tmp_path: Path) -> None:
    utf8 = tmp_path / "Modelfile"
    utf8.write_text(GOOD, encoding="utf-8")
    assert check_modelfile(utf8) == [] and check_modelfile(str(utf8)) == []
    utf16 = tmp_path / "Modelfile.utf16"
    utf16.write_bytes(GOOD.encode("utf-16"))  # with BOM, as PowerShell writes it
    assert check_modelfile(utf16) == []
    with pytest.raises(InputNotFound):
        check_modelfile(tmp_path / "missing")


# ------------------------------------------------------------------------------ modelfiles/


def test_modelfiles_folder_has_not_drifted() -> None:
    folder = ROOT / "modelfiles"
    expected = {f"{v.name}.Modelfile": variant_modelfile(v) for v in PUBLISHED}
    present = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.Modelfile")}
    stale = sorted(n for n in expected if present.get(n) != expected[n])
    extra = sorted(set(present) - set(expected))
    assert not stale and not extra, (
        f"modelfiles/ is out of date (stale: {stale}, extra: {extra}); run `{REGENERATE}`"
    )


def test_committed_modelfiles_lint_clean_and_round_trip() -> None:
    for v in PUBLISHED:
        text = variant_modelfile(v)
        assert check_modelfile(text) == [], v.name
        assert parse_modelfile(text) == spec_for_variant(v), v.name
        assert text.startswith(f"# Gemma 3 {v.size.params} ")
        assert f"FROM {v.from_ref}\n" in text


# ------------------------------------------------------------------------------ CLI


def test_cli_variant_to_stdout(cli) -> None:
    result = cli("modelfile", "gemma3:1b", "--system", "Answer in French.", "--num-ctx", "4096")
    assert result.code == 0, result.stderr
    assert result.stdout == render_modelfile(
        spec_for_variant("gemma3-1b-it", system="Answer in French.", num_ctx=4096)
    )


@pytest.mark.parametrize("target", ["google/gemma-3-4b-it", "gemma3-4b-it", "gemma3:4b"])
def test_cli_variant_spellings(cli, target: str) -> None:
    result = cli("modelfile", target)
    assert result.code == 0, result.stderr
    assert result.stdout == render_modelfile(spec_for_variant("gemma3-4b-it"))


def test_cli_gguf_pair_to_file_json_and_check(cli, fake_gguf: Path, tmp_path: Path) -> None:
    mmproj = fake_gguf.with_name("mmproj-F16.gguf")
    mmproj.write_bytes(fake_gguf.read_bytes())
    out = fake_gguf.parent / "Modelfile"
    result = cli("modelfile", str(fake_gguf), str(mmproj), "-o", str(out), "--json")
    assert result.code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["path"] == str(out)
    assert payload["spec"]["from_"] == ["./my gemma.gguf", "./mmproj-F16.gguf"]
    assert out.read_text(encoding="utf-8") == payload["modelfile"]

    ok = cli("modelfile", "--check", str(out))
    assert (ok.code, ok.stdout.strip()) == (0, f"{out}: OK (no findings)")
    bad = tmp_path / "Bad.Modelfile"
    bad.write_text("FROM gemma3:1b\nPARAMETER temperature 0.1\n", encoding="utf-8")
    lint = cli("modelfile", "--check", str(bad))
    assert lint.code == 1
    assert f"{bad}: warning: no TEMPLATE" in lint.stdout
    assert f"{bad}:2: warning: temperature 0.1 differs from the Gemma team's 1" in lint.stdout
    assert "[no-stop]" in lint.stdout and "[off-spec-parameter]" in lint.stdout
    as_json = json.loads(cli("modelfile", "--check", str(bad), "--json").stdout)
    assert (as_json["errors"], as_json["warnings"]) == (1, 2)  # gemma3:1b inherits params
    assert [f["code"] for f in as_json["findings"]] == [
        "no-template",
        "no-stop",
        "off-spec-parameter",
    ]


def test_cli_all_regenerates(cli, tmp_path: Path) -> None:
    target = tmp_path / "mf"
    result = cli("modelfile", "--all", str(target))
    assert result.code == 0, result.stderr
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(f"{v.name}.Modelfile" for v in PUBLISHED)
    assert (target / "gemma3-4b-it.Modelfile").read_text(encoding="utf-8") == (
        ROOT / "modelfiles" / "gemma3-4b-it.Modelfile"
    ).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("modelfile", "missing/model.gguf"), ("does not exist", "model.gguf")),
        (("modelfile", "gemma3-9b-it"), ("unknown Gemma 3 variant",)),
        (("modelfile", "gemma3-4b-pt"), ("no published",)),
        (("modelfile",), ("exactly one of",)),
        (("modelfile", "gemma3:4b", "--system", 'x """ y'), ('"""',)),
        (("modelfile", "--check", "no/such/Modelfile"), ("does not exist",)),
        (("modelfile", "gemma3:4b", "-o", "no/such/dir/Modelfile"), ("does not exist",)),
    ],
)
def test_cli_one_line_errors(cli, args, needles) -> None:
    assert_one_line_error(cli(*args), *needles)


def test_cli_help_has_examples(cli) -> None:
    result = cli("modelfile", "--help")
    assert result.code == 0
    assert "gemma3-pack modelfile --all modelfiles" in result.stdout
    assert "--check" in result.stdout


# ------------------------------------------------------------------------------ recipe


def test_converter_recipe_writes_modelfile_beside_gguf(gguf_270m: Path, tmp_path: Path) -> None:
    model = tmp_path / "gemma-3-270m.gguf"
    os.symlink(gguf_270m, model)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "converters" / "modelfile_from_gguf.py"),
            str(model),
            "--system",
            "Be brief.",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    written = tmp_path / "gemma-3-270m.Modelfile"
    assert payload["modelfile"] == str(written)
    spec = parse_modelfile(written.read_text(encoding="utf-8"))
    assert spec.from_ == ["./gemma-3-270m.gguf"] and spec.system == "Be brief."
    assert check_modelfile(written) == []
    [digest] = payload["create_kwargs"]["files"].values()
    assert digest.startswith("sha256:") and len(digest) == 71
    assert payload["create_kwargs"]["parameters"]["stop"] == ["<end_of_turn>"]
