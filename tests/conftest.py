from __future__ import annotations

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
def ollama_daemon(tmp_path_factory: pytest.TempPathFactory):
    """A real Ollama daemon for the session: ``OLLAMA_HOST`` as set when the session started,
    else ``ollama serve`` from the cached source build (``tests/support/_engines.py``), stopped after.

    Never builds: a missing build fails the test with one line naming ``tests/build_engines.py``.
    """
    daemon = _engines.session_daemon(tmp_path_factory.mktemp("ollama"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """llama.cpp's own ``llama-server``, built by ``tests/build_engines.py`` (never by a test).

    See ``tests/support/_engines_llama.py`` (also ``llama_bin("llama-mtmd-cli" | "llama-quantize")`` and
    the ``llama_server(model, *args)`` context manager).
    """
    import _engines_llama

    return _engines_llama.ensure_programs() / "llama-server"


# --------------------------------------------------------------------------- engines and markers

# A test that uses one of these fixtures (directly or through another fixture) needs that engine
# or Go program, and carries its marker: `-m "not ollama and not llama_server and not go"` runs
# with nothing built. Suites that reach an engine without these fixtures mark themselves.
ENGINE_FIXTURES = {"ollama_daemon": "ollama", "llama_server_bin": "llama_server", "go_binary": "go"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in ENGINE_FIXTURES.items():
            if fixture in used and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


def pytest_report_header(config: pytest.Config) -> str:
    import build_engines

    def state(engine: build_engines.Engine) -> str:
        try:
            return "built" if engine.built() else "NOT BUILT"
        except Exception as err:  # e.g. llama-cpp-python not installed
            return f"unknown ({type(err).__name__})"

    listed = ", ".join(f"{e.name} {state(e)}" for e in build_engines.ENGINES)
    return f"engines ({_assets.CACHE / 'engines'}): {listed}"


_MISSING = pytest.StashKey[set[str]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A missing engine is reported as its one line, not a traceback."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(_engines.EngineMissing):
        report.longrepr = f"{call.excinfo.typename}: {call.excinfo.value}"
        item.config.stash.setdefault(_MISSING, set()).add(str(call.excinfo.value))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for line in sorted(config.stash.get(_MISSING, set[str]())):
        terminalreporter.write_line(f"engine missing: {line}", red=True)


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The real tokenizer files of the 270M fixture (tokenizer.model, tokenizer.json, config)."""
    import _assets_ckpt

    return _assets_ckpt.hf_checkpoint_270m()


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny valid checkpoint (real tokenizer); hostile cases link its big files and edit the rest."""
    import _assets_ckpt
    from _tiny_ckpt import make_ckpt

    return make_ckpt(tmp_path_factory.mktemp("base") / "tiny", _assets_ckpt.hf_checkpoint_270m())


@pytest.fixture(scope="session")
def tool_parser(go_binary) -> Path:
    """``tests/go/ollama_toolparse`` built once (keyed by its source), like the renderer."""
    import _ollama_render

    source = Path(__file__).resolve().parent / "go" / "ollama_toolparse"
    return _ollama_render.go_program(go_binary, source, "ollama-toolparse")
