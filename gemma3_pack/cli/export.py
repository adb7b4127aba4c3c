"""``gemma3-pack export``: a thin shell over :func:`gemma3_pack.export`."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import ExportOptions
from ._json import dumps

F = TypeVar("F", bound=Callable[..., Any])


def _flag(f: dataclasses.Field[Any]) -> Callable[[F], F]:
    """One ``click.option`` from an :class:`~gemma3_pack.ExportOptions` field and its metadata."""
    meta = f.metadata
    flags = meta["flags"] or ("--" + f.name.replace("_", "-"),)
    kw: dict[str, Any] = {"default": f.default, "help": meta["help"]}
    if "choices" in meta:
        kw["type"] = click.Choice(meta["choices"], case_sensitive=meta.get("case_sensitive", True))
    elif meta.get("path"):
        kw["type"] = click.Path(path_type=Path)
    if f.default is False:
        kw["is_flag"] = True
    for key in ("metavar", "show_default"):
        if key in meta:
            kw[key] = meta[key]
    return click.option(*flags, f.name, **kw)


def _export_options(command: F) -> F:
    """Every ExportOptions field as a flag, in declaration order (click lists the first added
    last, so they are applied in reverse)."""
    for f in reversed(dataclasses.fields(ExportOptions)):
        command = _flag(f)(command)
    return command


@click.command()
@click.argument("source")
@_export_options
@click.option(
    "--format",
    "formats",
    default="gguf",
    show_default=True,
    metavar="gguf|litertlm|gguf,litertlm",
    help="litertlm: a .litertlm for LiteRT-LM / AI Edge Gallery (-q float,int8,int4; default "
    "int8; 270M/1B/4B text), converted by litert-torch: pip install 'gemma3-pack[litert]'.",
)
@click.option(
    "--text-only", is_flag=True, help="litertlm: leave a 4B's vision tower out (text chat only)."
)
@click.option(
    "--litert-cache",
    type=int,
    default=4096,
    show_default=True,
    help="litertlm: KV cache (most tokens of prompt + reply).",
)
@click.option(
    "--litert-prefill",
    type=int,
    default=256,
    show_default=True,
    help="litertlm: prompt tokens per prefill step compiled into the model.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars and no summary (errors still print).")
def export(
    source: str,
    formats: str,
    text_only: bool,
    litert_cache: int,
    litert_prefill: int,
    as_json: bool,
    quiet: bool,
    **fields: Any,
) -> None:
    """Turn a fine-tuned Gemma 3 checkpoint or LoRA adapter into verified GGUFs.

    SOURCE is a Hugging Face checkpoint folder, a PEFT LoRA adapter folder (merged onto its base
    in float32) or an HF repo id (only the needed files are downloaded; gated Gemma repos need
    the licence accepted and `hf auth login`). The output folder gets <name>-<QUANT>.gguf per
    type (tensors byte-identical to llama.cpp's converter for F32/F16/BF16/Q8_0, with Google's
    chat template and sampling settings inside), a Modelfile, export.json, SHA256SUMS and a
    README.md model card. F32/F16/BF16/Q8_0 need no compiler; other types use llama.cpp's
    quantizer: pip install 'gemma3-pack[quantize]'.

    \b
    Examples:
      gemma3-pack export ./my-gemma-finetune                  # default types for its size
      gemma3-pack export ./checkpoint -q Q4_K_M,Q8_0 -o out/ --name my-gemma
      gemma3-pack export ./checkpoint -q Q4_K_M,Q5_K_M,Q6_K,Q8_0,BF16 --eval   # one pass
      gemma3-pack export ./lora-adapter --base google/gemma-3-1b-it -q Q8_0
      gemma3-pack export google/gemma-3-270m-it -q BF16 --json | jq '.models[].path'
      gemma3-pack export ./ft --tokenizer-from google/gemma-3-4b-it   # fine-tune lost tokenizer.model
      gemma3-pack export ./gemma-3-27b-it-int4-awq    # QAT int4 -> Q4_0, repacked bit for bit
      gemma3-pack export ./ft -q Q4_K_M --tools      # tool-calling chat template + Modelfile
      ollama create my-gemma -f my-gemma-finetune-gguf/Modelfile
      gemma3-pack export ./ft --format litertlm -q int8      # AI Edge Gallery / LiteRT-LM
      gemma3-pack export ./ft --format gguf,litertlm -q Q4_0,int8 -o out/
    """
    from .. import export as run_export
    from .._export._litertlm import plan_litertlm, split_formats, write_litertlm
    from .._export._summary import export_dict, export_text

    progress = not quiet and not as_json and sys.stderr.isatty()
    fmts, quants, litert_quants = split_formats(formats, fields["quants"])
    options = ExportOptions(**{**fields, "quants": quants})
    lite_plan = None
    if "litertlm" in fmts:  # every LiteRT-LM check before any GGUF is written
        lite_plan = plan_litertlm(
            source,
            output_dir=options.output_dir,
            quants=litert_quants,
            name=options.name,
            base=options.base,
            tokenizer_from=options.tokenizer_from,
            text_only=text_only,
            cache_length=litert_cache,
            prefill_length=litert_prefill,
            force=options.force,
            progress=progress,
        )
    if lite_plan is not None and fmts == ["litertlm"]:
        only = write_litertlm(lite_plan, progress=progress)
        if as_json:
            click.echo(dumps(only.to_dict(), indent=2))
        elif not quiet:
            click.echo(only.to_text())
        return
    result = run_export(source, options, progress=progress)
    lite = write_litertlm(lite_plan, progress=progress) if lite_plan is not None else None
    if as_json:
        click.echo(dumps(export_dict(result, lite), indent=2))
    elif not quiet:
        click.echo(export_text(result, lite))


@click.command("eval")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--ref",
    "reference",
    type=click.Path(path_type=Path),
    default=None,
    help="The reference GGUF [default: the file with the most bits per weight].",
)
@click.option("--ctx", "n_ctx", type=int, default=512, show_default=True, help="Window size.")
@click.option("--chunks", type=int, default=2, show_default=True, help="Windows to compare.")
@click.option(
    "--text",
    type=click.Path(path_type=Path),
    default=None,
    help="A UTF-8 text file to use instead of the built-in one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_(
    files: tuple[Path, ...],
    reference: Path | None,
    n_ctx: int,
    chunks: int,
    text: Path | None,
    as_json: bool,
) -> None:
    """Measure how much each GGUF loses against a reference (llama-perplexity's KLD protocol).

    Runs a built-in text (prose, code, a chat, JSON, four languages) through llama.cpp on the CPU
    and compares next-token distributions: mean KL divergence, how often the most likely token is
    the same, perplexity, size and bits per weight. The numbers match llama.cpp's own
    `llama-perplexity --kl-divergence` on the same windows.

    \b
    Examples:
      gemma3-pack eval my-gemma-gguf/*.gguf
      gemma3-pack eval --ref g-BF16.gguf g-Q4_K_M.gguf g-Q4_0.gguf --chunks 4
      gemma3-pack eval g-BF16.gguf g-Q4_K_M.gguf --json | jq '.results[].kld'
    """
    from .._export._eval import evaluate

    progress = not as_json and sys.stderr.isatty()
    report = evaluate(
        list(files),
        reference=reference,
        n_ctx=n_ctx,
        chunks=chunks,
        text=text,
        progress=progress,
    )
    click.echo(dumps(report.to_dict(), indent=2) if as_json else report.to_text())
