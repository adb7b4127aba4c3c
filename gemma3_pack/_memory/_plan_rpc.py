"""Several machines: llama.cpp's RPC backend, what each host allocates, and the commands to run.

``llama-server --rpc HOST:PORT,...`` (llama.cpp built with ``-DGGML_RPC=ON``) adds every
``ggml-rpc-server`` it is given as one more GPU-like device, and then places the model exactly as
it places it across local GPUs (llama.cpp 0c1e57098 as vendored in llama-cpp-python 0.3.36):

    devices   RPC servers first, in ``--rpc`` order, then local GPUs (``src/llama.cpp``,
              ``llama_prepare_model_devices``: "add RPC servers at the front of the list")
    layers    ``-ngl N`` offloads the last N of the n_layer + 1 "layers" (the repeating blocks plus
              the output layer); ``-ts a,b,...`` cuts them into contiguous runs: layer ``il`` goes
              to the first device whose cumulative share exceeds ``(il - i_gpu_start) / N``
              (``src/llama-model.cpp``, ``llama_model_base::load_tensors``, float32 arithmetic)
    input     the token embedding stays on the main host (mmapped, ``CPU_Mapped``); Gemma 3 ties
              its output to it, so the device holding the output layer gets a second copy
              (``TENSOR_DUPLICATED`` in ``src/models/gemma3.cpp``) beside ``output_norm``
    KV cache  each layer's cells live on its layer's device (``src/llama-kv-cache.cpp``)
    compute   each device gets a scratch buffer for the part of the graph it runs; with every layer
              offloaded to more than one device llama.cpp turns on pipeline parallelism, and the
              scheduler keeps 4 copies of each device's graph inputs (``GGML_SCHED_MAX_COPIES``,
              ``ggml/src/ggml-backend.cpp``)
    host      the main host keeps the token embedding, any layers not offloaded (with their KV),
              its own compute buffer and the logits (``output`` buffer)

A ``ggml-rpc-server`` allocates on its own device (a GPU when it was built with one, else its
CPU) whatever ``llama-server`` asks for; its memory is what this module calls a host's bytes.

RPC is a proof of concept upstream and has no authentication: see ``RPC_WARNING``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._errors import UsageError
from .._family import Variant
from ._plan import (
    _BY_ID,
    _REPACKED,
    CTX_PAD,
    DEFAULT_CTX,
    N_UBATCH,
    Arch,
    MemoryPlan,
    _resolve,
    _Source,
    _tensor_bytes,
    format_bytes,
    kv_cache_bytes,
    largest_context,
    plan_memory,
    quant_tensor_types,
)
from ._plan_gpu import layer_devices, parse_gpu

__all__ = [
    "DEFAULT_RPC_PORT",
    "RPC_WARNING",
    "RpcDevice",
    "RpcHost",
    "RpcPlan",
    "layer_devices",
    "parse_rpc",
    "plan_rpc",
]

DEFAULT_RPC_PORT = 50052  # ggml-rpc-server's default port (tools/rpc/rpc-server.cpp)
RPC_WARNING = (
    "llama.cpp's RPC backend is a proof of concept with no authentication or encryption: never "
    "run ggml-rpc-server on an open network or in a sensitive environment; bind it (-H) to a "
    "private interface that only the main host can reach"
)
SCHED_COPIES = 4  # GGML_SCHED_MAX_COPIES: input copies per device with pipeline parallelism
_ALIGN = 32  # TENSOR_ALIGNMENT of the CPU buffer type a CPU ggml-rpc-server allocates from


# ---------------------------------------------------------------------------------------------
# hosts


@dataclass(frozen=True)
class RpcHost:
    """One ``ggml-rpc-server``: where it listens and the memory it may use (bytes)."""

    host: str
    port: int
    memory: int

    @property
    def endpoint(self) -> str:
        """``host:port`` as ``--rpc`` takes it (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOST = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.\-_]+))(?::(?P<port>\d+))?$"
)


