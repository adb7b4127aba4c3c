"""``gemma3-pack doctor``: is this Gemma 3 GGUF right? Check it (and its projector), fix a copy."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._json import dumps


def _is_litertlm(path: Path) -> bool:
    """A LiteRT-LM bundle, by name or by its magic (``LITERTLM``)."""
    if path.suffix.lower() == ".litertlm":
        return True
    try:
        if not path.is_file():  # never open a FIFO or device just to look
            return False
        with open(path, "rb") as fh:
            return fh.read(8) == b"LITERTLM"
    except OSError:
        return False


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.argument("mmproj", required=False, type=click.Path(path_type=Path))
@click.option("--fix", "do_fix", is_flag=True, help="Write a corrected copy to -o (header only).")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=None, help="Where --fix writes."
)
@click.option(
    "--split",
    is_flag=True,
    help="Split an Ollama-layout fused GGUF into -o (text) and an mmproj beside it.",
)
@click.option("--fuse", is_flag=True, help="Fuse PATH + MMPROJ into Ollama's one-file layout (-o).")
@click.option(
    "--mmproj-out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where --split writes the projector (default: mmproj-<text name> beside -o).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing -o file.")
@click.option("--rules", is_flag=True, help="Print every rule doctor checks (markdown) and exit.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(
    path: Path | None,
    mmproj: Path | None,
    do_fix: bool,
    output: Path | None,
    split: bool,
    fuse: bool,
    mmproj_out: Path | None,
    force: bool,
    rules: bool,
    as_json: bool,
) -> None:
    """Check a Gemma 3 GGUF (and its mmproj) against the family's facts; fix a copy.

    Every rule has a code, a level and, where the header can carry the fix, a fix: missing or
    unofficial chat template, turn tokens not CONTROL, EOS/EOT ids, add_bos, rope scaling on the
    global layers (linear x8 for 4B+, none for 270M/1B), sliding window and pattern, context
    length, vocabulary size, general.name/basename, sampling keys, the embedding's type, file
    names apps parse, Ollama's fused vision layout, and whether a text GGUF and a projector
    belong together. --fix -o OUT writes the corrected copy (tensors copied byte for byte,
    input untouched) and checks it again. Exit 1 when errors or warnings remain.

    \b
    Examples:
      gemma3-pack doctor model.gguf
      gemma3-pack doctor model.gguf mmproj-model-f16.gguf --json
      gemma3-pack doctor model.gguf --fix -o model.fixed.gguf
      gemma3-pack doctor fused.gguf --split -o gemma-3-4b-it-Q4_K_M.gguf
      gemma3-pack doctor text.gguf mmproj-text.gguf --fuse -o ollama-fused.gguf
      gemma3-pack doctor --rules                      # the rule table (markdown)
      gemma3-pack doctor my-gemma-int8.litertlm       # LiteRT-LM / AI Edge Gallery bundle
    """
    from .._errors import UsageError
    from .._lint._doctor import doctor_gguf
    from .._rules import rules_markdown

    if rules:
        click.echo(rules_markdown())
        return
    if path is None:
        raise UsageError("give a GGUF to check (see gemma3-pack doctor --help)")
    if _is_litertlm(path):
        from .._lint._litertlm_doctor import doctor_litertlm

        if mmproj is not None or do_fix or split or fuse or output is not None:
            raise UsageError(
                "a .litertlm is checked alone (no MMPROJ, --fix, --split, --fuse or -o): nothing "
                "in it can be patched; re-export with gemma3-pack export CKPT --format litertlm"
            )
        lite = doctor_litertlm(path)
        click.echo(dumps(lite.to_dict(), indent=2) if as_json else lite.to_text())
        if not lite.ok:
            sys.exit(1)
        return
    if do_fix + split + fuse > 1:
        raise UsageError("choose one of --fix, --split and --fuse")
    writes = do_fix or split or fuse
    if writes and output is None:
        raise UsageError("--fix/--split/--fuse need -o OUT: doctor never modifies its input")
    if output is not None and not writes:
        raise UsageError("-o goes with --fix, --split or --fuse (doctor only writes copies)")
    if split or fuse:
        from .._gguf._layout import fuse_pair, split_fused

        assert output is not None
        if split:
            if mmproj is not None:
                raise UsageError("--split takes one fused GGUF (the projector is written)")
            mm_out = mmproj_out or output.parent / f"mmproj-{output.name}"
            split_fused(path, output, mm_out, force=force)
            report = doctor_gguf(output, mm_out)
        else:
            if mmproj is None:
                raise UsageError("--fuse needs the text GGUF and its MMPROJ")
            fuse_pair(path, mmproj, output, force=force)
            report = doctor_gguf(output)
        if as_json:
            click.echo(dumps(report.to_dict(), indent=2))
        else:
            click.echo(f"wrote {output}" + (f" and {mm_out}" if split else ""))
            click.echo(report.to_text())
        # written, but the check of what was written found errors (other than the fused layout
        # that --fuse was asked to make): exit 1, as doctor does without --split/--fuse
        made = {"fused-vision"} if fuse else set()
        if any(f.level == "error" and f.code not in made for f in report.findings):
            sys.exit(1)
        return
    report = doctor_gguf(path, mmproj, fix=output if do_fix else None, force=force)
    if as_json:
        click.echo(dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.to_text())
    final = report.after if report.after is not None else report
    if not final.ok:
        sys.exit(1)
