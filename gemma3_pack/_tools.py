"""Tool calling for Gemma 3, which has no tool tokens: the prompt of Google's function-calling guide.

Google's guide for Gemma 3 (ai.google.dev/gemma/docs/capabilities/function-calling) puts the
function definitions as JSON into the turn, under an instruction to answer with a Python-style list
of calls, ``[get_weather(city="Paris", unit="C")]``, and nothing else. The application runs the
calls and sends the results back in the next user turn. This module does each step, the same way
for every backend (the servers only ever see plain user/model turns):

* :func:`schemas` turns OpenAI/Ollama-style tool dicts, bare function schemas and plain Python
  functions (signature + docstring) into function schemas;
* :func:`apply` rewrites a message list: the instruction and schemas join the system turn, an
  assistant turn's ``tool_calls`` become the call list it stood for, ``tool`` results become a user
  turn of ```` ```tool_output ```` blocks (the fence of the guide's code-calling variant; vLLM's
  example template ``tool_chat_template_gemma3_pythonic.jinja`` uses ``<tool_response>`` tags instead);
* :func:`parse_calls` reads a reply with :mod:`ast` (never ``eval``): a well-formed list of calls to
  known functions with literal keyword arguments becomes ``tool_calls``; anything else stays text.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from ._errors import UsageError

__all__ = [
    "INSTRUCTION",
    "TOOLS_TEMPLATE",
    "ToolLike",
    "apply",
    "go_json",
    "ollama_schema_json",
    "parse_calls",
    "render_call",
    "schemas",
]

ToolLike = Mapping[str, Any] | Callable[..., Any]


def _template() -> str:
    from ._chat import data_text

    return data_text("gemma3-tools.jinja")


# The same prompt as a chat template, for servers that render tools themselves (vLLM's
# --chat-template with --tool-call-parser pythonic); tests/test_tools_template.py checks it
# renders what the SDK sends, in transformers' own Jinja environment (the one vLLM uses).
TOOLS_TEMPLATE: str = _template()

INSTRUCTION = (
    "You have access to functions. If you decide to invoke any of the function(s),\n"
    "you MUST put it in the format of\n"
    "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n"
    "\n"
    "You SHOULD NOT include any other text in the response if you call a function\n"
)

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


# --------------------------------------------------------------------------- schemas


def _json_type(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return {"type": _JSON_TYPES.get(type(args[0]), "string"), "enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return _json_type(kept[0]) if len(kept) == 1 else {}
    if origin in (list, tuple, Sequence, Iterable) and args:
        return {"type": "array", "items": _json_type(args[0])}
    if origin in (dict, Mapping):
        return {"type": "object"}
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    return {}


def _doc_params(doc: str) -> tuple[str, dict[str, str]]:
    """The description and per-parameter text of a Google- or reST-style docstring."""
    description = doc.split("\n\n")[0].strip().replace("\n", " ")
    params: dict[str, str] = {}
    for name, text in re.findall(r":param\s+(\w+):\s*(.+)", doc):
        params[name] = text.strip()
    block = re.search(r"(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc)
    if block:
        for name, text in re.findall(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)$", block.group(1), re.M):
            params.setdefault(name, text.strip())
    return description, params


def _from_function(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: types unknown, names still usable
        hints = {}
    description, docs = _doc_params(inspect.getdoc(fn) or "")
    properties: dict[str, Any] = {}
    required = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        prop = _json_type(hints.get(name, param.annotation))
        if name in docs:
            prop["description"] = docs[name]
        properties[name] = prop
        if param.default is param.empty:
            required.append(name)
    return {
        "name": fn.__name__,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


def schemas(tools: Iterable[ToolLike] | None) -> list[dict[str, Any]]:
    """Function schemas (``{"name", "description", "parameters"}``) for each tool."""
    out = []
    for tool in tools or ():
        if isinstance(tool, Mapping):
            fn = tool.get("function", tool) if tool.get("type", "function") == "function" else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                raise UsageError(
                    f"tool {tool!r} is not a function schema: pass a Python function or "
                    '{"type": "function", "function": {"name": ..., "parameters": ...}}'
                )
            out.append({k: fn[k] for k in ("name", "description", "parameters") if k in fn})
        elif callable(tool):
            out.append(_from_function(tool))
        else:
            raise UsageError(
                f"cannot use a {type(tool).__name__} as a tool: pass a function or dict"
            )
    names = [s["name"] for s in out]
    if len(set(names)) != len(names):
        raise UsageError(f"two tools share a name: {', '.join(names)}")
    return out


# --------------------------------------------------------------------------- prompt


def render_call(name: str, arguments: Mapping[str, Any]) -> str:
    """``name(a=1, b="x")``: how a call is written back into an assistant turn.

    Values are JSON literals, as in the guide's examples (and as ``tojson`` writes them in
    ``gemma3-tools.jinja``); :func:`parse_calls` reads ``true``/``false``/``null`` back.
    """
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return f"{name}({args})"


def _arguments(call: Any) -> tuple[str, dict[str, Any]]:
    fn = call.get("function", call) if isinstance(call, Mapping) else call.function
    name = fn["name"] if isinstance(fn, Mapping) else fn.name
    args = fn.get("arguments", {}) if isinstance(fn, Mapping) else fn.arguments
    if isinstance(args, str):  # OpenAI carries arguments as a JSON string
        try:
            args = json.loads(args or "{}")
        except json.JSONDecodeError:
            raise UsageError(f"tool call {name}: arguments are not JSON: {args!r}") from None
    return str(name), dict(args or {})


# --------------------------------------------------------------------------- Ollama's spelling
# An Ollama TEMPLATE can only print JSON with Go's json.Marshal (its ``json`` function): compact,
# ``<>&`` escaped, map keys sorted, struct fields in declaration order, unknown schema keys gone.
# ``dialect="ollama"`` writes the prompt that way, so gemma3-tools.gotmpl renders it byte for byte:
# the field order and omitempty rules below are Ollama v0.34.4's template.templateToolFunction and
# api.ToolProperty (template/template.go, api/types.go).


def _go_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'f' or 'e', -1, 64)`` as its JSON encoder picks them."""
    if value == 0 or 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(repr(value)), "f")  # the shortest digits, in fixed notation
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, _, exponent = repr(value).partition("e")
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"


