"""``plan --rpc`` and ``plan --engine vllm``: the several-machine / several-GPU reports.

Kept beside ``plan.py`` so the command itself stays a thin dispatcher; the library functions are
``gemma3_pack._memory._plan_rpc.plan_rpc`` and ``gemma3_pack._memory._plan_vllm.plan_vllm``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .._errors import UsageError
from .._memory._plan import format_bytes
from ._json import dumps


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.replace("/", ",").split(",") if x.strip()]
    except ValueError:
        raise UsageError(
            f"cannot read --tensor-split {text!r}: give shares like 3,1 (one per RPC host)"
        ) from None


def show_rpc(
    target: str,
    rpc: tuple[str, ...],
    *,
    tensor_split: str | None,
    ngl: int | None,
    rpc_cache: bool,
    as_json: bool,
    **options: Any,
) -> None:
    from .._memory._plan_rpc import plan_rpc

    p = plan_rpc(target, rpc, tensor_split=_floats(tensor_split), ngl=ngl, rpc_cache=rpc_cache,
                 **options)  # fmt: skip
    if as_json:
        click.echo(dumps(p.to_dict(), indent=2))
    else:
        b = p.base
        click.echo(
            f"{b.source} {b.quant} at {b.ctx} tokens over {len(p.hosts)} RPC host(s) "
            f"(-ngl {p.ngl}, -ts {','.join(f'{s:g}' for s in p.tensor_split)}"
            f"{', pipeline parallel' if p.pipeline_parallel else ''})"
        )
        for d in p.devices:
            where = d.endpoint or "main host (llama-server)"
            layers = f"layers {d.layers[0]}-{d.layers[-1]}" if d.layers else "no layers"
            if d.output_layer:
                layers += " + output"
            budget = "" if d.memory is None else f" of {format_bytes(d.memory)}"
            verdict = {True: "fits", False: "DOES NOT FIT", None: ""}[d.fits]
            click.echo(f"  {d.name:5} {where:28} {layers}")
            click.echo(
                f"        weights {format_bytes(d.weights)}, KV {format_bytes(d.kv)}, "
                f"compute {format_bytes(d.compute)}"
                + (f", logits {format_bytes(d.output)}" if d.output else "")
                + (f", mmproj {format_bytes(d.mmproj + d.mmproj_compute)}" if d.mmproj else "")
                + f" = {format_bytes(d.total)}{budget} {verdict}".rstrip()
            )
            if d.cpu_repack:
                click.echo(
                    f"        (+{format_bytes(d.cpu_repack)} on CPU backends that repack "
                    "Q4_0/Q4_K weights; llama-server -nr turns it off)"
                )
        click.echo(f"  largest context that fits every host: {p.max_ctx} tokens")
        click.echo("commands:")
        for where, cmd in p.commands.items():
            label = "main host" if where == "main" else where
            click.echo(f"  # {label}\n  {cmd}")
        click.echo(f"warning: {p.warning}")
        for note in [*b.notes, *p.notes]:
            click.echo(f"note: {note}")
    if not p.fits:
        sys.exit(1)


def show_vllm(
    target: str,
    *,
    gpus: str | None,
    nodes: int,
    tp: int | None,
    pp: int | None,
    utilization: float,
    quant: str | None,
    ctx: int | None,
    kv_type: str,
    vision: bool | None,
    as_json: bool,
) -> None:
    from .._memory._plan_vllm import plan_vllm

    if gpus is None:
        raise UsageError("--engine vllm needs --gpus COUNTxMEMORY, e.g. --gpus 2x24GB")
    p = plan_vllm(
        target,
        gpus,
        nodes=nodes,
        weights=quant or "bf16",
        tensor_parallel=tp,
        pipeline_parallel=pp,
        gpu_memory_utilization=utilization,
        max_model_len=ctx,
        kv_cache_dtype="auto" if kv_type.lower() in ("f16", "bf16") else kv_type,
        vision=vision,
    )
    if p.problems:
        raise UsageError(
            f"vLLM would refuse --tensor-parallel-size {p.tensor_parallel} for {p.source}: "
            + "; ".join(p.problems)
        )
    if as_json:
        click.echo(dumps(p.to_dict(), indent=2))
    else:
        layout = f"TP {p.tensor_parallel} x PP {p.pipeline_parallel}"
        click.echo(
            f"{p.source} ({p.weights_kind}) on {p.gpus} x {format_bytes(p.gpu_memory)}"
            f"{f' over {p.nodes} nodes' if p.nodes > 1 else ''}, {layout}, "
            f"--gpu-memory-utilization {p.gpu_memory_utilization:g} ({p.basis})"
        )
        w = p.weights_per_gpu
        click.echo(
            f"  weights per GPU: bf16 {format_bytes(w['bf16'])}, int4 QAT/AWQ "
            f"{format_bytes(w['int4'])}" + (" (with SigLIP)" if p.vision else "")
        )
        for s in p.stages:
            click.echo(
                f"  stage {s.index}: layers {s.layers[0]}-{s.layers[1] - 1}, weights "
                f"{format_bytes(s.weights)}, activations ~{format_bytes(s.activations)}, "
                f"KV {format_bytes(s.kv)} per GPU"
            )
        click.echo(
            f"  KV: {p.kv_groups} groups of {p.group_size} layers, page {p.page_size} B; "
            f"{p.kv_bytes_per_token} B/token/GPU past the window "
            f"({p.kv_bytes_per_token_all_global} if every layer were global)"
        )
        click.echo(
            f"  GPU KV cache size: {p.kv_cache_tokens} tokens; largest --max-model-len "
            f"{p.largest_max_model_len}; {p.max_concurrency}x concurrency at {p.max_model_len}"
        )
        click.echo("commands:")
        for cmd in p.commands:
            click.echo(f"  {cmd}")
        for note in p.notes:
            click.echo(f"note: {note}")
    if not p.fits:
        sys.exit(1)


__all__ = ["show_rpc", "show_vllm"]
