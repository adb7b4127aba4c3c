"""Our Modelfiles through Ollama's own code: its Modelfile parser, then its /api/chat prompt path.

``tests/go/ollama_render`` reads a Modelfile with Ollama's ``parser`` package (as ``ollama create``
does), stores TEMPLATE, SYSTEM and MESSAGEs as the server does, and renders each request the way
``/api/chat`` does: Modelfile MESSAGEs first, the Modelfile SYSTEM in front unless the request
opens with a system message, then Ollama's ``template`` package. The expected prompt is always
Google's Jinja render (minus ``<bos>``) of the conversation the model should see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _ollama_render
import pytest
from _conversations import CORPUS, bot, sys_, user
from _conversations import reference as _reference

from gemma3_pack._chat import OLLAMA_TEMPLATE
from gemma3_pack._modelfile import parse_modelfile, render_modelfile, spec_for_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ALL_COMMITTED = sorted((ROOT / "modelfiles").glob("*.Modelfile"))
# Gemma 3 chat Modelfiles carry our TEMPLATE; FunctionGemma's use Ollama's built-in RENDERER/PARSER
COMMITTED = [p for p in ALL_COMMITTED if 'TEMPLATE """' in p.read_text(encoding="utf-8")]
SYSTEM = 'You are terse.\nAnswer in "one" line; never use {{ .System }}.'
HISTORY = [("user", "Hi there"), ("assistant", "Hello! Ask me anything.")]


@pytest.fixture(scope="module")
def ollama_renderer(go_binary) -> Path:
    return _ollama_render.binary(go_binary)


def _modelfile(*, system: str | None = None, messages=()) -> str:
    spec = spec_for_variant("gemma3-4b-it", system=system)
    spec.messages = list(messages)
    return render_modelfile(spec)


def test_committed_modelfiles_are_found() -> None:
    assert len(COMMITTED) >= 10
    others = [p.stem for p in ALL_COMMITTED if p not in COMMITTED]
    assert others == ["functiongemma-270m-it"]  # RENDERER functiongemma, no TEMPLATE
    text = (ROOT / "modelfiles" / "functiongemma-270m-it.Modelfile").read_text(encoding="utf-8")
    assert "RENDERER functiongemma\n" in text and "PARSER functiongemma\n" in text


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_committed_modelfile_renders_the_corpus_like_jinja(path: Path, ollama_renderer) -> None:
    """Ollama's parser reads our TEMPLATE back byte for byte, and every corpus conversation then
    renders exactly Google's template minus <bos>."""
    rendered = _ollama_render.render(
        [m for _, m in CORPUS], modelfile=path.read_text(encoding="utf-8"), exe=ollama_renderer
    )
    assert rendered.template == OLLAMA_TEMPLATE
    assert (rendered.system, rendered.messages) == ("", [])
    assert rendered.prompts == [_reference(m) for _, m in CORPUS]


def test_our_modelfile_parser_reads_what_ollamas_reads(ollama_renderer) -> None:
    """``parse_modelfile`` gives the TEMPLATE, SYSTEM and MESSAGEs that Ollama's parser gives."""
    texts = [p.read_text(encoding="utf-8") for p in COMMITTED]
    texts.append(_modelfile(system=SYSTEM, messages=HISTORY))
    texts.append(_modelfile(system="multi\nline\n\n  indented", messages=[("system", "S2")]))
    for text in texts:
        ours = parse_modelfile(text)
        theirs = _ollama_render.render([], modelfile=text, exe=ollama_renderer)
        assert theirs.template == ours.template
        assert theirs.system == (ours.system or "")
        assert [(m["role"], m["content"]) for m in theirs.messages] == ours.messages


def test_modelfile_system_is_the_default_system_prompt(ollama_renderer) -> None:
    """SYSTEM is prepended unless the request opens with its own system message (routes.go)."""
    convs = [m for _, m in CORPUS]
    rendered = _ollama_render.render(
        convs, modelfile=_modelfile(system=SYSTEM), exe=ollama_renderer
    )
    assert rendered.system == SYSTEM
    for conv, prompt in zip(convs, rendered.prompts, strict=True):
        if conv[0]["role"] == "system":
            assert prompt == _reference(conv)  # the request's own system prompt wins
        else:
            assert prompt == _reference([sys_(SYSTEM), *conv])
    assert sum(c[0]["role"] != "system" for c in convs) >= 30


def _expected_with_history(conv: list[dict[str, Any]]) -> str:
    """Ollama sends MESSAGEs + request (+ SYSTEM in front when the request has none); our
    TEMPLATE folds every system message into the first user turn, which is Jinja's render of
    the system prompt, then the history, then the rest."""
    history = [user(HISTORY[0][1]), bot(HISTORY[1][1])]
    if conv[0]["role"] == "system":
        return _reference([conv[0], *history, *conv[1:]])
    return _reference([sys_(SYSTEM), *history, *conv])


def test_modelfile_messages_come_before_the_request(ollama_renderer) -> None:
    convs = [m for _, m in CORPUS if m[-1]["role"] == "user"]
    text = _modelfile(system=SYSTEM, messages=HISTORY)
    rendered = _ollama_render.render(convs, modelfile=text, exe=ollama_renderer)
    assert [(m["role"], m["content"]) for m in rendered.messages] == HISTORY
    differ = {
        i
        for i, (c, p) in enumerate(zip(convs, rendered.prompts, strict=True))
        if p != _expected_with_history(c)
    }
    # The one exception: an EMPTY system prompt, which Google's template turns into a blank
    # "\n\n" prefix. Our TEMPLATE copies that only when the system message opens Ollama's list;
    # behind MESSAGE history it renders nothing (what an empty prompt should mean).
    assert [convs[i][:2] for i in differ] == [[sys_(""), user("hello")]]
    assert len(convs) - len(differ) >= 50
    [i] = differ
    assert rendered.prompts[i] == (
        "<start_of_turn>user\nHi there<end_of_turn>\n"
        "<start_of_turn>model\nHello! Ask me anything.<end_of_turn>\n"
        "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n"
    )


