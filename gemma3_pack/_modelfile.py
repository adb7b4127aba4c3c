"""Ollama Modelfiles for Gemma 3: one spec, rendered as Modelfile text or ``create`` arguments.

:class:`ModelfileSpec` is the single description of an Ollama model. :func:`render_modelfile`
writes it as a Modelfile and :func:`create_kwargs` as the keyword arguments of
``ollama.Client.create(...)`` (the REST API has had no ``modelfile`` field since Ollama 0.5.5),
so a Modelfile on disk and a model created from Python cannot drift apart.

The reader follows Ollama's own parser (``parser/parser.go``) rune for rune: commands are
case-insensitive, ``#`` starts a comment line, a UTF-8 BOM is skipped, values run to the end of
the line unless quoted with ``"…"`` or ``\"\"\"…\"\"\"`` (both may span lines; there are no escapes),
repeated ``PARAMETER stop`` lines accumulate, parameter names are exact lowercase JSON names, and
non-printable characters outside the quote-continuation path are dropped. The writer quotes the
way Ollama's ``Command.String`` does and then reads every value back with that same parser; a
value that would not come back unchanged is refused with :class:`UsageError` instead of being
written wrong. :func:`check_modelfile` lints a hand-written Modelfile against Gemma 3's needs.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from . import _rules
from ._chat import LICENSE_NOTICE, OLLAMA_TEMPLATE, OLLAMA_TOOLS_TEMPLATE
from ._errors import InputNotFound, ModelfileError, NotGGUF, OutputError, UsageError
from ._family import SAMPLING, STOP, Variant, get_variant
from ._files import write_text_atomic
from ._inputs import regular_input

__all__ = [
    "COMMANDS",
    "PARAMETER_TYPES",
    "Finding",
    "ModelfileSpec",
    "check_modelfile",
    "create_kwargs",
    "parse_modelfile",
    "render_modelfile",
    "spec_for_gguf",
    "spec_for_variant",
    "variant_modelfile",
    "write_modelfile",
    "write_variant_modelfiles",
]

# Ollama HEAD's command set (parser.isValidCommand).
COMMANDS = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)

# api.Options + api.Runner JSON names and their types (exact, case-sensitive).
PARAMETER_TYPES: dict[str, type] = {
    **dict.fromkeys(
        (
            "num_ctx",
            "num_batch",
            "num_gpu",
            "main_gpu",
            "num_thread",
            "draft_num_predict",
            "num_keep",
            "seed",
            "num_predict",
            "top_k",
            "repeat_last_n",
        ),
        int,
    ),
    **dict.fromkeys(
        (
            "top_p",
            "min_p",
            "typical_p",
            "temperature",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
        ),
        float,
    ),
    "use_mmap": bool,
    "stop": list,
}
DEPRECATED_PARAMETERS = (
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
)
ROLES = ("system", "user", "assistant")

# ollama.com's Gemma 3 templates (library blobs, verified by digest): e0a42594d802 (gemma3:1b,
# gemma3:4b) makes a system message its own user turn; 4b19ac7dd2fb (gemma3:270m) folds it into
# the first user turn like Google's Jinja.
LIBRARY_TEMPLATE_E0A4 = (
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    '{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user\n'
    "{{ .Content }}<end_of_turn>\n"
    "{{ if $last }}<start_of_turn>model\n"
    "{{ end }}\n"
    '{{- else if eq .Role "assistant" }}<start_of_turn>model\n'
    "{{ .Content }}{{ if not $last }}<end_of_turn>\n"
    "{{ end }}\n"
    "{{- end }}\n"
    "{{- end }}"
)
LIBRARY_TEMPLATE_4B19 = (
    "{{- $systemPromptAdded := false }}\n"
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    '{{- if eq .Role "user" }}<start_of_turn>user\n'
    "{{- if (and (not $systemPromptAdded) $.System) }}\n"
    "{{- $systemPromptAdded = true }}\n"
    "{{ $.System }}\n"
    "{{ end }}\n"
    "{{ .Content }}<end_of_turn>\n"
    "{{ if $last }}<start_of_turn>model\n"
    "{{ end }}\n"
    '{{- else if eq .Role "assistant" }}<start_of_turn>model\n'
    "{{ .Content }}{{ if not $last }}<end_of_turn>\n"
    "{{ end }}\n"
    "{{- end }}\n"
    "{{- end }}"
)

REGENERATE = "gemma3-pack modelfile --all modelfiles"

# Ollama's defaults where they differ from the Gemma team's (repeat_penalty was 1.1 until
# v0.20; min_p's default 0 already matches). A model FROM a library gemma3 tag inherits
# ollama.com's params instead, so only other FROMs get these.
OLLAMA_DEFAULTS = {
    "temperature": "0.8",
    "top_k": "40",
    "top_p": "0.9",
    "repeat_penalty": "1.1 (before v0.20) / 1.0",
}


def _library_gemma3(ref: str) -> bool:
    """``gemma3:4b``, ``gemma3``, ``library/gemma3:12b``... (not hf.co/, not a path)."""
    name = ref.strip().lower().removeprefix("registry.ollama.ai/").removeprefix("library/")
    return name == "gemma3" or name.startswith("gemma3:")


def _default_parameters() -> dict[str, float | int | bool]:
    return dict(SAMPLING)


@dataclass
class ModelfileSpec:
    """Everything an Ollama model needs: what to load, how to prompt it, how to sample.

    ``from_`` lists the FROM lines in order (model first, then the vision projector) as model
    names or file paths. ``template=None`` omits the TEMPLATE line (a parsed Modelfile without
    one). ``extra`` keeps other commands (ADAPTER, DRAFT, REQUIRES, a second LICENSE, ...) as
    ``(command, value)`` pairs so a parsed Modelfile renders back whole.
    """

    from_: list[str]
    template: str | None = OLLAMA_TEMPLATE
    parameters: dict[str, float | int | bool] = field(default_factory=_default_parameters)
    stop: list[str] = field(default_factory=lambda: [STOP])
    system: str | None = None
    license: str | None = LICENSE_NOTICE
    messages: list[tuple[str, str]] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = [list(m) for m in self.messages]
        data["extra"] = [list(e) for e in self.extra]
        return data


# --------------------------------------------------------------------------- reader


class _Command(NamedTuple):
    name: str  # "model" for FROM, the parameter name for PARAMETER, else the lowercase command
    args: str  # for MESSAGE: "role: text", as Ollama stores it
    line: int  # where the command starts
    kind: str  # the command word as written, lowercased ("from", "parameter", "message", ...)


_NIL, _NAME, _VALUE, _PARAMETER, _MESSAGE, _COMMENT = range(6)
MAX_MODELFILE = 64 << 20  # a Modelfile is text; Ollama reads the whole file too


def _is_print(ch: str) -> bool:
    """Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        if len(s) >= 6 and s.endswith('"""'):
            return s[3:-3], True
        return "", False
    if s.startswith('"'):
        if len(s) >= 2 and s.endswith('"'):
            return s[1:-1], True
        return "", False
    return s, True


