"""``--json`` output that is always valid JSON (RFC 8259 has no NaN or Infinity).

Values read from a foreign file (a GGUF's ``general.sampling.temp`` stored as NaN) reach the
reports as they are; ``json.dumps`` would print a bare ``NaN`` that ``jq`` and JavaScript reject.
Non-finite floats become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps"]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` with non-finite floats spelled as strings; refuses to print bare NaN."""
    return json.dumps(_finite(value), allow_nan=False, **kwargs)
