"""``gemma3-pack modelfile``: write an Ollama Modelfile for a variant or a GGUF, or lint one."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ._json import dumps

F = TypeVar("F", bound=Callable[..., Any])


def _is_path(target: str) -> bool:
    """A GGUF path rather than a variant (variants may contain "/", e.g. google/gemma-3-4b-it);
    a folder named like a variant (an HF checkout, an export's -o) means the variant."""
    if target.lower().endswith(".gguf"):
        return True
    path = Path(target)
    if not path.exists():
        return False
    if path.is_dir():
        from .._errors import UsageError
        from .._family import get_variant

        try:
            get_variant(target)
        except UsageError:
            return True  # a folder that names nothing: the library says it is not a GGUF
        return False
    return True


def num_ctx_arg(value: str | None) -> int | str | None:
    """``--num-ctx``'s text: a number of tokens as an int; ``auto`` (and anything the library will
    refuse with its own message) as given."""
    if value is None or value.strip().lower() == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        return value


def budget_options(command: F) -> F:
    """``--memory`` and ``--gpu``: the budget ``--num-ctx auto`` plans against (modelfile, create)."""
    command = click.option(
        "--gpu",
        multiple=True,
        metavar="SIZE|NAME",
        help="For --num-ctx auto: the GPU(s) it must fit, every layer offloaded (24GB, rtx4090).",
    )(command)
    return click.option(
        "--memory", default=None, help="Memory budget for --num-ctx auto (16GB, 12GiB)."
    )(command)


@click.command()
@click.argument("target", required=False)
@click.argument("mmproj", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the Modelfile here (atomically) instead of printing it.",
)
@click.option(
    "--force", is_flag=True, help="Overwrite an existing -o file (--all: hand-edited Modelfiles)."
)
@click.option("--system", default=None, help="A default system prompt (SYSTEM).")
@click.option(
    "--num-ctx",
    default=None,
    help="Context length in tokens (num_ctx), or `auto`: the largest that fits --memory.",
)
@budget_options
@click.option(
    "--check",
    "check",
    type=click.Path(path_type=Path),
    default=None,
    help="Lint this Modelfile instead; exit 1 when it has errors.",
)
@click.option(
    "--all",
    "all_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="(Re)generate one Modelfile per published variant in this folder.",
)
@click.option(
    "--tools",
    is_flag=True,
    help="Use the TEMPLATE with tool calling: Ollama accepts `tools` and returns the calls as tool_calls.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def modelfile(
    target: str | None,
    mmproj: Path | None,
    output: Path | None,
    force: bool,
    system: str | None,
    num_ctx: str | None,
    memory: str | None,
    gpu: tuple[str, ...],
    check: Path | None,
    all_dir: Path | None,
    tools: bool,
    as_json: bool,
) -> None:
    """Write an Ollama Modelfile for a Gemma 3 variant or GGUF, or lint one.

    TARGET is a variant (gemma3-4b-it, gemma3:12b, gemma3-1b-it-qat) or a local GGUF; give the
    vision projector (mmproj) as a second path. The Modelfile carries our Gemma 3 TEMPLATE
    (renders exactly what Google's chat template renders), the Gemma team's sampling settings,
    stop "<end_of_turn>" and the license. GGUFs inside -o's folder are written as ./name
    (Ollama resolves them against the Modelfile's folder), others as absolute paths.

    \b
    Examples:
      gemma3-pack modelfile gemma3-4b-it -o Modelfile && ollama create my-gemma -f Modelfile
      gemma3-pack modelfile model.gguf mmproj-model-F16.gguf -o Modelfile --num-ctx 8192
      gemma3-pack modelfile gemma3:1b --system "Answer in French."
      gemma3-pack modelfile gemma3-12b-it --num-ctx auto --memory 16GB -o Modelfile
      gemma3-pack modelfile gemma3-27b-it --num-ctx auto --gpu rtx4090
      gemma3-pack modelfile gemma3-4b-it --tools -o Modelfile   # accepts Ollama's `tools`
      gemma3-pack modelfile --check Modelfile            # exit 1 on errors
      gemma3-pack modelfile --check Modelfile --json
      gemma3-pack modelfile --all modelfiles             # regenerate modelfiles/
    """
    from .. import _modelfile as mf
    from .._errors import UsageError

    modes = sum(x is not None for x in (target, check, all_dir))
    if modes != 1:
        raise UsageError(
            "give exactly one of TARGET (a variant or GGUF path), --check FILE or "
            "--all DIR (see gemma3-pack modelfile --help)"
        )

    if tools and target is None:
        raise UsageError("--tools goes with TARGET (a variant or GGUF path)")

    if check is not None:
        findings = mf.check_modelfile(check)
        if as_json:
            click.echo(dumps(mf.findings_dict(check, findings), indent=2))
        else:
            click.echo(mf.findings_text(check, findings))
        if any(f.level == "error" for f in findings):
            sys.exit(1)
        return

    if all_dir is not None:
        paths = mf.write_variant_modelfiles(all_dir, force=force)
        if as_json:
            click.echo(dumps([str(p) for p in paths], indent=2))
        else:
            for p in paths:
                click.echo(f"wrote {p}")
        return

    assert target is not None
    if output is not None:
        from .._files import refuse_overwrite

        refuse_overwrite(output, force=force)
    ctx, gpus = num_ctx_arg(num_ctx), list(gpu) or None
    if _is_path(target) or mmproj is not None:
        spec = mf.spec_for_gguf(
            target,
            mmproj,
            system=system,
            num_ctx=ctx,
            memory=memory,
            gpu=gpus,
            relative_to=output.parent if output is not None else None,
            tools=tools,
        )
    else:
        spec = mf.spec_for_variant(
            target, system=system, num_ctx=ctx, memory=memory, gpu=gpus, tools=tools
        )
    text = mf.render_modelfile(spec)
    if output is not None:
        mf.write_modelfile(spec, output)
    if as_json:
        click.echo(
            dumps(
                {
                    "path": str(output) if output else None,
                    "modelfile": text,
                    "spec": spec.to_dict(),
                },
                indent=2,
            )
        )
    elif output is not None:
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
