"""The key checks of ``test_ollama_daemon.py`` on a current Ollama: 0.34.4 with its llama-server engine.

Ollama >= 0.30 runs GGUF models through an upstream ``llama-server`` subprocess. The daemon here is
Ollama 0.34.4 built by ``tests/_engines_ollama_new.py``: the Go binary from its module, the engine
from Ollama's own ``llama/server`` CMake project (its compat patch applied) on the llama.cpp tree
of the llama-cpp-python sdist (ggml-org/llama.cpp@0c1e57098; Ollama pins b11081, a few days older).
These tests always run this build (``OLLAMA_HOST`` does not redirect them: it is the version under
test); the full suite runs against ``OLLAMA_HOST`` or 0.24.0 in ``test_ollama_daemon.py``.

    pytest -m ollama tests/test_ollama_daemon_new.py
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import _engines
import _engines_ollama_new
import httpx
import pytest
from conftest import run_cli
from test_go_conformance import CORPUS, _reference
from test_ollama_daemon import (
    expected_parameters,
    png_bytes,
    render_on_daemon,
    show,
    show_parameters,
)

from gemma3_pack import OLLAMA_TEMPLATE, SAMPLING, Client, parse_modelfile, patch_gguf, render_chat

pytestmark = [pytest.mark.ollama, pytest.mark.slow]

VERSION = _engines_ollama_new.OLLAMA_NEW_VERSION
SHORT = {"num_predict": 4, "seed": 7}
# how the chat handler picked the prompt renderer (server/images.go logs it at load)
SELECTION = re.compile(r'msg="template selection" model=\S+ selected=(\S+)')


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def binary(pytestconfig: pytest.Config) -> Path:
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    # the first build takes ~20 min: let its progress lines through pytest's capture
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        return _engines_ollama_new.ollama_binary_new()


def _daemon(binary: Path, root: Path, **env: str) -> Iterator[_engines.OllamaDaemon]:
    daemon = _engines.OllamaDaemon(binary, root, env=env).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def daemon(
    binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_engines.OllamaDaemon]:
    yield from _daemon(binary, tmp_path_factory.mktemp("ollama-new"))


@pytest.fixture(scope="module")
def native_daemon(
    binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_engines.OllamaDaemon]:
    """``OLLAMA_GO_TEMPLATE=0``: the chat handler leaves the prompt to llama-server's own Jinja
    engine and the GGUF's ``tokenizer.chat_template`` (the template our patch embeds)."""
    yield from _daemon(binary, tmp_path_factory.mktemp("ollama-new-native"), OLLAMA_GO_TEMPLATE="0")


@pytest.fixture(scope="module")
def patched(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("patched") / "gemma-3-270m.gguf"
    patch_gguf(gguf_270m, out)
    return out


@pytest.fixture(scope="module")
def modelfile(patched: Path) -> Path:
    out = patched.parent / "Modelfile"
    result = run_cli("modelfile", str(patched), "-o", str(out))
    assert result.code == 0, result.stderr
    return out


def _create(daemon: _engines.OllamaDaemon, modelfile: Path) -> str:
    name = _name("g3-new")
    result = daemon.cli("create", name, "-f", str(modelfile))
    assert result.returncode == 0, result.stderr
    return name


@pytest.fixture(scope="module")
def model(daemon: _engines.OllamaDaemon, modelfile: Path) -> str:
    return _create(daemon, modelfile)


@pytest.fixture(scope="module")
def native_model(native_daemon: _engines.OllamaDaemon, modelfile: Path) -> str:
    return _create(native_daemon, modelfile)


# --------------------------------------------------------------------------- the build


def test_the_daemon_is_0_34_4_on_llama_server_from_the_sdist_tree(
    daemon: _engines.OllamaDaemon, binary: Path
) -> None:
    assert httpx.get(f"{daemon.url}/api/version").json() == {"version": VERSION}
    info = _engines_ollama_new.build_info()
    assert (info["ollama"], info["llama_cpp_pinned_by_ollama"]) == (VERSION, "b11081")
    assert info["llama_cpp_built"] == "0c1e57098"
    server = binary.parent.parent / "lib" / "ollama" / "llama-server"
    out = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=60)
    assert "commit 0c1e57098" in out.stdout + out.stderr
    # the compat patch's hook is compiled in (it is what reads Ollama-format fused vision GGUFs)
    [libllama] = [p for p in server.parent.glob("libllama.so*") if not p.is_symlink()]
    assert b"detected Ollama-format gemma3 GGUF" in libllama.read_bytes()


