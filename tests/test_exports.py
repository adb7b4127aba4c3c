"""The public front door: __all__ is exactly what resolves, and importing stays light."""

from __future__ import annotations

import subprocess
import sys

import gemma3_pack


def test_all_names_resolve() -> None:
    for name in gemma3_pack.__all__:
        assert getattr(gemma3_pack, name) is not None, name


def test_all_is_sorted_and_unique() -> None:
    assert len(set(gemma3_pack.__all__)) == len(gemma3_pack.__all__)


def test_import_and_help_do_not_load_heavy_modules() -> None:
    code = (
        "import sys, gemma3_pack, gemma3_pack.cli as c;"
        "from click.testing import CliRunner;"
        "r = CliRunner().invoke(c.cli, ['--help']); assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('numpy', 'gguf', 'llama_cpp', 'ollama', 'torch', 'jinja2') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
