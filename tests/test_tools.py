"""Tool calling the way Google's Gemma 3 function-calling guide describes it, and ``format=``.

The prompt: the guide's instruction and the function schemas as JSON in the (system, i.e. first
user) turn; calls written back as a Python-style list; results as ```tool_output blocks in the next
user turn. The parser is table-tested on replies the way small models write them, including the
malformed ones, which must come back as text and never raise.
"""

from __future__ import annotations

import json
from typing import Literal

import ollama
import pydantic
import pytest
from _fake_ollama import HOST, REPLY
from _loopback_openai import LoopbackOpenAI

from gemma3_pack import Client, ServerResponseError, UsageError
from gemma3_pack._chat._tools import INSTRUCTION, apply, parse_calls, schemas


def get_weather(city: str, unit: Literal["C", "F"] = "C", days: int | None = None) -> str:
    """Current weather for a city.

    Args:
        city: The city name, e.g. Paris.
        unit: Temperature unit.
    """
    return f"22 {unit} in {city}"


WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city name, e.g. Paris."},
            "unit": {
                "type": "string",
                "enum": ["C", "F"],
                "description": "Temperature unit.",
                "default": "C",
            },
            "days": {"type": "integer"},
        },
        "required": ["city"],
    },
}


def test_a_python_function_becomes_its_schema() -> None:
    assert schemas([get_weather]) == [WEATHER]


def test_openai_and_bare_schemas_are_accepted_and_bad_tools_refused() -> None:
    assert schemas([{"type": "function", "function": WEATHER}]) == [WEATHER]
    assert schemas([WEATHER]) == [WEATHER]
    with pytest.raises(UsageError, match="is not a function schema"):
        schemas([{"type": "retrieval"}])
    with pytest.raises(UsageError, match="cannot use a int as a tool"):
        schemas([3])  # type: ignore[list-item]
    with pytest.raises(UsageError, match="two tools share a name"):
        schemas([get_weather, WEATHER])


def test_the_prompt_follows_the_guide() -> None:
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": '{"city": "Rome", "unit": "F"}'}},
            ],
        },
        {"role": "tool", "content": "22 C in Paris"},
        {"role": "tool", "content": "70 F in Rome"},
    ]
    out = apply(history, [WEATHER])
    assert out[0] == {
        "role": "system",
        "content": INSTRUCTION + json.dumps([WEATHER], indent=2) + "\n\nBe brief.",
    }
    assert out[2] == {
        "role": "assistant",
        "content": '[get_weather(city="Paris"), get_weather(city="Rome", unit="F")]',
    }
    assert out[3:] == [
        {"role": "user", "content": "```tool_output\n22 C in Paris\n```"},
        {"role": "user", "content": "```tool_output\n70 F in Rome\n```"},
    ]


CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


@pytest.mark.parametrize(
    ("reply", "text", "calls"),
    [
        ('[get_weather(city="Paris")]', "", [CALL]),
        ("```tool_code\n[get_weather(city='Paris')]\n```", "", [CALL]),
        ("Sure.\n[get_weather(city='Paris')]\nOne moment.", "Sure.\n\nOne moment.", [CALL]),
        (
            '[get_weather(city="Paris", unit="F"), get_weather(city="Rome", days=3)]',
            "",
            [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "F"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Rome", "days": 3}}},
            ],
        ),
        (
            '[book(details={"title": "Gemma [3]", "tags": ["a", "b"], "all_day": true, '
            '"note": null, "n": -2.5})]',
            "",
            [
                {
                    "function": {
                        "name": "book",
                        "arguments": {
                            "details": {
                                "title": "Gemma [3]",
                                "tags": ["a", "b"],
                                "all_day": True,
                                "note": None,
                                "n": -2.5,
                            }
                        },
                    }
                }
            ],
        ),
        (
            '[get_weather(city="a ] b) [c(")]',
            "",
            [{"function": {"name": "get_weather", "arguments": {"city": "a ] b) [c("}}}],
        ),
        ("See [1] and [get_weather(city='Paris')].", "See [1] and .", [CALL]),
        # malformed or unsafe: returned as text, never raised
        ('[get_weather(city="Paris"]', None, []),
        ('[get_weather("Paris")]', None, []),
        ('[os.system(cmd="rm -rf /")]', None, []),
        ('[get_weather(city=__import__("os").getcwd())]', None, []),
        ("[get_weather(**{'city': 'Paris'})]", None, []),
        ("[unknown_tool(a=1)]", None, []),
        ("[1, 2, 3]", None, []),
        ("The weather is nice.", None, []),
        # hostile nesting: bounded work; the one real call inside is still found
        ("[" * 5000 + "get_weather(city='Paris')" + "]" * 5000, "[" * 4999 + "]" * 4999, [CALL]),
        ("[get_weather(city=" + "[" * 3000 + "]" * 3000 + ")]", None, []),
    ],
)
def test_replies_parse_into_calls_or_stay_text(reply, text, calls) -> None:
    got_text, got_calls = parse_calls(reply, ["get_weather", "book"])
    assert got_calls == calls
    assert got_text == (reply if text is None else text)


