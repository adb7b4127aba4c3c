"""``plan --gpu``: the per-device report for one machine's GPUs (llama.cpp's CUDA placement).

Kept beside ``plan.py`` so the command stays a dispatcher; the library functions are
``gemma3_pack._memory._plan_gpu.plan_gpu`` and ``fit_gpus``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .._memory._plan import format_bytes
from ._json import dumps


def show_gpu(
    target: str,
    gpus: tuple[str, ...],
    *,
    tensor_split: list[float] | None,
    ngl: int | None,
    as_json: bool,
    **options: Any,
) -> None:
    from .._memory._plan_gpu import GPU_RESERVE, plan_gpu

    p = plan_gpu(target, list(gpus), tensor_split=tensor_split, ngl=ngl, **options)
    if as_json:
        click.echo(dumps(p.to_dict(), indent=2))
        if not p.fits:
            sys.exit(1)
        return
    b = p.base
    seqs = f"{b.parallel} sequence{'s' if b.parallel > 1 else ''}"
    how = "the most that fit" if p.ngl_auto else "as given"
    click.echo(
        f"{b.source} {b.quant} at {b.ctx} tokens on {len(p.gpus)} GPU(s) with llama.cpp "
        f"(n_ctx {b.n_ctx}, {seqs}, -ngl {p.ngl}: {how})"
    )
    for d in p.devices:
        if d.memory is None:
            head = f"  {'host':6} system RAM"
        else:
            verdict = "fits" if d.fits else "DOES NOT FIT"
            head = (
                f"  {d.name:6} {format_bytes(d.total)} of {format_bytes(d.memory)} "
                f"(keeping {format_bytes(GPU_RESERVE)} free): {verdict}"
            )
        layers = f"layers {d.layers[0]}-{d.layers[-1]}" if d.layers else "no layers"
        if d.output_layer:
            layers += " + output"
        click.echo(f"{head}; {layers}")
        rows = [
            ("weights", d.weights),
            ("KV cache", d.kv),
            ("compute", d.compute),
            ("output", d.output),
            ("mmproj", d.mmproj),
            ("image encoder", d.mmproj_compute),
        ]
        for label, n in rows:
            if n:
                click.echo(f"      {label:14} {format_bytes(n):>11}")
        click.echo(f"      {'total':14} {format_bytes(d.total):>11}")
    if p.max_ctx:
        click.echo(f"  largest context with -ngl {p.ngl}: {p.max_ctx} tokens")
    else:
        click.echo(f"  does not fit with -ngl {p.ngl} even at 256 tokens")
    click.echo("  run: " + p.commands["llama-server"])
    click.echo("  Modelfile: " + p.commands["modelfile"].replace("\n", "; "))
    for note in [*b.notes, *p.notes]:
        click.echo(f"  note: {note}")
    if not p.fits:
        sys.exit(1)


def show_gpu_fit(
    gpus: tuple[str, ...], target: str | None, *, quant: str | None, min_ctx: int, as_json: bool,
    **options: Any,
) -> None:  # fmt: skip
    from .._memory._plan_gpu import fit_gpus

    fits = fit_gpus(list(gpus), target, quant=quant, min_ctx=min_ctx, **options)
    if as_json:
        click.echo(dumps([f.to_dict() for f in fits], indent=2))
    else:
        cards = " + ".join(format_bytes(g) for g in fits[0].gpus)
        click.echo(f"every layer on {cards} (keeping 1 GiB free per card)")
        for f in fits:
            if f.quant is None:
                click.echo(f"  {f.variant:24} does not fit at {min_ctx} tokens")
            else:
                click.echo(
                    f"  {f.variant:24} {f.quant:7} up to {f.max_ctx:>6} tokens "
                    f"({format_bytes(f.total)} on the GPUs)"
                )
    if target is not None and fits[0].quant is None:
        sys.exit(1)
