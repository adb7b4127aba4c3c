from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import _assets  # tests/ is on sys.path (rootdir conftest)
import _engines  # reads OLLAMA_HOST now, before _isolated_env removes it from each test
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test sees the developer's Ollama host, HF cache or debug switch."""
    for var in (
        "OLLAMA_HOST",
        "OLLAMA_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "GEMMA3_PACK_DEBUG",
    ):
        monkeypatch.delenv(var, raising=False)
    hf_home = tmp_path_factory.getbasetemp() / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def gguf_270m() -> Path:
    return _assets.gguf_270m()


@pytest.fixture(scope="session")
def npm_tokenizer() -> Path:
    return _assets.npm_tokenizer()


@pytest.fixture(scope="session")
def go_binary() -> Path:
    return _assets.go_binary()


@dataclass
class CLIResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> CLIResult:
    """Run ``python -m gemma3_pack ARGS`` in a real subprocess (exit codes, no traceback)."""
    full_env = {k: v for k, v in os.environ.items() if k != "GEMMA3_PACK_DEBUG"}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "gemma3_pack", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    return CLIResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli


def assert_one_line_error(result: CLIResult, *needles: str) -> None:
    """Exit 2, a single ``error: ...`` line naming the problem, and no traceback."""
    assert result.code == 2, (result.code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


@pytest.fixture(scope="session")
def ollama_daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A real Ollama daemon for the session: ``OLLAMA_HOST`` as set when the session started,
    else ``ollama serve`` from the cached source build (``tests/_engines.py``), stopped after."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # the first build takes ~15 min: let its progress lines through pytest's capture
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        daemon = _engines.session_daemon(tmp_path_factory.mktemp("ollama"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def llama_server_bin(pytestconfig: pytest.Config) -> Path:
    """llama.cpp's own ``llama-server``, built from the llama-cpp-python sdist on first use.

    The first (cold) build takes minutes; its progress is shown past pytest's output capture. See
    ``tests/_engines_llama.py`` (also ``llama_bin("llama-mtmd-cli" | "llama-quantize")`` and the
    ``llama_server(model, *args)`` context manager).
    """
    import _engines_llama

    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        bindir = _engines_llama.ensure_programs()
    return bindir / "llama-server"