# --------------------------------------------------------------------------- create and show


def test_cli_create_shows_exactly_our_template_stop_and_parameters(
    daemon: _engines.OllamaDaemon, model: str, modelfile: Path
) -> None:
    spec = parse_modelfile(modelfile.read_text())
    got = show(daemon.url, model)
    assert got["template"] == OLLAMA_TEMPLATE == spec.template
    assert show_parameters(got["parameters"]) == expected_parameters(spec)
    assert show_parameters(got["parameters"]) == {
        **{k: float(v) for k, v in SAMPLING.items()},
        "stop": ["<end_of_turn>"],
    }
    assert got["license"] == spec.license
    assert got["details"]["family"] == "gemma3"
    assert got["capabilities"] == ["completion"]


def test_sdk_create_from_gguf_shows_the_same(
    daemon: _engines.OllamaDaemon, model: str, patched: Path
) -> None:
    name = _name("g3-new-sdk")
    with Client(daemon.url) as client:
        assert client.create_from_gguf(patched, name, progress=False).status == "success"
    cli_show, sdk_show = show(daemon.url, model), show(daemon.url, name)
    for key in ("template", "license", "details", "capabilities"):
        assert sdk_show.get(key) == cli_show.get(key), key
    assert show_parameters(sdk_show["parameters"]) == show_parameters(cli_show["parameters"])


# --------------------------------------------------------------------------- the real renderers


@pytest.fixture(scope="module")
def renders(daemon: _engines.OllamaDaemon, model: str) -> dict[str, str]:
    return {name: render_on_daemon(daemon.url, model, msgs) for name, msgs in CORPUS}


@pytest.fixture(scope="module")
def native_renders(native_daemon: _engines.OllamaDaemon, native_model: str) -> dict[str, str]:
    return {name: render_on_daemon(native_daemon.url, native_model, m) for name, m in CORPUS}


@pytest.mark.parametrize(("name", "messages"), CORPUS, ids=[n for n, _ in CORPUS])
def test_go_template_path_renders_the_corpus_like_google_jinja(
    name: str, messages: list[dict[str, Any]], renders: dict[str, str]
) -> None:
    """Default: our TEMPLATE is executed by Ollama's Go renderer, llama-server gets the text."""
    assert renders[name] == _reference(messages)


@pytest.mark.parametrize(("name", "messages"), CORPUS, ids=[n for n, _ in CORPUS])
def test_llama_server_jinja_path_renders_the_corpus_like_google_jinja(
    name: str, messages: list[dict[str, Any]], native_renders: dict[str, str]
) -> None:
    """``OLLAMA_GO_TEMPLATE=0``: llama-server's Jinja engine renders the GGUF's chat template."""
    assert native_renders[name] == _reference(messages)


def test_conformance_counts_and_which_renderer_ran(
    daemon: _engines.OllamaDaemon,
    native_daemon: _engines.OllamaDaemon,
    renders: dict[str, str],
    native_renders: dict[str, str],
) -> None:
    go = sum(renders[n] == _reference(m) for n, m in CORPUS)
    native = sum(native_renders[n] == _reference(m) for n, m in CORPUS)
    print(
        f"\nOllama {VERSION} == Jinja minus <bos>: Go TEMPLATE path {go}/{len(CORPUS)}, "
        f"llama-server Jinja path {native}/{len(CORPUS)}"
    )
    assert go == native == len(CORPUS) >= 55
    assert set(SELECTION.findall(daemon.log())) == {"go_template"}
    assert set(SELECTION.findall(native_daemon.log())) == {"gguf_chat_template"}


# --------------------------------------------------------------------------- generation


