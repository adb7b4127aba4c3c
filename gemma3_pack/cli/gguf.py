"""``gemma3-pack patch`` and ``gemma3-pack inspect``: thin shells over the GGUF converter."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._json import dumps


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "dst",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the patched GGUF [default: <stem>.gemma3.gguf beside the input].",
)
@click.option(
    "--in-place", is_flag=True, help="Replace the input (atomically: temp file + rename)."
)
@click.option("--name", default=None, help="Also set general.name.")
@click.option("--description", default=None, help="Also set general.description.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar, no summary (errors still print)."
)
@click.option(
    "--tools/--no-tools",
    default=None,
    help="Write the chat template with tool calling (calls as JSON in <tool_call> tags, which "
    "llama-server --jinja and Ollama turn into tool_calls) / Google's. Default: keep whichever "
    "of the two the file has, else Google's.",
)
def patch(
    src: Path,
    dst: Path | None,
    in_place: bool,
    name: str | None,
    description: str | None,
    force: bool,
    as_json: bool,
    quiet: bool,
    tools: bool | None,
) -> None:
    """Write Gemma 3's chat template and sampling settings into a GGUF.

    Adds Google's official chat template, general.sampling.* (temp 1, top_k 64, top_p 0.95,
    min_p 0, repeat penalty 1), tokenizer.ggml.eot_token_id 106 when missing, and repairs
    <start_of_turn>/<end_of_turn> typed NORMAL by a bad export. Every other key and every tensor
    byte is kept; the tensor data is copied by the kernel, so this takes about as long as `cp`.
    For a Gemma 3 mmproj only --name/--description apply. Running it twice changes nothing.

    \b
    Examples:
      gemma3-pack patch gemma-3-270m-q4_k_m.gguf            # -> gemma-3-270m-q4_k_m.gemma3.gguf
      gemma3-pack patch model.gguf -o fixed/model.gguf --name "My Gemma 3"
      gemma3-pack patch model.gguf --in-place --json | jq .changes
      gemma3-pack patch model.gguf --tools     # llama-server --jinja returns tool_calls
    """
    from .._gguf import patch_gguf

    progress = not quiet and not as_json and sys.stderr.isatty()
    result = patch_gguf(
        src,
        dst,
        in_place=in_place,
        name=name,
        description=description,
        force=force,
        progress=progress,
        tools=tools,
    )
    if as_json:
        click.echo(dumps(result.to_dict(), indent=2, default=str))
        return
    if not quiet:
        click.echo(result.to_text())


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings or errors.")
def inspect(path: Path, as_json: bool, strict: bool) -> None:
    """Report and lint a Gemma 3 GGUF (model or mmproj).

    Shows the architecture, size, file type and per-tensor type mix, context and sliding window,
    the chat template (missing, Google's official one, or another), sampling keys, special tokens
    and their types, projector details for mmproj files, and findings with the command that fixes
    them. Reads only the header, so it is instant even on a 27B file.

    \b
    Examples:
      gemma3-pack inspect gemma-3-270m-q4_k_m.gguf
      gemma3-pack inspect model.gguf --strict && echo ready
      gemma3-pack inspect mmproj-model-f16.gguf --json | jq .projector
    """
    from .._gguf import inspect_gguf

    report = inspect_gguf(path)
    if as_json:
        click.echo(dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.to_text())
    if strict and not report.ok:
        sys.exit(1)
