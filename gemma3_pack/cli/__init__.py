"""The ``gemma3-pack`` command: a thin shell over the library.

Each command lives in its own module and is imported only when it runs, so ``gemma3-pack --help``
stays fast. Library errors become one line on stderr and exit code 2 at exactly one place
(:func:`main`); ``GEMMA3_PACK_DEBUG=1`` re-raises them with the traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
from typing import Any

import click

from .._errors import Gemma3PackError
from .._inputs import printable
from .._version import __version__

# command name -> (module, attribute, one-line help shown in `gemma3-pack --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "demo",
        "demo",
        "Patch the real Gemma 3 270M GGUF, write its Modelfile, run it through llama.cpp and Ollama.",
    ),
    "variants": (
        "variants",
        "variants",
        "List the Gemma 3 family: sizes, context, vision, tags, quants.",
    ),
    "modelfile": (
        "modelfile",
        "modelfile",
        "Write an Ollama Modelfile for a variant or GGUF, or lint one.",
    ),
    "patch": ("gguf", "patch", "Write Gemma 3's chat template and sampling settings into a GGUF."),
    "inspect": (
        "gguf",
        "inspect",
        "Report and lint a Gemma 3 GGUF (template, sampling, tokens, mmproj).",
    ),
    "export": ("export", "export", "Turn a fine-tuned HF checkpoint or LoRA into verified GGUFs."),
    "eval": ("export", "eval_", "Measure quantized GGUFs against their float one (KLD, top-1)."),
    "chat": ("ollama", "chat", "Chat with a Gemma 3 model on the local Ollama daemon."),
    "pull": ("ollama", "pull", "Pull a Gemma 3 model into Ollama, with a progress bar."),
    "create": ("ollama", "create", "Create an Ollama model from an export folder or a variant."),
    "doctor": (
        "doctor",
        "doctor",
        "Check a Gemma 3 GGUF (+ mmproj); fix, split or fuse a copy.",
    ),
    "plan": (
        "plan",
        "plan",
        "Will it fit? The memory a variant or GGUF needs per context.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr, _ = entry
        cmd = getattr(importlib.import_module(f".{module}", __name__), attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="gemma3-pack")
def cli() -> None:
    """Run and ship Google's Gemma 3 on Ollama and llama.cpp.

    \b
    Examples:
      gemma3-pack demo                          # the real 270M GGUF, patched and chatted with
      gemma3-pack modelfile gemma3-4b-it -o Modelfile && ollama create my-gemma -f Modelfile
      gemma3-pack patch model.gguf -o model.patched.gguf
      gemma3-pack inspect model.gguf --strict
      gemma3-pack export ./checkpoint -q Q4_K_M,Q8_0
      gemma3-pack chat gemma3:4b "Describe this" --image cat.png
      gemma3-pack chat gemma-3-4b-it "Hi" --host http://gpu-box:8080/v1   # llama-server / vLLM
      gemma3-pack plan gemma3-12b-it --memory 16GB   # largest context that fits
      gemma3-pack doctor model.gguf --fix -o model.fixed.gguf

    Set GEMMA3_PACK_DEBUG=1 to see tracebacks.
    """


# The start of the message for an exception no layer translated: a bug, never a user error. The
# bad-input corpus (tests/test_hostile.py) fails when it ever sees this text.
UNEXPECTED = "internal error (a bug in gemma3-pack, please report it)"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so everything unwinds as on Ctrl-C (temp files removed)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def _one_line(text: str, limit: int = 300) -> str:
    line = printable(" ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the console script; returns only when ``standalone_mode`` is off."""
    debug = bool(os.environ.get("GEMMA3_PACK_DEBUG"))
    with contextlib.suppress(ValueError):  # not the main thread (an embedding caller)
        signal.signal(signal.SIGTERM, _on_sigterm)
    from ._sigbus import install

    install()
    try:
        return cli.main(args=argv, prog_name="gemma3-pack", standalone_mode=False)
    except Gemma3PackError as err:
        if debug:
            raise
        msg = str(err)
        if "\n" in msg or "\r" in msg:
            msg = _one_line(msg, 2000)
        click.echo(f"error: {printable(msg)}", err=True)
        sys.exit(2)
    except click.exceptions.Abort as err:
        if isinstance(err.__cause__, Terminated):
            click.echo("terminated", err=True)
            sys.exit(143)
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as err:  # one line, like every other error (click prints four)
        ctx = err.ctx
        hint = f": see `{ctx.command_path} --help`" if ctx is not None else ""
        click.echo(f"error: {_one_line(err.format_message()).removesuffix('.')}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as err:
        click.echo(f"error: {_one_line(err.format_message())}", err=True)
        sys.exit(2 if err.exit_code in (1, 2) else err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except Terminated:
        click.echo("terminated", err=True)
        sys.exit(143)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as err:  # the environment (permissions, I/O), not the input's content
        if debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        click.echo(f"error: {where}{_one_line(err.strerror or str(err))}", err=True)
        sys.exit(2)
    except Exception as err:  # the last resort: one line, never a traceback
        if debug:
            raise
        what = _one_line(f"{type(err).__name__}: {err}")
        click.echo(
            f"error: {UNEXPECTED}: {what}; GEMMA3_PACK_DEBUG=1 shows the traceback", err=True
        )
        sys.exit(2)
