"""``gemma3-tools.gotmpl``: Ollama's ``tools`` on Gemma 3 (JSON calls in <tool_call> tags),
rendered and parsed by Ollama's own code.

Ollama's chat path (``tests/go/ollama_render``, the release pinned in its go.mod) renders the
tool conversations of tests/test_tools_template.py with ``OLLAMA_TOOLS_TEMPLATE`` from the
requests a plain ``ollama`` client sends (``tools``, assistant ``tool_calls``, ``tool``
messages). The reference is the SDK's own pipeline: messages built and normalised, the tool
prompt applied in Ollama's JSON spelling (``apply(..., dialect="ollama")``), Google's official
Jinja rendered, ``<bos>`` dropped (Ollama's runtime adds it). Without tools the variant renders
exactly what the plain TEMPLATE renders on the whole conformance corpus; and the real daemon
(Ollama 0.24.0) accepts ``tools`` on a model created with it, where ours refuses them.

On a real Ollama 0.34.4 both of its paths are run with plain clients: the Go TEMPLATE, and the
native path where a ``patch --tools`` GGUF with no TEMPLATE goes to llama-server's Jinja, parser
and lazy tool-call grammar.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import _ollama_render
import pytest
from _conversations import CORPUS
from _conversations import reference as _reference
from _tool_conversations import BOOK, TOOL_CORPUS, WEATHER, bot, tool, user

from gemma3_pack._chat import OLLAMA_TEMPLATE, OLLAMA_TOOLS_TEMPLATE, render_chat
from gemma3_pack._chat._tools import INSTRUCTION_JSON, apply, go_json, ollama_schema_json, schemas
from gemma3_pack._sdk._messages import build_messages, normalise

pytestmark = pytest.mark.slow  # builds Ollama's renderer on a cold cache (shared with others)

# Values whose Go spelling differs from Python's json.dumps: <>& and U+2028 escaped, floats
# without ".0", exponents without padding, map keys sorted, no spaces.
AWKWARD: dict[str, Any] = {
    "z": [1.0, 2.5, 1e21, 1.5e-7, 0.000015, -0.0, 3, 2**60 + 1],
    "a": {"y": "<b>&</b>", "x": 'line\u2028sep\ttab\x01"q\\'},
    "m": None,
    "b": True,
}
RICH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Find <things> & more.",
        "parameters": {
            "type": "object",
            "required": ["q", "filters"],
            "properties": {
                "q": {"type": "string", "description": "Query", "default": "dropped by Ollama"},
                "filters": {
                    "type": "object",
                    "properties": {
                        "zeta": {"type": "integer"},
                        "alpha": {"type": ["string", "null"]},
                    },
                    "required": ["zeta"],
                },
                "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "mode": {"enum": ["fast", "exact"], "type": "string"},
                "when": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            },
        },
    },
}
EXTRA_CORPUS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    (
        "awkward arguments and a rich schema",
        [
            user("Search."),
            bot("", {"function": {"name": "search", "arguments": AWKWARD}}),
            tool("nothing found"),
            user("Try again."),
        ],
        [RICH, WEATHER, BOOK],
    ),
]
CONVERSATIONS = TOOL_CORPUS + EXTRA_CORPUS


def _api_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the ``ollama`` client sends it to ``/api/chat`` (tool calls included)."""
    out = _ollama_render.api_message(message)  # content joined, images as base64 entries
    if message.get("tool_calls"):
        out["tool_calls"] = [{"function": dict(c["function"])} for c in message["tool_calls"]]
    return out


def _ollama(
    exe: Path, conversations: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]], template: str
) -> list[dict[str, Any]]:
    """Ollama's chat path, one request per conversation (``_ollama_render.render`` keeps only
    role and content, so the body is built here), in ONE process."""
    requests = []
    for messages, tools in conversations:
        request: dict[str, Any] = {"messages": [_api_message(m) for m in messages]}
        if tools:
            request["tools"] = tools
        requests.append(request)
    body = {"template": template, "system": "", "messages": [], "requests": requests}
    proc = subprocess.run(
        [str(exe)], input=json.dumps(body), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


def _sdk(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    """What the SDK's pipeline renders (Ollama's spelling of the schemas), minus <bos>."""
    built = build_messages(copy.deepcopy(messages))
    rendered = render_chat(normalise(apply(built, schemas(tools), dialect="ollama", calls="json")))
    assert rendered.startswith("<bos>")
    return rendered.removeprefix("<bos>")


@pytest.fixture(scope="module")
def renderer(go_binary) -> Path:
    return _ollama_render.binary(go_binary)


@pytest.fixture(scope="module")
def tool_prompts(renderer) -> list[dict[str, Any]]:
    return _ollama(renderer, [(m, t) for _, m, t in CONVERSATIONS], OLLAMA_TOOLS_TEMPLATE)


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)), ids=[n for n, _, _ in CONVERSATIONS])
def test_ollama_renders_what_the_sdk_sends(index: int, tool_prompts) -> None:
    _, messages, tools = CONVERSATIONS[index]
    result = tool_prompts[index]
    assert "error" not in result, result
    assert result["prompt"] == _sdk(messages, tools)


