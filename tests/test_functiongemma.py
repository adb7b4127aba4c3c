"""FunctionGemma's format in the SDK equals Ollama's built-in ``functiongemma`` renderer and parser.

``tests/go/ollama_functiongemma`` runs Ollama's own ``model/renderers`` and ``model/parsers`` code
(the release pinned in its go.mod) on the same conversations and replies as
:mod:`gemma3_pack._chat._functiongemma`: the prompts must be equal byte for byte, the parsed content and
calls equal. Ollama's parser is also run streamed (1-rune pieces) to show the calls do not depend
on how the reply arrives.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import _assets
import _ollama_render
import pytest

from gemma3_pack._chat._functiongemma import CONTROL_TOKENS, DEFAULT_SYSTEM, parse, render

pytestmark = pytest.mark.slow  # builds Ollama's renderer/parser packages on a cold cache

SOURCE = Path(__file__).resolve().parent / "go" / "ollama_functiongemma"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city (°C).",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Zürich."},
                "days": {"type": "integer", "description": "How many days"},
                "unit": {"type": "string", "enum": ["C", "F"]},
            },
            "required": ["city"],
        },
    },
}
NOARGS = {"type": "function", "function": {"name": "now", "description": "The time."}}
EMPTY = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "",
        "parameters": {"type": "object", "properties": {}},
    },
}
BOOK = {
    "type": "function",
    "function": {
        "name": "book",
        "description": "Book an event.",
        "parameters": {
            "type": "object",
            "properties": {
                "details": {"type": "object", "description": "What and when"},
                "tags": {"type": ["array", "null"], "description": "Labels"},
            },
        },
    },
}


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": arguments}}


def u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a(text: str, *calls: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = list(calls)
    return message


def t(text: str) -> dict[str, Any]:
    return {"role": "tool", "content": text}


CONVERSATIONS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("no tools, one turn", [u("Hello")], []),
    ("tools, one turn", [u("Weather in Paris?")], [WEATHER]),
    (
        "system + tools",
        [{"role": "system", "content": "Be brief. "}, u("Weather?")],
        [WEATHER, BOOK],
    ),
    ("developer role", [{"role": "developer", "content": "Use tools."}, u("Time?")], [NOARGS]),
    (
        "the default system text is not repeated",
        [{"role": "system", "content": DEFAULT_SYSTEM}, u("x")],
        [EMPTY],
    ),
    (
        "system, no tools",
        [{"role": "system", "content": "Just chat."}, u("Hi"), a("Hello!"), u("Bye")],
        [],
    ),
    (
        "a call, its result, the answer",
        [
            u("Weather in Paris?"),
            a("", _call("get_weather", city="Paris")),
            t("22 °C, sunny"),
            a("Sunny, 22 °C."),
            u("Thanks"),
        ],
        [WEATHER],
    ),
    (
        "two calls, two results",
        [
            u("Paris and Rome for 3 days?"),
            a(
                "",
                _call("get_weather", city="Paris", days=3),
                _call("get_weather", days=-3, city="Rome"),
            ),
            t("22"),
            t("25"),
        ],
        [WEATHER],
    ),
    (
        "typed arguments",
        [
            u("Book it."),
            a(
                "Booking.",
                _call(
                    "book",
                    details={
                        "who": ["Ann", "Bo"],
                        "vip": True,
                        "price": 12.5,
                        "n": 0.0001,
                        "big": 1234567.5,
                    },
                    tags=[],
                ),
            ),
            t('{"ok": true}'),
        ],
        [BOOK],
    ),
    (
        "a result without a preceding call, then a user turn",
        [u("Go."), t("orphan"), u("  padded  ")],
        [NOARGS],
    ),
    ("other roles keep their name", [u("x"), {"role": "observer", "content": " note "}], []),
    (
        "unicode everywhere",
        [u("Météo à Zürich 東京?"), a("", _call("get_weather", city="東京 🌧"))],
        [WEATHER],
    ),
]

REPLIES: list[str] = [
    "<start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>",
    "Let me check.<start_function_call>call:get_weather{city:<escape>Paris<escape>,days:3}<end_function_call>",
    "<start_function_call>call:get_weather{city:<escape>A, B {c}<escape>,days:-3}<end_function_call>"
    "<start_function_call>call:book{details:{vip:true,n:[1,2.5,<escape>x<escape>]},tags:[]}<end_function_call>",
    "<start_function_call>call:now{}<end_function_call>",
    "<start_function_call>call:book{details:{a:{b:{c:false}}}}<end_function_call> and more text",
    "No call here, just text.",
    "Text ending in a partial tag <start_func",
    "<start_function_call>call:get_weather{city:<escape>Paris<escape>",  # never closed
    "<start_function_call>not a call<end_function_call>",
    "<start_function_call>call:get_weather{days:1.5e3,unit:C}<end_function_call>",
    "<start_function_call>call:get_weather{city:<escape>Zürich 東京<escape>}<end_function_call>",
    "",
]


@pytest.fixture(scope="module")
def harness(go_binary) -> Path:
    files = ("main.go", "go.mod", "go.sum")
    digest = hashlib.sha256(b"".join((SOURCE / f).read_bytes() for f in files)).hexdigest()
    out = _assets.cache_dir("ollama-functiongemma", digest[:16])
    exe = out / "ollama_functiongemma"
    if not exe.is_file():
        with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
            for f in files:
                shutil.copyfile(SOURCE / f, Path(tmp) / f)
            proc = subprocess.run(
                [str(go_binary), "build", "-trimpath", "-buildvcs=false", "-o", exe.name, "."],
                cwd=tmp,
                env=_ollama_render._go_env(),
                capture_output=True,
                text=True,
                timeout=1800,
            )
            assert proc.returncode == 0, proc.stderr[-4000:]
            os.replace(Path(tmp) / exe.name, exe)
    return exe


def _run(exe: Path, body: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [str(exe)], input=json.dumps(body), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


@pytest.fixture(scope="module")
def ollama_prompts(harness) -> list[str]:
    body = {"render": [{"messages": m, "tools": tools} for _, m, tools in CONVERSATIONS]}
    prompts: list[str] = _run(harness, body)["rendered"]
    return prompts


def test_enough_conversations() -> None:
    assert len(CONVERSATIONS) >= 10


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)), ids=[n for n, _, _ in CONVERSATIONS])
def test_the_sdk_renders_what_ollama_renders(index: int, ollama_prompts) -> None:
    _, messages, tools = CONVERSATIONS[index]
    assert render(messages, tools) == ollama_prompts[index]


def test_the_prompt_uses_the_control_tokens(ollama_prompts) -> None:
    prompt = ollama_prompts[6]
    assert prompt.startswith("<bos><start_of_turn>developer\n" + DEFAULT_SYSTEM)
    assert "<start_function_declaration>declaration:get_weather{description:<escape>" in prompt
    assert (
        "<start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>"
        in prompt
    )
    assert "<start_function_response>response:get_weather{<escape>22 °C, sunny<escape>}" in prompt
    assert all(token in "".join(ollama_prompts) for token in CONTROL_TOKENS)


def _normal(calls: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [
        (c["function"]["name"], json.loads(json.dumps(c["function"].get("arguments") or {})))
        for c in calls
    ]


@pytest.mark.parametrize("chunk", [0, 1], ids=["whole", "1-rune chunks"])
def test_the_sdk_parses_what_ollama_parses(harness, chunk: int) -> None:
    tools = [WEATHER, BOOK, NOARGS]
    body = {"parse": [{"reply": r, "tools": tools, "chunk": chunk} for r in REPLIES]}
    parsed = _run(harness, body)["parsed"]
    for reply, theirs in zip(REPLIES, parsed, strict=True):
        content, calls = parse(reply)
        assert _normal(calls) == _normal(theirs["tool_calls"]), reply
        if chunk == 0:
            assert content == theirs["content"], reply


def test_typed_values() -> None:
    _, calls = parse(REPLIES[2])
    assert calls[0]["function"]["arguments"] == {"city": "A, B {c}", "days": -3}
    assert calls[1]["function"]["arguments"] == {
        "details": {"vip": True, "n": [1, 2.5, "x"]},
        "tags": None,
    }
