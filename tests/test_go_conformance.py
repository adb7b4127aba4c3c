"""Our Ollama TEMPLATE, executed by Go's real text/template, equals Google's Jinja template.

Every conversation in CORPUS is rendered twice: with jinja2's sandboxed render of the official
template (the reference, as Hugging Face and llama.cpp render it) and with the Go renderer fed
Ollama's Messages data (:func:`gemma3_pack._chat.ollama_data`). The Go output must equal the Jinja
output minus the leading ``<bos>``, string for string. All conversations render in ONE Go process.

The second half pins down, table-driven, the differences that cannot be closed, asserting what
each engine actually produces.
"""

from __future__ import annotations

from typing import Any

import _assets
import pytest

from gemma3_pack._chat import OLLAMA_TEMPLATE, ollama_data, render_chat, render_ollama_batch
from gemma3_pack._errors import UsageError

# The first run compiles the Go renderer (~20 s of CPU with a cold Go build cache); later runs
# reuse the binary cached in the test cache folder and take about a second.
pytestmark = pytest.mark.slow


def sys_(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def history(turns: int, system: str | None = None) -> list[dict[str, Any]]:
    msgs = [sys_(system)] if system else []
    for i in range(turns):
        msgs.append(user(f"question {i}: what is {i} squared?"))
        msgs.append(bot(f"{i} squared is {i * i}."))
    msgs.append(user("and the sum of all of them?"))
    return msgs


TRICKY = [
    "{{ .System }}",
    "{{ .Content }}{{ end }}",
    "}}",
    "{{",
    "{% raw %}x{% endraw %}",
    "{{ bos_token }}",
    "{%- if true -%}yes{%- endif -%}",
    "{{/* a Go comment */}}",
    "<start_of_turn>user\nfake turn<end_of_turn>",
    "$ .Messages | range $i",
    'printf "%s" \\n \\t',
]

UNICODE = [
    "Héllo wörld — ça va?",
    "日本語で答えてください。東京の天気は？",
    "你好，世界",
    "안녕하세요",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "Emoji: 🦙🚀✨ and a family 👨‍👩‍👧",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ",
    "Zero\u200bwidth and RTL\u202emark",
    "Ελληνικά και Русский",
]

CORPUS: list[tuple[str, list[dict[str, Any]]]] = [
    ("single user", [user("Hello!")]),
    ("system + user", [sys_("You are a helpful assistant."), user("Hi")]),
    ("user, model, user", [user("Hi"), bot("Hello! How can I help?"), user("Tell me a joke.")]),
    (
        "system + 2 turns",
        [sys_("Answer in French."), user("Hi"), bot("Bonjour !"), user("How are you?")],
    ),
    ("prefill: final assistant stays open", [user("Write a haiku."), bot("Autumn moonlight")]),
    ("prefill with system", [sys_("Be terse."), user("Count to 3"), bot("1, 2,")]),
    ("multi-line user", [user("line one\nline two\n\nline four")]),
    ("multi-line system", [sys_("Rules:\n1. Be kind.\n2. Be brief."), user("ok?")]),
    ("multi-line assistant", [user("list"), bot("- a\n- b\n- c"), user("more")]),
    ("code block", [user("```python\ndef f(x):\n    return x * 2\n```\nExplain.")]),
    ("system with trailing space kept", [sys_("Be kind. "), user("hi")]),
    ("system with blank lines", [sys_("\n\nSystem with leading newlines"), user("x")]),
    ("empty system", [sys_(""), user("hello")]),
    ("system only", [sys_("You are a pirate.")]),
    ("empty user", [user("")]),
    ("empty assistant then user", [user("a"), bot(""), user("b")]),
    ("long history 20 turns", history(20)),
    ("long history 25 turns + system", history(25, "Keep a running total.")),
    ("long history 40 turns", history(40, "You are a calculator.")),
    (
        "list content text",
        [{"role": "user", "content": [{"type": "text", "text": "Describe it."}]}],
    ),
    (
        "list content, several text items",
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "part one,"},
                    {"type": "text", "text": "part two"},
                ],
            }
        ],
    ),
    (
        "list system content",
        [
            {"role": "system", "content": [{"type": "text", "text": "List-form system."}]},
            user("hi"),
        ],
    ),
    ("quotes and backslashes", [user("She said \"hi\" and left \\o/ 'single'")]),
    ("html-ish", [user("<b>bold</b> & <i>it</i> <script>alert(1)</script>")]),
    ("special tokens as text", [user("<bos><eos><pad> literally")]),
    ("very long message", [user("lorem ipsum " * 400 + "end")]),
    ("tabs inside", [user("col1\tcol2\tcol3")]),
    ("windows newlines inside", [user("a\r\nb")]),
    *[(f"template syntax in user: {t!r}", [user(t)]) for t in TRICKY],
    *[(f"template syntax in system: {t!r}", [sys_(t), user("go")]) for t in TRICKY[:4]],
    ("template syntax in assistant", [user("q"), bot("{{ .Content }} }} {% endfor %}"), user("r")]),
    *[(f"unicode: {t[:12]}", [user(t)]) for t in UNICODE],
    (
        "unicode system + history",
        [sys_("回答は日本語で。"), user("こんにちは"), bot("こんにちは！"), user("元気？")],
    ),
]


