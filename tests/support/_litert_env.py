"""The ``[litert]`` stack for the LiteRT-LM tests: its own venv in the tests' cache, built as an engine.

litert-torch, litert-lm-api and their pins (pyproject's ``[litert]`` extra: torch 2.13 with its CUDA
wheels, transformers 5.25, jax, ...) take ~6.3 GB and must not be mixed into the test venv, so they
live in ``<test cache>/litert-venv`` (``GEMMA3_PACK_TEST_CACHE``, default ``~/.cache/gemma3-pack-tests``),
and the exporter is pointed at it with ``GEMMA3_PACK_LITERT_PYTHON``, exactly as a user with a separate
venv would.

``tests/build_engines.py`` builds it (``--only litert-venv``), like the compiled engines: ``python -m
venv`` then ``pip install`` of the exact pins, output in ``litert-venv/build.log``, one progress line on
stderr every few seconds (cold, with no pip cache: 3.1 GB downloaded, 6.3 GB installed, 6 min 52 s
on a shared 2-core machine; ``BUILD.json`` in the venv records its own time and size). It counts as built once ``.complete`` holds today's pins (written after the
install and an import check of the runtime), so changing a pin reinstalls. An interrupted install
resumes: pip keeps what it installed and skips it on the next run. Inside the tests a missing stack
is never installed: ``python()`` raises ``_engines.EngineMissing`` (one line naming the build step).
``GEMMA3_PACK_LITERT_PYTHON`` set when the tests start points them at your own ``[litert]`` Python
instead (the build step still builds the cached one).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import _assets

ROOT = Path(__file__).resolve().parents[2]
ENV = "GEMMA3_PACK_LITERT_PYTHON"
# The import check before the venv counts as built: the runtime's native library loads, and the
# modules the exporter probes for are there (litert_torch itself is only imported by the exporter,
# which first works around its undeclared tensorflow import).
SMOKE = (
    "import importlib.util as u, litert_lm, ai_edge_litert.interpreter, torch, transformers; "
    "assert all(u.find_spec(m) for m in ('litert_torch', 'litert_lm', 'ai_edge_litert'))"
)
_PIP_STEP = re.compile(r"^(Collecting|Downloading|Installing|Successfully|Requirement already)")


def venv_dir() -> Path:
    return _assets.CACHE / "litert-venv"


def log_path() -> Path:
    return venv_dir() / "build.log"


def pins() -> list[str]:
    """The ``[litert]`` extra of pyproject.toml (exact pins)."""
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    block = re.search(r"^litert = \[(.*?)^\]", text, re.S | re.M)
    if block is None:
        raise RuntimeError("pyproject.toml has no [litert] extra")
    return re.findall(r'"([^"]+)"', block.group(1))


def is_built() -> bool:
    """The cached venv has today's pins installed and checked (``.complete``)."""
    marker = venv_dir() / ".complete"
    try:
        done = marker.read_text("utf-8") == "\n".join(pins())
    except OSError:
        return False
    return done and (venv_dir() / "bin" / "python").is_file()


def python(*, build: bool = False) -> Path:
    """The Python of the stack: ``GEMMA3_PACK_LITERT_PYTHON``, or the cached venv.

    Missing: ``_engines.EngineMissing``, unless ``build`` (``tests/build_engines.py``) builds it now.
    """
    env = os.environ.get(ENV)
    if env and not build:
        return Path(env)
    exe = venv_dir() / "bin" / "python"
    if is_built():
        return exe
    if not build:
        import _engines

        raise _engines.EngineMissing("the [litert] stack (litert-torch, LiteRT-LM)", exe)
    venv_dir().parent.mkdir(parents=True, exist_ok=True)
    with open(venv_dir().parent / ".litert-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent session installs once; the other waits
        if not is_built():
            _build()
    return exe


def _say(msg: str) -> None:
    print(f"[litert venv] {msg}", file=sys.stderr, flush=True)


def _run_logged(cmd: list[str], log: Path, *, label: str) -> None:
    """Run ``cmd``, appending its output to ``log``, a progress line on stderr every few seconds."""
    from _engines_llama import stop_group

    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,  # stopped as a group when the build is stopped
        ) as proc:  # fmt: skip
            assert proc.stdout is not None
            last = 0.0
            try:
                for line in proc.stdout:
                    out.write(line)
                    now = time.monotonic()
                    if _PIP_STEP.match(line) and now - last > 5:
                        last = now
                        _say(f"{label}: {line.strip()[:110]}")
                code = proc.wait()
            except BaseException:
                stop_group(proc, grace=5)
                raise
    if code != 0:
        raise RuntimeError(f"{label} exited {code}; log {log}")


def _build() -> None:
    started = time.monotonic()
    venv = venv_dir()
    exe = venv / "bin" / "python"
    (venv / ".complete").unlink(missing_ok=True)  # not built until the install and check pass
    resumed = (venv / "bin" / "pip").is_file()  # ensurepip finished: the venv itself is whole
    _say(
        f"{'resuming' if resumed else 'installing'} the [litert] extra ({len(pins())} exact pins, "
        f"~6.3 GB) into {venv}"
    )
    log = log_path()
    if not resumed:
        venv.mkdir(parents=True, exist_ok=True)
        _run_logged([sys.executable, "-m", "venv", str(venv)], log, label="python -m venv")
    _run_logged(
        [str(exe), "-m", "pip", "install", "--disable-pip-version-check", *pins()],
        log,
        label="pip install",
    )
    _run_logged([str(exe), "-c", SMOKE], log, label="import check")
    seconds = round(time.monotonic() - started, 1)
    size = sum(p.lstat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    info = {"pins": pins(), "build_seconds": seconds, "size_bytes": size}
    (venv / "BUILD.json").write_text(json.dumps(info, indent=2) + "\n", "utf-8")
    tmp = venv / ".complete.tmp"
    tmp.write_text("\n".join(pins()), "utf-8")
    os.replace(tmp, venv / ".complete")
    _say(f"installed in {seconds:.0f} s ({size / 1e9:.1f} GB) -> {exe}")


if __name__ == "__main__":
    print(python(build=True))