# Go's strings.TrimSpace: Unicode White_Space (Python's str.strip minus \x1c-\x1f).
_SPACE = (
    " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _trim(s: str) -> str:
    return s.strip(_SPACE)


def _closed(buf: list[str], first: int, last: int) -> bool:
    """``_unquote(_trim("".join(buf)))[1]`` in O(1), from the first/last non-space indices."""
    if first < 0 or buf[first] != '"':
        return True
    n = last - first + 1
    if n >= 3 and buf[first + 1] == buf[first + 2] == '"':
        return n >= 6 and buf[last] == buf[last - 1] == buf[last - 2] == '"'
    return n >= 2 and buf[last] == '"'


_INVALID_COMMAND = (
    "command must be one of "
    + ", ".join(f'"{c}"' for c in COMMANDS[:-1])
    + f', or "{COMMANDS[-1]}"'
)


def _error(line: int, message: str) -> ModelfileError:
    return ModelfileError(f"(line {line}): {message}")


def _commands(text: str) -> list[_Command]:
    """Ollama's ParseFile state machine, returning commands with their line numbers."""
    text = text.removeprefix("\ufeff")
    out: list[_Command] = []
    state = _NIL
    buf: list[str] = []
    first = last = -1  # indices of buf's first and last non-space characters (-1: none yet)
    name = kind = role = ""
    line, start = 1, 1
    prev = ""
    for ch in text:
        if ch == "\r" or (ch == "\n" and prev != "\r"):  # CRLF counts once
            line += 1
        prev = ch
        space, newline = ch in " \t", ch in "\r\n"
        r: str | None = ch
        # parseRuneForState
        if state == _NIL:
            if ch == "#":
                nxt, r = _COMMENT, None
            elif space or newline:
                nxt, r = _NIL, None
            else:
                nxt, start = _NAME, line
        elif state == _NAME:
            if ch.isascii() and ch.isalpha():
                nxt = _NAME
            elif space:
                nxt, r = _VALUE, None
            else:
                word = "".join(buf)
                raise _error(
                    line,
                    f"{_INVALID_COMMAND} (got {word + ch.strip()!r}; every command "
                    "needs its value on the same line)",
                )
        elif state == _VALUE:
            nxt = _NIL if (space or newline) else _VALUE
        elif state in (_PARAMETER, _MESSAGE):
            ok = (
                ch.isascii() and (ch.isalnum() or ch == "_")
                if state == _PARAMETER
                else (ch.isascii() and ch.isalpha())
            )
            if ok:
                nxt = state
            elif space:
                nxt, r = _VALUE, None
            else:
                what = "parameter name" if state == _PARAMETER else "message role"
                raise _error(
                    line,
                    f"unexpected EOF: a {what} must be followed by a space and a "
                    f"value (got {''.join(buf) + ch.strip()!r})",
                )
        else:  # comment
            nxt, r = (_NIL, None) if newline else (_COMMENT, None)

        if nxt != state:
            if state == _NAME:
                word = "".join(buf)
                low = word.lower()
                if low not in COMMANDS:
                    raise _error(line, f"{_INVALID_COMMAND} (got {word!r})")
                kind = low
                if low == "from":
                    name = "model"
                elif low == "parameter":
                    nxt = _PARAMETER
                elif low == "message":
                    nxt, name = _MESSAGE, "message"
                else:
                    name = low
            elif state == _PARAMETER:
                name = "".join(buf)
            elif state == _MESSAGE:
                role = "".join(buf)
                if role not in ROLES:
                    raise _error(
                        line,
                        'message role must be one of "system", "user", or '
                        f'"assistant" (got {role!r}; roles are lowercase)',
                    )
            elif state == _VALUE:
                # Ollama re-joins its buffer here at every space and newline; deciding whether the
                # quotes are closed from two indices keeps this linear (a 10 MB TEMPLATE parses
                # in seconds, not hours). A space never ends a value; a newline does once closed.
                if space or not _closed(buf, first, last):
                    buf.append(ch)
                    if ch not in _SPACE:
                        last = len(buf) - 1
                        first = last if first < 0 else first
                    continue
                value, _ = _unquote(_trim("".join(buf)))
                out.append(_Command(name, f"{role}: {value}" if role else value, start, kind))
                role = ""
            buf = []
            first = last = -1
            state = nxt
        if r is not None and _is_print(r):
            buf.append(r)
            if r not in _SPACE:
                last = len(buf) - 1
                first = last if first < 0 else first

    if state == _VALUE:
        value, ok = _unquote(_trim("".join(buf)))
        if not ok:
            raise _error(
                start,
                f"unexpected EOF: the {kind.upper()} value opened with a quote "
                "is never closed (end it with the same quote)",
            )
        out.append(_Command(name, f"{role}: {value}" if role else value, start, kind))
    elif state in (_NAME, _PARAMETER, _MESSAGE):
        raise _error(start, "unexpected EOF: the last command has no value")
    return out


def _convert(name: str, raw: str, line: int) -> float | int | bool:
    kind = PARAMETER_TYPES[name]
    try:
        if kind is int:
            return int(raw, 10)
        if kind is float:
            return float(raw)
        low = raw.lower()
        if low in ("1", "t", "true"):
            return True
        if low in ("0", "f", "false"):
            return False
        raise ValueError(raw)
    except ValueError:
        label = {int: "int", float: "float", bool: "bool"}[kind]
        raise _error(line, f"invalid {label} value [{raw}] for parameter {name}") from None


def parse_modelfile(text: str) -> ModelfileSpec:
    """Read a Modelfile the way ``ollama create`` does, into a :class:`ModelfileSpec`.

    Raises :class:`ModelfileError` ``"(line N): ..."`` for what Ollama would reject: grammar
    errors, unknown or mistyped parameters, a missing FROM. Deprecated parameters are skipped
    (Ollama only warns). TEMPLATE and SYSTEM keep their last value, as Ollama does.
    """
    spec = ModelfileSpec(from_=[], template=None, parameters={}, stop=[], license=None)
    for cmd in _commands(text):
        if cmd.kind == "from":
            spec.from_.append(cmd.args)
        elif cmd.kind == "template":
            spec.template = cmd.args
        elif cmd.kind == "system":
            spec.system = cmd.args
        elif cmd.kind == "license":
            if spec.license is None:
                spec.license = cmd.args
            else:
                spec.extra.append(("license", cmd.args))
        elif cmd.kind == "message":
            role, _, content = cmd.args.partition(": ")
            spec.messages.append((role, content))
        elif cmd.kind == "parameter":
            if cmd.name in DEPRECATED_PARAMETERS:
                continue
            if cmd.name not in PARAMETER_TYPES:
                raise _error(
                    cmd.line,
                    f"unknown parameter '{cmd.name}' (names are exact and "
                    "lowercase, e.g. temperature, top_k, num_ctx)",
                )
            if cmd.name == "stop":
                spec.stop.append(cmd.args)
            else:
                spec.parameters[cmd.name] = _convert(cmd.name, cmd.args, cmd.line)
        else:
            spec.extra.append((cmd.kind, cmd.args))
    if not spec.from_:
        raise ModelfileError(
            "no FROM line: a Modelfile must start from a model name or a GGUF "
            "path (e.g. FROM gemma3:4b)"
        )
    return spec


# --------------------------------------------------------------------------- writer


def _reads_back(command: str, written: str, value: str) -> bool:
    """Whether Ollama's parser reads ``command written`` back as exactly one command = value."""
    try:
        cmds = _commands(f"{command} {written}\n")
    except ModelfileError:
        return False
    if len(cmds) != 1:
        return False
    args = cmds[0].args
    if cmds[0].kind == "message":
        args = args.partition(": ")[2]
    return args == value


def _quote(command: str, value: str, *, style: Literal["ollama", "quoted", "triple"]) -> str:
    """Quote ``value`` for ``command`` so Ollama's parser reads exactly ``value`` back."""
    what = command.split()[0] if not command.startswith("PARAMETER") else command
    if '"""' in value:
        raise UsageError(
            f'{what} value contains """, which a Modelfile cannot hold (Ollama\'s '
            "parser has no escapes): remove or change those quotes"
        )
    for ch in value:
        if ch not in "\n\r\t" and not _is_print(ch):
            raise UsageError(
                f"{what} value contains U+{ord(ch):04X} "
                f"({unicodedata.name(ch, 'unnamed')}), which Ollama's Modelfile "
                "parser silently drops: remove it"
            )
    ollama = value
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        ollama = f'"""{value}"""' if '"' in value else f'"{value}"'
    candidates = {
        "ollama": [ollama, f'"{value}"', f'"""{value}"""'],
        "quoted": [f'"{value}"', f'"""{value}"""'],
        "triple": [f'"""{value}"""'],
    }[style]
    for written in candidates:
        if _reads_back(command, written, value):
            return written
    raise UsageError(
        f"{what} value {value[:40]!r} cannot be quoted so that Ollama reads it back "
        'unchanged (a line inside it ends with " in a way the parser would take as '
        "the end of the value): reword it"
    )


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return text.removesuffix(".0") if text.endswith(".0") else text


def render_modelfile(spec: ModelfileSpec, *, header: str | None = None) -> str:
    """The Modelfile text for ``spec`` (ends with a newline; ``header`` becomes ``#`` lines).

    TEMPLATE is always triple-quoted with no newline before the closing quotes (Ollama keeps
    inner whitespace, so a newline there would be rendered into every prompt). Raises
    :class:`UsageError` for a value that cannot be quoted safely.
    """
    if not spec.from_:
        raise UsageError("a Modelfile needs at least one FROM (a model name or GGUF path)")
    lines = [f"# {h}".rstrip() for h in header.splitlines()] if header else []
    for ref in spec.from_:
        if not ref.strip():
            raise UsageError("FROM value is empty: give a model name or a GGUF path")
        lines.append(f"FROM {_quote('FROM', ref, style='ollama')}")
    if spec.template is not None:
        lines.append(f"TEMPLATE {_quote('TEMPLATE', spec.template, style='triple')}")
    for name, value in spec.parameters.items():
        if name not in PARAMETER_TYPES or name == "stop":
            raise UsageError(
                f"unknown parameter {name!r}: use one of "
                f"{', '.join(n for n in PARAMETER_TYPES if n != 'stop')} "
                "(stop strings go in ModelfileSpec.stop)"
            )
        lines.append(f"PARAMETER {name} {_number(value)}")
    for stop in spec.stop:
        if not stop:
            raise UsageError("an empty stop string would stop generation at once: remove it")
        lines.append(f"PARAMETER stop {_quote('PARAMETER stop', stop, style='quoted')}")
    if spec.system is not None:
        lines.append(f"SYSTEM {_quote('SYSTEM', spec.system, style='ollama')}")
    for role, content in spec.messages:
        if role not in ROLES:
            raise UsageError(f"MESSAGE role {role!r} is not one of system, user, assistant")
        lines.append(f"MESSAGE {role} {_quote(f'MESSAGE {role}', content, style='ollama')}")
    if spec.license is not None:
        lines.append(f"LICENSE {_quote('LICENSE', spec.license, style='triple')}")
    for command, arg in spec.extra:
        if command.lower() not in COMMANDS or command.lower() in ("parameter", "message"):
            raise UsageError(f"extra command {command!r} is not a Modelfile command")
        word = command.upper()
        lines.append(f"{word} {_quote(word, arg, style='ollama')}")
    return "\n".join(lines) + "\n"


def write_modelfile(
    spec: ModelfileSpec, path: str | os.PathLike[str], *, header: str | None = None
) -> Path:
    """Render ``spec`` and write it atomically (temp file beside ``path``, then rename)."""
    text = render_modelfile(spec, header=header)
    return write_text_atomic(Path(path), text)


# --------------------------------------------------------------------------- specs


def _check_num_ctx(num_ctx: int | None, limit: int | None) -> None:
    if num_ctx is None:
        return
    if isinstance(num_ctx, bool) or not isinstance(num_ctx, int) or num_ctx < 1:
        raise UsageError(f"num_ctx must be a positive whole number of tokens, got {num_ctx!r}")
    if limit is not None and num_ctx > limit:
        raise UsageError(
            f"num_ctx {num_ctx} is beyond this model's context of {limit} tokens: "
            f"use {limit} or less"
        )


def _base_spec(from_: list[str], system: str | None, num_ctx: int | None) -> ModelfileSpec:
    spec = ModelfileSpec(from_=from_, system=system)
    if num_ctx is not None:
        spec.parameters["num_ctx"] = num_ctx
    return spec


def spec_for_variant(
    variant: str | Variant,
    *,
    system: str | None = None,
    num_ctx: int | None = None,
    tools: bool = False,
) -> ModelfileSpec:
    """The spec for a published variant: FROM its Ollama library tag, else ``hf.co/…:QUANT``.

    Pretrained (``-pt``) variants have neither; they are refused with a pointer to export.
    ``tools=True``: the TEMPLATE with tool calling (``OLLAMA_TOOLS_TEMPLATE``), so Ollama accepts
    ``tools`` and its own parser returns the calls as ``tool_calls``.
    """
    v = get_variant(variant) if isinstance(variant, str) else variant
    ref = v.from_ref
    if ref is None:
        raise UsageError(
            f"{v.name} has no published Ollama model or GGUF to start FROM: pick an "
            f"instruction-tuned variant (gemma3-{v.size.name}-it) or export your "
            "own GGUF and pass its path"
        )
    _check_num_ctx(num_ctx, v.size.context_length)
    return _with_tools(_base_spec([ref], system, num_ctx), tools)


def _with_tools(spec: ModelfileSpec, tools: bool) -> ModelfileSpec:
    if tools:
        spec.template = OLLAMA_TOOLS_TEMPLATE
    return spec


def _gguf_path(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputNotFound(
            f"{what} {p} does not exist: check the path (or pass a variant "
            "name such as gemma3-4b-it)"
        )
    if not p.is_file():
        raise InputNotFound(f"{what} {p} is not a file: pass the .gguf file itself")
    with p.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise NotGGUF(
            f"{what} {p} is not a GGUF file (starts with {magic!r}, not b'GGUF'): "
            "pass a .gguf model"
        )
    return p


def spec_for_gguf(
    model: str | os.PathLike[str],
    mmproj: str | os.PathLike[str] | None = None,
    *,
    system: str | None = None,
    num_ctx: int | None = None,
    relative_to: str | os.PathLike[str] | None = None,
    tools: bool = False,
) -> ModelfileSpec:
    """The spec for a local GGUF (and its vision projector): two FROM lines, model first
    (``tools``: see :func:`spec_for_variant`).

    Paths are absolute; with ``relative_to`` (the Modelfile's folder, which Ollama resolves
    relative FROM paths against) files inside that folder are written as ``./name``.
    """
    paths = [_gguf_path(model, "model")]
    if mmproj is not None:
        paths.append(_gguf_path(mmproj, "projector"))
    _check_num_ctx(num_ctx, None)
    refs = []
    for p in paths:
        if relative_to is None:
            refs.append(os.path.abspath(p))
        else:
            rel = Path(os.path.relpath(os.path.abspath(p), os.path.abspath(relative_to)))
            # Inside the Modelfile's folder: "./name" (the pair moves together); elsewhere the
            # absolute path, rather than a fragile chain of "../".
            refs.append(
                os.path.abspath(p) if rel.as_posix().startswith("../") else f"./{rel.as_posix()}"
            )
    return _with_tools(_base_spec(refs, system, num_ctx), tools)


def _looks_like_path(ref: str) -> bool:
    return (
        ref.startswith(("/", "./", "../", "~", "\\"))
        or ref.lower().endswith(".gguf")
        or (len(ref) > 2 and ref[1] == ":" and ref[2] in "\\/")
    )


def create_kwargs(spec: ModelfileSpec, files: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``ollama.Client.create(model=..., **kwargs)`` from ``spec``.

    A spec FROM a model name becomes ``from_``; a spec FROM local files needs ``files`` — the
    uploaded blobs as ``{file name: "sha256:<hex>"}`` (``Client.create_blob`` returns the
    digest) — model first, then projector, in the spec's order. Stop strings go inside
    ``parameters`` as a list, the way Ollama stores them.
    """
    kwargs: dict[str, Any] = {}
    if files:
        bad = [d for d in files.values() if not (d.startswith("sha256:") and len(d) == 71)]
        if bad:
            raise UsageError(f"files must map names to 'sha256:<64 hex>' digests, got {bad[0]!r}")
        kwargs["files"] = dict(files)
    else:
        if len(spec.from_) != 1 or _looks_like_path(spec.from_[0]):
            raise UsageError(
                f"FROM {spec.from_[0] if spec.from_ else '(none)'} is a local file: "
                "upload it with Client.create_blob(path) and pass "
                "files={name: digest}"
            )
        kwargs["from_"] = spec.from_[0]
    if spec.template is not None:
        kwargs["template"] = spec.template
    params: dict[str, Any] = dict(spec.parameters)
    if spec.stop:
        params["stop"] = list(spec.stop)
    if params:
        kwargs["parameters"] = params
    if spec.system is not None:
        kwargs["system"] = spec.system
    licenses = ([spec.license] if spec.license is not None else []) + [
        v for c, v in spec.extra if c == "license"
    ]
    if licenses:
        kwargs["license"] = licenses[0] if len(licenses) == 1 else licenses
    if spec.messages:
        kwargs["messages"] = [{"role": r, "content": c} for r, c in spec.messages]
    return kwargs


# --------------------------------------------------------------------------- lint


class Finding(_rules.Finding):
    """One lint result: the shared :class:`gemma3_pack._rules.Finding` (one rule table for
    ``inspect``, ``doctor`` and this linter), built level-first as this module always has.
    ``level`` is ``error`` (Ollama rejects it or Gemma 3 misbehaves) or ``warning`` (works, but
    not as the Gemma team intends); ``fix`` comes from the rule's row."""

    def __init__(
        self, level: Literal["error", "warning"], code: str, message: str, line: int | None = None
    ) -> None:
        rule = _rules.RULES.get(code)
        super().__init__(code, level, message, line, rule.fix if rule else None)

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.level}: {where}{self.message} [{self.code}]"


def _template_verdict(template: str) -> tuple[str, str, str] | None:
    """(level, code, message) for a TEMPLATE that is not ours, or None when it is fine."""
    if template in (OLLAMA_TEMPLATE, OLLAMA_TOOLS_TEMPLATE, LIBRARY_TEMPLATE_4B19):
        return None
    if template == LIBRARY_TEMPLATE_E0A4:
        return (
            "warning",
            "template-system-turn",
            "TEMPLATE is ollama.com's e0a42594d802: a system prompt becomes its own user turn "
            "instead of being folded into the first one as Gemma 3 was trained; use "
            f"`{REGENERATE}`'s TEMPLATE",
        )
    if "<start_of_turn>" not in template or "<end_of_turn>" not in template:
        return (
            "error",
            "template-not-gemma",
            "TEMPLATE does not use Gemma's <start_of_turn>/<end_of_turn> turns: the model "
            "will see a prompt format it was not trained on; use gemma3-pack's TEMPLATE",
        )
    if ".Messages" not in template:
        return (
            "warning",
            "template-legacy",
            "TEMPLATE uses the legacy .Prompt/.Response form: history and system prompts "
            "are rendered per turn; use gemma3-pack's Messages TEMPLATE",
        )
    return (
        "warning",
        "template-custom",
        "TEMPLATE is a Gemma-style template but not a known-good one: compare its render "
        "with `gemma3_pack.render_ollama` against the official Jinja",
    )


def check_modelfile(source: str | os.PathLike[str]) -> list[Finding]:
    """Lint a Modelfile for Gemma 3: ``source`` is a path or the Modelfile text itself.

    Grammar errors become one ``syntax`` finding (with the line); otherwise every issue found.
    Codes: ``no-from``, ``no-template``, ``template-*``, ``template-trailing-newline``,
    ``template-bos``, ``template-image-token``, ``no-stop``, ``off-spec-parameter``,
    ``unset-parameter`` (a non-library FROM falls back to Ollama's defaults),
    ``unknown-parameter``, ``deprecated-parameter``, ``bad-parameter-value``,
    ``mmproj-as-adapter``.
    """
    looks_like_path = (
        isinstance(source, str)
        and source.strip()
        and not any(ch in source for ch in " \t\r\n")
        and len(source) < 4096
    )
    if isinstance(source, os.PathLike) or looks_like_path:
        path = Path(source)
        if not path.exists():
            raise InputNotFound(f"Modelfile {path} does not exist: check the path")
        size = regular_input(path, "Modelfile").st_size
        if size > MAX_MODELFILE:
            raise ModelfileError(
                f"{path} is {size:,} bytes, over the {MAX_MODELFILE >> 20} MiB a Modelfile can "
                "be here: is it really a Modelfile?"
            )
        raw = path.read_bytes()
        utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
        try:
            text = raw.decode("utf-16" if utf16 else "utf-8")
        except UnicodeDecodeError as err:
            enc = "UTF-16" if utf16 else "UTF-8"
            raise ModelfileError(
                f"{path} is not valid {enc} text ({err.reason} at byte {err.start}): "
                "save it as UTF-8"
            ) from None
    else:
        text = str(source)

    try:
        commands = _commands(text)
    except ModelfileError as err:
        return [Finding("error", "syntax", str(err), _line_of(str(err)))]

    findings: list[Finding] = []
    add = findings.append
    froms = [c for c in commands if c.kind == "from"]
    if not froms:
        add(
            Finding(
                "error",
                "no-from",
                "no FROM line: start with e.g. `FROM gemma3:4b` or `FROM ./model.gguf`",
            )
        )
    templates = [c for c in commands if c.kind == "template"]
    if not templates:
        add(
            Finding(
                "warning",
                "no-template",
                "no TEMPLATE: Ollama guesses one only on create and only from a GGUF's Jinja; "
                "add gemma3-pack's TEMPLATE so chats are formatted as Gemma 3 expects",
            )
        )
    else:
        t = templates[-1]
        verdict = _template_verdict(t.args)
        if verdict:
            add(Finding(verdict[0], verdict[1], verdict[2], t.line))  # type: ignore[arg-type]
        if t.args.endswith("\n"):
            add(
                Finding(
                    "error",
                    "template-trailing-newline",
                    "TEMPLATE ends with a newline before the closing quotes: Ollama keeps it, "
                    "so every prompt ends with an extra \\n after <start_of_turn>model; put "
                    'the closing """ right after the last }}',
                    t.line,
                )
            )
        if "<bos>" in t.args or "bos_token" in t.args:
            add(
                Finding(
                    "error",
                    "template-bos",
                    "TEMPLATE writes <bos>: Ollama's tokenizer already adds it, so the model "
                    "sees two; remove it from the template",
                    t.line,
                )
            )
        if "<start_of_image>" in t.args:
            add(
                Finding(
                    "error",
                    "template-image-token",
                    "TEMPLATE writes <start_of_image>: Ollama inserts image tokens itself; "
                    "remove it",
                    t.line,
                )
            )
    stops = [c for c in commands if c.kind == "parameter" and c.name == "stop"]
    if STOP not in [c.args for c in stops]:
        add(
            Finding(
                "error",
                "no-stop",
                f'no PARAMETER stop "{STOP}": generation can run past the end of the turn '
                f"on engines that do not stop on it by themselves; add it",
            )
        )
    for c in commands:
        if c.kind != "parameter" or c.name == "stop":
            continue
        if c.name in DEPRECATED_PARAMETERS:
            add(
                Finding(
                    "warning",
                    "deprecated-parameter",
                    f"parameter {c.name} is deprecated; Ollama ignores it: remove it",
                    c.line,
                )
            )
            continue
        if c.name not in PARAMETER_TYPES:
            hint = f" (did you mean {c.name.lower()}?)" if c.name.lower() in PARAMETER_TYPES else ""
            add(
                Finding(
                    "error",
                    "unknown-parameter",
                    f"unknown parameter '{c.name}': Ollama rejects it{hint}",
                    c.line,
                )
            )
            continue
        try:
            value = _convert(c.name, c.args, c.line)
        except ModelfileError as err:
            add(Finding("error", "bad-parameter-value", str(err).split("): ", 1)[1], c.line))
            continue
        want = SAMPLING.get(c.name)
        if want is not None and float(value) != float(want):
            add(
                Finding(
                    "warning",
                    "off-spec-parameter",
                    f"{c.name} {c.args} differs from the Gemma team's {_number(want)}",
                    c.line,
                )
            )
    set_params = {c.name for c in commands if c.kind == "parameter"}
    inherits = froms and all(_library_gemma3(c.args) for c in froms)
    if froms and not inherits:
        for name, ollama_default in OLLAMA_DEFAULTS.items():
            if name not in set_params:
                add(
                    Finding(
                        "warning",
                        "unset-parameter",
                        f"{name} is not set: Ollama's default {ollama_default} applies, the "
                        f"Gemma team's is {_number(SAMPLING[name])}; add PARAMETER {name} "
                        f"{_number(SAMPLING[name])}",
                    )
                )
    for c in commands:
        if c.kind == "adapter" and ("mmproj" in c.args.lower() or "projector" in c.args.lower()):
            add(
                Finding(
                    "error",
                    "mmproj-as-adapter",
                    f"ADAPTER {c.args} looks like a vision projector: give it as a second "
                    "FROM line after the model, not as ADAPTER (Ollama #16459)",
                    c.line,
                )
            )
    return findings


def _line_of(message: str) -> int | None:
    if message.startswith("(line "):
        try:
            return int(message[6 : message.index(")")])
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- modelfiles/


def variant_modelfile(variant: str | Variant) -> str:
    """The committed ``modelfiles/<variant>.Modelfile`` text for a published variant."""
    v = get_variant(variant) if isinstance(variant, str) else variant
    spec = spec_for_variant(v)
    header = (
        f"Gemma 3 {v.size.params} {'QAT ' if v.qat else ''}instruction-tuned ({v.name}) "
        "for Ollama.\n"
        f"Use: ollama create my-{v.name} -f {v.name}.Modelfile\n"
        f"Generated by gemma3-pack; regenerate with: {REGENERATE}"
    )
    return render_modelfile(spec, header=header)


def write_variant_modelfiles(folder: str | os.PathLike[str]) -> list[Path]:
    """Write one Modelfile per variant that has something to start FROM; returns the paths."""
    from ._family import VARIANTS

    out = Path(folder)
    if not out.is_dir():
        if not out.parent.is_dir():
            raise OutputError(
                f"cannot write to {out}: its parent folder {out.parent} does not "
                "exist (create it first)"
            )
        out.mkdir()
    written = []
    for v in VARIANTS.values():
        if v.from_ref is None:
            continue
        dst = out / f"{v.name}.Modelfile"
        text = variant_modelfile(v)
        if not dst.is_file() or dst.read_text(encoding="utf-8") != text:
            write_text_atomic(dst, text)
        written.append(dst)
    return written