def test_the_prompt_reads_as_the_guide_says(tool_prompts) -> None:
    prompt = tool_prompts[2]["prompt"]  # a call, its result, the answer
    assert prompt.startswith("<start_of_turn>user\n" + INSTRUCTION_JSON + '[{"name":"get_weather",')
    assert '"description":"Current weather for a city (°C)."' in prompt  # UTF-8 kept
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call>'
    assert f"<start_of_turn>model\n{call}<end_of_turn>\n" in prompt
    assert "<start_of_turn>user\n```tool_output\n22 °C, sunny\n```<end_of_turn>\n" in prompt
    assert prompt.endswith("And in Zürich for 3 days?<end_of_turn>\n<start_of_turn>model\n")


def test_go_json_is_what_go_prints(tool_prompts) -> None:
    """The spelling differences, as Go's encoder printed them (read from Ollama's prompt)."""
    prompt = tool_prompts[-1]["prompt"]
    call = (
        '{"a":{"x":"line\\u2028sep\\ttab\\u0001\\"q\\\\","y":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e"},'
        '"b":true,"m":null,"z":[1,2.5,1e+21,1.5e-7,0.000015,-0,3,1152921504606847000]}'
    )
    assert (
        f'model\n<tool_call>\n{{"name": "search", "arguments": {call}}}\n</tool_call><end' in prompt
    )
    assert go_json(AWKWARD["z"]) == "[1,2.5,1e+21,1.5e-7,0.000015,-0,3,1152921504606847000]"
    schema = ollama_schema_json(schemas([RICH]))
    assert schema.startswith("[{") and schema.endswith("}]")
    assert schema[1:-1] + "," in prompt  # the first of the three tools
    # Ollama's api.ToolProperty: unknown keys (default, minLength) dropped, top-level properties
    # sorted, nested ones in their order, description always present on the function.
    assert '"q":{"type":"string","description":"Query"}' in schema
    assert '"filters":{"type":"object","properties":{"zeta":{"type":"integer"},"alpha"' in schema
    keys = [schema.index(f'"{k}":{{') for k in ("filters", "mode", "q", "tags", "when")]
    assert keys == sorted(keys)
    assert '"tags":{"type":"array","items":{"minLength":1,"type":"string"}}' in schema
    assert '"description":"Find \\u003cthings\\u003e \\u0026 more."' in schema


def test_without_tools_it_is_the_plain_template(renderer) -> None:
    convs = [(m, []) for _, m in CORPUS]
    plain = _ollama(renderer, convs, OLLAMA_TEMPLATE)
    variant = _ollama(renderer, convs, OLLAMA_TOOLS_TEMPLATE)
    assert len(variant) == len(CORPUS) >= 40
    assert variant == plain
    for (_, messages), result in zip(CORPUS, variant, strict=True):
        assert result["prompt"] == _reference(messages)


def test_the_plain_template_refuses_tools_and_the_variant_takes_them(renderer) -> None:
    conv = ([user("Weather in Paris?")], [WEATHER])
    assert _ollama(renderer, [conv], OLLAMA_TEMPLATE) == [
        {"images": 0, "error": "does not support tools"}
    ]
    assert "prompt" in _ollama(renderer, [conv], OLLAMA_TOOLS_TEMPLATE)[0]


def test_modelfile_tools_writes_the_variant(tmp_path: Path) -> None:
    from conftest import run_cli

    from gemma3_pack._modelfile import check_modelfile, parse_modelfile

    out = tmp_path / "Modelfile"
    result = run_cli("modelfile", "gemma3:270m", "--tools", "-o", str(out))
    assert result.code == 0, result.stderr
    assert parse_modelfile(out.read_text(encoding="utf-8")).template == OLLAMA_TOOLS_TEMPLATE
    assert check_modelfile(out) == []
    bad = run_cli("modelfile", "--check", str(out), "--tools")
    assert bad.code == 2 and "--tools goes with TARGET" in bad.stderr


