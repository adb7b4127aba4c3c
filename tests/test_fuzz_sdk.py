"""Property-based fuzzing of the SDK's foreign inputs: server replies and model output.

A server may answer anything: every reply here is hypothesis-made JSON of any shape (or raw bytes)
served through an in-memory transport to each client call, on both protocols, streamed or not. The
SDK may only raise its own errors (one line); a raw TypeError/KeyError/AttributeError/ValidationError
is a bug. The tool-call parser gets arbitrary text and must never raise at all.

Budget as in tests/test_fuzz.py: ``GEMMA3_PACK_FUZZ_EXAMPLES`` (default 200) per target.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemma3_pack import Client, Gemma3PackError
from gemma3_pack._chat._tools import parse_calls

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = int(os.environ.get("GEMMA3_PACK_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
# Replies that look almost right: the real fields with any values, so the mappers go deep.
OLLAMA_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "model": JSON,
        "created_at": JSON,
        "done": JSON,
        "message": st.fixed_dictionaries(
            {}, optional={"role": JSON, "content": JSON, "tool_calls": JSON}
        ),
        "response": JSON,
        "status": JSON,
        "version": JSON,
        "models": st.lists(
            st.fixed_dictionaries({}, optional={"model": JSON, "details": JSON, "size": JSON}),
            max_size=3,
        ),
        "capabilities": JSON,
        "model_info": JSON,
        "error": JSON,
    },
)
OPENAI_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON,
        "model": JSON,
        "created": JSON,
        "object": JSON,
        "choices": st.lists(
            st.fixed_dictionaries(
                {},
                optional={"message": JSON, "delta": JSON, "finish_reason": JSON, "text": JSON},
            ),
            max_size=2,
        ),
        "usage": JSON,
        "data": st.lists(
            st.fixed_dictionaries({}, optional={"id": JSON, "owned_by": JSON}), max_size=2
        ),
        "error": JSON,
        "modalities": JSON,
    },
)
STATUS = st.sampled_from([200, 200, 200, 400, 404, 500, 503])


def _body(reply: Any, stream: bool, sse: bool) -> bytes:
    line = json.dumps(reply).encode()
    if sse:
        return b"data: " + line + b"\n\ndata: [DONE]\n\n"
    return line + b"\n" if stream else line


def _own_errors_only(call: Any) -> None:
    try:
        result = call()
        if hasattr(result, "__next__"):
            list(result)
    except Gemma3PackError as err:
        text = str(err)
        assert text and "\n" not in text, text


OLLAMA_CALLS = [
    lambda c: c.chat("Hi"),
    lambda c: c.chat("Hi", stream=True),
    lambda c: c.chat("Hi", tools=[{"name": "f", "parameters": {}}], format={"type": "object"}),
    lambda c: c.generate("Hi"),
    lambda c: c.version(),
    lambda c: c.show(),
    lambda c: c.has_vision(),
    lambda c: c.list_gemma(),
    lambda c: c.pull(progress=False),
]


@FUZZ
@given(reply=OLLAMA_LIKE | JSON, status=STATUS, raw=st.none() | st.binary(max_size=64))
def test_fuzz_ollama_replies(reply: Any, status: int, raw: bytes | None) -> None:
    for index, call in enumerate(OLLAMA_CALLS):

        def handler(request: httpx.Request, index: int = index) -> httpx.Response:
            body = raw if raw is not None else _body(reply, index in (1, 8), sse=False)
            return httpx.Response(status, content=body)

        with Client("http://fuzz.test:11434", transport=httpx.MockTransport(handler)) as client:
            _own_errors_only(lambda client=client, call=call: call(client))


OPENAI_CALLS = [
    lambda c: c.chat("Hi"),
    lambda c: c.chat("Hi", stream=True),
    lambda c: c.chat("Hi", tools=[{"name": "f", "parameters": {}}], format={"type": "object"}),
    lambda c: c.generate("Hi", raw=True),
    lambda c: c.version(),
    lambda c: c.show(),
    lambda c: c.list_gemma(),
]


@FUZZ
@given(reply=OPENAI_LIKE | JSON, status=STATUS, raw=st.none() | st.binary(max_size=64))
def test_fuzz_openai_replies(reply: Any, status: int, raw: bytes | None) -> None:
    hx = __import__(openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0])
    for index, call in enumerate(OPENAI_CALLS):

        def handler(request: Any, index: int = index) -> Any:
            sse = index == 1
            body = raw if raw is not None else _body(reply, False, sse=sse)
            ctype = "text/event-stream" if sse else "application/json"
            return hx.Response(status, content=body, headers={"content-type": ctype})

        with Client(
            "http://fuzz.test:8080/v1", model="m", transport=hx.MockTransport(handler)
        ) as client:
            _own_errors_only(lambda client=client, call=call: call(client))


_CALLISH = st.text(alphabet="[](){}=,'\"\\ \nabcf_xy0123.-:*", max_size=120)


@FUZZ
@given(text=_CALLISH | st.text(max_size=200))
def test_fuzz_tool_call_parser_never_raises(text: str) -> None:
    rest, calls = parse_calls(text, ["f", "x"])
    assert isinstance(rest, str)
    for call in calls:
        assert call["function"]["name"] in ("f", "x")
        assert isinstance(call["function"]["arguments"], dict)
