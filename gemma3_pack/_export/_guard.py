"""Never overwrite what the user did not ask to replace: the export folder check.

``export -o FOLDER`` writes its GGUFs plus ``README.md``, ``Modelfile``, ``SHA256SUMS`` and
``export.json``. Into an existing folder it may replace only what an earlier gemma3-pack export
wrote there (the files its ``export.json`` lists, and those four); anything else with one of
those names — a model card, a hand-written Modelfile — is refused unless ``--force``. The
checkpoint folder itself is never an output: the input is never modified, ``--force`` or not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._errors import OutputError

__all__ = ["OWN_FILES", "check_output_folder"]

OWN_FILES = ("README.md", "Modelfile", "SHA256SUMS", "export.json")


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _names(value: Any, depth: int = 0) -> set[str]:
    """Every file name an earlier export.json mentions (strings that are .gguf names)."""
    if depth > 8:
        return set()
    if isinstance(value, str):
        return {Path(value).name} if value.endswith(".gguf") else set()
    if isinstance(value, dict):
        return set().union(*(_names(v, depth + 1) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_names(v, depth + 1) for v in value))
    return set()


def _written_before(out_dir: Path) -> set[str]:
    """Files an earlier gemma3-pack export wrote into ``out_dir`` (empty if none did)."""
    manifest = out_dir / "export.json"
    try:
        if not manifest.is_file() or manifest.stat().st_size > 16 << 20:
            return set()
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return set()
    if not isinstance(data, dict) or "gemma3_pack" not in data:
        return set()
    return {*OWN_FILES, *_names(data)}


def check_output_folder(out_dir: Path, *, name: str, source: Path | None, force: bool) -> None:
    """Refuse before anything is written; see the module docstring."""
    if source is not None and out_dir.is_dir() and _same_folder(out_dir, source):
        raise OutputError(
            f"{out_dir} is the checkpoint folder itself: the export would overwrite its "
            "README.md and other files; choose another -o (the input is never modified)"
        )
    if force or not out_dir.is_dir():
        return
    ours = _written_before(out_dir)
    clash = sorted(
        entry.name
        for entry in os.scandir(out_dir)
        if entry.name not in ours
        and (
            entry.name in OWN_FILES
            or (entry.name.endswith(".gguf") and entry.name.startswith((f"{name}-", "mmproj")))
        )
    )
    if clash:
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise OutputError(
            f"{out_dir / clash[0]}{more} already exists and was not written by gemma3-pack: "
            "pass --force to replace it, or choose an empty -o folder"
        )
