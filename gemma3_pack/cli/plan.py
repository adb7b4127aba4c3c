"""``gemma3-pack plan``: will it fit? Weights, KV cache, compute and vision memory, before loading."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._errors import UsageError
from ._json import dumps

if TYPE_CHECKING:
    from .._memory._plan_vllm import VllmPlan


@click.command()
@click.argument("target", required=False)
@click.option("-q", "--quant", default=None, help="File type of a variant (default: its default).")
@click.option("--ctx", type=int, default=None, help="Context length in tokens (default 4096).")
@click.option(
    "--parallel", type=int, default=1, show_default=True, help="Sequences served at once."
)
@click.option(
    "--kv-type",
    default="f16",
    show_default=True,
    help="KV cache type (llama.cpp -ctk/-ctv, OLLAMA_KV_CACHE_TYPE): f16, q8_0, q4_0, ...",
)
@click.option(
    "--swa-full", is_flag=True, help="Full-size cache on sliding layers (llama.cpp --swa-full)."
)
@click.option(
    "--kv-unified", is_flag=True, help="One cache shared by all sequences (llama.cpp -kvu)."
)
@click.option("--no-flash-attn", is_flag=True, help="Plan for flash attention off (-fa off).")
@click.option(
    "--mmproj",
    type=click.Path(path_type=Path),
    default=None,
    help="The vision projector GGUF to count exactly (with a text GGUF).",
)
@click.option("--no-vision", is_flag=True, help="Leave the projector out (text only).")
@click.option(
    "--engine",
    default="llama.cpp",
    show_default=True,
    help="Whose allocations to plan: llama.cpp's (llama-server, llama-cpp-python), Ollama's or "
    "vllm (with --gpus).",
)
@click.option(
    "--memory", default=None, help="A budget (24GB, 16GiB): largest context / best quant that fit."
)
@click.option(
    "--rpc",
    multiple=True,
    metavar="HOST:PORT=MEM,...",
    help="Split over ggml-rpc-server hosts (llama.cpp RPC): each host's bytes and commands.",
)
@click.option("--rpc-cache", is_flag=True, help="With --rpc: ggml-rpc-server -c (local cache).")
@click.option("--tensor-split", default=None, help="With --rpc/--gpu: shares per device (-ts 3,1).")
@click.option(
    "--gpu",
    "gpu",
    multiple=True,
    metavar="SIZE|NAME",
    help="A GPU of this machine (24GB, 80GiB, rtx4090, a100-80gb, h100); repeat for several: "
    "llama.cpp's CUDA placement per device.",
)
@click.option(
    "--ubatch", type=int, default=512, show_default=True, help="Micro-batch (-ub) in tokens."
)
@click.option(
    "--no-mmproj-offload", is_flag=True, help="With --gpu: the projector stays on the CPU."
)
@click.option(
    "--ngl", type=int, default=None, help="Layers to offload (-ngl; default: all that fit)."
)
@click.option("--gpus", default=None, help="With --engine vllm: COUNTxMEMORY, e.g. 2x24GB.")
@click.option("--nodes", type=int, default=1, show_default=True, help="vLLM: machines.")
@click.option("--tp", type=int, default=None, help="vLLM --tensor-parallel-size.")
@click.option("--pp", type=int, default=None, help="vLLM --pipeline-parallel-size.")
@click.option(
    "--gpu-memory-utilization", type=float, default=0.9, show_default=True, help="vLLM's."
)
@click.option("--markdown", is_flag=True, help="Print the whole family table (the README's).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan(
    target: str | None,
    quant: str | None,
    ctx: int | None,
    parallel: int,
    kv_type: str,
    swa_full: bool,
    kv_unified: bool,
    no_flash_attn: bool,
    mmproj: Path | None,
    no_vision: bool,
    engine: str,
    memory: str | None,
    rpc: tuple[str, ...],
    rpc_cache: bool,
    tensor_split: str | None,
    gpu: tuple[str, ...],
    ubatch: int,
    no_mmproj_offload: bool,
    ngl: int | None,
    gpus: str | None,
    nodes: int,
    tp: int | None,
    pp: int | None,
    gpu_memory_utilization: float,
    markdown: bool,
    as_json: bool,
) -> None:
    """Plan the memory llama.cpp (and Ollama) allocate for a Gemma 3 variant or GGUF.

    TARGET is a variant (gemma3-4b-it, gemma3:12b, 27b) or a local GGUF, whose weights are then
    counted exactly from its tensor table. The KV cache is computed per layer with Gemma 3's
    sliding window (five of six layers keep only 512/1024 tokens), as llama.cpp sizes it.
    With --memory, prints the largest context that fits (TARGET given) or, for every variant,
    the best quant and its largest context.

    \b
    Examples:
      gemma3-pack plan gemma3-4b-it --ctx 32768
      gemma3-pack plan model.gguf --mmproj mmproj-model-f16.gguf --ctx 8192 --parallel 2
      gemma3-pack plan gemma3:27b -q Q4_K_M --kv-type q8_0 --ctx 131072 --json
      gemma3-pack plan gemma3:12b --engine ollama --ctx 8192
      gemma3-pack plan --memory 24GB                 # best quant + largest context per variant
      gemma3-pack plan gemma3-12b-it --memory 16GB   # largest context that fits
      gemma3-pack plan gemma3:27b --gpu rtx4090 --ctx 32768   # per device, -ngl, commands
      gemma3-pack plan model.gguf --gpu 24GB --gpu 24GB --ngl 63 --json
      gemma3-pack plan --gpu 16GB                    # best quant + context, all on the GPU
      gemma3-pack plan --markdown --gpu 8GB --gpu 24GB   # the "fits on" table for these cards
      gemma3-pack plan --markdown                    # the README's family table
      gemma3-pack plan model.gguf --rpc 10.0.0.2:50052=24GB,10.0.0.3:50052=16GB --ctx 32768
      gemma3-pack plan gemma3-27b-it --engine vllm --gpus 2x24GB -q int4
    """
    from .._memory import _plan

    if markdown and gpu:  # the "fits on" table for these cards (docs/plan.md's)
        from .._memory._plan_gpu import gpu_table

        if target is not None or memory is not None:
            raise UsageError("--markdown --gpu prints the family's fits-on table; give no TARGET")
        click.echo(gpu_table(gpu))
        return
    if markdown:
        if target is not None or memory is not None:
            raise UsageError("--markdown prints the whole family table; give no TARGET or --memory")
        click.echo(_plan.markdown_table(kv_type=kv_type))
        return
    min_ctx = _plan.DEFAULT_CTX if ctx is None else ctx
    options: dict[str, Any] = {
        "parallel": parallel, "kv_type": kv_type, "swa_full": swa_full, "unified": kv_unified,
        "flash_attn": not no_flash_attn, "n_ubatch": ubatch,
        "vision": False if no_vision else None, "mmproj": mmproj,
    }  # fmt: skip
    if gpu:  # GPUs of one machine (llama.cpp's CUDA placement)
        from .._memory._plan_gpu import fit_gpus, gpu_fits_text, plan_gpu

        if rpc or engine != "llama.cpp" or memory is not None:
            raise UsageError("--gpu plans llama.cpp on this machine's GPUs: leave out --rpc, "
                             "--engine and --memory (the cards are the budget)")  # fmt: skip
        options["mmproj_offload"] = not no_mmproj_offload
        if target is None:
            gpu_fits = fit_gpus(list(gpu), None, quant=quant, min_ctx=min_ctx, **options)
            _show(gpu_fits, gpu_fits_text(gpu_fits, min_ctx=min_ctx), as_json)
            return
        gp = plan_gpu(target, list(gpu), tensor_split=_floats(tensor_split), ngl=ngl,
                      quant=quant, ctx=min_ctx, **options)  # fmt: skip
        _show(gp, gp.to_text(), as_json)
        if not gp.fits:
            sys.exit(1)
        return
    if rpc or engine == "vllm":  # several machines / GPUs
        if target is None:
            raise UsageError("--rpc and --engine vllm plan one TARGET (a variant or GGUF)")
        if engine == "vllm":
            vp = _vllm(target, gpus=gpus, nodes=nodes, tp=tp, pp=pp,
                       utilization=gpu_memory_utilization, quant=quant, ctx=ctx, kv_type=kv_type,
                       vision=options["vision"])  # fmt: skip
            _show(vp, vp.to_text(), as_json)
            if not vp.fits:
                sys.exit(1)
            return
        from .._memory._plan_rpc import plan_rpc

        rp = plan_rpc(target, rpc, tensor_split=_floats(tensor_split), ngl=ngl,
                      rpc_cache=rpc_cache, quant=quant, ctx=min_ctx, **options)  # fmt: skip
        _show(rp, rp.to_text(), as_json)
        if not rp.fits:
            sys.exit(1)
        return
    options["engine"] = engine
    if memory is not None:
        fits = _plan.fit_memory(memory, target, quant=quant, min_ctx=min_ctx, **options)
        text = _plan.fits_text(fits, memory, kv_type=kv_type, parallel=parallel, min_ctx=min_ctx)
        _show(fits, text, as_json)
        if target is not None and fits[0].quant is None:
            sys.exit(1)
        return
    if target is None:
        raise UsageError(
            "give a TARGET (variant or GGUF), --memory SIZE or --markdown "
            "(see gemma3-pack plan --help)"
        )
    p = _plan.plan_memory(target, quant=quant, ctx=min_ctx, **options)
    _show(p, p.to_text(), as_json)


def _show(result: Any, text: str, as_json: bool) -> None:
    """The result's JSON (``to_dict()``, or a list of them) or its text."""
    if as_json:
        data = [r.to_dict() for r in result] if isinstance(result, list) else result.to_dict()
        click.echo(dumps(data, indent=2))
    else:
        click.echo(text)


def _floats(text: str | None) -> list[float] | None:
    """``--tensor-split``'s shares: ``3,1`` (or ``3/1``) -> [3.0, 1.0]."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.replace("/", ",").split(",") if x.strip()]
    except ValueError:
        raise UsageError(
            f"cannot read --tensor-split {text!r}: give shares like 3,1 (one per RPC host)"
        ) from None


def _vllm(
    target: str, *, gpus: str | None, nodes: int, tp: int | None, pp: int | None,
    utilization: float, quant: str | None, ctx: int | None, kv_type: str, vision: bool | None,
) -> VllmPlan:  # fmt: skip
    """plan_vllm with the CLI's spellings; a layout vLLM would refuse is a usage error."""
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
    return p