def _bodies(httpx_mock, path: str) -> list[dict]:
    return [json.loads(r.content) for r in httpx_mock.get_requests() if r.url.path == path]


def test_chat_with_tools_on_ollama_renders_the_prompt_and_returns_tool_calls(httpx_mock) -> None:
    reply = {**REPLY, "message": {"role": "assistant", "content": "[get_weather(city='Paris')]"}}
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=reply)
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    with Client(HOST) as client:
        first = client.chat("Weather in Paris?", tools=[get_weather])
        (call,) = first.message.tool_calls or []
        assert (call.function.name, dict(call.function.arguments)) == (
            "get_weather",
            {"city": "Paris"},
        )
        assert first.message.content == ""
        result = get_weather(**call.function.arguments)
        client.chat(
            [
                {"role": "user", "content": "Weather in Paris?"},
                first.message,
                {"role": "tool", "content": result},
            ],
            tools=[get_weather],
        )
    sent = _bodies(httpx_mock, "/api/chat")
    block = INSTRUCTION + json.dumps([WEATHER], indent=2)
    assert sent[0]["messages"] == [
        {"role": "system", "content": block},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert sent[0]["tools"] == []  # Ollama's gemma3 refuses tools: the SDK does it in the prompt
    assert sent[1]["messages"][2:] == [
        {"role": "assistant", "content": '[get_weather(city="Paris")]'},
        {"role": "user", "content": "```tool_output\n22 C in Paris\n```"},
    ]


@pytest.mark.parametrize("flavour", ["llama-server", "vllm"])
def test_chat_with_tools_on_openai_servers_is_the_same_prompt(flavour) -> None:
    with LoopbackOpenAI(flavour, models=("g",)) as srv, Client(srv.url, model="g") as client:
        srv.reply = 'I will check. [get_weather(city="Paris", unit="F")]'
        reply = client.chat("Weather in Paris?", tools=[{"type": "function", "function": WEATHER}])
        sent = srv.bodies("/v1/chat/completions")[0]
    assert sent["messages"][0] == {
        "role": "system",
        "content": INSTRUCTION + json.dumps([WEATHER], indent=2),
    }
    assert "tools" not in sent
    assert reply.message.content == "I will check."
    assert [
        (c.function.name, dict(c.function.arguments)) for c in reply.message.tool_calls or []
    ] == [("get_weather", {"city": "Paris", "unit": "F"})]


def test_streamed_tool_calls_arrive_on_the_last_chunk() -> None:
    with LoopbackOpenAI("vllm", models=("g",)) as srv, Client(srv.url, model="g") as client:
        srv.chunks = ["[get_weather(", "city='Paris'", ")]"]
        chunks = list(client.chat("Weather?", tools=[get_weather], stream=True))
    assert "".join(c.message.content or "" for c in chunks) == "[get_weather(city='Paris')]"
    assert [bool(c.message.tool_calls) for c in chunks] == [False, False, True]
    assert chunks[-1].message.tool_calls[0].function.name == "get_weather"


class Colour(pydantic.BaseModel):
    name: str
    hex: str


def test_format_with_a_pydantic_model_sends_its_schema_and_returns_an_instance(httpx_mock) -> None:
    good = {**REPLY, "message": {"role": "assistant", "content": '{"name": "red", "hex": "#f00"}'}}
    bad = {**REPLY, "message": {"role": "assistant", "content": '{"name": "red"}'}}
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=good)
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=bad)
    with Client(HOST) as client:
        reply = client.chat("A colour as JSON", format=Colour)
        assert isinstance(reply, ollama.ChatResponse)
        assert reply.parsed == Colour(name="red", hex="#f00")
        with pytest.raises(ServerResponseError, match="is not JSON of the requested format"):
            client.chat("A colour as JSON", format=Colour)
    assert _bodies(httpx_mock, "/api/chat")[0]["format"] == Colour.model_json_schema()


def test_format_with_a_pydantic_model_on_openai_is_a_json_schema_response_format() -> None:
    with LoopbackOpenAI("llama-server", models=("g",)) as srv, Client(srv.url) as client:
        srv.reply = '{"name": "blue", "hex": "#00f"}'
        assert client.chat("A colour", format=Colour).parsed == Colour(name="blue", hex="#00f")
        sent = srv.bodies("/v1/chat/completions")[0]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": Colour.model_json_schema(), "strict": True},
    }


def test_a_conversation_keeps_tool_calls_and_sends_tool_results(httpx_mock) -> None:
    calling = {**REPLY, "message": {"role": "assistant", "content": "[get_weather(city='Paris')]"}}
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=calling)
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=REPLY)
    with Client(HOST) as client:
        conv = client.conversation(tools=[get_weather])
        reply = conv.send("Weather in Paris?")
        with pytest.raises(UsageError, match="needs a tool_result"):
            conv.send()
        for call in reply.message.tool_calls or []:
            conv.tool_result(get_weather(**call.function.arguments))
        assert conv.send().message.content == "Rayleigh scattering."
    assert conv.messages[1:3] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "22 C in Paris"},
    ]
    second = _bodies(httpx_mock, "/api/chat")[1]["messages"]
    assert second[1:] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": '[get_weather(city="Paris")]'},
        {"role": "user", "content": "```tool_output\n22 C in Paris\n```"},
    ]