# --------------------------------------------------------------------------- the real daemon


@pytest.fixture(scope="module")
def daemon_models(ollama_daemon, gguf_270m, tmp_path_factory) -> Any:
    """The patched 270M created twice by the real ``ollama create``: ``modelfile --tools`` and
    the plain ``modelfile``; deleted at the end (matters on a user's daemon)."""
    import uuid

    import httpx
    from conftest import run_cli

    from gemma3_pack import patch_gguf

    folder = tmp_path_factory.mktemp("tools-ollama")
    model = folder / "g.gguf"
    patch_gguf(gguf_270m, model)
    names = {}
    for kind, flags in (("tools", ["--tools"]), ("plain", [])):
        modelfile = folder / f"Modelfile.{kind}"
        result = run_cli("modelfile", str(model), *flags, "-o", str(modelfile))
        assert result.code == 0, result.stderr
        name = f"g3-tools-test-{kind}-{uuid.uuid4().hex[:8]}"
        made = ollama_daemon.cli("create", name, "-f", str(modelfile))
        assert made.returncode == 0, made.stderr
        names[kind] = name
    yield str(ollama_daemon.url), names
    for name in names.values():
        httpx.request("DELETE", f"{ollama_daemon.url}/api/delete", json={"model": name}, timeout=30)


def _chat(url: str, model: str, messages: list[dict[str, Any]], tools: list[Any], **extra: Any):
    import httpx

    body: dict[str, Any] = {
        "model": model,
        "messages": [_api_message(m) for m in messages],
        "stream": False,
        **extra,
    }
    if tools:
        body["tools"] = tools
    return httpx.post(f"{url}/api/chat", json=body, timeout=300)


@pytest.mark.ollama
def test_the_daemon_renders_what_the_sdk_sends(daemon_models) -> None:
    """Ollama 0.24.0's own /api/chat (``_debug_render_only``: the prompt, no generation)."""
    url, names = daemon_models
    for name, messages, tools in CONVERSATIONS:
        r = _chat(url, names["tools"], messages, tools, _debug_render_only=True)
        assert r.status_code == 200, (name, r.text)
        assert r.json()["_debug_info"]["rendered_template"] == _sdk(messages, tools), name


@pytest.mark.ollama
def test_the_daemon_accepts_tools_only_with_the_variant(daemon_models) -> None:
    import httpx

    url, names = daemon_models
    messages = [user("Weather in Paris?")]
    refused = _chat(url, names["plain"], messages, [WEATHER])
    assert refused.status_code == 400 and "does not support tools" in refused.text
    options = {"num_predict": 8, "temperature": 0, "seed": 1}
    answer = _chat(url, names["tools"], messages, [WEATHER], options=options)
    assert answer.status_code == 200, answer.text
    assert answer.json()["done"] is True
    shown = httpx.post(f"{url}/api/show", json={"model": names["tools"]}, timeout=30)
    assert "tools" in shown.json()["capabilities"]


# --------------------------------------------------------------------------- Ollama's tool parser


