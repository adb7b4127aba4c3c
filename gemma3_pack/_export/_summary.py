"""What ``gemma3-pack export`` prints for an :class:`~gemma3_pack.ExportResult` (and the
``.litertlm`` files written beside it): the table of files, the notes and the next command, or
one JSON object. A Python caller gets the same text as the command.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import ExportResult
    from ._litertlm import LiteRTLMExport

__all__ = ["export_dict", "export_text"]


def export_dict(result: ExportResult, litertlm: LiteRTLMExport | None = None) -> dict[str, Any]:
    """``export --json``: the result's ``to_dict()``, with the ``.litertlm`` files and their notes
    joined in when both formats were written."""
    out = result.to_dict()
    if litertlm is not None:
        lite = litertlm.to_dict()
        out["litertlm"] = lite["litertlm"]
        out["notes"] = out["notes"] + lite["notes"]
    return out


def export_text(result: ExportResult, litertlm: LiteRTLMExport | None = None) -> str:
    """``export``'s summary: one row per file written (name, type, size, time), the notes, the
    ``.litertlm`` part if any, and the ``ollama create`` command to run next."""
    rows = [(m.path.name, m.quant, m.size, m.seconds) for m in result.models]
    for extra in (result.mmproj, result.fused):
        if extra is not None:
            rows.append((extra.path.name, extra.quant, extra.size, extra.seconds))
    width = max(len(r[0]) for r in rows)
    lines = [
        f"exported {result.name} ({result.variant or 'Gemma 3'}) -> {result.output_dir}",
        f"{'file':<{width}}  {'type':<7} {'size':>10}  {'time':>7}",
    ]
    lines += [
        f"{fname:<{width}}  {quant:<7} {size / 1e6:>7,.1f} MB  {secs:>6.1f}s"
        for fname, quant, size, secs in rows
    ]
    lines += [f"note: {note}" for note in result.notes]
    if litertlm is not None:
        lines.append(litertlm.to_text())
    # Shell-quoted: a name or folder with spaces or quotes is pasted as one argument each.
    command = ["ollama", "create", result.name, "-f", str(result.modelfile)]
    lines.append("next: " + shlex.join(command))
    return "\n".join(lines)
