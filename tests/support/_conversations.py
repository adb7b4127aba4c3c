"""The 55-conversation chat corpus every renderer is held against (Google's Jinja, Ollama's Go
template and chat path, llama-server, our preview), the message builders, and the reference
render: Google's template minus ``<bos>``, with a final assistant turn left open as Ollama does."""

from __future__ import annotations

from typing import Any

from gemma3_pack._chat import render_chat


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


def reference(messages: list[dict[str, Any]]) -> str:
    """The official render minus <bos>; for a final assistant message, Ollama's open turn."""
    if messages and messages[-1]["role"] == "assistant":
        rendered = render_chat(messages, add_generation_prompt=False)
        assert rendered.endswith("<end_of_turn>\n")
        rendered = rendered.removesuffix("<end_of_turn>\n")
    else:
        rendered = render_chat(messages)
    assert rendered.startswith("<bos>")
    return rendered.removeprefix("<bos>")
