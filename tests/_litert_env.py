"""The ``[litert]`` stack for the LiteRT-LM tests: its own venv in the tests' cache.

litert-torch, litert-lm-api and their pins (pyproject's ``[litert]`` extra: torch 2.13, transformers
5.25, jax, ...) take ~6 GB and must not be mixed into the test venv, so they live in
``~/.cache/gemma3-pack-tests/litert-venv`` (``GEMMA3_PACK_TEST_CACHE``), and the exporter is pointed
at it with ``GEMMA3_PACK_LITERT_PYTHON``, exactly as a user with a separate venv would.

    python tests/_litert_env.py      # build it (pip, ~6 min cold; measured on 2 cores)

The tests never build it: without it they are skipped with that command as the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import _assets

ROOT = Path(__file__).resolve().parent.parent


def venv_dir() -> Path:
    return _assets.CACHE / "litert-venv"


def pins() -> list[str]:
    """The ``[litert]`` extra of pyproject.toml (exact pins)."""
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    block = re.search(r"^litert = \[(.*?)^\]", text, re.S | re.M)
    if block is None:
        raise RuntimeError("pyproject.toml has no [litert] extra")
    return re.findall(r'"([^"]+)"', block.group(1))


def python() -> Path | None:
    """The Python of the stack: ``GEMMA3_PACK_LITERT_PYTHON`` or the cached venv, if it has the
    pinned packages (a marker file written after a complete install)."""
    env = os.environ.get("GEMMA3_PACK_LITERT_PYTHON")
    if env:
        return Path(env)
    marker = venv_dir() / ".complete"
    exe = venv_dir() / "bin" / "python"
    if exe.is_file() and marker.is_file() and marker.read_text("utf-8") == "\n".join(pins()):
        return exe
    return None


def build() -> Path:
    venv = venv_dir()
    if not (venv / "bin" / "python").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    exe = venv / "bin" / "python"
    subprocess.run(
        [str(exe), "-m", "pip", "install", "--disable-pip-version-check", *pins()], check=True
    )
    (venv / ".complete").write_text("\n".join(pins()), "utf-8")
    return exe


if __name__ == "__main__":
    print(build())
