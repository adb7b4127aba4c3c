"""The engine build step (``tests/build_engines.py``) and how the tests meet a missing engine.

The real builds take many minutes; here the step runs over stand-in engines to pin what it promises:
built engines are skipped, a failure is one line with the log's path and exit 1 (the others still
build), a build past its bound is stopped and reported the same way, ``--check`` reports, and a test
whose engine is missing fails at once with one line instead of building.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import _engines
import _engines_llama
import _engines_ollama_new
import _litert_env
import build_engines
import pytest

ROOT = Path(__file__).resolve().parent.parent


def stand_in(name: str, build, *, built: bool = False, log: str = "/cache/x/build.log"):
    state = {"built": built}

    def run() -> None:
        build()
        state["built"] = True

    return build_engines.Engine(
        name, "ollama", "~1 min", lambda: state["built"], run, lambda: Path(log)
    )


def fails() -> None:
    raise RuntimeError("go install ollama@v9 exited 2; log /cache/ollama-9-build/build.log\nmore")


def test_a_failure_is_one_line_the_others_still_build_and_the_step_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done: list[str] = []
    engines = (
        stand_in("a", lambda: done.append("a")),
        stand_in("b", fails),
        stand_in("c", lambda: done.append("c")),
        stand_in("d", lambda: done.append("d"), built=True),
    )
    monkeypatch.setattr(build_engines, "ENGINES", engines)
    assert build_engines.main([]) == 1
    assert done == ["a", "c"]  # d was built already: skipped
    failed = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
    assert failed == [
        "build_engines: FAILED b: go install ollama@v9 exited 2; log /cache/ollama-9-build/build.log"
    ]


def test_an_error_without_a_log_path_gets_the_engines_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def raises() -> None:
        raise OSError("apt-get: not found")

    engines = (stand_in("a", raises, log="/cache/a/build.log"),)
    monkeypatch.setattr(build_engines, "ENGINES", engines)
    assert build_engines.main([]) == 1
    [line] = [x for x in capsys.readouterr().err.splitlines() if "FAILED" in x]
    assert line == "build_engines: FAILED a: apt-get: not found; log /cache/a/build.log"


def test_a_build_past_its_bound_is_stopped_and_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engines = (stand_in("slow", lambda: time.sleep(30)),)
    monkeypatch.setattr(build_engines, "ENGINES", engines)
    t0 = time.monotonic()
    assert build_engines.main(["--timeout-min", str(1.5 / 60)]) == 1
    assert time.monotonic() - t0 < 10
    [line] = [x for x in capsys.readouterr().err.splitlines() if "FAILED" in x]
    assert "slow: not finished after" in line and "rerun to resume" in line
    assert line.endswith("log /cache/x/build.log")


def test_check_reports_and_exits_1_when_something_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engines = (stand_in("a", fails, built=True), stand_in("b", fails))
    monkeypatch.setattr(build_engines, "ENGINES", engines)
    assert build_engines.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "a               built" in err and "b               NOT BUILT" in err
    monkeypatch.setattr(build_engines, "ENGINES", engines[:1])
    assert build_engines.main(["--check"]) == 0


def test_the_real_engines_are_listed_once_each_with_a_declared_marker() -> None:
    names = [e.name for e in build_engines.ENGINES]
    assert names == ["llama.cpp", "ollama-0.24.0", "ollama-0.34.4", "ollama-render", "litert-venv"]
    declared = {
        line.strip().strip('",').split(":")[0]
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.strip().startswith('"') and ":" in line
    }
    assert {e.marker for e in build_engines.ENGINES} <= declared


def test_help_has_examples() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "build_engines.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0
    assert "examples:" in out.stdout and "--only llama.cpp" in out.stdout


def test_a_missing_engine_is_never_built_by_a_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an empty cache, every lookup the tests use raises EngineMissing at once, naming the step."""
    monkeypatch.setattr(_engines._assets, "CACHE", tmp_path)
    monkeypatch.delenv(_litert_env.ENV, raising=False)
    lookups = (
        _engines.ollama_binary,
        _engines_ollama_new.ollama_binary_new,
        lambda: _engines_llama.ensure_programs("0.3.36"),
        lambda: _engines_llama.llama_bin("llama-server", "0.3.36"),
        _litert_env.python,
    )
    for lookup in lookups:
        t0 = time.monotonic()
        with pytest.raises(_engines.EngineMissing) as info:
            lookup()
        assert time.monotonic() - t0 < 1
        message = str(info.value)
        assert "\n" not in message and _engines.BUILD_COMMAND in message
    assert not any(p.name.startswith(".") and p.name.endswith(".work") for p in tmp_path.rglob("*"))
    assert not (tmp_path / "litert-venv").exists()


