"""FunctionGemma (Google's 270M function-calling Gemma 3): its prompt and its reply format.

FunctionGemma reads tools as ``<start_function_declaration>declaration:NAME{...}`` blocks in a
``developer`` turn and answers ``<start_function_call>call:NAME{key:value,...}<end_function_call>``,
strings between ``<escape>`` tokens; results go back as ``<start_function_response>response:NAME
{<escape>...<escape>}<end_function_response>``. These strings are the ones of Ollama's built-in
``functiongemma`` renderer and parser (``model/renderers/functiongemma.go``,
``model/parsers/functiongemma.go``, Ollama >= 0.13.5), and this module is a port of both:
:func:`render` returns the prompt Ollama renders, byte for byte, and :func:`parse` the content and
calls Ollama's parser returns for a reply (tests/test_functiongemma.py runs Ollama's own Go code
beside it). An Ollama model gets them natively with ``RENDERER functiongemma`` /
``PARSER functiongemma`` (:func:`modelfile_commands`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from .._family import FUNCTIONGEMMA_MIN_OLLAMA, FUNCTIONGEMMA_TOKENS

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "CONTROL_TOKENS",
    "DEFAULT_SYSTEM",
    "MIN_OLLAMA",
    "STOPS",
    "modelfile_commands",
    "parse",
    "render",
]

DEFAULT_SYSTEM = "You can do function calling with the following functions:"
CALL_OPEN = "<start_function_call>"
CALL_CLOSE = "<end_function_call>"
ESCAPE = "<escape>"
# The control tokens of FunctionGemma's format (Ollama's renderer and parser write and read
# exactly these strings), in token-id order (the family table has the ids).
CONTROL_TOKENS = tuple(FUNCTIONGEMMA_TOKENS)
# The first Ollama release with the functiongemma renderer and parser.
MIN_OLLAMA = FUNCTIONGEMMA_MIN_OLLAMA
# Where a reply ends: the turn, or (Google's guide) the model starting to invent a tool result.
STOPS = ("<end_of_turn>", "<start_function_response>")

# Go's unicode.IsSpace (strings.TrimSpace): Python's str.strip also strips U+001C..U+001F.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _trim(text: str) -> str:
    return text.strip(_GO_SPACE)


def modelfile_commands() -> list[tuple[str, str]]:
    """The Modelfile commands that give an Ollama (>= 0.13.5) model FunctionGemma's native
    prompt and tool-call parsing: ``RENDERER functiongemma`` and ``PARSER functiongemma``."""
    return [("renderer", "functiongemma"), ("parser", "functiongemma")]


# --------------------------------------------------------------------------- values


def _go_g(value: float) -> str:
    """Go's ``fmt.Sprintf("%v", f)`` for a float64 (strconv 'g', shortest digits)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)) or "0"
    neg = "-" if sign else ""
    if value == 0:
        return neg + "0"
    exp = len(text) + exponent - 1  # the decimal exponent of the first digit
    if exp < -4 or exp >= 6:  # strconv's 'g' with the shortest digits decides at precision 6
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    point = len(text) + exponent
    if point <= 0:
        return f"{neg}0.{'0' * -point}{text}"
    if point >= len(text):
        return neg + text + "0" * (point - len(text))
    return f"{neg}{text[:point]}.{text[point:]}"