def _reference(messages: list[dict[str, Any]]) -> str:
    """The official render minus <bos>; for a final assistant message, Ollama's open turn."""
    if messages and messages[-1]["role"] == "assistant":
        rendered = render_chat(messages, add_generation_prompt=False)
        assert rendered.endswith("<end_of_turn>\n")
        rendered = rendered.removesuffix("<end_of_turn>\n")
    else:
        rendered = render_chat(messages)
    assert rendered.startswith("<bos>")
    return rendered.removeprefix("<bos>")


@pytest.fixture(scope="module")
def go_cache() -> str:
    return str(_assets.cache_dir("go-render"))


@pytest.fixture(scope="module")
def go_renders(go_binary, go_cache) -> dict[str, str]:
    outputs = render_ollama_batch([m for _, m in CORPUS], go_binary=go_binary, cache_dir=go_cache)
    return {name: out for (name, _), out in zip(CORPUS, outputs, strict=True)}


def test_corpus_is_big_and_varied() -> None:
    assert len(CORPUS) >= 40
    assert len({name for name, _ in CORPUS}) == len(CORPUS)
    assert max(len(m) for _, m in CORPUS) >= 41  # a history of at least 20 user/model turns


@pytest.mark.parametrize(("name", "messages"), CORPUS, ids=[n for n, _ in CORPUS])
def test_go_template_equals_official_jinja(name: str, messages, go_renders) -> None:
    assert go_renders[name] == _reference(messages)


def test_conformance_count(go_renders) -> None:
    equal = sum(go_renders[name] == _reference(m) for name, m in CORPUS)
    print(f"\nGo TEMPLATE == official Jinja (minus <bos>): {equal}/{len(CORPUS)} conversations")
    assert equal == len(CORPUS)


def test_known_render(go_renders) -> None:
    """One render spelled out, so a reader sees the format both engines agree on."""
    assert go_renders["system + 2 turns"] == (
        "<start_of_turn>user\nAnswer in French.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nBonjour !<end_of_turn>\n"
        "<start_of_turn>user\nHow are you?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert go_renders["prefill: final assistant stays open"] == (
        "<start_of_turn>user\nWrite a haiku.<end_of_turn>\n<start_of_turn>model\nAutumn moonlight"
    )


def test_template_file_shape() -> None:
    assert not OLLAMA_TEMPLATE.endswith("\n")
    assert "<bos>" not in OLLAMA_TEMPLATE and "bos_token" not in OLLAMA_TEMPLATE
    assert "<start_of_image>" not in OLLAMA_TEMPLATE
    assert ".Messages" in OLLAMA_TEMPLATE  # Messages mode, so Ollama does not append .Response


# ---------------------------------------------------------------- differences that stay open

# (case, messages, expected Go render, expected Jinja render minus <bos>)
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
    ("case", "messages", "go", "jinja"), WHITESPACE, ids=[c[0] for c in WHITESPACE]
)
def test_go_does_not_trim(case, messages, go, jinja, go_binary, go_cache) -> None:
    """Jinja's ``| trim`` has no Go counterpart: the renders differ by exactly that whitespace."""
    [rendered] = render_ollama_batch([messages], go_binary=go_binary, cache_dir=go_cache)
    assert rendered == go
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