def test_ollamas_parser_takes_the_tag_from_the_template(tool_parser) -> None:
    """Ollama's parser infers the call tag from the first text after ``.ToolCalls`` in the
    TEMPLATE (tools/template.go ``parseTag``): ``<tool_call>`` for ours, ``{`` for a template
    without one. The whole reply corpus runs in tests/test_tools_corpus.py."""
    reply = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    results = []
    for template in (OLLAMA_TOOLS_TEMPLATE, "{{ .Prompt }}"):
        body = {"template": template, "tools": [WEATHER, BOOK], "replies": [reply]}
        proc = subprocess.run(
            [str(tool_parser)], input=json.dumps(body), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout)["results"][0])
    ours, plain = results
    assert ours["tag"] == "<tool_call>" and ours["content"] == ""
    assert [c["function"]["name"] for c in ours["tool_calls"]] == ["get_weather"]
    assert ours["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert plain["tag"] == "{"


def test_the_library_specs_take_tools(gguf_270m) -> None:
    from gemma3_pack._modelfile import create_kwargs, spec_for_gguf, spec_for_variant

    assert spec_for_variant("gemma3-270m-it", tools=True).template == OLLAMA_TOOLS_TEMPLATE
    assert spec_for_variant("gemma3-270m-it").template == OLLAMA_TEMPLATE
    spec = spec_for_gguf(gguf_270m, tools=True)
    assert create_kwargs(spec, {gguf_270m.name: "sha256:" + "0" * 64})["template"] == (
        OLLAMA_TOOLS_TEMPLATE
    )


# A conversation in which the model called the tool for the same question before: the 270M test
# model repeats the call at temperature 0, so a real generation goes through Ollama's parser.
SHOT_CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": -3}}}
SHOT = [
    user("Weather in Paris for the last 3 days?"),
    {"role": "assistant", "content": "", "tool_calls": [SHOT_CALL]},
    tool("22 °C, sunny"),
    bot("22 °C and sunny in Paris."),
]
ASK = [*SHOT, *SHOT, user("Weather in Paris for the last 3 days?")]


def _openai_messages(messages: list[dict[str, Any]]) -> list[Any]:
    """``messages`` as an ``openai`` client sends them (arguments as JSON text, call ids)."""
    out: list[Any] = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.dumps(c["function"]["arguments"]),
                    },
                }
                for i, c in enumerate(m["tool_calls"])
            ]
            out.append({"role": "assistant", "content": "", "tool_calls": calls})
        elif m["role"] == "tool":
            out.append({"role": "tool", "content": m["content"], "tool_call_id": "call_0"})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


@pytest.mark.ollama
def test_a_plain_ollama_client_gets_tool_calls(daemon_models) -> None:
    """Ollama 0.24.0's /api/chat with the ``ollama`` client: the model's real reply comes back as
    structured ``tool_calls`` with typed arguments (the int stays an int, its sign kept)."""
    import ollama

    url, names = daemon_models
    client = ollama.Client(host=url)
    try:
        reply = client.chat(
            model=names["tools"],
            messages=[_api_message(m) for m in ASK],
            tools=[WEATHER],
            options={"temperature": 0, "seed": 1, "num_predict": 48},
        )
    finally:
        client._client.close()
    calls = [(c.function.name, dict(c.function.arguments)) for c in reply.message.tool_calls or []]
    # the 270M repeats its call until num_predict: every call is the same, well-typed one
    # (argument order is the engine's: dicts compare without it)
    assert calls and all(c == ("get_weather", {"city": "Paris", "days": -3}) for c in calls), calls
    assert reply.message.content == ""


@pytest.mark.ollama
def test_a_plain_openai_client_gets_tool_calls(daemon_models) -> None:
    """The same through Ollama's OpenAI-compatible /v1 with the ``openai`` client."""
    import openai

    url, names = daemon_models
    client = openai.OpenAI(base_url=url + "/v1", api_key="ollama")
    with client:
        reply = client.chat.completions.create(
            model=names["tools"],
            messages=_openai_messages(ASK),
            tools=[WEATHER],  # type: ignore[list-item]
            temperature=0,
            seed=1,
            max_tokens=48,
        )
    got = [
        (c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
        for c in reply.choices[0].message.tool_calls or []
    ]
    assert got and all(g == ("get_weather", {"city": "Paris", "days": -3}) for g in got), got
    assert reply.choices[0].finish_reason == "tool_calls"


# --------------------------------------------------------------------------- Ollama 0.34.4

# The same tool with a schema that admits one call only, and not the one the conversation shows
# (Paris, -3): what comes back is what llama-server's grammar allowed, not what the model repeated.
LYON = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city (°C).",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Lyon"]},
                "days": {"type": "integer", "enum": [-7]},
            },
            "required": ["city", "days"],
        },
    },
}
PATHS = ("native", "go")