def test_a_system_only_request_after_history_gets_the_generation_prompt(ollama_renderer) -> None:
    """MESSAGEs end with the model's turn and the request is only a system message: Ollama's
    list ends with that system message, so the model turn is closed and a new one opened."""
    text = _modelfile(messages=HISTORY)
    [prompt] = _ollama_render.render(
        [[sys_("Be kind.")]], modelfile=text, exe=ollama_renderer
    ).prompts
    assert prompt == (
        "<start_of_turn>user\nBe kind.\n\nHi there<end_of_turn>\n"
        "<start_of_turn>model\nHello! Ask me anything.<end_of_turn>\n<start_of_turn>model\n"
    )


def test_roles_are_lowercased_like_ollama_decodes_them(ollama_renderer) -> None:
    msgs = [{"role": "System", "content": "S"}, {"role": "USER", "content": "u"}]
    [prompt] = _ollama_render.render([msgs], template=OLLAMA_TEMPLATE, exe=ollama_renderer).prompts
    assert prompt == _reference([sys_("S"), user("u")])


def test_tools_are_refused_by_our_template(ollama_renderer) -> None:
    """Our TEMPLATE (like Google's) has no tools: the server answers 400 before rendering."""
    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
    rendered = _ollama_render.render(
        [[user("What time is it?")]], template=OLLAMA_TEMPLATE, tools=[tool], exe=ollama_renderer
    )
    assert rendered.results == [{"images": 0, "error": "does not support tools"}]


def test_a_modelfile_without_template_is_reported(ollama_renderer) -> None:
    with pytest.raises(_ollama_render.RefusedModel, match="no TEMPLATE"):
        _ollama_render.render([[user("x")]], modelfile="FROM gemma3:4b\n", exe=ollama_renderer)


# ------------------------------------------------------------- the harness, and autodetection

GOLDEN = {  # Ollama's own template tests: testdata/<template>/<roles> (template/template_test.go)
    "user": [user("Hello, how are you?")],
    "user-assistant-user": [
        user("Hello, how are you?"),
        bot("I'm doing great. How can I help you today?"),
        user("I'd like to show off how chat templating works!"),
    ],
}
GOLDEN["system-user-assistant-user"] = [
    sys_("You are a helpful assistant."),
    *GOLDEN["user-assistant-user"],
]


def test_the_harness_reproduces_ollamas_golden_renders(go_binary, ollama_renderer) -> None:
    """Through our JSON harness, Ollama's gemma3-instruct.gotmpl renders byte for byte what
    Ollama's own tests expect (the golden files shipped in the module)."""
    source = _ollama_render.module_dir(go_binary) / "template"
    rendered = _ollama_render.render(
        GOLDEN.values(),
        template=(source / "gemma3-instruct.gotmpl").read_text(encoding="utf-8"),
        exe=ollama_renderer,
    )
    expected = [
        (source / "testdata" / "gemma3-instruct.gotmpl" / name).read_text(encoding="utf-8")
        for name in GOLDEN
    ]
    assert rendered.prompts == expected


def test_googles_jinja_without_our_template_gets_a_newline_too_many(
    go_binary, ollama_renderer
) -> None:
    """Why every Modelfile we write carries a TEMPLATE: ``ollama create`` from a GGUF whose
    chat_template is Google's (with or without ``{{ bos_token }}``) and no TEMPLATE stores
    Ollama's autodetected gemma3-instruct, which matches Jinja on NO conversation here: every
    prompt ends ``<start_of_turn>model\\n\\n`` (the .gotmpl file's own trailing newline), prefill
    is closed and re-opened, and an empty system prompt is dropped."""
    from gemma3_pack._chat import _LAUNCH_TEMPLATE, OFFICIAL_TEMPLATE

    source = _ollama_render.module_dir(go_binary) / "template" / "gemma3-instruct.gotmpl"
    convs = [m for _, m in CORPUS]
    for jinja in (OFFICIAL_TEMPLATE, OFFICIAL_TEMPLATE.removeprefix("{{ bos_token }}")):
        rendered = _ollama_render.render(convs, detect=jinja, exe=ollama_renderer)
        assert rendered.detected == "gemma3-instruct"
        assert rendered.template == source.read_text(encoding="utf-8")
        pairs = list(zip(CORPUS, rendered.prompts, strict=True))
        exact = [name for (name, m), p in pairs if p == _reference(m)]
        newline = [name for (name, m), p in pairs if p == _reference(m) + "\n"]
        print(f"\nautodetected gemma3-instruct == Jinja: {len(exact)}/{len(CORPUS)}")
        assert exact == []
        assert len(newline) == len(CORPUS) - 3
        assert {n for n, _ in CORPUS} - set(newline) == {
            "prefill: final assistant stays open",
            "prefill with system",
            "empty system",
        }
    # The launch-era Jinja is too far from any stored one: no template is detected at all.
    with pytest.raises(_ollama_render.RefusedModel, match="no matching template"):
        _ollama_render.render(convs, detect=_LAUNCH_TEMPLATE, exe=ollama_renderer)
