"""A file truncated while it is memory-mapped: one ``error:`` line instead of death by SIGBUS.

The readers map their inputs (GGUF headers, safetensors weights). When another program truncates
a mapped file, the next read of a page past the new end raises SIGBUS in C code, which Python's
``signal`` module cannot handle (its handler only sets a flag and the faulting read re-runs).
So the CLI installs a C-level handler through ctypes: it removes the temp files being written
(:data:`gemma3_pack._files.PENDING`), prints one line and exits with code 2. No unwinding is
possible from there, which is why it never returns. Library callers keep the default behaviour.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from typing import Any

from .._files import PENDING

__all__ = ["MESSAGE", "install"]

MESSAGE = (
    b"error: an input file shrank while it was being read (truncated or replaced by another "
    b"program?): nothing was written; re-run when the file is complete\n"
)
_HANDLER: Any = None  # the ctypes callback must stay alive as long as it is installed


def _on_sigbus(signum: int) -> None:
    for name in list(PENDING):
        with contextlib.suppress(OSError):
            os.unlink(name)
    os.write(2, MESSAGE)
    os._exit(2)


def install() -> bool:
    """Install the handler (Linux and macOS); False where libc cannot be reached."""
    global _HANDLER
    if not hasattr(signal, "SIGBUS") or sys.platform == "win32":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        kind = ctypes.CFUNCTYPE(None, ctypes.c_int)
        _HANDLER = kind(_on_sigbus)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = [ctypes.c_int, kind]
        libc.signal(int(signal.SIGBUS), _HANDLER)
    except (OSError, AttributeError):
        return False
    return True