@pytest.mark.parametrize(("case", "messages", "go"), COLLATED, ids=[c[0] for c in COLLATED])
def test_jinja_raises_where_ollama_collates(case, messages, go, go_binary, go_cache) -> None:
    with pytest.raises(UsageError, match="Conversation roles must alternate"):
        render_chat(messages)
    [rendered] = render_ollama_batch([messages], go_binary=go_binary, cache_dir=go_cache)
    assert rendered == go


def test_multiple_system_messages(go_binary, go_cache) -> None:
    """Ollama joins every system message into .System; Jinja uses only a leading one."""
    leading_pair = [sys_("Rule A."), sys_("Rule B."), user("go")]
    data = ollama_data(leading_pair)
    assert data["System"] == "Rule A.\n\nRule B."
    assert [m["Role"] for m in data["Messages"]] == ["system", "user"]  # collated, still listed
    late = [sys_("Rule A."), user("go"), bot("ok"), sys_("Rule B."), user("again")]
    assert ollama_data(late)["System"] == "Rule A.\n\nRule B."
    go = render_ollama_batch([leading_pair, late], go_binary=go_binary, cache_dir=go_cache)
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


def test_images_are_the_runtimes_job(go_binary, go_cache) -> None:
    """Jinja writes <start_of_image>; Ollama's TEMPLATE writes nothing and the runtime inserts
    the image tokens itself (``[img-N]`` tags in front of the message)."""
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}
    ]
    assert _reference(msgs) == (
        "<start_of_turn>user\n<start_of_image>What is this?<end_of_turn>\n<start_of_turn>model\n"
    )
    data = ollama_data(msgs)
    assert data["Messages"] == [{"Role": "user", "Content": "What is this?", "Images": 1}]
    [rendered] = render_ollama_batch([msgs], go_binary=go_binary, cache_dir=go_cache)
    assert rendered == "<start_of_turn>user\nWhat is this?<end_of_turn>\n<start_of_turn>model\n"


def test_ollama_launch_template_differs_on_system(go_binary, go_cache) -> None:
    """ollama.com's e0a42594d802 (gemma3:1b/4b) makes the system prompt its own user turn."""
    import hashlib

    from gemma3_pack._modelfile import LIBRARY_TEMPLATE_E0A4 as e0a

    # the package's copy is the registry blob itself: its sha256 is the blob's digest
    assert hashlib.sha256(e0a.encode()).hexdigest().startswith("e0a42594d802")
    msgs = [sys_("Be brief."), user("Hi")]
    [rendered] = render_ollama_batch([msgs], template=e0a, go_binary=go_binary, cache_dir=go_cache)
    assert rendered == (
        "<start_of_turn>user\nBe brief.<end_of_turn>\n"
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert rendered != _reference(msgs)


def test_broken_template_is_a_usage_error(go_binary, go_cache) -> None:
    with pytest.raises(UsageError, match="does not parse"):
        render_ollama_batch(
            [[user("x")]], template="{{ if }", go_binary=go_binary, cache_dir=go_cache
        )


def test_ollama_library_templates_on_the_same_corpus(go_binary, go_cache) -> None:
    """Why we ship our own TEMPLATE: on this corpus ollama.com's 4b19ac7dd2fb (gemma3:270m)
    differs from Jinja for an empty system prompt (no "\\n\\n" prefix) and a system-only
    conversation (no generation prompt), and e0a42594d802 (gemma3:1b/4b) differs on every
    conversation with a system prompt (it becomes its own user turn)."""
    from gemma3_pack._modelfile import LIBRARY_TEMPLATE_4B19, LIBRARY_TEMPLATE_E0A4

    convs = [m for _, m in CORPUS]
    for template, expected_misses in ((LIBRARY_TEMPLATE_4B19, 2), (LIBRARY_TEMPLATE_E0A4, 16)):
        outs = render_ollama_batch(
            convs, template=template, go_binary=go_binary, cache_dir=go_cache
        )
        misses = [name for (name, m), out in zip(CORPUS, outs, strict=True) if out != _reference(m)]
        assert len(misses) == expected_misses, misses
        assert "system only" in misses and "single user" not in misses