@pytest.fixture(scope="module")
def new_daemon(gguf_270m, tmp_path_factory) -> Any:
    """Ollama 0.34.4 as installed (no ``OLLAMA_GO_TEMPLATE``) and two models. ``native``: a
    ``patch --tools`` GGUF with the Modelfile ``gemma3-pack modelfile`` writes minus its TEMPLATE;
    with no Go template 0.34.4 starts llama-server with Jinja on the GGUF's
    ``tokenizer.chat_template`` (our JSON dialect), sends it the messages and ``tools``
    (``/v1/chat/completions``) and relays the ``tool_calls`` llama-server's own parser returns
    (llm/llama_server.go ``Chat``). ``go``: a plain-patched GGUF with ``modelfile --tools``;
    Ollama renders the TEMPLATE and parses the reply itself. Two files, so two runners: 0.34.4
    keys a runner by the GGUF's path and does not restart it when another model on the same file
    wants Jinja switched the other way (server/sched.go ``needsReload``)."""
    import _engines
    import _engines_ollama_new
    from conftest import run_cli

    from gemma3_pack import patch_gguf

    folder = tmp_path_factory.mktemp("tools-new")
    modelfiles, blobs = {}, {}
    for path, flags in (("native", []), ("go", ["--tools"])):
        model = folder / f"{path}.gguf"
        patch_gguf(gguf_270m, model, tools=path == "native")
        blobs[path] = "sha256-" + hashlib.sha256(model.read_bytes()).hexdigest()
        modelfile = folder / f"Modelfile.{path}"
        result = run_cli("modelfile", str(model), *flags, "-o", str(modelfile))
        assert result.code == 0, result.stderr
        modelfiles[path] = modelfile
    text, dropped = re.subn(
        r'^TEMPLATE """.*?"""\n', "", modelfiles["native"].read_text("utf-8"), flags=re.M | re.S
    )
    assert dropped == 1
    modelfiles["native"].write_text(text, encoding="utf-8")
    binary = _engines_ollama_new.ollama_binary_new()
    daemon = _engines.OllamaDaemon(binary, folder / "ollama").start()
    try:
        for path, modelfile in modelfiles.items():
            made = daemon.cli("create", f"g3-tools-{path}", "-f", str(modelfile))
            assert made.returncode == 0, made.stderr
            assert "autodetected template" not in made.stdout  # no Go template was inferred
        daemon.blobs = blobs  # the GGUF each model runs (the file name of its blob)
        yield daemon
    finally:
        daemon.stop()


