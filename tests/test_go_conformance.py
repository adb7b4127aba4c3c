"""Our Ollama TEMPLATE, rendered by Ollama's own code, equals Google's Jinja template.

Every conversation in CORPUS is rendered twice: with jinja2's sandboxed render of the official
template (the reference, as Hugging Face and llama.cpp render it) and with Ollama's chat path
itself: ``tests/go/ollama_render`` imports ``github.com/ollama/ollama`` (the release pinned in its
go.mod) and builds the prompt as that release's ``/api/chat`` does (``tests/support/_ollama_render.py``).
Ollama's prompt must equal the Jinja output minus the leading ``<bos>``, string for string. All
conversations render in ONE process.

The package's own preview, :func:`gemma3_pack.render_ollama` (Go's stdlib text/template fed
:func:`gemma3_pack._chat.ollama_data`, no Ollama module needed), is proven identical to Ollama's
on every conversation here. The second half pins down, table-driven, the differences that cannot
be closed, asserting what each engine actually produces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _assets
import _ollama_render
import pytest
from _conversations import CORPUS, bot, sys_, user
from _conversations import reference as _reference

from gemma3_pack._chat import OLLAMA_TEMPLATE, ollama_data, render_chat, render_ollama_batch
from gemma3_pack._errors import UsageError

# The first run downloads Ollama's module from the Go module proxy and compiles the renderer
# (~1-2 min on 2 cores with a cold Go cache); later runs reuse the cached binaries (a second).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def go_cache() -> str:
    return str(_assets.cache_dir("go-render"))


@pytest.fixture(scope="module")
def ollama_renderer(go_binary) -> Path:
    """Ollama's renderer, built once from the pinned release."""
    return _ollama_render.binary(go_binary)


def ollama_prompts(
    ollama_renderer: Path, convs: list[list[dict[str, Any]]], **model: Any
) -> list[str]:
    return _ollama_render.render(convs, exe=ollama_renderer, **model).prompts


@pytest.fixture(scope="module")
def ollama_renders(ollama_renderer) -> dict[str, str]:
    outputs = ollama_prompts(ollama_renderer, [m for _, m in CORPUS], template=OLLAMA_TEMPLATE)
    return {name: out for (name, _), out in zip(CORPUS, outputs, strict=True)}


def test_corpus_is_big_and_varied() -> None:
    assert len(CORPUS) >= 40
    assert len({name for name, _ in CORPUS}) == len(CORPUS)
    assert max(len(m) for _, m in CORPUS) >= 41  # a history of at least 20 user/model turns


@pytest.mark.parametrize(("name", "messages"), CORPUS, ids=[n for n, _ in CORPUS])
def test_ollama_render_equals_official_jinja(name: str, messages, ollama_renders) -> None:
    assert ollama_renders[name] == _reference(messages)


def test_conformance_count(ollama_renders) -> None:
    equal = sum(ollama_renders[name] == _reference(m) for name, m in CORPUS)
    print(
        f"\nOllama {_ollama_render.ollama_version()} render of our TEMPLATE == official Jinja "
        f"(minus <bos>): {equal}/{len(CORPUS)} conversations"
    )
    assert equal == len(CORPUS)


def test_known_render(ollama_renders) -> None:
    """One render spelled out, so a reader sees the format both engines agree on."""
    assert ollama_renders["system + 2 turns"] == (
        "<start_of_turn>user\nAnswer in French.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nBonjour !<end_of_turn>\n"
        "<start_of_turn>user\nHow are you?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert ollama_renders["prefill: final assistant stays open"] == (
        "<start_of_turn>user\nWrite a haiku.<end_of_turn>\n<start_of_turn>model\nAutumn moonlight"
    )


def test_template_file_shape() -> None:
    assert not OLLAMA_TEMPLATE.endswith("\n")
    assert "<bos>" not in OLLAMA_TEMPLATE and "bos_token" not in OLLAMA_TEMPLATE
    assert "<start_of_image>" not in OLLAMA_TEMPLATE
    assert ".Messages" in OLLAMA_TEMPLATE  # Messages mode, so Ollama does not append .Response


# ---------------------------------------------------------------- differences that stay open

# (case, messages, expected Ollama render, expected Jinja render minus <bos>)
WHITESPACE = [
    (
        "leading spaces",
        [user("   hi")],
        "<start_of_turn>user\n   hi<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "trailing newline",
        [user("hi\n")],
        "<start_of_turn>user\nhi\n<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "assistant padded",
        [user("q"), bot("  a  "), user("r")],
        "<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n  a  <end_of_turn>\n"
        "<start_of_turn>user\nr<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\na<end_of_turn>\n"
        "<start_of_turn>user\nr<end_of_turn>\n<start_of_turn>model\n",
    ),
]


