"""Will it fit on this GPU (or these GPUs)? llama.cpp's CUDA placement, per device, before loading.

Where llama.cpp (0c1e57098, as vendored in llama-cpp-python 0.3.36) puts each buffer when it
loads a Gemma 3 GGUF with ``-ngl N`` on one machine with CUDA devices:

    layers    ``-ngl N`` offloads the last N of the n_layer + 1 "layers" (the repeating blocks,
              then the output layer); with several GPUs ``-ts a,b,...`` (default: each device's
              memory) cuts them into contiguous runs: layer ``il`` goes to the first device whose
              cumulative share exceeds ``(il - i_gpu_start) / N`` (``src/llama-model.cpp``,
              float32 arithmetic)
    weights   each layer's tensors on its device; the token embedding stays on the host, mmapped
              (``CPU_Mapped``); Gemma 3 ties its output to it, so the device holding the output
              layer gets a second copy beside ``output_norm``. A CUDA buffer aligns every tensor to
              128 bytes and pads the last row of a quantized matrix to 512 elements
              (``ggml_backend_cuda_buffer_type_get_alloc_size``)
    KV cache  each layer's cells on its layer's device (``src/llama-kv-cache.cpp``), sized as
              :func:`gemma3_pack._memory._plan.kv_cache_bytes` computes them
    compute   the device holding the output layer reserves the logits of one micro-batch plus a
              hidden-state row (``(n_vocab + n_embd) x n_ubatch`` f32); without flash attention a
              global layer's f32 scores (``n_kv x n_ubatch x n_head``) can exceed it. The host keeps
              a pinned ``CUDA_Host`` compute buffer: the input embeddings (two ``n_embd x n_ubatch``
              f32 tensors) and the attention masks of both caches (f16 with flash attention, f32
              without)
    output    the logits kept per sequence (``n_vocab`` f32 each), in pinned host memory
    mmproj    the vision projector on the first GPU (llama-server's default), or on the host with
              ``--no-mmproj-offload``

Measured on an NVIDIA H200 for 1B/4B/12B/27B Q4_0/Q4_K_M files in 21 cases (tests/data/cuda_alloc):
weights and KV are byte-exact per device, the device's compute buffer exact with flash attention
and within 0.4 % without, the host's compute buffer exact with flash attention.

A card's memory is not all usable: the CUDA context takes about 0.5 GiB before anything is loaded,
and llama.cpp's ``--fit`` keeps 1 GiB free per device by default (``--fit-target``), so a plan fits a
GPU when its buffers leave :data:`GPU_RESERVE` free.
"""

from __future__ import annotations

import re
import shlex
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._errors import UsageError
from .._family import SIZES, VARIANTS, Variant
from .._quants import GGML
from ._plan import (
    CTX_PAD,
    DEFAULT_CTX,
    N_UBATCH,
    Arch,
    KVCache,
    MemoryPlan,
    _resolve,
    _Source,
    fit_memory,
    format_bytes,
    kv_cache_bytes,
    largest_context,
    plan_memory,
    quant_tensor_types,
    read_once,
)

__all__ = [
    "GPU_ALIASES",
    "GPU_RESERVE",
    "Device",
    "GpuFit",
    "GpuPlan",
    "auto_context",
    "fit_gpus",
    "gpu_fits_text",
    "gpu_table",
    "layer_devices",
    "parse_gpu",
    "plan_gpu",
]

GPU_RESERVE = 2**30  # --fit's default margin per device (common/fit.cpp: fit_params_target)
CUDA_ALIGN = 128  # ggml_backend_cuda_buffer_type_get_alignment
MATRIX_ROW_PADDING = 512  # ggml-cuda/common.cuh
_HOST_ALIGN = 32  # GGUF alignment: the host maps the file range of its tensors

