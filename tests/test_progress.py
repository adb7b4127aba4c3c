"""The one progress policy (gemma3_pack/_progress.py): a bar only when asked for and stderr is a TTY."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Runs in a child so that its stderr can be a pseudo-terminal (pytest's is captured).
CHILD = """
import sys
from gemma3_pack._progress import progress_bar
shown = progress_bar(1 << 20, "demo", progress=True)
with shown as bar:
    bar.update(1 << 20)
    bar.set_postfix_str("tensor", refresh=False)
print(type(shown).__name__, type(progress_bar(1, "demo", progress=False)).__name__)
print("tqdm" in sys.modules)
"""


def _run(stderr_tty: bool) -> tuple[list[str], str]:
    if not stderr_tty:
        p = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout.split(), p.stderr
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        p = subprocess.run(
            [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=follower, text=True
        )
        os.set_blocking(leader, False)
        drawn = b""
        try:
            while chunk := os.read(leader, 1 << 16):
                drawn += chunk
        except BlockingIOError:  # all that the child drew has been read
            pass
    finally:
        os.close(follower)
        os.close(leader)
    assert p.returncode == 0
    return p.stdout.split(), drawn.decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_bar_only_when_asked_and_stderr_is_a_terminal() -> None:
    shown, drawn = _run(stderr_tty=True)
    assert shown == ["tqdm", "NoBar", "True"]
    assert "demo" in drawn and "1.00M" in drawn  # bytes, scaled by 1024 (1 MiB)


def test_no_bar_and_no_tqdm_import_when_stderr_is_not_a_terminal() -> None:
    shown, stderr = _run(stderr_tty=False)
    assert shown == ["NoBar", "NoBar", "False"]
    assert stderr == ""