def _value(value: Any) -> str:
    """Ollama's ``formatArgValue``."""
    if isinstance(value, str):
        return ESCAPE + value + ESCAPE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == value and abs(value) < 2**63 and value == int(value):
            return str(int(value))
        return _go_g(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_value(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    return str(value)


def _declaration(tool: Mapping[str, Any]) -> str:
    fn = tool.get("function", tool)
    params = fn.get("parameters") or {}
    out = [f"<start_function_declaration>declaration:{fn.get('name', '')}{{"]
    out.append(f"description:{ESCAPE}{fn.get('description') or ''}{ESCAPE}")
    props = params.get("properties")
    kind = params.get("type") or ""
    if props is not None or kind:
        out.append(",parameters:{")
        parts = []
        if props:
            inner = []
            for name in sorted(props):
                prop = props[name] or {}
                types = prop.get("type")
                types = [types] if isinstance(types, str) else list(types or [])
                text = f"{name}:{{description:{ESCAPE}{prop.get('description') or ''}{ESCAPE}"
                if types:
                    text += f",type:{ESCAPE}{types[0].upper()}{ESCAPE}"
                inner.append(text + "}")
            parts.append("properties:{" + ",".join(inner) + "}")
        if params.get("required"):
            parts.append(
                "required:[" + ",".join(f"{ESCAPE}{r}{ESCAPE}" for r in params["required"]) + "]"
            )
        if kind:
            parts.append(f"type:{ESCAPE}{kind.upper()}{ESCAPE}")
        out.append(",".join(parts) + "}")
    out.append("}<end_function_declaration>")
    return "".join(out)


def _call(call: Any) -> tuple[str, Mapping[str, Any]]:
    fn = call.get("function", call) if isinstance(call, Mapping) else call.function
    name = fn.get("name") if isinstance(fn, Mapping) else fn.name
    args = fn.get("arguments") if isinstance(fn, Mapping) else fn.arguments
    if isinstance(args, str):
        import json

        args = json.loads(args or "{}")
    return str(name), dict(args or {})


# --------------------------------------------------------------------------- render


def render(messages: Sequence[Mapping[str, Any]], tools: Iterable[Mapping[str, Any]] = ()) -> str:
    """The prompt Ollama's ``functiongemma`` renderer writes for ``messages`` and ``tools``
    (OpenAI/Ollama-style dicts; message content as text), ``<bos>`` included."""
    tools = list(tools)
    out = ["<bos>"]
    system = ""
    loop = list(messages)
    if loop and loop[0].get("role") in ("system", "developer"):
        system = loop[0].get("content") or ""
        loop = loop[1:]
    if system or tools:
        out.append("<start_of_turn>developer\n")
        if system:
            out.append(_trim(system))
        if tools:
            if system:
                out.append("\n")
            if _trim(system) != DEFAULT_SYSTEM:
                out.append(DEFAULT_SYSTEM)
        out.extend(_declaration(t) for t in tools)
        out.append("<end_of_turn>\n")
    previous = ""
    for i, message in enumerate(loop):
        role = message.get("role")
        content = message.get("content") or ""
        if role == "assistant":
            if previous != "tool_response":
                out.append("<start_of_turn>model\n")
            previous = ""
            if content:
                out.append(_trim(content))
            calls = message.get("tool_calls") or []
            if calls:
                for call in calls:
                    name, args = _call(call)
                    body = ",".join(f"{k}:{_value(args[k])}" for k in sorted(args))
                    out.append(f"{CALL_OPEN}call:{name}{{{body}}}{CALL_CLOSE}")
                if i + 1 < len(loop) and loop[i + 1].get("role") == "tool":
                    out.append("<start_function_response>")
                    previous = "tool_call"
                else:
                    out.append("<end_of_turn>\n")
            else:
                out.append("<end_of_turn>\n")
        elif role == "user":
            if previous != "tool_response":
                out.append("<start_of_turn>user\n")
            previous = ""
            out.append(_trim(content) + "<end_of_turn>\n")
        elif role == "tool":
            name = ""
            for j in range(i - 1, -1, -1):  # the call this result answers, by position
                prior = loop[j]
                if prior.get("role") == "assistant" and prior.get("tool_calls"):
                    index = sum(1 for k in range(j + 1, i) if loop[k].get("role") == "tool")
                    if index < len(prior["tool_calls"]):
                        name = _call(prior["tool_calls"][index])[0]
                    break
            if previous != "tool_call":
                out.append("<start_function_response>")
            out.append(f"response:{name}{{{_value(content)}}}<end_function_response>")
            previous = "tool_response"
        else:
            out.append(f"<start_of_turn>{role}\n{_trim(content)}<end_of_turn>\n")
    if previous != "tool_response":
        out.append("<start_of_turn>model\n")
    return "".join(out)


# --------------------------------------------------------------------------- parse

_CALL = re.compile(r"call:([^{]+)\{(.*)\}")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[ \t\r]*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


def _split(text: str) -> list[str]:
    """Ollama's ``splitArguments``: top-level commas, ``<escape>`` spans kept whole."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    escaped = False
    i = 0
    while i < len(text):
        if text.startswith(ESCAPE, i):
            escaped = not escaped
            current.append(ESCAPE)
            i += len(ESCAPE)
            continue
        ch = text[i]
        if not escaped and ch in "{[":
            depth += 1
        elif not escaped and ch in "}]":
            depth -= 1
        elif not escaped and ch == "," and depth == 0:
            if current:
                parts.append("".join(current))
                current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if current:
        parts.append("".join(current))
    return parts


def _number(text: str) -> int | float | None:
    """Ollama's ``parseNumber``: ``%d`` when it reads the whole text back, else ``%f``'s prefix."""
    m = _INT.match(text.lstrip(" \t\r"))
    if m and str(int(m.group())) == text and -(2**63) <= int(m.group()) < 2**63:
        return int(m.group())
    f = _FLOAT.match(text)
    if f:
        return float(f.group(1))
    return None


def _parse_value(text: str) -> Any:
    if text.startswith(ESCAPE) and text.endswith(ESCAPE) and len(text) >= 2 * len(ESCAPE):
        return text[len(ESCAPE) : -len(ESCAPE)]
    if text == "true":
        return True
    if text == "false":
        return False
    number = _number(text)
    if number is not None:
        return number
    if text.startswith("[") and text.endswith("]"):
        return [_parse_value(p) for p in _split(text[1:-1])] or None
    if text.startswith("{") and text.endswith("}"):
        return _pairs(text[1:-1])
    return text


def _pairs(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in _split(text):
        key, colon, value = part.partition(":")
        if colon:
            out[key] = _parse_value(value)
    return out


def _tool_call(body: str) -> dict[str, Any]:
    m = _CALL.search(body)
    if not m:  # Ollama still emits a call, with no name and no arguments
        return {"function": {"name": "", "arguments": {}}}
    return {"function": {"name": m.group(1), "arguments": _pairs(m.group(2))}}


def _overlap(text: str, tag: str) -> int:
    """How many trailing characters of ``text`` start ``tag`` (held back as maybe a tag)."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def parse(reply: str) -> tuple[str, list[dict[str, Any]]]:
    """(content, tool calls) of a FunctionGemma reply, as Ollama's ``functiongemma`` parser
    returns them for the whole reply (``{"function": {"name", "arguments"}}`` dicts; strings
    between ``<escape>`` tokens, numbers, booleans, lists and objects typed)."""
    content: list[str] = []
    calls: list[dict[str, Any]] = []
    buffer = reply
    in_calls = False
    for _ in range(100_000):
        if not buffer:
            break
        if not in_calls:
            if CALL_OPEN in buffer:
                before, _, buffer = buffer.partition(CALL_OPEN)
                content.append(before)
                in_calls = True
                continue
            keep = _overlap(buffer, CALL_OPEN)
            content.append(buffer[: len(buffer) - keep])
            break
        if CALL_CLOSE not in buffer:
            break
        body, _, buffer = buffer.partition(CALL_CLOSE)
        calls.append(_tool_call(body))
        if CALL_OPEN not in buffer:
            in_calls = False
    return "".join(content), calls
