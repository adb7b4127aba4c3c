"""Progress bars: one bar, one policy for when it shows.

A bar shows when the caller asked for progress (``progress=True``) **and** stderr is a terminal.
Otherwise :func:`progress_bar` returns a
:class:`NoBar` and tqdm is not even imported, so piped output, CI logs and ``--json`` stay clean.
Bars draw on stderr, never stdout.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["NoBar", "progress_bar", "shows_progress"]


class NoBar:
    """A bar that draws nothing (the same methods tqdm's bars are used with here)."""

    n = 0

    def __enter__(self) -> NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int | float = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def shows_progress(progress: bool) -> bool:
    """The one policy: asked for, and stderr is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(progress and isatty is not None and isatty())


def progress_bar(
    total: int, desc: str, *, progress: bool, unit: str = "B", leave: bool = False
) -> Any:
    """A tqdm bar on stderr (``unit="B"``: bytes, scaled by 1024) or a :class:`NoBar`."""
    if not shows_progress(progress):
        return NoBar()
    from tqdm import tqdm

    in_bytes = unit == "B"
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=in_bytes,
        unit_divisor=1024 if in_bytes else 1000,
        file=sys.stderr,
        leave=leave,
    )