@pytest.mark.parametrize(
    ("case", "messages", "expected", "jinja"), WHITESPACE, ids=[c[0] for c in WHITESPACE]
)
def test_ollama_does_not_trim(case, messages, expected, jinja, ollama_renderer) -> None:
    """Jinja's ``| trim`` has no Go counterpart: the renders differ by exactly that whitespace."""
    assert ollama_prompts(ollama_renderer, [messages], template=OLLAMA_TEMPLATE) == [expected]
    assert _reference(messages) == jinja


COLLATED = [
    (
        "two user messages",
        [user("first"), user("second")],
        "<start_of_turn>user\nfirst\n\nsecond<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "two assistant messages",
        [user("q"), bot("a1"), bot("a2"), user("r")],
        "<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\na1\n\na2<end_of_turn>\n"
        "<start_of_turn>user\nr<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "conversation opens with the model",
        [bot("Welcome!"), user("thanks")],
        "<start_of_turn>model\nWelcome!<end_of_turn>\n<start_of_turn>user\nthanks<end_of_turn>\n"
        "<start_of_turn>model\n",
    ),
]


@pytest.mark.parametrize(("case", "messages", "expected"), COLLATED, ids=[c[0] for c in COLLATED])
def test_jinja_raises_where_ollama_collates(case, messages, expected, ollama_renderer) -> None:
    with pytest.raises(UsageError, match="Conversation roles must alternate"):
        render_chat(messages)
    assert ollama_prompts(ollama_renderer, [messages], template=OLLAMA_TEMPLATE) == [expected]


def test_multiple_system_messages(ollama_renderer) -> None:
    """Ollama joins every system message into .System; Jinja uses only a leading one."""
    leading_pair = [sys_("Rule A."), sys_("Rule B."), user("go")]
    data = ollama_data(leading_pair)
    assert data["System"] == "Rule A.\n\nRule B."
    assert [m["Role"] for m in data["Messages"]] == ["system", "user"]  # collated, still listed
    late = [sys_("Rule A."), user("go"), bot("ok"), sys_("Rule B."), user("again")]
    assert ollama_data(late)["System"] == "Rule A.\n\nRule B."
    go = ollama_prompts(ollama_renderer, [leading_pair, late], template=OLLAMA_TEMPLATE)
    assert (
        go[0]
        == "<start_of_turn>user\nRule A.\n\nRule B.\n\ngo<end_of_turn>\n<start_of_turn>model\n"
    )
    assert go[1] == (
        "<start_of_turn>user\nRule A.\n\nRule B.\n\ngo<end_of_turn>\n"
        "<start_of_turn>model\nok<end_of_turn>\n"
        "<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\n"
    )
    with pytest.raises(UsageError, match="alternate"):
        render_chat(leading_pair)  # the second system message sits where a user turn must be
    # Jinja renders a late system message at a model position as a "system" turn.
    assert "<start_of_turn>system\nRule B.<end_of_turn>" not in go[1]


def image(text: str, images: int = 1) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [*([{"type": "image"}] * images), {"type": "text", "text": text}],
    }


# (case, messages, Ollama's prompt): the server tags image N of the conversation "[img-N]" in
# front of its message's text, or in place of a literal "[img]" (server/prompt.go).
IMAGES = [
    (
        "one image",
        [image("What is this?")],
        "<start_of_turn>user\n[img-0]What is this?<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "two images, one message",
        [image("Compare.", 2)],
        "<start_of_turn>user\n[img-0][img-1]Compare.<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "images count across turns",
        [image("A?"), bot("A cat."), image("And B?")],
        "<start_of_turn>user\n[img-0]A?<end_of_turn>\n<start_of_turn>model\nA cat.<end_of_turn>\n"
        "<start_of_turn>user\n[img-1]And B?<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "a literal [img] is replaced, the rest go in front",
        [image("before [img] after", 2)],
        "<start_of_turn>user\n[img-1]before [img-0] after<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "system prompt and image",
        [sys_("Be brief."), image("What?")],
        "<start_of_turn>user\nBe brief.\n\n[img-0]What?<end_of_turn>\n<start_of_turn>model\n",
    ),
]