def parse_rpc(spec: str | Sequence[str]) -> list[RpcHost]:
    """``"10.0.0.2:50052=24GB,10.0.0.3=rtx4090"`` -> hosts (the port defaults to 50052).

    Several strings (a repeated ``--rpc``) are joined. Each entry is ``HOST[:PORT]=MEMORY``: the
    memory that host's ``ggml-rpc-server`` device has for the model (its GPU's VRAM, or the RAM
    a CPU server may use), read as ``--gpu`` reads it (GB = 2^30; card names allowed).
    """
    parts = [spec] if isinstance(spec, str) else list(spec)
    entries = [e.strip() for p in parts for e in p.split(",") if e.strip()]
    if not entries:
        raise UsageError("--rpc needs at least one HOST:PORT=MEMORY (e.g. 10.0.0.2:50052=24GB)")
    hosts: list[RpcHost] = []
    for entry in entries:
        where, sep, mem = entry.partition("=")
        if not sep or not mem.strip():
            raise UsageError(
                f"--rpc entry {entry!r} has no memory: write HOST:PORT=MEMORY, e.g. {where}=24GB"
            )
        m = _HOST.match(where.strip())
        if not m:
            raise UsageError(
                f"--rpc entry {entry!r}: {where!r} is not HOST or HOST:PORT ([v6addr]:PORT for IPv6)"
            )
        port = int(m.group("port") or DEFAULT_RPC_PORT)
        if not 0 < port < 65536:
            raise UsageError(f"--rpc entry {entry!r}: port {port} is not between 1 and 65535")
        try:
            memory = parse_gpu(mem.strip())
        except UsageError:
            raise UsageError(
                f"--rpc entry {entry!r}: cannot read the memory {mem.strip()!r}; give it like "
                "24GB (GB = 2^30, as cards are sold), 16GiB or a card name such as rtx4090"
            ) from None
        hosts.append(RpcHost(m.group("v6") or m.group("name"), port, memory))
    seen = [h.endpoint for h in hosts]
    dup = next((e for e in seen if seen.count(e) > 1), None)
    if dup:
        raise UsageError(f"--rpc lists {dup} twice; give each ggml-rpc-server once")
    return hosts


# ---------------------------------------------------------------------------------------------
# layer placement


# ---------------------------------------------------------------------------------------------
# the tensor table


def _tensor_table(src: _Source, target: Any) -> list[tuple[str, int, int | None, str]]:
    """(name, bytes, data offset or None, ggml type) of every text tensor (file order for a GGUF)."""
    path = Path(src.name)
    if src.exact and path.is_file():
        from .._gguf._reader import open_gguf

        with open_gguf(path) as h:
            return [
                (t.name, int(t.nbytes or 0), t.offset, _BY_ID.get(t.ggml_type, "?"))
                for t in h.tensors
                if not t.name.startswith(("v.", "mm."))
            ]
    return [
        (n, _tensor_bytes(s, t), None, t) for n, s, t in quant_tensor_types(src.arch, src.quant)
    ]


def _layer_of(name: str) -> int | None:
    if name.startswith("blk."):
        return int(name.split(".", 2)[1])
    return None


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class RpcDevice:
    """What one device holds, in bytes. ``name`` is llama.cpp's (``RPC0`` ...) or ``host``."""

    name: str
    endpoint: str | None  # None for the main host
    memory: int | None  # the budget given with --rpc (None for the main host)
    layers: list[int]  # repeating layers placed here
    output_layer: bool  # holds output_norm + the tied output copy of the embedding
    weights: int
    kv: int
    compute: int
    output: int = 0  # logits buffer (main host only)
    cpu_repack: int = 0  # main host: the copy CPU backends that repack Q4_0/Q4_K weights make
    mmproj: int = 0
    mmproj_compute: int = 0

    @property
    def total(self) -> int:
        return (
            self.weights + self.kv + self.compute + self.output + self.mmproj + self.mmproj_compute
        )

    @property
    def fits(self) -> bool | None:
        return None if self.memory is None else self.total <= self.memory

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total"] = self.total
        d["fits"] = self.fits
        return d