def go_json(value: Any) -> str:
    """``value`` as Go's ``json.Marshal`` of the same JSON decoded into ``any`` writes it."""
    if isinstance(value, Mapping):
        items = sorted(((str(k), v) for k, v in value.items()), key=lambda kv: kv[0])
        return "{" + ",".join(f"{go_json(k)}:{go_json(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # Go decodes every JSON number into a float64: big integers lose digits as it does
        return (
            _go_float(float(value))
            if isinstance(value, float) or abs(value) > 2**53
            else str(value)
        )
    text = json.dumps(value, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _fields(pairs: Iterable[tuple[str, str | None]]) -> str:
    return "{" + ",".join(f"{go_json(k)}:{v}" for k, v in pairs if v is not None) + "}"


def _go_property(prop: Any) -> str:
    """An ``api.ToolProperty``: anyOf, type, items, description, enum, properties, required."""
    prop = prop if isinstance(prop, Mapping) else {}
    kind = prop.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    nested = prop.get("properties")
    return _fields(
        [
            ("anyOf", "[" + ",".join(map(_go_property, prop["anyOf"])) + "]")
            if prop.get("anyOf")
            else ("anyOf", None),
            ("type", go_json(kinds[0] if len(kinds) == 1 else kinds) if kinds else None),
            ("items", go_json(prop["items"]) if prop.get("items") is not None else None),
            ("description", go_json(prop["description"]) if prop.get("description") else None),
            ("enum", go_json(prop["enum"]) if prop.get("enum") else None),
            (
                "properties",
                _fields((k, _go_property(v)) for k, v in nested.items())  # insertion order
                if isinstance(nested, Mapping)
                else None,
            ),
            ("required", go_json(prop["required"]) if prop.get("required") else None),
        ]
    )


def ollama_schema_json(tool_schemas: Sequence[Mapping[str, Any]]) -> str:
    """The function schemas as gemma3-tools.gotmpl prints them from Ollama's ``.Tools``."""
    out = []
    for schema in tool_schemas:
        params = schema.get("parameters") or {}
        props = params.get("properties")
        fields = [
            ("type", go_json(params.get("type") or "")),
            ("$defs", go_json(params["$defs"]) if params.get("$defs") is not None else None),
            ("items", go_json(params["items"]) if params.get("items") is not None else None),
            ("required", go_json(params["required"]) if params.get("required") else None),
            (
                "properties",
                _fields((k, _go_property(props[k])) for k in sorted(props))
                if isinstance(props, Mapping)
                else "null",
            ),
        ]
        out.append(
            _fields(
                [
                    ("name", go_json(schema.get("name") or "")),
                    ("description", go_json(schema.get("description") or "")),
                    ("parameters", _fields(fields)),
                ]
            )
        )
    return "[" + ",".join(out) + "]"


def _ollama_call(name: str, arguments: Mapping[str, Any]) -> str:
    return f"{name}({', '.join(f'{k}={go_json(arguments[k])}' for k in sorted(arguments))})"


def apply(
    messages: Sequence[Mapping[str, Any]],
    tool_schemas: Sequence[Mapping[str, Any]],
    *,
    dialect: Literal["guide", "ollama"] = "guide",
) -> list[dict[str, Any]]:
    """``messages`` with tools written the way Gemma 3 reads them (see the module docstring).

    ``dialect="ollama"``: schemas and call arguments in Go's JSON (see :func:`go_json`), the
    prompt an Ollama model created with ``OLLAMA_TOOLS_TEMPLATE`` renders from ``tools``.
    """
    write_call = _ollama_call if dialect == "ollama" else render_call
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        if role == "assistant" and msg.get("tool_calls"):
            calls = ", ".join(write_call(*_arguments(c)) for c in msg["tool_calls"])
            text = (msg.get("content") or "").strip()
            entry = {k: v for k, v in msg.items() if k != "tool_calls"}
            entry["content"] = f"{text}\n[{calls}]" if text else f"[{calls}]"
            out.append(entry)
        elif role == "tool":
            out.append(
                {"role": "user", "content": f"```tool_output\n{msg.get('content') or ''}\n```"}
            )
        else:
            out.append(dict(msg))
    if tool_schemas:
        if dialect == "ollama":
            block = INSTRUCTION + ollama_schema_json(tool_schemas)
        else:
            block = INSTRUCTION + json.dumps(list(tool_schemas), indent=2, ensure_ascii=False)
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{block}\n\n{out[0].get('content') or ''}".rstrip()}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


# --------------------------------------------------------------------------- parsing replies

_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_CALL_START = re.compile(r"\[\s*[A-Za-z_]\w*\s*\(")
_FENCE = re.compile(r"```(?:tool_code|python|json)?\s*\n?(.*?)```", re.S)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and node.id in _NAMES:  # JSON spellings the model may use
        return _NAMES[node.id]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("** in a dict literal")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    return ast.literal_eval(node)  # strings, numbers, negatives; anything else raises ValueError


def _calls(source: str, known: set[str] | None) -> list[dict[str, Any]] | None:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    body = tree.body
    if not isinstance(body, ast.List) or not body.elts:
        return None
    calls = []
    for node in body.elts:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.args:
            return None
        if known is not None and node.func.id not in known:
            return None
        try:
            args = {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return None
        if len(args) != len(node.keywords):
            return None  # **kwargs
        calls.append({"function": {"name": node.func.id, "arguments": args}})
    return calls


def _candidates(text: str) -> Iterable[tuple[int, int, str]]:
    """Spans of ``text`` that may hold the call list: fenced blocks, then each ``[ ... ]`` run."""
    for m in _FENCE.finditer(text):
        yield m.start(), m.end(), m.group(1)
    starts = (m.start() for m in _CALL_START.finditer(text))
    for start in itertools.islice(starts, 64):  # bounded work on hostile replies
        depth, quote, escaped = 0, "", False
        for end in range(start, len(text)):
            ch = text[end]
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch in "[({":
                depth += 1
            elif ch in "])}":
                depth -= 1
                if depth == 0:
                    yield start, end + 1, text[start : end + 1]
                    break


def parse_calls(text: str, names: Iterable[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(the text outside the call list, the calls) of a reply; no calls when none parse.

    Only calls to ``names`` count (when given); positional arguments, non-literal values and
    malformed lists leave the reply as text. Never raises on model output.
    """
    known = set(names) if names is not None else None
    if "(" not in text or "[" not in text:
        return text, []
    for start, end, source in _candidates(text[:100_000]):
        calls = _calls(source, known)
        if calls:
            rest = (text[:start] + text[end:]).strip()
            return rest, calls
    return text, []