@pytest.mark.parametrize(("case", "messages", "expected"), IMAGES, ids=[c[0] for c in IMAGES])
def test_images_are_the_runtimes_job(case, messages, expected, ollama_renderer) -> None:
    """Jinja writes <start_of_image>; Ollama's TEMPLATE writes nothing: the server tags each
    image ``[img-N]`` in the text, and the runtime swaps the tag for the image's tokens."""
    [result] = _ollama_render.render(
        [messages], template=OLLAMA_TEMPLATE, exe=ollama_renderer
    ).results
    assert result == {"prompt": expected, "images": expected.count("[img-")}
    # Jinja puts <start_of_image> where Ollama puts the tag (tag-first messages only).
    if "[img]" not in str(messages):
        assert _reference(messages) == expected.replace("[img-0]", "<start_of_image>").replace(
            "[img-1]", "<start_of_image>"
        )


def test_ollama_launch_template_differs_on_system(ollama_renderer) -> None:
    """ollama.com's e0a42594d802 (gemma3:1b/4b) makes the system prompt its own user turn."""
    import hashlib

    from gemma3_pack._modelfile import LIBRARY_TEMPLATE_E0A4 as e0a

    # the package's copy is the registry blob itself: its sha256 is the blob's digest
    assert hashlib.sha256(e0a.encode()).hexdigest().startswith("e0a42594d802")
    msgs = [sys_("Be brief."), user("Hi")]
    [rendered] = ollama_prompts(ollama_renderer, [msgs], template=e0a)
    assert rendered == (
        "<start_of_turn>user\nBe brief.<end_of_turn>\n"
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert rendered != _reference(msgs)


def test_broken_template_is_a_usage_error(go_binary, go_cache, ollama_renderer) -> None:
    with pytest.raises(_ollama_render.RefusedModel, match="template error"):
        ollama_prompts(
            ollama_renderer, [[user("x")]], template="{{ if }"
        )  # ollama create refuses it
    with pytest.raises(UsageError, match="does not parse"):
        render_ollama_batch(
            [[user("x")]], template="{{ if }", go_binary=go_binary, cache_dir=go_cache
        )


def test_ollama_library_templates_on_the_same_corpus(ollama_renderer) -> None:
    """Why we ship our own TEMPLATE: on this corpus ollama.com's 4b19ac7dd2fb (gemma3:270m)
    differs from Jinja for an empty system prompt (no "\\n\\n" prefix) and a system-only
    conversation (no generation prompt), and e0a42594d802 (gemma3:1b/4b) differs on every
    conversation with a system prompt (it becomes its own user turn)."""
    from gemma3_pack._modelfile import LIBRARY_TEMPLATE_4B19, LIBRARY_TEMPLATE_E0A4

    convs = [m for _, m in CORPUS]
    for tag, template, expected_misses in (
        ("4b19ac7dd2fb", LIBRARY_TEMPLATE_4B19, 2),
        ("e0a42594d802", LIBRARY_TEMPLATE_E0A4, 16),
    ):
        outs = ollama_prompts(ollama_renderer, convs, template=template)
        misses = [name for (name, m), out in zip(CORPUS, outs, strict=True) if out != _reference(m)]
        print(f"\nollama.com {tag} == official Jinja: {len(CORPUS) - len(misses)}/{len(CORPUS)}")
        assert len(misses) == expected_misses, misses
        assert "system only" in misses and "single user" not in misses


# ------------------------------------------- the package's stdlib preview, proven identical

ROLE_CASE = [
    ("capitalised roles", [{"role": "User", "content": "Hi"}]),
    ("upper-case roles", [{"role": "SYSTEM", "content": "S"}, {"role": "USER", "content": "u"}]),
]


def test_render_ollama_equals_ollama_itself(go_binary, go_cache, ollama_renderer) -> None:
    """:func:`gemma3_pack.render_ollama` (Go's stdlib text/template fed ``ollama_data``, which
    needs no Ollama module) gives Ollama's own prompt on every conversation in this file, for our
    TEMPLATE and both ollama.com templates."""
    from gemma3_pack._modelfile import LIBRARY_TEMPLATE_4B19, LIBRARY_TEMPLATE_E0A4

    convs = [
        *(m for _, m in CORPUS),
        *(c[1] for c in WHITESPACE),
        *(c[1] for c in COLLATED),
        *(c[1] for c in IMAGES),
        *(m for _, m in ROLE_CASE),
        [sys_("Rule A."), sys_("Rule B."), user("go")],
        [sys_("Rule A."), user("go"), bot("ok"), sys_("Rule B."), user("again")],
    ]
    for template in (OLLAMA_TEMPLATE, LIBRARY_TEMPLATE_4B19, LIBRARY_TEMPLATE_E0A4):
        real = ollama_prompts(ollama_renderer, convs, template=template)
        stdlib = render_ollama_batch(
            convs, template=template, go_binary=go_binary, cache_dir=go_cache
        )
        assert stdlib == real
    assert len(convs) >= 70