@dataclass
class RpcPlan:
    """Per-host memory and the commands for a model split across ``ggml-rpc-server`` hosts."""

    base: MemoryPlan  # the same model and context in one process (for comparison)
    hosts: list[RpcHost]
    ngl: int
    tensor_split: list[float]
    pipeline_parallel: bool
    devices: list[RpcDevice]  # one per host, then the main host
    model_arg: str  # what follows llama-server -m / -hf
    commands: dict[str, str]  # endpoint -> ggml-rpc-server command; "main" -> llama-server
    max_ctx: int  # largest context at which every host still fits (0: none)
    warning: str = RPC_WARNING
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(d.fits is not False for d in self.devices)

    def to_dict(self) -> dict[str, Any]:
        d = self.base.to_dict()
        d.update(
            engine="llama.cpp-rpc",
            ngl=self.ngl,
            tensor_split=self.tensor_split,
            pipeline_parallel=self.pipeline_parallel,
            devices={dev.name: dev.to_dict() for dev in self.devices},
            rpc=[{"endpoint": h.endpoint, "memory": h.memory} for h in self.hosts],
            commands=self.commands,
            fits=self.fits,
            max_ctx=self.max_ctx,
            warning=self.warning,
            notes=[*d["notes"], *self.notes],
        )
        return d

    def to_text(self) -> str:
        """The report ``gemma3-pack plan TARGET --rpc ...`` prints: each host's layers and bytes,
        the largest context, the command per machine, the warning and the notes."""
        b = self.base
        lines = [
            f"{b.source} {b.quant} at {b.ctx} tokens over {len(self.hosts)} RPC host(s) "
            f"(-ngl {self.ngl}, -ts {_fmt_split(self.tensor_split)}"
            f"{', pipeline parallel' if self.pipeline_parallel else ''})"
        ]
        for d in self.devices:
            where = d.endpoint or "main host (llama-server)"
            layers = f"layers {d.layers[0]}-{d.layers[-1]}" if d.layers else "no layers"
            if d.output_layer:
                layers += " + output"
            budget = "" if d.memory is None else f" of {format_bytes(d.memory)}"
            verdict = {True: "fits", False: "DOES NOT FIT", None: ""}[d.fits]
            lines.append(f"  {d.name:5} {where:28} {layers}")
            lines.append(
                f"        weights {format_bytes(d.weights)}, KV {format_bytes(d.kv)}, "
                f"compute {format_bytes(d.compute)}"
                + (f", logits {format_bytes(d.output)}" if d.output else "")
                + (f", mmproj {format_bytes(d.mmproj + d.mmproj_compute)}" if d.mmproj else "")
                + f" = {format_bytes(d.total)}{budget} {verdict}".rstrip()
            )
            if d.cpu_repack:
                lines.append(
                    f"        (+{format_bytes(d.cpu_repack)} on CPU backends that repack "
                    "Q4_0/Q4_K weights; llama-server -nr turns it off)"
                )
        lines.append(f"  largest context that fits every host: {self.max_ctx} tokens")
        lines.append("commands:")
        for where, cmd in self.commands.items():
            label = "main host" if where == "main" else where
            lines.append(f"  # {label}\n  {cmd}")
        lines.append(f"warning: {self.warning}")
        lines += [f"note: {note}" for note in [*b.notes, *self.notes]]
        return "\n".join(lines)