# Well-known cards -> memory as the driver reports it (nvidia-smi memory.total, MiB).
GPU_ALIASES: dict[str, int] = {
    "rtx3060": 12288 * 2**20,
    "rtx3090": 24576 * 2**20,
    "rtx4060": 8188 * 2**20,
    "rtx4060ti-16gb": 16380 * 2**20,
    "rtx4070": 12282 * 2**20,
    "rtx4080": 16376 * 2**20,
    "rtx4090": 24564 * 2**20,
    "rtx5090": 32607 * 2**20,
    "t4": 15360 * 2**20,
    "l4": 23034 * 2**20,
    "a10": 23028 * 2**20,
    "a10g": 23028 * 2**20,
    "rtx-a6000": 49140 * 2**20,
    "l40s": 46068 * 2**20,
    "a100-40gb": 40960 * 2**20,
    "a100-80gb": 81920 * 2**20,
    "h100": 81559 * 2**20,
    "h200": 143771 * 2**20,
}

_GPU = re.compile(r"^\s*([0-9]{1,6}(?:\.[0-9]{1,3})?)\s*([mgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_gpu(spec: str | int) -> int:
    """``"24GB"``/``"24GiB"`` -> 24 * 2**30, ``"rtx4090"`` -> its memory; a number is bytes.

    Cards are sold in binary gigabytes (a "24 GB" RTX 4090 has 24,564 MiB), so GB counts 2**30
    here, unlike ``--memory``.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec <= 0 or spec > 2**50:
            raise UsageError(f"--gpu {spec}: give the card's memory, between 1 byte and 1 PiB")
        return spec
    text = str(spec).strip().lower()
    if text.replace("_", "-") in GPU_ALIASES:
        return GPU_ALIASES[text.replace("_", "-")]
    m = _GPU.match(text)
    if not m:
        raise UsageError(
            f"cannot read --gpu {spec!r}: give the card's memory (24GB, 80GiB) or a name "
            f"({', '.join(sorted(GPU_ALIASES))})"
        )
    unit = {"": 2**30, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
    value = int(float(m.group(1)) * unit)
    if value < 2**20:
        raise UsageError(f"--gpu {spec!r} is less than 1 MiB: give the card's memory, e.g. 24GB")
    return value


# ---------------------------------------------------------------------------------------------
# placement


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def layer_devices(n_layer: int, ngl: int, tensor_split: Sequence[float]) -> list[int]:
    """Device index of each of the ``n_layer + 1`` layers (the last is the output layer), or -1
    for the host: llama.cpp's ``get_layer_buft_list`` with its float32 split points."""
    n = len(tensor_split)
    if n == 0:
        return [-1] * (n_layer + 1)
    if any(not s >= 0 for s in tensor_split) or not any(s > 0 for s in tensor_split):
        raise UsageError("--tensor-split needs non-negative shares, at least one above 0")
    splits, total = [], 0.0
    for s in tensor_split:
        total = _f32(total + _f32(s))
        splits.append(total)
    splits = [_f32(s / total) for s in splits]
    ngl = max(ngl, 0)
    start = max(n_layer + 1 - ngl, 0)
    active = min(ngl, n_layer + 1)
    out = []
    for il in range(n_layer + 1):
        if il < start:
            out.append(-1)
            continue
        x = _f32(float(il - start) / active)
        out.append(next((i for i, s in enumerate(splits) if s > x), n - 1))  # std::upper_bound
    return out


@dataclass(frozen=True)
class _Tensor:
    name: str
    ne0: int
    type: str | None  # ggml type name (None: not in the quant table; never row-padded)
    nbytes: int
    offset: int | None  # in the GGUF's data section


def _gguf_tensors(path: Path) -> tuple[_Tensor, ...]:
    """A GGUF's text tensors, in file order."""
    from .._gguf._reader import open_gguf
    from .._quants import ggml_by_id

    with open_gguf(path) as h:
        out = []
        for t in h.tensors:
            if t.name.startswith(("v.", "mm.")):
                continue
            gt = ggml_by_id(int(t.ggml_type))
            out.append(
                _Tensor(
                    t.name, int(t.shape[0]), gt.name if gt else None, int(t.nbytes or 0), t.offset
                )
            )
    return tuple(out)


def _tensors(src: _Source) -> list[_Tensor]:
    """Every text tensor, in file order: from the GGUF's table, or as the converter writes a
    variant (output_norm, token_embd, then each block)."""
    path = Path(src.name)
    if src.exact and path.is_file():
        return list(read_once(("tensors", str(path)), lambda: _gguf_tensors(path)))
    table: list[_Tensor] = []
    offset = 0
    rows = quant_tensor_types(src.arch, src.quant)
    rows = [rows[1], rows[0], *rows[2:]]  # the converter writes output_norm first
    for name, shape, type_name in rows:
        nbytes = GGML[type_name].size * (shape[0] // GGML[type_name].block)
        for d in shape[1:]:
            nbytes *= d
        table.append(_Tensor(name, shape[0], type_name, nbytes, offset))
        offset += (nbytes + _HOST_ALIGN - 1) // _HOST_ALIGN * _HOST_ALIGN
    return table


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def cuda_alloc_bytes(nbytes: int, ne0: int, type_name: str | None) -> int:
    """What a CUDA buffer takes for one tensor: the last row of a quantized matrix padded to 512
    elements, then aligned to 128 bytes."""
    if type_name is not None and GGML[type_name].quantized and ne0 % MATRIX_ROW_PADDING:
        t = GGML[type_name]
        nbytes += (MATRIX_ROW_PADDING - ne0 % MATRIX_ROW_PADDING) // t.block * t.size
    return _pad(nbytes, CUDA_ALIGN)


def _layer_of(name: str) -> int | None:
    if name.startswith("blk."):
        part = name.split(".", 2)[1]
        return int(part) if part.isdigit() else None
    return None


# ---------------------------------------------------------------------------------------------
# compute buffers


def _ubatch(kv: KVCache, n_ubatch: int, ctx: int) -> int:
    return min(n_ubatch, ctx)  # llama-context.cpp clamps n_batch/n_ubatch to the asked n_ctx


def _layer_stage(a: Arch, n_kv: int, ub: int, flash_attn: bool) -> int:
    """One attention layer's live set: its mask (f16) or, without flash attention, the f32 scores
    of every head plus an f32 mask, beside the feed-forward's intermediates."""
    per_kv = 2 if flash_attn else 4 * a.heads + 4
    return n_kv * ub * per_kv + (a.ffn + 2 * a.hidden) * ub * 4


def cuda_compute_bytes(
    a: Arch, kv: KVCache, *, ub: int, flash_attn: bool, output: bool, global_layer: bool
) -> int:
    """The compute buffer of one CUDA device: the output stage (logits of one micro-batch plus a
    hidden-state row) on the device with the output layer, else its largest layer stage."""
    n_kv = kv.global_cells if global_layer else kv.swa_cells
    stage = _layer_stage(a, n_kv, ub, flash_attn)
    return max((a.vocab + a.hidden) * ub * 4, stage) if output else stage


def host_compute_bytes(a: Arch, kv: KVCache, *, ub: int, flash_attn: bool) -> int:
    """The pinned ``CUDA_Host`` compute buffer: the input embeddings (looked up and scaled on the
    host, 2 x n_embd x n_ubatch f32), both caches' masks (f16 with flash attention; f32 without,
    plus one byte per global cell), and a few per-token inputs (positions, output ids)."""
    cells = kv.global_cells + (kv.swa_cells if a.swa_layers else 0)
    masks = cells * ub * (2 if flash_attn else 4)
    if not flash_attn:
        masks += kv.global_cells * ub
    return 8 * a.hidden * ub + masks + 44 * ub


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class Device:
    """What one device holds, in bytes: ``CUDA0`` ... or ``host`` (system RAM)."""

    name: str
    memory: int | None  # the card's memory (None for the host)
    layers: list[int]  # repeating layers placed here
    output_layer: bool  # holds output_norm and the tied output copy of the embedding
    weights: int
    kv: int
    compute: int
    output: int = 0  # logits (host only)
    mmproj: int = 0
    mmproj_compute: int = 0

    @property
    def total(self) -> int:
        return (
            self.weights + self.kv + self.compute + self.output + self.mmproj + self.mmproj_compute
        )

    @property
    def fits(self) -> bool | None:
        return None if self.memory is None else self.total + GPU_RESERVE <= self.memory

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total"] = self.total
        d["fits"] = self.fits
        return d


@dataclass
class GpuPlan:
    """A model on one machine's GPUs: bytes per device, ``-ngl``, and the commands."""

    base: MemoryPlan  # the same model and context as one CPU process (for comparison)
    gpus: list[int]
    ngl: int
    ngl_auto: bool  # True when ngl is the most that fit (--fit's choice), not given
    tensor_split: list[float]
    devices: list[Device]  # one per GPU, then the host
    mmproj_offload: bool
    n_ubatch: int
    commands: dict[str, str]  # "llama-server", "modelfile"
    max_ctx: int  # largest context at which every GPU still fits with this ngl (0: none)
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(d.fits is not False for d in self.devices)

    def device(self, name: str) -> Device:
        return next(d for d in self.devices if d.name == name)

    def to_dict(self) -> dict[str, Any]:
        d = self.base.to_dict()
        d.pop("cpu_repack", None)  # CUDA keeps the weights as they are in the file
        d.update(
            engine="llama.cpp-cuda",
            n_ubatch=self.n_ubatch,
            ngl=self.ngl,
            ngl_auto=self.ngl_auto,
            gpus=self.gpus,
            tensor_split=self.tensor_split,
            mmproj_offload=self.mmproj_offload,
            devices={dev.name: dev.to_dict() for dev in self.devices},
            gpu_reserve=GPU_RESERVE,
            fits=self.fits,
            max_ctx=self.max_ctx,
            commands=self.commands,
            notes=[*d["notes"], *self.notes],
        )
        return d

    def to_text(self) -> str:
        """The report ``gemma3-pack plan TARGET --gpu ...`` prints: each device's bytes and
        layers, the largest context, the commands and the notes."""
        b = self.base
        seqs = f"{b.parallel} sequence{'s' if b.parallel > 1 else ''}"
        how = "the most that fit" if self.ngl_auto else "as given"
        lines = [
            f"{b.source} {b.quant} at {b.ctx} tokens on {len(self.gpus)} GPU(s) with llama.cpp "
            f"(n_ctx {b.n_ctx}, {seqs}, -ngl {self.ngl}: {how})"
        ]
        for d in self.devices:
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
            lines.append(f"{head}; {layers}")
            rows = [
                ("weights", d.weights),
                ("KV cache", d.kv),
                ("compute", d.compute),
                ("output", d.output),
                ("mmproj", d.mmproj),
                ("image encoder", d.mmproj_compute),
            ]
            lines += [f"      {label:14} {format_bytes(n):>11}" for label, n in rows if n]
            lines.append(f"      {'total':14} {format_bytes(d.total):>11}")
        if self.max_ctx:
            lines.append(f"  largest context with -ngl {self.ngl}: {self.max_ctx} tokens")
        else:
            lines.append(f"  does not fit with -ngl {self.ngl} even at 256 tokens")
        lines.append("  run: " + self.commands["llama-server"])
        lines.append("  Modelfile: " + self.commands["modelfile"].replace("\n", "; "))
        lines += [f"  note: {note}" for note in [*b.notes, *self.notes]]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Options:
    parallel: int
    kv_type: str
    swa_full: bool
    unified: bool
    flash_attn: bool
    n_ubatch: int
    vision: bool | None
    mmproj: str | Path | None
    mmproj_offload: bool


def _place(
    src: _Source,
    target: Any,
    tensors: list[_Tensor],
    where: list[int],
    gpus: list[int],
    ctx: int,
    o: _Options,
) -> tuple[MemoryPlan, list[Device]]:
    a = src.arch
    base = plan_memory(
        target,
        quant=src.quant,
        ctx=ctx,
        parallel=o.parallel,
        kv_type=o.kv_type,
        swa_full=o.swa_full,
        unified=o.unified,
        flash_attn=o.flash_attn,
        n_ubatch=o.n_ubatch,
        vision=o.vision,
        mmproj=o.mmproj,
    )
    kv = kv_cache_bytes(
        a,
        ctx,
        parallel=o.parallel,
        kv_type=o.kv_type,
        swa_full=o.swa_full,
        unified=o.unified,
        n_ubatch=o.n_ubatch,
    )
    n = len(gpus)
    host = n
    weights = [0] * (n + 1)
    host_ranges: list[tuple[int, int]] = []
    out_dev = where[a.layers]
    tied = not any(t.name == "output.weight" for t in tensors)
    for t in tensors:
        il = _layer_of(t.name)
        if il is not None and il < a.layers:
            dev = where[il]
        elif t.name in ("output_norm.weight", "output.weight"):
            dev = out_dev
        else:  # token_embd and anything else of the input layer stays on the host
            dev = -1
        if dev < 0:
            if t.offset is not None:
                host_ranges.append((t.offset, t.offset + t.nbytes))
            else:
                weights[host] += t.nbytes
        else:
            weights[dev] += cuda_alloc_bytes(t.nbytes, t.ne0, t.type)
        if t.name == "token_embd.weight" and tied and out_dev >= 0:
            weights[out_dev] += cuda_alloc_bytes(t.nbytes, t.ne0, t.type)
    if host_ranges:  # CPU_Mapped: the file range spanning the host's tensors
        weights[host] += max(e for _, e in host_ranges) - min(s for s, _ in host_ranges)

    # KV: per layer, K and V tensors of [n_embd_gqa, cells, streams]
    kv_bytes = [0] * (n + 1)
    layers: list[list[int]] = [[] for _ in range(n + 1)]
    width = a.kv_heads * a.head_dim
    kt = o.kv_type.upper()
    for il in range(a.layers):
        slot = host if where[il] < 0 else where[il]
        layers[slot].append(il)
        cells = (kv.swa_cells if a.is_swa(il) else kv.global_cells) * kv.streams
        one = GGML[kt].size * (width // GGML[kt].block) * cells
        kv_bytes[slot] += 2 * (one if slot == host else cuda_alloc_bytes(one, width, kt))

    ub = _ubatch(kv, o.n_ubatch, ctx)
    devices = []
    for i in range(n):
        has_global = any(not a.is_swa(il) for il in layers[i])
        on = bool(layers[i]) or out_dev == i
        compute = (
            cuda_compute_bytes(
                a, kv, ub=ub, flash_attn=o.flash_attn, output=out_dev == i, global_layer=has_global
            )
            if on or i == 0
            else 0
        )
        devices.append(
            Device(f"CUDA{i}", gpus[i], layers[i], out_dev == i, weights[i], kv_bytes[i], compute)
        )
    host_dev = Device(
        "host",
        None,
        layers[host],
        out_dev < 0,
        weights[host],
        kv_bytes[host],
        host_compute_bytes(a, kv, ub=ub, flash_attn=o.flash_attn),
        output=base.output,
    )
    devices.append(host_dev)
    if base.mmproj:
        # F16/F32 tensors (rows never padded) whose sizes are multiples of 128 bytes
        holder = devices[0] if (o.mmproj_offload and n) else host_dev
        holder.mmproj, holder.mmproj_compute = base.mmproj, base.mmproj_compute
    return base, devices


def _default_split(gpus: Sequence[int]) -> list[float]:
    """Shares proportional to each card's memory, in whole MiB (what ``-ts`` gets)."""
    return [float(max(g // 2**20, 1)) for g in gpus]


def _fits(devices: Sequence[Device]) -> bool:
    return all(d.fits is not False for d in devices)


def plan_gpu(
    target: str | Path | Variant,
    gpus: str | int | Sequence[str | int],
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
    mmproj_offload: bool = True,
    ngl: int | None = None,
    tensor_split: Sequence[float] | None = None,
) -> GpuPlan:
    """Place ``target`` on ``gpus`` (card memories: ``"24GB"``, ``"rtx4090"``, bytes) as
    llama.cpp's CUDA backend does, at ``ctx`` tokens.

    ``ngl`` defaults to the most layers that fit every card (with :data:`GPU_RESERVE` left free),
    as ``--fit`` chooses; ``tensor_split`` to shares proportional to the cards' memory.
    """
    specs = [gpus] if isinstance(gpus, str | int) else list(gpus)
    if not specs:
        raise UsageError("--gpu needs at least one card (e.g. --gpu 24GB or --gpu rtx4090)")
    if len(specs) > 16:
        raise UsageError(f"{len(specs)} GPUs: llama.cpp supports at most 16 devices")
    mem = [parse_gpu(g) for g in specs]
    split = list(tensor_split) if tensor_split is not None else _default_split(mem)
    if len(split) != len(mem):
        raise UsageError(
            f"--tensor-split has {len(split)} shares for {len(mem)} GPUs: give one per --gpu"
        )
    if n_ubatch < 1 or n_ubatch > 2**20:
        raise UsageError("--ubatch must be between 1 and 1048576 tokens")
    src = _resolve(target, quant, mmproj)
    a = src.arch
    if ngl is not None and ngl < 0:
        raise UsageError("--ngl must be 0 or more")
    tensors = _tensors(src)
    o = _Options(
        parallel, kv_type, swa_full, unified, flash_attn, n_ubatch, vision, mmproj, mmproj_offload
    )

    def build(c: int, n_gpu: int) -> tuple[MemoryPlan, list[Device]]:
        return _place(src, target, tensors, layer_devices(a.layers, n_gpu, split), mem, c, o)

    auto = ngl is None
    if ngl is None:
        ngl = a.layers + 1
        while ngl > 0 and not _fits(build(ctx, ngl)[1]):
            ngl -= 1
    ngl = min(ngl, a.layers + 1)
    base, devices = build(ctx, ngl)

    def fits(c: int) -> bool:
        return _fits(build(c, ngl)[1])

    max_ctx = largest_context(fits, limit=a.context_length) if fits(CTX_PAD) else 0
    notes = []
    for d in devices:
        if d.fits is False:
            notes.append(
                f"{d.name} needs {format_bytes(d.total)} but has {format_bytes(d.memory or 0)} "
                f"(keeping {format_bytes(GPU_RESERVE)} free): lower -ngl, shorten the context "
                "or quantize the KV cache"
            )
    if ngl <= a.layers:
        notes.append(
            f"{a.layers + 1 - ngl} of {a.layers + 1} layers run on the CPU (partial offload): "
            "expect much slower generation than with every layer on the GPU"
        )
    if base.mmproj and not mmproj_offload:
        notes.append("the projector runs on the CPU (--no-mmproj-offload): images encode slowly")
    plan = GpuPlan(
        base=base,
        gpus=mem,
        ngl=ngl,
        ngl_auto=auto,
        tensor_split=split,
        devices=devices,
        mmproj_offload=mmproj_offload,
        n_ubatch=n_ubatch,
        commands={},
        max_ctx=max_ctx,
        notes=notes,
    )
    plan.commands = _commands(plan, src, target, mmproj, tensor_split is not None or len(mem) > 1)
    return plan


def _model_arg(src: _Source, target: Any) -> tuple[str, str]:
    """(llama-server's model argument, a Modelfile's FROM)."""
    if src.exact:
        return f"-m {shlex.quote(src.name)}", src.name
    from .._family import get_variant

    v = target if isinstance(target, Variant) else None
    if v is None:
        try:
            v = get_variant(str(target)) if str(target).lower() not in SIZES else None
        except UsageError:
            v = None
        if v is None and str(target).lower() in SIZES:
            v = VARIANTS[f"gemma3-{str(target).lower()}-it"]
    if v is not None and v.hf_gguf:
        quant = "Q4_0" if v.qat else src.quant
        return f"-hf {v.hf_gguf}:{quant}", f"hf.co/{v.hf_gguf}:{quant}"
    if v is not None and v.from_ref:
        return "-m MODEL.gguf", v.from_ref
    return "-m MODEL.gguf", "MODEL.gguf"


def _commands(
    p: GpuPlan, src: _Source, target: Any, mmproj: str | Path | None, with_split: bool
) -> dict[str, str]:
    b = p.base
    model, from_ = _model_arg(src, target)
    cmd = ["llama-server", model, "-ngl", str(p.ngl), "-c", str(b.ctx)]
    if b.parallel != 1:
        cmd += ["-np", str(b.parallel)]
    cmd += ["-fa", "on" if b.flash_attn else "off"]
    if with_split:
        cmd += ["-ts", ",".join(f"{s:g}" for s in p.tensor_split)]
    if mmproj is not None:
        cmd += ["--mmproj", shlex.quote(str(mmproj))]
    elif b.mmproj == 0 and b.size not in (None, "270m", "1b") and model.startswith("-hf"):
        cmd.append("--no-mmproj")
    if b.mmproj and not p.mmproj_offload:
        cmd.append("--no-mmproj-offload")
    if b.kv_type != "f16":
        cmd += ["-ctk", b.kv_type, "-ctv", b.kv_type]
    if b.swa_full:
        cmd.append("--swa-full")
    if p.n_ubatch != N_UBATCH:
        cmd += ["-ub", str(p.n_ubatch)]
    modelfile = f"FROM {from_}\nPARAMETER num_ctx {b.ctx}\nPARAMETER num_gpu {p.ngl}"
    return {"llama-server": " ".join(cmd), "modelfile": modelfile}


# ---------------------------------------------------------------------------------------------
# what fits


@dataclass
class GpuFit:
    """The best quant of one variant that fits the GPUs with every layer offloaded, and its
    largest context (``quant`` None: nothing fits at the minimum context)."""

    variant: str
    quant: str | None
    max_ctx: int
    total: int  # bytes on the GPUs at max_ctx
    gpus: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gpu_fits_text(fits: Sequence[GpuFit], *, min_ctx: int = DEFAULT_CTX) -> str:
    """What ``gemma3-pack plan --gpu ...`` (no TARGET) prints for :func:`fit_gpus`'s answer
    (given the same ``min_ctx``): the cards, then one row per variant."""
    cards = " + ".join(format_bytes(g) for g in fits[0].gpus)
    lines = [f"every layer on {cards} (keeping 1 GiB free per card)"]
    for f in fits:
        if f.quant is None:
            lines.append(f"  {f.variant:24} does not fit at {min_ctx} tokens")
        else:
            lines.append(
                f"  {f.variant:24} {f.quant:7} up to {f.max_ctx:>6} tokens "
                f"({format_bytes(f.total)} on the GPUs)"
            )
    return "\n".join(lines)


def fit_gpus(
    gpus: str | int | Sequence[str | int],
    target: str | Path | Variant | None = None,
    *,
    quant: str | None = None,
    min_ctx: int = DEFAULT_CTX,
    quants: Sequence[str] | None = None,
    **options: Any,
) -> list[GpuFit]:
    """For each variant (or just ``target``), the highest-quality quant that fits ``gpus`` with
    every layer offloaded at ``min_ctx`` tokens, and the largest context it fits at."""
    from ._plan import COMMON_QUANTS

    specs = [gpus] if isinstance(gpus, str | int) else list(gpus)
    mem = [parse_gpu(g) for g in specs]
    if target is not None:
        candidates: list[tuple[Any, list[str | None]]] = [(target, [quant])]
    else:
        candidates = [
            (
                v,
                [quant]
                if quant
                else (["Q4_0"] if v.qat else list(reversed(quants or COMMON_QUANTS))),
            )
            for v in VARIANTS.values()
            if v.kind != "pt"
        ]
    out = []
    for t, qs in candidates:
        best: GpuFit | None = None
        for q in qs:
            best = _fit_one(t, mem, q, min_ctx, options)
            if best is not None:
                break
        if best is None:
            name = t.name if isinstance(t, Variant) else str(t)
            best = GpuFit(name, None, 0, 0, mem)
        out.append(best)
    return out


def _fit_one(
    target: Any, mem: list[int], quant: str | None, min_ctx: int, options: dict[str, Any]
) -> GpuFit | None:
    src = _resolve(target, quant, options.get("mmproj"))
    a = src.arch
    split = _default_split(mem)
    tensors = _tensors(src)
    o = _Options(
        options.get("parallel", 1),
        options.get("kv_type", "f16"),
        options.get("swa_full", False),
        options.get("unified", False),
        options.get("flash_attn", True),
        options.get("n_ubatch", N_UBATCH),
        options.get("vision"),
        options.get("mmproj"),
        options.get("mmproj_offload", True),
    )
    where = layer_devices(a.layers, a.layers + 1, split)

    def devices(c: int) -> list[Device]:
        return _place(src, target, tensors, where, mem, c, o)[1]

    if not _fits(devices(min_ctx)):
        return None
    best = largest_context(lambda c: _fits(devices(c)), limit=a.context_length)
    total = sum(d.total for d in devices(best)[:-1])
    name = target.name if isinstance(target, Variant) else src.name
    return GpuFit(name, src.quant, best, total, mem)


TABLE_CARDS: tuple[str, ...] = ("8GB", "12GB", "16GB", "24GB", "48GB", "80GB")
TABLE_GPU_QUANTS: tuple[str, ...] = ("Q4_0", "Q4_K_M", "Q8_0")


def gpu_table(cards: Sequence[str | int] = TABLE_CARDS) -> str:
    """The "fits on" table (``plan --markdown --gpu 8GB --gpu 12GB ...``): each size x quant x
    card -> the largest context with every layer on that one GPU, text only / with the vision
    projector on the GPU too ("-": not even 4K fits; contexts rounded down to whole K)."""
    mem = [parse_gpu(c) for c in cards]
    head = "| size | quant | " + " | ".join(str(c).replace("GB", " GB") for c in cards) + " |"
    lines = [head, "|---|---|" + "---|" * len(mem)]

    def cell(n: int) -> str:
        return f"{n // 1024}K" if n else "-"

    for s in SIZES.values():
        for q in TABLE_GPU_QUANTS:
            cells = []
            for g in mem:
                text = _fit_one(s.name, [g], q, DEFAULT_CTX, {"vision": False})
                t = cell(text.max_ctx if text else 0)
                if s.multimodal:
                    img = _fit_one(s.name, [g], q, DEFAULT_CTX, {"vision": True})
                    t += " / " + cell(img.max_ctx if img else 0)
                cells.append(t)
            lines.append(f"| {s.params} | {q} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def auto_context(
    target: str | Path | Variant,
    memory: int | str | None = None,
    *,
    gpu: str | int | Sequence[str | int] | None = None,
    mmproj: str | Path | None = None,
    engine: str = "ollama",
) -> int:
    """The largest context (a multiple of 256, up to the trained one) at which ``target`` fits
    ``memory`` on ``engine`` (Ollama's by default) — what ``modelfile --num-ctx auto`` writes.

    With ``gpu`` (card sizes or names, as ``plan --gpu`` takes them) the budget is those GPUs with
    every layer offloaded, placed as llama.cpp's CUDA backend places them
    (:func:`fit_gpus`, 1 GiB left free per card)."""
    if (memory is None) == (gpu is None):
        raise UsageError("--num-ctx auto needs a budget: --memory SIZE or --gpu SIZE, not both")
    if gpu is not None:
        fit = fit_gpus(gpu, target, min_ctx=CTX_PAD, mmproj=mmproj)[0]
        where = "on " + " + ".join(str(g) for g in ([gpu] if isinstance(gpu, str | int) else gpu))
    else:
        assert memory is not None
        found = fit_memory(memory, target, min_ctx=CTX_PAD, mmproj=mmproj, engine=engine)[0]
        fit, where = found, f"in {memory}"  # type: ignore[assignment]
    if fit.quant is None:
        raise UsageError(
            f"{fit.variant} does not fit {where} even at {CTX_PAD} tokens "
            "(see `gemma3-pack plan --memory/--gpu` for what does)"
        )
    return fit.max_ctx
