"""The tool-call reply corpus: replies a model might write after a tools prompt, in either dialect
(the guide's Python-style list, or JSON calls in ``<tool_call>`` tags), each with the result expected
from the SDK's parser and from Ollama's (see tests/test_tools_corpus.py)."""

from __future__ import annotations

import json
from typing import Any

NAMES = ["get_weather", "book"]
T = "<tool_call>\n{}\n</tool_call>"
W = {"city": "Paris"}
Calls = list[tuple[str, dict[str, Any]]]
SAME = "same"


def tc(name: str, args: dict[str, Any] | str) -> str:
    body = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return T.format(f'{{"name": "{name}", "arguments": {body}}}')


# (id, reply, sdk text, sdk calls, ollama calls: SAME as the SDK's, None for none, or a list)
CORPUS: list[tuple[str, str, str, Calls, Calls | str | None]] = [
    # --- the JSON dialect (what the tools templates ask for)
    ("json one call", tc("get_weather", W), "", [("get_weather", W)], SAME),
    (
        "json two calls",
        tc("get_weather", W) + "\n" + tc("get_weather", {"city": "Rome", "days": 2}),
        "",
        [("get_weather", W), ("get_weather", {"city": "Rome", "days": 2})],
        SAME,
    ),
    (
        "json prose before",
        "Let me check the weather.\n" + tc("get_weather", W),
        "Let me check the weather.",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json prose after (Ollama drops it)",
        tc("get_weather", W) + "\nI will tell you soon.",
        "I will tell you soon.",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json in a code fence",
        "```\n" + tc("get_weather", W) + "\n```",
        "```\n\n```",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json negative numbers",
        tc("get_weather", {"city": "Oslo", "days": -3, "t": -1.5e-3}),
        "",
        [("get_weather", {"city": "Oslo", "days": -3, "t": -0.0015})],
        SAME,
    ),
    (
        "json true false null",
        tc("book", {"details": {"vip": True, "paid": False, "note": None}}),
        "",
        [("book", {"details": {"vip": True, "paid": False, "note": None}})],
        SAME,
    ),
    (
        "json nested arguments",
        tc("book", {"details": {"who": ["Ann", "Bo"], "when": {"d": 3, "m": [1, 2]}}}),
        "",
        [("book", {"details": {"who": ["Ann", "Bo"], "when": {"d": 3, "m": [1, 2]}}})],
        SAME,
    ),
    (
        "json unicode",
        tc("get_weather", {"city": "Zürich 東京 🌧"}),
        "",
        [("get_weather", {"city": "Zürich 東京 🌧"})],
        SAME,
    ),
    (
        "json escaped unicode",
        T.format('{"name": "get_weather", "arguments": {"city": "Z\\u00fcrich"}}'),
        "",
        [("get_weather", {"city": "Zürich"})],
        SAME,
    ),
    (
        "json braces and quotes in strings",
        tc("book", {"details": {"title": 'A "}{" ]['}}),
        "",
        [("book", {"details": {"title": 'A "}{" ]['}})],
        SAME,
    ),
    (
        "json arguments as a string (OpenAI style)",
        T.format('{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}'),
        "",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json parameters key",
        T.format('{"name": "get_weather", "parameters": {"city": "Paris"}}'),
        "",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json empty arguments",
        tc("book", {}),
        "",
        [("book", {})],
        SAME,
    ),
    (
        "json no arguments key (Ollama needs one)",
        T.format('{"name": "book"}'),
        "",
        [("book", {})],
        None,
    ),
    (
        "json two calls in one tag",
        T.format(
            '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            '{"name": "book", "arguments": {"details": {}}}'
        ),
        "",
        [("get_weather", W), ("book", {"details": {}})],
        SAME,
    ),
    (
        "json a list of calls in one tag",
        T.format(
            '[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "book", "arguments": {"details": {"n": 1}}}]'
        ),
        "",
        [("get_weather", W), ("book", {"details": {"n": 1}})],
        SAME,
    ),
    (
        "json no closing tag",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}',
        "",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json same line tags",
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
        "",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json key order arguments first",
        T.format('{"arguments": {"city": "Paris"}, "name": "get_weather"}'),
        "",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json OpenAI function wrapper",
        T.format(
            '{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}'
        ),
        "",
        [("get_weather", W)],
        SAME,
    ),
    (
        "json big and small numbers",
        tc("book", {"details": {"n": 12345678901, "x": 0.1, "e": 1e21}}),
        "",
        [("book", {"details": {"n": 12345678901, "x": 0.1, "e": 1e21}})],
        [("book", {"details": {"n": 12345678901, "x": 0.1, "e": 1e21}})],
    ),
    # --- malformed or not calls
    (
        "json unknown function",
        tc("launch_rockets", {"n": 3}),
        tc("launch_rockets", {"n": 3}),
        [],
        None,
    ),
    (
        "json truncated",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',
        [],
        None,
    ),
    (
        "json single quotes (not JSON)",
        "<tool_call>\n{'name': 'get_weather', 'arguments': {'city': 'Paris'}}\n</tool_call>",
        "<tool_call>\n{'name': 'get_weather', 'arguments': {'city': 'Paris'}}\n</tool_call>",
        [],
        None,
    ),
    (
        "json arguments not an object",
        T.format('{"name": "get_weather", "arguments": ["Paris"]}'),
        T.format('{"name": "get_weather", "arguments": ["Paris"]}'),
        [],
        None,
    ),
    ("plain answer", "It is sunny in Paris, 22 °C.", "It is sunny in Paris, 22 °C.", [], None),
    (
        "prose about a tag",
        "Tools are called with a <tool_call> tag.",
        "Tools are called with a <tool_call> tag.",
        [],
        None,
    ),
    ("empty reply", "", "", [], None),
    # --- JSON without the tag: the SDK reads it, Ollama (tag <tool_call>) does not
    (
        "bare json object",
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        "",
        [("get_weather", W)],
        None,
    ),
    (
        "bare json in a json fence after prose",
        'Calling it:\n```json\n{"name": "get_weather", "arguments": {"city": "Paris", "days": -1}}\n```',
        "Calling it:",
        [("get_weather", {"city": "Paris", "days": -1})],
        None,
    ),
    (
        "bare json list",
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        "",
        [("get_weather", W)],
        None,
    ),
    # --- the guide's pythonic dialect (the SDK's own prompt): Ollama leaves it as text
    ("pythonic one call", '[get_weather(city="Paris")]', "", [("get_weather", W)], None),
    (
        "pythonic several calls",
        '[get_weather(city="Paris"), book(details={"n": 1})]',
        "",
        [("get_weather", W), ("book", {"details": {"n": 1}})],
        None,
    ),
    (
        "pythonic prose before",
        'Sure.\n[get_weather(city="Paris")]',
        "Sure.",
        [("get_weather", W)],
        None,
    ),
    (
        "pythonic tool_code fence",
        '```tool_code\n[get_weather(city="Paris", days=2)]\n```',
        "",
        [("get_weather", {"city": "Paris", "days": 2})],
        None,
    ),
    (
        "pythonic python fence after prose",
        'Let me look.\n```python\n[get_weather(city="Oslo")]\n```',
        "Let me look.",
        [("get_weather", {"city": "Oslo"})],
        None,
    ),
    (
        "pythonic negative and JSON literals",
        "[book(details={'a': -1, 'b': true, 'c': null, 'd': False, 'e': -2.5})]",
        "",
        [("book", {"details": {"a": -1, "b": True, "c": None, "d": False, "e": -2.5}})],
        None,
    ),
    (
        "pythonic unicode",
        '[get_weather(city="São Paulo")]',
        "",
        [("get_weather", {"city": "São Paulo"})],
        None,
    ),
    (
        "pythonic brackets in strings",
        '[book(details={"t": "a ] b ) c"})]',
        "",
        [("book", {"details": {"t": "a ] b ) c"}})],
        None,
    ),
    ("pythonic positional argument", '[get_weather("Paris")]', '[get_weather("Paris")]', [], None),
    (
        "pythonic code is not a literal",
        '[get_weather(city=__import__("os").getcwd())]',
        '[get_weather(city=__import__("os").getcwd())]',
        [],
        None,
    ),
    ("pythonic unknown function", "[rm(path='/')]", "[rm(path='/')]", [], None),
    (
        "pythonic unclosed",
        '[get_weather(city="Paris"',
        '[get_weather(city="Paris"',
        [],
        None,
    ),
    (
        "a list that is not calls",
        "Options: [1, 2, 3] (pick one)",
        "Options: [1, 2, 3] (pick one)",
        [],
        None,
    ),
]