def test_a_chat_answers_through_llama_server_from_our_prompt(
    daemon: _engines.OllamaDaemon, model: str
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    expected = render_chat(messages).removeprefix("<bos>")
    assert render_on_daemon(daemon.url, model, messages) == expected
    with Client(daemon.url, model=model, timeout=300) as client:
        reply = client.chat(messages, options=SHORT)
    assert reply.done and 0 < (reply.eval_count or 0) <= 4
    log = daemon.log()
    launches = re.findall(r'msg="starting llama-server" cmd="([^"]*)"', log)
    assert launches and all("--no-jinja" in cmd for cmd in launches)  # Go-rendered text only
    # 0.34.4 logs the length of the prompt it sends, not the text: it is our render's
    sent = [
        int(n)
        for n in re.findall(r'"llama-server completion request" media=0 prompt_len=(\d+)', log)
    ]
    assert len(expected) in sent


def test_streamed_chat(daemon: _engines.OllamaDaemon, model: str) -> None:
    with Client(daemon.url, model=model, timeout=300) as client:
        chunks = list(client.chat("Say hi.", stream=True, options=SHORT))
    assert chunks and chunks[-1].done and 0 < (chunks[-1].eval_count or 0) <= 4


# --------------------------------------------------------------------------- vision


@pytest.fixture(scope="module")
def vision_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vision fixture exported as Q8_0 with the pair files and the fused file."""
    from _assets_vision import hf_checkpoint_vision

    from gemma3_pack import export

    out = tmp_path_factory.mktemp("vexport-new") / "g3-vision"
    export(
        hf_checkpoint_vision("release"),
        output_dir=out,
        quants="Q8_0",
        ollama_format="fused",
        progress=False,
    )
    return out


@pytest.mark.parametrize("how", ["pair", "fused"])
def test_vision_image_tokens_reach_the_model(
    daemon: _engines.OllamaDaemon, vision_export: Path, how: Literal["pair", "fused"]
) -> None:
    """Observed on 0.34.4: both answer an image with 256 image tokens (+ markers). The pair is
    launched as ``--model text --mmproj mmproj``; the fused file as ``--model F --mmproj F``, read
    through Ollama's compat layer ("detected Ollama-format gemma3 GGUF")."""
    name = _name(f"g3-new-vision-{how}")
    manifest = json.loads((vision_export / "export.json").read_text())
    with Client(daemon.url) as client:
        assert (
            client.create_from_export(vision_export, name, packaging=how, progress=False).status
            == "success"
        )
    assert show(daemon.url, name)["capabilities"] == ["completion", "vision"]
    with Client(daemon.url, model=name, timeout=600) as client:
        with_image = client.chat("Describe the picture.", images=[png_bytes()], options=SHORT)
        text_only = client.chat("Describe the picture.", options=SHORT)
    extra = (with_image.prompt_eval_count or 0) - (text_only.prompt_eval_count or 0)
    print(
        f"\n{how}: prompt_eval_count {with_image.prompt_eval_count} with the image, {text_only.prompt_eval_count} without (+{extra})"
    )
    assert with_image.done and 0 < (with_image.eval_count or 0) <= 4
    assert 256 <= extra <= 256 + 8
    blobs = {
        "text": manifest["models"][0]["sha256"],
        "mmproj": manifest["mmproj"]["sha256"],
        "fused": manifest["fused"]["sha256"],
    }
    model_blob, projector_blob = (
        (blobs["fused"], blobs["fused"]) if how == "fused" else (blobs["text"], blobs["mmproj"])
    )
    launch = rf"--model \S+sha256-{model_blob} .*--mmproj \S+sha256-{projector_blob} "
    assert re.search(launch, daemon.log()), f"no llama-server launch matching {launch}"
    if how == "fused":
        assert "detected Ollama-format gemma3 GGUF" in daemon.log()


def test_auto_packaging_picks_the_pair_on_this_daemon(
    daemon: _engines.OllamaDaemon, vision_export: Path
) -> None:
    name = _name("g3-new-vision-auto")
    with Client(daemon.url) as client:
        client.create_from_export(vision_export, name, progress=False)
    manifest = json.loads((vision_export / "export.json").read_text())
    sent = re.findall(r"sha256-([0-9a-f]{64})$", show(daemon.url, name)["modelfile"], re.M)
    assert sent == [manifest["models"][0]["sha256"], manifest["mmproj"]["sha256"]]
