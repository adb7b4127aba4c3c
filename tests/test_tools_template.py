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
from _conversations import CORPUS
from _tool_conversations import TOOL_CORPUS, WEATHER
from transformers.utils.chat_template_utils import render_jinja_template

from gemma3_pack._chat import render_chat
from gemma3_pack._chat._tools import INSTRUCTION, TOOLS_TEMPLATE, apply, schemas
from gemma3_pack._sdk._messages import build_messages, normalise


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