def _as_ollama_sends(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Call arguments as Ollama 0.34.4 passes them on: its ordered top-level map keeps the order,
    the values are Go values (nested objects as maps with sorted keys, numbers as float64)."""
    out = copy.deepcopy(messages)
    for m in out:
        for call in m.get("tool_calls") or []:
            args = call["function"]["arguments"]
            call["function"]["arguments"] = {k: json.loads(go_json(v)) for k, v in args.items()}
    return out


def _as_ollama_sends_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool schemas as Ollama's ``api.Tool`` passes them on: its field order, unknown keys
    dropped, the top-level properties in the request's order."""
    sent = []
    given = schemas(tools)
    for schema, function in zip(given, json.loads(ollama_schema_json(given)), strict=True):
        props = function["parameters"]["properties"]
        function["parameters"]["properties"] = {
            k: props[k] for k in schema["parameters"]["properties"]
        }
        sent.append({"type": "function", "function": function})
    return sent


def _jinja(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    """Our GGUF template rendered by Jinja with what Ollama sends llama-server, no ``<bos>``
    (llama-server's tokenizer adds it)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from gemma3_pack._chat import TOOLS_CHAT_TEMPLATE

    sent = _as_ollama_sends_tools(tools)
    rendered, _ = render_jinja_template(
        conversations=[_as_ollama_sends(messages)],
        tools=sent or None,
        chat_template=TOOLS_CHAT_TEMPLATE,
        add_generation_prompt=True,
        bos_token="",
    )
    return str(rendered[0])


def _jinja_switch(daemon: Any, path: str) -> set[bool]:
    """Whether each llama-server 0.34.4 started for that model's GGUF got ``--no-jinja``."""
    launches = re.findall(r'msg="starting llama-server" cmd="([^"]*)"', daemon.log())
    return {"--no-jinja" in cmd for cmd in launches if daemon.blobs[path] in cmd}


def _new_chat(daemon: Any, path: str, tools: list[Any], **extra: Any) -> Any:
    import ollama

    client = ollama.Client(host=daemon.url)
    try:
        return client.chat(
            model=f"g3-tools-{path}",
            messages=[_api_message(m) for m in ASK],
            tools=tools,
            options={"temperature": 0, "seed": 1, "num_predict": 48},
            **extra,
        )
    finally:
        client._client.close()


@pytest.mark.ollama
def test_0_34_4_native_path_renders_the_gguf_template(new_daemon) -> None:
    """0.34.4 picks the GGUF's Jinja (its ``template selection`` log line, server/images.go) and
    llama-server (``/apply-template``) renders every tool conversation as Jinja does."""
    for label, messages, tools in CONVERSATIONS:
        r = _chat(new_daemon.url, "g3-tools-native", messages, tools, _debug_render_only=True)
        assert r.status_code == 200, (label, r.text)
        assert r.json()["_debug_info"]["rendered_template"] == _jinja(messages, tools), label
    selected = re.findall(
        r'msg="template selection" model=\S+/g3-tools-native:latest selected=(\S+) .*'
        r'go_template=(\S+) chat_template="([^"]*)"',
        new_daemon.log(),
    )
    assert set(selected) == {("gguf_chat_template", "null", "[tools completion]")}
    assert _jinja_switch(new_daemon, "native") == {False}


@pytest.mark.ollama
@pytest.mark.parametrize("path", PATHS)
def test_0_34_4_plain_ollama_client_gets_tool_calls(new_daemon, path: str) -> None:
    """Ollama 0.34.4 with the ``ollama`` client on both paths: the 270M repeats the call the
    conversation shows; llama-server's parser (native) or Ollama's (go) reads it, and the client
    gets structured ``tool_calls`` with typed arguments."""
    prompt = _chat(new_daemon.url, f"g3-tools-{path}", ASK, [WEATHER], _debug_render_only=True)
    # which renderer the daemon used: our Go TEMPLATE (the SDK's Ollama spelling) or the Jinja
    expected = _sdk(ASK, [WEATHER]) if path == "go" else _jinja(ASK, [WEATHER])
    assert prompt.json()["_debug_info"]["rendered_template"] == expected
    reply = _new_chat(new_daemon, path, [WEATHER])
    calls = [(c.function.name, dict(c.function.arguments)) for c in reply.message.tool_calls or []]
    # one call from llama-server's grammar; Ollama's parser reads every repeat (like 0.24.0)
    assert calls and all(c == ("get_weather", {"city": "Paris", "days": -3}) for c in calls), calls
    assert len(calls) == 1 or path == "go"
    assert reply.message.content == ""
    assert _jinja_switch(new_daemon, path) == {path == "go"}  # the Go path renders itself


@pytest.mark.ollama
def test_0_34_4_native_plain_openai_client_gets_tool_calls(new_daemon) -> None:
    """The native path through 0.34.4's ``/v1`` with the ``openai`` client."""
    import openai

    with openai.OpenAI(base_url=new_daemon.url + "/v1", api_key="ollama") as client:
        reply = client.chat.completions.create(
            model="g3-tools-native",
            messages=_openai_messages(ASK),
            tools=[WEATHER],  # type: ignore[list-item]
            temperature=0,
            seed=1,
            max_tokens=48,
        )
    got = [
        (c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
        for c in reply.choices[0].message.tool_calls or []
    ]
    assert got == [("get_weather", {"city": "Paris", "days": -3})]
    # the 270M writes on after the call until max_tokens: Ollama's /v1 turns only a "stop" into
    # "tool_calls" (openai/openai.go), so a generation cut by the limit reads "length"
    assert reply.choices[0].finish_reason in ("tool_calls", "length")


@pytest.mark.ollama
def test_0_34_4_native_lazy_grammar_constrains_the_call(new_daemon) -> None:
    """llama-server's autoparser makes a lazy grammar (``tool_choice`` auto: Ollama sends none)
    triggered by ``<tool_call>`` (common/chat-auto-parser-generator.cpp): once the model writes
    the tag the call must match the schema. The conversation shows Paris/-3; the schema admits
    only Lyon/-7, and Lyon/-7 comes back. The control: the Go path (no grammar) with the same
    schema in its prompt gets the model's own Paris/-3."""
    got = {}
    for path in PATHS:
        reply = _new_chat(new_daemon, path, [LYON])
        got[path] = {
            (c.function.name, json.dumps(dict(c.function.arguments), sort_keys=True))
            for c in reply.message.tool_calls or []
        }
    assert got == {
        "native": {("get_weather", '{"city": "Lyon", "days": -7}')},
        "go": {("get_weather", '{"city": "Paris", "days": -3}')},
    }


@pytest.mark.ollama
def test_0_34_4_native_format_replaces_the_tool_parser(new_daemon) -> None:
    """``format`` (a JSON schema, sent on as ``response_format``) makes llama-server build the
    response-format parser and grammar instead of the tool parser: the reply is the JSON and no
    ``tool_calls`` come back, so a schema cannot force a call on this path."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    reply = _new_chat(new_daemon, "native", [WEATHER], format=schema)
    assert not reply.message.tool_calls
    assert isinstance(json.loads(reply.message.content)["ok"], bool)