def _default_split(hosts: Sequence[RpcHost]) -> list[float]:
    """Shares proportional to each host's memory, in whole MiB (what the command prints)."""
    return [float(max(h.memory // 2**20, 1)) for h in hosts]


def _fmt_split(split: Sequence[float]) -> str:
    return ",".join(f"{s:g}" for s in split)


def plan_rpc(
    target: str | Path | Variant,
    hosts: str | Sequence[str] | Sequence[RpcHost],
    *,
    quant: str | None = None,
    ctx: int = DEFAULT_CTX,
    parallel: int = 1,
    kv_type: str = "f16",
    swa_full: bool = False,
    unified: bool = False,
    flash_attn: bool = True,
    n_ubatch: int = N_UBATCH,
    vision: bool | None = None,
    mmproj: str | Path | None = None,
    ngl: int | None = None,
    tensor_split: Sequence[float] | None = None,
    rpc_cache: bool = False,
) -> RpcPlan:
    """Split ``target`` across ``ggml-rpc-server`` hosts as ``llama-server --rpc`` does.

    ``hosts`` is ``"HOST:PORT=MEM,..."`` (or ``RpcHost`` objects). ``ngl`` defaults to every
    layer; ``tensor_split`` to shares proportional to each host's memory. The main host runs
    ``llama-server`` on its CPU (no local GPU).
    """
    if hosts and all(isinstance(h, RpcHost) for h in hosts):
        rpc = [h for h in hosts if isinstance(h, RpcHost)]
    else:
        rpc = parse_rpc(hosts)  # type: ignore[arg-type]
    split = list(tensor_split) if tensor_split is not None else _default_split(rpc)
    if len(split) != len(rpc):
        raise UsageError(
            f"--tensor-split has {len(split)} shares for {len(rpc)} RPC hosts: give one per host"
        )
    src = _resolve(target, quant, mmproj)
    a = src.arch
    n_gpu = a.layers + 1 if ngl is None else ngl
    if n_gpu < 0:
        raise UsageError("--ngl must be 0 or more")
    table = _tensor_table(src, target)
    where = layer_devices(a.layers, n_gpu, split)
    options = {
        "quant": quant,
        "parallel": parallel,
        "kv_type": kv_type,
        "swa_full": swa_full,
        "unified": unified,
        "flash_attn": flash_attn,
        "n_ubatch": n_ubatch,
        "vision": vision,
        "mmproj": mmproj,
    }

    def build(c: int) -> tuple[MemoryPlan, list[RpcDevice], bool]:
        return _place(src, target, table, where, rpc, c, options)

    base, devices, pp = build(ctx)

    def fits(c: int) -> bool:
        return all(d.fits is not False for d in build(c)[1])

    max_ctx = largest_context(fits, limit=a.context_length) if fits(CTX_PAD) else 0
    model_arg = _model_arg(src, target)
    commands = _commands(rpc, model_arg, base, n_gpu, split, rpc_cache, mmproj, n_ubatch, unified)
    notes = []
    for d in devices:
        if d.fits is False:
            notes.append(
                f"{d.name} ({d.endpoint}) needs {format_bytes(d.total)} but has "
                f"{format_bytes(d.memory or 0)}: lower its -ts share, add a host or shorten the context"
            )
    if not any(d.layers or d.output_layer for d in devices[:-1]):
        notes.append("no layer is offloaded to an RPC host (-ngl 0): the main host runs everything")
    return RpcPlan(
        base=base,
        hosts=rpc,
        ngl=n_gpu,
        tensor_split=split,
        pipeline_parallel=pp,
        devices=devices,
        model_arg=model_arg,
        commands=commands,
        max_ctx=max_ctx,
        notes=notes,
    )


def _place(
    src: _Source,
    target: Any,
    table: list[tuple[str, int, int | None, str]],
    where: list[int],
    rpc: list[RpcHost],
    ctx: int,
    options: dict[str, Any],
) -> tuple[MemoryPlan, list[RpcDevice], bool]:
    a = src.arch
    base = plan_memory(target, ctx=ctx, engine="llama.cpp", **options)
    kv = kv_cache_bytes(
        a,
        ctx,
        parallel=options["parallel"],
        kv_type=options["kv_type"],
        swa_full=options["swa_full"],
        unified=options["unified"],
        n_ubatch=options["n_ubatch"],
    )
    kv_global = kv.global_bytes // max(kv.global_layers, 1)
    kv_swa = kv.swa_bytes // max(kv.swa_layers, 1)
    n = len(rpc)
    weights = [0] * (n + 1)  # index n = main host
    kv_bytes = [0] * (n + 1)
    layers: list[list[int]] = [[] for _ in range(n + 1)]
    host_ranges: list[tuple[int, int]] = []
    out_dev = where[a.layers]
    tied = not any(name == "output.weight" for name, _, _, _ in table)
    repack = 0
    for name, nbytes, offset, ggml_type in table:
        il = _layer_of(name)
        if il is not None:
            dev = where[il]
        elif name in ("output_norm.weight", "output.weight"):
            dev = out_dev
        else:  # token_embd and anything else of the input layer
            dev = -1
        slot = n if dev < 0 else dev
        if slot == n and ggml_type in _REPACKED and name != "token_embd.weight":
            repack += nbytes
        if slot == n:
            if offset is not None:
                host_ranges.append((offset, offset + nbytes))
            else:
                weights[n] += nbytes
        else:
            weights[slot] += _pad(nbytes, _ALIGN)
        if name == "token_embd.weight" and tied and out_dev >= 0:
            weights[out_dev] += _pad(nbytes, _ALIGN)
    if host_ranges:  # CPU_Mapped: the file range spanning the host's tensors
        weights[n] += max(e for _, e in host_ranges) - min(s for s, _ in host_ranges)
    for il in range(a.layers):
        slot = n if where[il] < 0 else where[il]
        layers[slot].append(il)
        kv_bytes[slot] += kv_swa if a.is_swa(il) else kv_global
    offloaded = [i for i in range(n) if layers[i] or out_dev == i]
    pipeline = len(rpc) > 1 and where[0] >= 0  # every layer offloaded, several devices
    compute = _compute(a, kv, where, n, options, pipeline)
    vision_dev = 0 if n else -1  # mtmd puts the projector on the first GPU-type device: RPC0
    devices: list[RpcDevice] = []
    for i in range(n + 1):
        is_host = i == n
        device = RpcDevice(
            name="host" if is_host else f"RPC{i}",
            endpoint=None if is_host else rpc[i].endpoint,
            memory=None if is_host else rpc[i].memory,
            layers=layers[i],
            output_layer=(out_dev < 0) if is_host else out_dev == i,
            weights=weights[i],
            kv=kv_bytes[i],
            compute=compute[i] if (is_host or i in offloaded) else 0,
            output=base.output if is_host else 0,
            cpu_repack=repack if is_host else 0,
        )
        if base.mmproj and (i == vision_dev or (is_host and vision_dev < 0)):
            device.mmproj, device.mmproj_compute = base.mmproj, base.mmproj_compute
        devices.append(device)
    return base, devices, pipeline


def _compute(
    a: Arch, kv: Any, where: list[int], n: int, options: dict[str, Any], pipeline: bool
) -> list[int]:
    """Compute buffer per device (index ``n`` = the main host's CPU) for ``llama-server``.

    llama-server keeps logits for one token per sequence (``n_outputs_max`` = ``--parallel``), so
    no device holds a micro-batch of logits; what the scheduler reserves per device is its graph
    inputs plus the peak of one layer. Inputs (``ggml-backend.cpp`` split inputs): the hidden
    state coming in, the attention mask of each cache with layers there (f16 with flash
    attention), positions, the cache write indices, the output row ids on the last layer's
    device; the host holds every graph input, plus the token ids and the embeddings input. With
    pipeline parallelism all of these are kept 4 times. The peak of a layer is its FFN
    (gate, up, their product), two hidden-state rows and the query, all f32 per token. Fitted
    to llama.cpp's own buffers with flash attention on (tests/test_plan_rpc.py: to the byte in
    the cases there); with it off, one layer's f32 scores are added as an estimate (docs/plan.md
    gives the error)."""
    ub = min(options["n_ubatch"], kv.n_ctx)
    mask_bytes = 2 if options["flash_attn"] else 4
    n_out = options["parallel"]
    hidden = a.hidden * ub * 4
    query = a.heads * a.head_dim * ub * 4
    stage = (3 * a.ffn + 2 * a.hidden) * ub * 4 + query
    copies = SCHED_COPIES if pipeline else 1
    last = a.layers - 1

    def inputs(layers: list[int], out_ids: bool) -> int:
        has_swa = any(a.is_swa(il) for il in layers)
        has_global = any(not a.is_swa(il) for il in layers)
        total = _pad(ub * 4, _ALIGN)  # positions
        for present, cells in ((has_global, kv.global_cells), (has_swa, kv.swa_cells)):
            if present:
                total += _pad(cells * ub * mask_bytes, _ALIGN) + 2 * _pad(ub * 8, _ALIGN)
        return total + (_pad(n_out * 4, _ALIGN) if out_ids else 0)

    out = []
    for dev in range(n):
        layers = [il for il in range(a.layers) if where[il] == dev]
        if not layers and where[a.layers] != dev:
            out.append(0)
            continue
        own = inputs(layers, last in layers)
        if pipeline:
            need = copies * (own + hidden) + stage
        else:  # the incoming hidden state and the query share memory, but on layer 0's device
            need = own + stage - (0 if 0 in layers else query)
        if not options["flash_attn"]:  # one layer's f32 scores (an estimate: see docs/plan.md)
            has_global = any(not a.is_swa(il) for il in layers)
            need += (kv.global_cells if has_global else kv.swa_cells) * ub * a.heads * 4
        out.append(need)
    host_layers = [il for il in range(a.layers) if where[il] < 0]
    every = inputs(list(range(a.layers)), True) + _pad(ub * 4, _ALIGN) + hidden  # + tokens, embd
    out.append(copies * every + (stage if host_layers else hidden))
    return out


def _model_arg(src: _Source, target: Any) -> str:
    if src.exact:
        return f"-m {shlex.quote(src.name)}"
    from .._family import get_variant

    v = target if isinstance(target, Variant) else None
    if v is None:
        try:
            v = get_variant(str(target))
        except UsageError:
            v = None
    if v is not None and v.hf_gguf:
        quant = src.quant if not v.qat else "Q4_0"
        return f"-hf {v.hf_gguf}:{quant}"
    return "-m MODEL.gguf"


def _commands(
    rpc: list[RpcHost],
    model_arg: str,
    p: MemoryPlan,
    ngl: int,
    split: list[float],
    cache: bool,
    mmproj: str | Path | None,
    n_ubatch: int,
    unified: bool,
) -> dict[str, str]:
    cmds = {}
    for h in rpc:
        cmd = f"ggml-rpc-server -H {h.host} -p {h.port}"
        cmds[h.endpoint] = cmd + (" -c" if cache else "")
    main = [
        "llama-server",
        model_arg,
        "--rpc",
        ",".join(h.endpoint for h in rpc),
        "-ngl",
        str(ngl),
        "-ts",
        _fmt_split(split),
        "-c",
        str(p.ctx),
        "-np",
        str(p.parallel),
        "-fa",
        "on" if p.flash_attn else "off",
    ]
    if mmproj is not None:
        main += ["--mmproj", shlex.quote(str(mmproj))]
    elif p.mmproj == 0 and p.size not in (None, "270m", "1b") and model_arg.startswith("-hf"):
        main.append("--no-mmproj")
    if p.kv_type != "f16":
        main += ["-ctk", p.kv_type, "-ctv", p.kv_type]
    if p.swa_full:
        main.append("--swa-full")
    if unified:
        main.append("-kvu")
    if n_ubatch != N_UBATCH:
        main += ["-ub", str(n_ubatch)]
    cmds["main"] = " ".join(main)
    return cmds
