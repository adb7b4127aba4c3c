"""Gemma 3 chat templates: Google's official Jinja template and the Ollama Go TEMPLATE.

Both are package data (``gemma3_pack/data``), loaded with importlib.resources.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["LICENSE_NOTICE", "OFFICIAL_TEMPLATE", "OLLAMA_TEMPLATE", "data_text"]


@cache
def data_text(name: str) -> str:
    """A text file shipped in ``gemma3_pack/data``, byte for byte (no newline translation)."""
    return resources.files("gemma3_pack").joinpath("data", name).read_bytes().decode("utf-8")


OFFICIAL_TEMPLATE: str = data_text("gemma3.jinja")
OLLAMA_TEMPLATE: str = data_text("gemma3.gotmpl")
LICENSE_NOTICE: str = data_text("LICENSE").strip()
