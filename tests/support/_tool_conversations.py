"""Conversations with tools: two tool schemas (weather, book) and the tool-conversation corpus
(calls, results, system turns) that every tools template is held against the SDK's prompt on."""

from __future__ import annotations

from typing import Any

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city (°C).",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Zürich."},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
BOOK = {
    "type": "function",
    "function": {
        "name": "book",
        "description": "Book an event.",
        "parameters": {"type": "object", "properties": {"details": {"type": "object"}}},
    },
}


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def sys_(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def bot(text: str, *calls: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = list(calls)
    return message


def tool(text: str) -> dict[str, Any]:
    return {"role": "tool", "content": text}


TOOL_CORPUS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("tools, one user turn", [user("Weather in Paris?")], [WEATHER]),
    ("tools + system", [sys_("Be brief."), user("Weather in Paris?")], [WEATHER, BOOK]),
    (
        "a call, its result, the answer",
        [
            user("Weather in Paris?"),
            bot("", _call("get_weather", city="Paris")),
            tool("22 °C, sunny"),
            bot("Sunny, 22 °C."),
            user("And in Zürich for 3 days?"),
        ],
        [WEATHER],
    ),
    (
        "two calls, two results, nested arguments",
        [
            sys_("Be brief."),
            user("Book it and check the weather."),
            bot(
                "Sure.",
                _call("book", details={"title": "Gemma [3]", "all_day": True, "note": None}),
                _call("get_weather", city="Rome", days=2),
            ),
            tool("booked"),
            tool("18 °C"),
        ],
        [WEATHER, BOOK],
    ),
    (
        "mid-conversation system, two user turns in a row",
        [
            sys_("Be brief."),
            user("Hi"),
            user("Weather in Oslo?"),
            bot("", _call("get_weather", city="Oslo")),
            sys_("Answer in French."),
            tool("-3 °C"),
        ],
        [WEATHER],
    ),
    (
        "no tools, tool history",
        [user("Hi"), bot("", _call("get_weather", city="x")), tool("ok")],
        [],
    ),
]
