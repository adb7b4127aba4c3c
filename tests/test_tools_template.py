"""``gemma3-tools.jinja`` renders exactly what the SDK sends, in the engine vLLM renders with.

vLLM renders chat templates with transformers' ``render_jinja_template`` (an immutable sandbox with
transformers' own ``tojson``); that real function renders the template here, with ``tools`` and
the raw conversation a plain OpenAI client would send. The SDK's side is its own pipeline: messages
built and normalised, the tool prompt applied, Google's official template rendered. Equal text,
conversation by conversation; and with no tools, the template equals Google's on the conformance
corpus.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from test_go_conformance import CORPUS
from transformers.utils.chat_template_utils import render_jinja_template

from gemma3_pack._chat import render_chat
from gemma3_pack._chat._tools import INSTRUCTION, TOOLS_TEMPLATE, apply, schemas
from gemma3_pack._sdk._messages import build_messages, normalise

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


def _sdk(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    """What the SDK sends, rendered by Google's template (the server's side of a plain chat)."""
    built = build_messages(copy.deepcopy(messages))
    return render_chat(normalise(apply(built, schemas(tools))))


def _template(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    rendered, _ = render_jinja_template(
        conversations=[copy.deepcopy(messages)],
        tools=tools or None,
        chat_template=TOOLS_TEMPLATE,
        add_generation_prompt=True,
        bos_token="<bos>",
    )
    return str(rendered[0])


@pytest.mark.parametrize(
    ("messages", "tools"), [(m, t) for _, m, t in TOOL_CORPUS], ids=[n for n, _, _ in TOOL_CORPUS]
)
def test_the_tools_template_renders_what_the_sdk_sends(messages, tools) -> None:
    assert _template(messages, tools) == _sdk(messages, tools)


def test_the_prompt_reads_as_the_guide_says() -> None:
    text = _template(TOOL_CORPUS[2][1], [WEATHER])
    assert text.startswith("<bos><start_of_turn>user\n" + INSTRUCTION + "[\n  {\n")
    assert '"description": "Current weather for a city (°C)."' in text  # UTF-8, not \\u escapes
    assert '<start_of_turn>model\n[get_weather(city="Paris")]<end_of_turn>\n' in text
    assert "<start_of_turn>user\n```tool_output\n22 °C, sunny\n```<end_of_turn>\n" in text


@pytest.mark.parametrize("messages", [m for _, m in CORPUS], ids=[n for n, _ in CORPUS])
def test_without_tools_it_is_googles_template(messages) -> None:
    assert _template(messages, []) == render_chat(messages)


def _openai_format(message: dict[str, Any]) -> dict[str, Any]:
    """How an OpenAI client sends a message: tool-call arguments as a JSON string, with an id."""
    out = copy.deepcopy(message)
    for i, call in enumerate(out.get("tool_calls", [])):
        call["function"]["arguments"] = json.dumps(
            call["function"]["arguments"], ensure_ascii=False
        )
        call["id"] = f"call_{i}"
    return out


@pytest.mark.slow
@pytest.mark.llama_server
def test_llama_cpps_own_jinja_renders_what_the_sdk_sends(
    llama_server_bin, gguf_270m, tmp_path
) -> None:
    """llama-server --jinja --chat-template-file gemma3-tools.jinja, asked through /apply-template
    with OpenAI-format requests (``tools``, string arguments), equals the SDK's own rendering."""
    import _engines_llama
    import httpx

    from gemma3_pack import patch_gguf

    model = tmp_path / "g.gguf"
    patch_gguf(gguf_270m, model)
    template = tmp_path / "gemma3-tools.jinja"
    template.write_text(TOOLS_TEMPLATE, encoding="utf-8")
    args = (
        "--jinja",
        "--chat-template-file",
        str(template),
        "--ctx-size",
        "2048",
        "--parallel",
        "1",
    )
    with _engines_llama.llama_server(model, *args) as server:
        for name, messages, tools in TOOL_CORPUS:
            body: dict[str, Any] = {"messages": [_openai_format(m) for m in messages]}
            if tools:
                body["tools"] = tools
            answer = httpx.post(server.url + "/apply-template", json=body, timeout=120)
            assert answer.status_code == 200, (name, answer.text)
            # llama.cpp adds <bos> at tokenization, so its rendering drops the leading one
            assert "<bos>" + answer.json()["prompt"].removeprefix("<bos>") == _sdk(
                messages, tools
            ), name