def test_a_test_whose_engine_is_missing_fails_with_one_line(tmp_path: Path) -> None:
    """Through pytest itself: the fixture's EngineMissing is reported as its one line; the real
    LiteRT-LM tests fail the same way (not skip) when the [litert] venv was not built."""
    (tmp_path / "test_needs_llama.py").write_text(
        textwrap.dedent(
            """
            def test_needs_llama(llama_server_bin):
                pass
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
         str(tmp_path / "test_needs_llama.py"),
         "tests/test_litertlm.py::test_written_metadata_is_what_litert_lm_needs"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k != _litert_env.ENV},
             "GEMMA3_PACK_TEST_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "EngineMissing: llama.cpp programs" in proc.stdout
    litert = [x for x in proc.stdout.splitlines() if x.startswith("EngineMissing: the [litert]")]
    assert len(litert) == 2 and _engines.BUILD_COMMAND in litert[0], proc.stdout
    assert "Traceback" not in proc.stdout and "raise " not in proc.stdout
    assert "3 errors" in proc.stdout and "skipped" not in proc.stdout


def _wheel(folder: Path, name: str) -> Path:
    """A minimal pure-Python wheel (module ``name`` with ``OK = 1``): pip installs it offline."""
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "OK = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    whl = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return whl


@pytest.mark.slow
def test_the_litert_venv_builds_fails_in_one_line_resumes_and_is_then_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real build path (python -m venv, pip, the import check, ``.complete``) over a local
    wheel instead of the ~6 GB pins, with pip kept off the network."""
    monkeypatch.setattr(_engines._assets, "CACHE", tmp_path / "cache")
    monkeypatch.delenv(_litert_env.ENV, raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    missing = tmp_path / "absent-1.0-py3-none-any.whl"
    monkeypatch.setattr(_litert_env, "pins", lambda: [str(missing)])
    monkeypatch.setattr(_litert_env, "SMOKE", "import g3p_probe; assert g3p_probe.OK == 1")
    venv = tmp_path / "cache" / "litert-venv"

    assert build_engines.main(["--only", "litert-venv"]) == 1
    [line] = [x for x in capsys.readouterr().err.splitlines() if "FAILED" in x]
    assert (
        line == f"build_engines: FAILED litert-venv: pip install exited 1; log {venv / 'build.log'}"
    )
    assert "absent-1.0-py3-none-any.whl" in (venv / "build.log").read_text()
    assert not _litert_env.is_built() and not (venv / ".complete").exists()
    with pytest.raises(_engines.EngineMissing):
        _litert_env.python()

    whl = _wheel(tmp_path, "g3p_probe")
    monkeypatch.setattr(_litert_env, "pins", lambda: [str(whl)])
    assert build_engines.main(["--only", "litert-venv"]) == 0
    err = capsys.readouterr().err
    assert "resuming the [litert] extra" in err  # the venv of the failed try is kept
    assert "litert-venv: built in" in err
    assert _litert_env.is_built() and (venv / ".complete").read_text() == str(whl)
    info = json.loads((venv / "BUILD.json").read_text())
    assert info["pins"] == [str(whl)] and info["size_bytes"] > 0
    assert _litert_env.python() == venv / "bin" / "python"

    assert build_engines.main(["--only", "litert-venv"]) == 0
    assert "litert-venv: built\n" in capsys.readouterr().err  # found, not reinstalled
    assert build_engines.main(["--check", "--only", "litert-venv"]) == 0
    monkeypatch.setattr(_litert_env, "pins", lambda: [str(whl), "torch==9"])  # a pin changed
    assert not _litert_env.is_built()
    monkeypatch.setenv(_litert_env.ENV, "/opt/my-litert/bin/python")  # the user's own stack
    assert _litert_env.python() == Path("/opt/my-litert/bin/python")
