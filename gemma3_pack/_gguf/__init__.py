"""The GGUF metadata converter: patch Gemma 3 GGUFs in place of their metadata, inspect and lint them.

``patch_gguf`` rewrites only the header (template, sampling, EOT, turn-token types) and lets the
kernel copy the tensor data; ``inspect_gguf`` reads only the header and reports what llama.cpp,
LM Studio and phone apps will see.
"""

from __future__ import annotations

from ._inspect import Finding, GGUFReport, inspect_gguf
from ._patch import Change, PatchResult, patch_gguf

__all__ = ["Change", "Finding", "GGUFReport", "PatchResult", "inspect_gguf", "patch_gguf"]
