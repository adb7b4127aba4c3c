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
* :func:`parse_calls` reads a reply in either dialect, never with ``eval``: the guide's call list
  (read with :mod:`ast`, literal keyword arguments only) or JSON calls ``{"name": ..., "arguments":
  ...}`` in ``<tool_call>`` tags (the dialect of gemma3-pack's tool templates, which Ollama's,
  llama.cpp's and vLLM's own parsers read), in a code fence or bare; prose around the calls is
  kept as text. Calls to unknown functions and malformed replies stay text.

The JSON dialect (``calls="json"`` in :func:`apply`): the same turns, the instruction asking for
``<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`` per call. It is what the tools
templates shipped for the runtimes render (``modelfile --tools``, ``patch --tools``), so clients
that are not this SDK receive structured ``tool_calls`` from the server's own parser; the SDK's
own prompt stays the guide's (pythonic) one.
"""

from __future__ import annotations

import ast
import enum
import inspect
import itertools
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from .._errors import UsageError

__all__ = [
    "INSTRUCTION",
    "INSTRUCTION_JSON",
    "TOOLS_TEMPLATE",
    "ToolLike",
    "apply",
    "go_json",
    "ollama_schema_json",
    "parse_calls",
    "render_call",
    "render_json_call",
    "run_call",
    "schemas",
]

ToolLike = Mapping[str, Any] | Callable[..., Any]


def _template() -> str:
    from . import data_text

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

# The JSON dialect's instruction: the guide's wording, the call format of the runtimes' parsers
# (gemma3-tools.gotmpl and gemma3-tools-json.jinja print the same text).
INSTRUCTION_JSON = (
    "You have access to functions. If you decide to invoke any of the function(s),\n"
    "you MUST put each call in the format of\n"
    "<tool_call>\n"
    '{"name": "func_name1", "arguments": {"params_name1": params_value1, "params_name2": '
    "params_value2}}\n"
    "</tool_call>\n"
    "\n"
    "You SHOULD NOT include any other text in the response if you call a function\n"
)
CallStyle = Literal["pythonic", "json"]

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    set: "array",
    frozenset: "array",
    dict: "object",
    type(None): "null",
}


def _pydantic_model(annotation: Any) -> Any:
    """``annotation`` when it is a pydantic model class (pydantic is optional), else None."""
    try:
        import pydantic
    except ImportError:  # pragma: no cover - pydantic comes with ollama
        return None
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    return None


def _inline_refs(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """A JSON schema with its local ``$ref``s replaced by the definitions (Ollama's tool schema
    keeps no ``$defs`` for properties, so nested models must be written out); recursive models
    stop at 8 levels as a bare object."""
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            if depth >= 8:
                return {"type": "object"}
            target = _inline_refs(defs.get(ref.removeprefix("#/$defs/"), {}), defs, depth + 1)
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return {**target, **_inline_refs(extra, defs, depth)}
        return {
            k: _inline_refs(v, defs, depth) for k, v in node.items() if k not in ("$defs", "title")
        }
    if isinstance(node, list):
        return [_inline_refs(v, defs, depth) for v in node]
    return node


def _model_schema(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema()
    out: dict[str, Any] = _inline_refs(schema, schema.get("$defs", {}))
    return out


def _json_type(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a Python annotation: builtins, ``Literal``/``Enum`` as ``enum``,
    ``list[X]``/``tuple``/``set`` with ``items``, ``dict[str, X]``, ``X | None``, unions as
    ``anyOf``, ``Annotated[X, "description"]``, pydantic models written out in full."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        inner = _json_type(args[0])
        notes = [a for a in args[1:] if isinstance(a, str)]
        return {**inner, "description": notes[0]} if notes else inner
    if origin is typing.Literal:
        kinds = {_JSON_TYPES.get(type(a), "string") for a in args}
        kind = kinds.pop() if len(kinds) == 1 else None
        return {"type": kind, "enum": list(args)} if kind else {"enum": list(args)}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [m.value for m in annotation]
        kinds = {_JSON_TYPES.get(type(v), "string") for v in values}
        kind = kinds.pop() if len(kinds) == 1 else None
        return {"type": kind, "enum": values} if kind else {"enum": values}
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if len(kept) == 1:
            return _json_type(kept[0])
        return {"anyOf": [_json_type(a) for a in kept]}
    if origin in (list, tuple, set, frozenset, Sequence, Iterable) or (
        isinstance(origin, type) and issubclass(origin, (list, tuple, set))
    ):
        item_args = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(item_args) > 1:  # a fixed tuple: items of any listed type
            return {"type": "array", "items": {"anyOf": [_json_type(a) for a in item_args]}}
        return (
            {"type": "array", "items": _json_type(item_args[0])} if item_args else {"type": "array"}
        )
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if len(args) == 2 and args[1] is not Any:
            return {"type": "object", "additionalProperties": _json_type(args[1])}
        return {"type": "object"}
    model = _pydantic_model(annotation)
    if model is not None:
        return _model_schema(model)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    return {}


_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?|See Also)"
    r"\s*:?\s*$"
)


def _doc_params(doc: str) -> tuple[str, dict[str, str]]:
    """The description and per-parameter text of a Google-, NumPy- or reST-style docstring
    (a parameter's text may continue on indented lines)."""
    paragraphs = doc.strip().split("\n\n")
    head = paragraphs[0] if paragraphs and not _SECTION.match(paragraphs[0].splitlines()[0]) else ""
    kept = itertools.takewhile(lambda s: not s.strip().startswith(":"), head.splitlines())
    description = " ".join(line.strip() for line in kept if line.strip())
    params: dict[str, str] = {}
    for name, text in re.findall(r":param\s+(?:[\w\[\], |]+\s+)?(\w+):\s*(.+)", doc):
        params[name] = text.strip()
    section = ""
    current = ""
    indent = 0
    numpy_style = False
    for line in doc.splitlines():
        m = _SECTION.match(line)
        if m:
            section, current, numpy_style = m.group(1).lower(), "", False
            continue
        if section not in ("args", "arguments", "parameters", "params") or not line.strip():
            continue
        if set(line.strip()) == {"-"}:  # NumPy's underline: "name : type" lines follow
            numpy_style = True
            continue
        here = len(line) - len(line.lstrip())
        if current and here > indent:  # a continuation line
            params[current] = f"{params.get(current, '')} {line.strip()}".strip()
            continue
        if numpy_style:
            named = re.match(r"^\s*\*{0,2}(\w+)\s*(?::.*)?$", line)
            if named:
                current, indent = named.group(1), here
                params.setdefault(current, "")
            continue
        google = re.match(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
        if google:
            current, indent = google.group(1), here
            params.setdefault(current, google.group(2).strip())
    return description, {k: v for k, v in params.items() if v}


def _json_default(value: Any) -> Any:
    """A parameter default as JSON, or ``...`` when it has no JSON spelling."""
    if isinstance(value, enum.Enum):
        value = value.value
    if _pydantic_model(type(value)) is not None:
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return ...
    return list(value) if isinstance(value, tuple) else value


def _from_function(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: types unknown, names still usable
        hints = {}
    description, docs = _doc_params(inspect.getdoc(fn) or "")
    properties: dict[str, Any] = {}
    required = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, param.annotation)
        prop = _json_type(None if annotation is param.empty else annotation)
        if name in docs and "description" not in prop:
            prop["description"] = docs[name]
        if param.default is param.empty:
            required.append(name)
        elif param.default is not None:
            default = _json_default(param.default)
            if default is not ...:
                prop["default"] = default
        properties[name] = prop
    return {
        "name": getattr(fn, "__name__", type(fn).__name__),
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


def render_json_call(name: str, arguments: Mapping[str, Any], *, go: bool = False) -> str:
    """``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``: a call in the JSON
    dialect, as the tools templates print it (``go``: Go's JSON, as gemma3-tools.gotmpl)."""
    if go:
        head, args = go_json(name), go_json(dict(arguments))
    else:
        head, args = (
            json.dumps(name, ensure_ascii=False),
            json.dumps(dict(arguments), ensure_ascii=False),
        )
    return f'<tool_call>\n{{"name": {head}, "arguments": {args}}}\n</tool_call>'


def apply(
    messages: Sequence[Mapping[str, Any]],
    tool_schemas: Sequence[Mapping[str, Any]],
    *,
    dialect: Literal["guide", "ollama"] = "guide",
    calls: CallStyle = "pythonic",
) -> list[dict[str, Any]]:
    """``messages`` with tools written the way Gemma 3 reads them (see the module docstring).

    ``dialect="ollama"``: schemas and call arguments in Go's JSON (see :func:`go_json`), the
    prompt an Ollama model created with ``OLLAMA_TOOLS_TEMPLATE`` renders from ``tools``.
    ``calls="json"``: the instruction and the calls of the JSON dialect (``<tool_call>`` tags)
    instead of the guide's Python-style list.
    """
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        if role == "assistant" and msg.get("tool_calls"):
            text = (msg.get("content") or "").strip()
            parsed = [_arguments(c) for c in msg["tool_calls"]]
            if calls == "json":
                written = "\n".join(
                    render_json_call(n, a, go=dialect == "ollama") for n, a in parsed
                )
            else:
                write_call = _ollama_call if dialect == "ollama" else render_call
                written = "[" + ", ".join(write_call(n, a) for n, a in parsed) + "]"
            entry = {k: v for k, v in msg.items() if k != "tool_calls"}
            entry["content"] = f"{text}\n{written}" if text else written
            out.append(entry)
        elif role == "tool":
            out.append(
                {"role": "user", "content": f"```tool_output\n{msg.get('content') or ''}\n```"}
            )
        else:
            out.append(dict(msg))
    if tool_schemas:
        instruction = INSTRUCTION_JSON if calls == "json" else INSTRUCTION
        if dialect == "ollama":
            block = instruction + ollama_schema_json(tool_schemas)
        else:
            block = instruction + json.dumps(list(tool_schemas), indent=2, ensure_ascii=False)
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{block}\n\n{out[0].get('content') or ''}".rstrip()}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


# --------------------------------------------------------------------------- parsing replies

_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_CALL_START = re.compile(r"\[\s*[A-Za-z_]\w*\s*\(")
_FENCE = re.compile(r"```(?:tool_code|tool_call|python|json|py)?[ \t]*\n?(.*?)```", re.S)


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


_JSON_START = re.compile(r"(?:\[\s*)?\{\s*\"(?:name|function|type)\"\s*:")
_TAG_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_SEPARATORS = " \t\r\n,;"
_DECODER = json.JSONDecoder()


def _json_call(obj: Any, known: set[str] | None) -> dict[str, Any] | None:
    """One call from a decoded JSON object: ``{"name", "arguments"|"parameters"}``, OpenAI's
    ``{"type": "function", "function": {...}}``; arguments may be a JSON string."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name or (known is not None and name not in known):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return {"function": {"name": name, "arguments": args}}


def _json_run(text: str, start: int, known: set[str] | None) -> tuple[int, list[dict[str, Any]]]:
    """The JSON calls written one after another from ``start`` (objects, or a list of them,
    separated by whitespace, commas or semicolons): (end of the last one, the calls)."""
    calls: list[dict[str, Any]] = []
    end = at = start
    while at < len(text) and len(calls) < 256:
        try:
            obj, stop = _DECODER.raw_decode(text, at)
        except (json.JSONDecodeError, RecursionError):
            break
        objs = obj if isinstance(obj, list) else [obj]
        found = [_json_call(o, known) for o in objs]
        if not objs or any(c is None for c in found):
            break
        calls.extend(c for c in found if c is not None)
        end = at = stop
        while at < len(text) and text[at] in _SEPARATORS:
            at += 1
    return end, calls


def _source_calls(source: str, known: set[str] | None) -> list[dict[str, Any]] | None:
    """The calls ``source`` holds entirely (a call list or JSON calls), else None."""
    calls = _calls(source, known)
    if calls:
        return calls
    body = source.strip()
    end, found = _json_run(body, 0, known)
    return found if found and end == len(body) else None


def parse_calls(text: str, names: Iterable[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(the text outside the calls, the calls) of a reply; no calls when none parse.

    Reads both dialects: ``<tool_call>`` blocks of JSON calls (each block that parses becomes
    calls, the rest stays text), else the first fenced block, ``[f(a=1)]`` list or run of JSON
    call objects that parses entirely. Only calls to ``names`` count (when given); positional
    arguments, non-literal values and malformed calls leave the reply as text. Never ``eval``,
    never raises on model output.
    """
    known = set(names) if names is not None else None
    text = text[:100_000]
    if "<tool_call>" in text:
        calls: list[dict[str, Any]] = []
        kept: list[str] = []
        last = 0
        for m in itertools.islice(_TAG_BLOCK.finditer(text), 256):
            found = _source_calls(_unfence(m.group(1)), known)
            if found:
                calls.extend(found)
                kept.append(text[last : m.start()])
                last = m.end()
        if calls:
            kept.append(text[last:])
            return "".join(kept).strip(), calls
    if "(" not in text and "{" not in text:
        return text, []
    for start, end, source in _candidates(text):
        found = _source_calls(source, known)
        if found:
            return (text[:start] + text[end:]).strip(), found
    for m in itertools.islice(_JSON_START.finditer(text), 64):
        end, found = _json_run(text, m.start(), known)
        if found:
            return (text[: m.start()] + text[end:]).strip(), found
    return text, []


def _unfence(source: str) -> str:
    m = re.fullmatch(r"\s*```[\w-]*\s*\n?(.*?)```\s*", source, re.S)
    return m.group(1) if m else source


def run_call(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> Any:
    """Call ``fn`` with a parsed call's arguments, converted to its annotations where the model
    wrote JSON for them (enums from their values, pydantic models from objects)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    kwargs = {k: _convert(hints.get(k), v) for k, v in arguments.items()}
    return fn(**kwargs)


def _convert(annotation: Any, value: Any) -> Any:
    if annotation is None:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return _convert(kept[0], value) if len(kept) == 1 and value is not None else value
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            return value
    model = _pydantic_model(annotation)
    if model is not None and isinstance(value, Mapping):
        return model.model_validate(value)
    if origin in (list, set, frozenset, tuple) and isinstance(value, list) and args:
        items = [_convert(args[0], v) for v in value]
        return origin(items) if origin is not list else items
    return value