# --------------------------------------------------------------------------- run_tools


class Unit(str, __import__("enum").Enum):
    C = "C"
    F = "F"


class Place(pydantic.BaseModel):
    city: str
    country: str = "FR"


seen: list[tuple[Place, Unit, int]] = []


def forecast(place: Place, unit: Unit = Unit.C, days: int = 1) -> dict:
    """Forecast for a place.

    Args:
        place: Where.
        unit: Temperature unit.
        days: How many days.
    """
    seen.append((place, unit, days))
    if days < 0:
        raise ValueError("days must be >= 0")
    return {"city": place.city, "temps": [21.5] * days, "unit": unit.value}


def test_run_tools_calls_the_functions_and_sends_results_back(httpx_mock) -> None:
    """Two rounds: a call with a nested model, an enum and a negative number (the function
    raises: the model is told), then a good call, then the answer."""
    say = [
        '[forecast(place={"city": "Paris"}, unit="F", days=-1)]',
        '<tool_call>\n{"name": "forecast", "arguments": {"place": {"city": "Nice"}, "days": 2}}'
        "\n</tool_call>",
        "Sunny in Nice.",
    ]
    for text in say:
        httpx_mock.add_response(
            url=f"{HOST}/api/chat",
            json={**REPLY, "message": {"role": "assistant", "content": text}},
        )
    seen.clear()
    with Client(HOST) as client:
        reply = client.chat("Weather in Nice?", tools=[forecast], run_tools=True)
    assert reply.message.content == "Sunny in Nice."
    assert seen == [(Place(city="Paris"), Unit.F, -1), (Place(city="Nice"), Unit.C, 2)]
    sent = _bodies(httpx_mock, "/api/chat")
    assert len(sent) == 3
    assert sent[1]["messages"][-1] == {
        "role": "user",
        "content": "```tool_output\nerror: ValueError: days must be >= 0\n```",
    }
    assert sent[2]["messages"][-1] == {
        "role": "user",
        "content": '```tool_output\n{"city": "Nice", "temps": [21.5, 21.5], "unit": "C"}\n```',
    }
    schema = json.loads(sent[0]["messages"][0]["content"].removeprefix(INSTRUCTION))[0]
    assert schema["parameters"]["properties"]["place"] == {
        "properties": {
            "city": {"type": "string"},
            "country": {"default": "FR", "type": "string"},
        },
        "required": ["city"],
        "type": "object",
        "description": "Where.",
    }
    assert schema["parameters"]["properties"]["unit"] == {
        "type": "string",
        "enum": ["C", "F"],
        "description": "Temperature unit.",
        "default": "C",
    }


def test_run_tools_stops_after_max_rounds(httpx_mock) -> None:
    calling = {
        **REPLY,
        "message": {"role": "assistant", "content": '[forecast(place={"city": "A"})]'},
    }
    for _ in range(3):
        httpx_mock.add_response(url=f"{HOST}/api/chat", json=calling)
    seen.clear()
    with Client(HOST) as client:
        reply = client.chat("Go.", tools=[forecast], run_tools=True, max_tool_rounds=2)
    assert len(seen) == 2  # two rounds run; the third reply's call is returned, not run
    assert reply.message.tool_calls and reply.message.tool_calls[0].function.name == "forecast"


def test_run_tools_refusals() -> None:
    with Client(HOST) as client:
        with pytest.raises(UsageError, match="calls Python functions"):
            client.chat("x", tools=[{"type": "function", "function": WEATHER}], run_tools=True)
        with pytest.raises(UsageError, match="cannot stream"):
            client.chat("x", tools=[forecast], run_tools=True, stream=True)
        with pytest.raises(UsageError, match="max_tool_rounds"):
            client.chat("x", tools=[forecast], run_tools=True, max_tool_rounds=0)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_run_tools_on_the_async_client(anyio_backend) -> None:
    from gemma3_pack import AsyncClient

    with LoopbackOpenAI("vllm", models=("g",)) as srv:

        def temperature(city: str) -> float:
            """Temperature in a city."""
            srv.reply = f"Cold in {city}."  # what the model says next
            return -5.5

        srv.reply = '[temperature(city="Oslo")]'
        async with AsyncClient(srv.url, model="g") as client:
            reply = await client.chat("Oslo?", tools=[temperature], run_tools=True)
        sent = srv.bodies("/v1/chat/completions")
    assert reply.message.content == "Cold in Oslo."
    assert sent[1]["messages"][-1] == {"role": "user", "content": "```tool_output\n-5.5\n```"}
