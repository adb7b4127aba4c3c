"""The tool-call reply corpus through every parser we can run: the SDK's and Ollama's own.

Each reply is what a model might write after a tools prompt, in either dialect (the guide's
Python-style list, or JSON calls in ``<tool_call>`` tags, the dialect of gemma3-pack's tools
templates), with prose, code fences, several calls, nested and unicode arguments, negative
numbers, ``true/false/null``, and malformed calls. The expected result is written down per
parser:

* ``sdk``: what :func:`gemma3_pack._chat._tools.parse_calls` returns (text, calls);
* ``ollama``: the calls a plain client receives from Ollama's ``/api/chat`` when the model was
  created with ``modelfile --tools``: Ollama's own ``tools`` package (the release pinned in
  tests/go/ollama_toolparse/go.mod; ``tools/`` is the same code in 0.24.0 but for one string
  check in ``done``) run with our TEMPLATE, the reply streamed in small pieces through the
  logic of server/routes.go. ``None`` where Ollama returns no calls (the reply stays content).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _tool_conversations import BOOK, WEATHER
from _tool_replies import CORPUS, NAMES, SAME, Calls

from gemma3_pack._chat import OLLAMA_TOOLS_TEMPLATE
from gemma3_pack._chat._tools import parse_calls

pytestmark = pytest.mark.slow  # builds Ollama's tools package on a cold cache


def _calls(calls: list[dict[str, Any]]) -> Calls:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in calls]


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 40
    assert len({c[0] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(
    ("reply", "text", "calls"), [c[1:4] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
def test_the_sdk_parser(reply: str, text: str, calls: Calls) -> None:
    got_text, got = parse_calls(reply, NAMES)
    assert (got_text, _calls(got)) == (text, calls)


def _ollama(exe: Path, replies: list[str], chunk: int) -> list[dict[str, Any]]:
    body = {
        "template": OLLAMA_TOOLS_TEMPLATE,
        "tools": [WEATHER, BOOK],
        "replies": replies,
        "chunk": chunk,
    }
    proc = subprocess.run(
        [str(exe)], input=json.dumps(body), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


@pytest.mark.parametrize("chunk", [1, 3, 0], ids=["1-rune chunks", "3-rune chunks", "whole"])
def test_ollamas_parser(tool_parser: Path, chunk: int) -> None:
    results = _ollama(tool_parser, [c[1] for c in CORPUS], chunk)
    wrong = []
    for (name, reply, _, sdk_calls, expected), result in zip(CORPUS, results, strict=True):
        assert result["tag"] == "<tool_call>"
        want = sdk_calls if expected == SAME else (expected or [])
        got = _calls(result["tool_calls"])
        if got != want:
            wrong.append((name, got, want))
        if not want and "<tool_call>" not in reply:
            assert result["content"] == reply, name  # no tag: the reply comes back as it was
    assert not wrong, wrong
