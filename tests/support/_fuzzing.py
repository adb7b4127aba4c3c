"""The fuzzers' shared settings (a fixed time budget, no shrinking database) and checks: a fresh\nfolder per example, and only the package's own errors may escape."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from gemma3_pack import Gemma3PackError

# GEMMA3_PACK_FUZZ_EXAMPLES=5000 for a longer local hunt; CI runs the fixed default
MAX_EXAMPLES = int(os.environ.get("GEMMA3_PACK_FUZZ_EXAMPLES", "300"))


FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextmanager
def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gemma3-fuzz-") as tmp:
        yield Path(tmp)


def _own_errors_only(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Gemma3PackError as err:
        text = str(err)
        assert text and "\n" not in text, text  # one line
        assert "Traceback" not in text
