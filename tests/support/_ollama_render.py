"""Ollama's own prompt rendering, as a test oracle: ``tests/go/ollama_render``.

That small Go program imports ``github.com/ollama/ollama`` at the release pinned in its ``go.mod``
(``go.sum`` committed, so the build is reproducible) and builds a chat prompt the way that
release's server does for ``/api/chat``: Modelfile SYSTEM and MESSAGEs prepended, images tagged
``[img-N]``, messages collated and the TEMPLATE executed by Ollama's ``template`` package. It is
built once, with ``CGO_ENABLED=0`` from the Go module proxy, into the test cache
(``ollama-render/<version>-<source hash>/``); warm runs reuse the binary.

Only the tests use it: the package itself never needs Ollama's module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _assets

SOURCE = Path(__file__).resolve().parents[1] / "go" / "ollama_render"
_FILES = ("main.go", "go.mod", "go.sum")
# What an image is to the renderer: only the count reaches the prompt.
_IMAGE = base64.b64encode(b"not an image: only counted").decode()


def ollama_version() -> str:
    """The Ollama release the renderer is built from, e.g. ``v0.34.4`` (its go.mod pin)."""
    text = (SOURCE / "go.mod").read_text(encoding="utf-8")
    match = re.search(r"^require github\.com/ollama/ollama (v\S+)$", text, re.M)
    assert match, "tests/go/ollama_render/go.mod must pin github.com/ollama/ollama"
    return match.group(1)


def _digest() -> str:
    h = hashlib.sha256()
    for name in _FILES:
        h.update(name.encode() + b"\0" + (SOURCE / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _go_env() -> dict[str, str]:
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    if not (env.get("GOCACHE") or env.get("XDG_CACHE_HOME") or env.get("HOME")):
        env["GOCACHE"] = str(_assets.cache_dir("go-build-cache"))  # Go's needs a home
    return env


def module_dir(go: Path | None = None) -> Path:
    """Where the Go module cache holds Ollama's source (after :func:`binary` downloaded it)."""
    proc = subprocess.run(
        [
            str(go or _assets.go_binary()),
            "list",
            "-m",
            "-f",
            "{{.Dir}}",
            "github.com/ollama/ollama",
        ],
        cwd=SOURCE,
        env=_go_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return Path(proc.stdout.strip())


def go_program(go: Path, source: Path, cache: str) -> Path:
    """Build the small Go program in ``source`` (main.go, go.mod, go.sum) once, keyed by its
    source hash under the tests' cache folder ``cache``, in a temporary copy renamed into place."""
    files = ("main.go", "go.mod", "go.sum")
    digest = hashlib.sha256(b"".join((source / f).read_bytes() for f in files)).hexdigest()
    out = _assets.cache_dir(cache, digest[:16])
    exe = out / source.name
    if not exe.is_file():
        with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
            for f in files:
                shutil.copyfile(source / f, Path(tmp) / f)
            proc = subprocess.run(
                [str(go), "build", "-trimpath", "-buildvcs=false", "-o", exe.name, "."],
                cwd=tmp,
                env=_go_env(),
                capture_output=True,
                text=True,
                timeout=1800,
            )
            assert proc.returncode == 0, proc.stderr[-4000:]
            os.replace(Path(tmp) / exe.name, exe)
    return exe


def binary(go: Path | None = None) -> Path:
    """Build the renderer once (keyed by release and source hash) and return its path.

    The build runs in a temporary copy beside the target and is renamed into place, so a
    concurrent or interrupted build never leaves a half-written binary.
    """
    out = _assets.cache_dir("ollama-render", f"{ollama_version()}-{_digest()}")
    exe = out / "ollama_render"
    if exe.is_file():
        return exe
    go = go or _assets.go_binary()
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
        for name in _FILES:
            shutil.copyfile(SOURCE / name, Path(tmp) / name)
        proc = subprocess.run(
            [str(go), "build", "-trimpath", "-buildvcs=false", "-o", "ollama_render", "."],
            cwd=tmp,
            env=_go_env(),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"building {SOURCE} with {go} failed:\n{proc.stderr[-4000:]}")
        os.replace(Path(tmp) / "ollama_render", exe)
    return exe


def api_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A Hugging Face-style message as a client sends it to ``/api/chat``: text items of list
    content joined (as Google's template joins them), one ``images`` entry per image item."""
    content = message["content"]
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    texts = [str(item.get("text", "")) for item in content if item.get("type") == "text"]
    images = [_IMAGE for item in content if item.get("type") == "image"]
    out: dict[str, Any] = {"role": message["role"], "content": "".join(texts)}
    if images:
        out["images"] = images
    return out


@dataclass(frozen=True)
class Rendered:
    """What the renderer answered: the model as stored, then one result per conversation."""

    template: str
    system: str
    messages: list[dict[str, Any]]
    detected: str  # the autodetected template's name, when ``detect`` chose the TEMPLATE
    results: list[dict[str, Any]]

    @property
    def prompts(self) -> list[str]:
        """Every prompt; fails naming the first conversation the server would refuse."""
        for i, r in enumerate(self.results):
            assert "error" not in r, f"conversation {i}: {r['error']}"
        return [r["prompt"] for r in self.results]


class RefusedModel(Exception):
    """``ollama create`` would refuse this TEMPLATE or Modelfile (the message says why)."""


def render(
    conversations: Iterable[Sequence[Mapping[str, Any]]],
    *,
    template: str | None = None,
    system: str = "",
    messages: Sequence[Mapping[str, str]] = (),
    modelfile: str | None = None,
    detect: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    exe: Path | None = None,
) -> Rendered:
    """Render ``conversations`` (Hugging Face-style messages) with Ollama's chat path in ONE process.

    The model is ``modelfile`` (its TEMPLATE, SYSTEM and MESSAGE lines, read by Ollama's parser),
    or ``template`` + ``system`` + ``messages`` (the MESSAGE lines), or, with no TEMPLATE, the Go
    template ``ollama create`` autodetects from ``detect`` (a GGUF's ``tokenizer.chat_template``).
    ``tools`` go with every request.
    """
    requests = []
    for conv in conversations:
        request: dict[str, Any] = {"messages": [api_message(m) for m in conv]}
        if tools:
            request["tools"] = list(tools)
        requests.append(request)
    body: dict[str, Any] = {
        "template": template or "",
        "system": system,
        "messages": [dict(m) for m in messages],
        "requests": requests,
    }
    if modelfile is not None:
        body["modelfile"] = modelfile
    if detect is not None:
        body["detect"] = detect
    proc = subprocess.run(
        [str(exe or binary())],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    if proc.returncode == 3:
        raise RefusedModel(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    return Rendered(
        answer["template"],
        answer["system"],
        answer["messages"],
        answer["detected"],
        answer["results"],
    )
