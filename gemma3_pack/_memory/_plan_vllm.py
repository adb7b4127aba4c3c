"""vLLM (tensor / pipeline parallel): will Gemma 3 fit these GPUs, and the ``vllm serve`` command.

Every figure here is **computed from vLLM's code, not measured** (no vLLM run backs it yet). The
code followed, by concern (vllm-project/vllm, V1 engine):

    heads      ``vllm/model_executor/models/gemma3.py`` ``Gemma3Attention``: the attention heads must
               divide by the tensor-parallel size; KV heads divide by it, or it by them (then each
               rank keeps a replica: ``num_kv_heads = max(1, total // tp)``). The SigLIP tower of
               4B+ (``siglip.py``, 16 heads) is sharded the same way.
    weights    ``QKVParallelLinear`` / ``MergedColumnParallelLinear`` / ``RowParallelLinear``: each
               rank holds 1/tp of every projection; ``VocabParallelEmbedding`` pads the vocabulary
               to a multiple of 64 and holds 1/tp of it, tied to the output; norms are replicated;
               the embedding is built on every pipeline stage (``Gemma3Model.__init__``)
    layers     ``vllm/distributed/utils.py`` ``get_pp_indices``: layers // pp per stage, the
               remainder one each to the stages before the last
    KV pages   ``Attention.get_kv_cache_spec`` (``vllm/model_executor/layers/attention/attention.py``)
               gives a layer with a sliding window a ``SlidingWindowSpec``, the others a
               ``FullAttentionSpec``; ``vllm/v1/kv_cache_interface.py``: a block of 16 tokens per layer is
               ``2 * 16 * kv_heads_per_rank * head_dim * dtype_bytes``; full-attention layers need
               ``cdiv(max_model_len, 16)`` blocks per sequence, sliding-window layers
               ``cdiv(min(window - 1 + max_num_batched_tokens, max_model_len), 16) + 1``
    groups     ``vllm/v1/core/kv_cache_utils.py`` ``_get_kv_cache_groups_uniform_page_size``: the
               hybrid allocator groups Gemma 3's layers into groups of ``n_global`` layers (one
               global group, ceil(n_sliding / n_global) sliding groups, the last padded); one
               tensor per group slot, ``num_blocks = available // page_size // group_size``;
               ``_max_memory_usage_bytes_from_groups``, ``get_max_concurrency_for_kv_cache_config``
               and ``_report_kv_cache_config`` ("GPU KV cache size: N tokens")
    budget     ``vllm/v1/worker/gpu_worker.py`` ``determine_available_memory``: KV memory =
               ``total * gpu_memory_utilization - (weights + peak activations + non-torch memory)
               - CUDA-graph estimate``; the activations are profiled at run time, so this module
               uses an estimate of them (``activation_estimate``), shown as such
    defaults   ``vllm/engine/arg_utils.py`` ``get_batch_defaults``: ``vllm serve`` schedules 8192
               tokens and 1024 sequences per step on GPUs of 70 GiB and more (not A100), else
               2048 and 256
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .._errors import UsageError
from .._family import SIGLIP, SIZES, VARIANTS, Size, Variant, get_variant
from ._plan import format_bytes
from ._plan_gpu import parse_gpu

__all__ = [
    "BLOCK_SIZE",
    "GpuSet",
    "VllmPlan",
    "group_layers",
    "kv_blocks_per_request",
    "max_concurrency",
    "num_blocks",
    "page_size_bytes",
    "parse_gpus",
    "plan_vllm",
    "pp_partition",
    "tp_problems",
]

BLOCK_SIZE = 16  # CacheConfig.block_size on CUDA
GIB = 2**30
_VOCAB_PAD = 64  # vocab_parallel_embedding.DEFAULT_VOCAB_PADDING_SIZE
_INT4_GROUP = 32  # Google's QAT int4 grid: one scale per 32 inputs
_KV_DTYPE_BYTES = {"auto": 2, "bf16": 2, "f16": 2, "bfloat16": 2, "float16": 2, "fp8": 1}
_KV_DTYPE_BYTES.update({"fp8_e4m3": 1, "fp8_e5m2": 1})
WEIGHTS = ("bf16", "int4")
COMPUTED = "computed from vLLM's code, not measured"


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------------------------
# GPUs


@dataclass(frozen=True)
class GpuSet:
    """``count`` GPUs of ``memory`` bytes each, on ``nodes`` machines (GPUs per node = count / nodes)."""

    count: int
    memory: int
    nodes: int = 1
    name: str = ""  # as given ("rtx4090", "24gb"): vLLM's defaults single out the A100


_GPUS = re.compile(r"^\s*(?:(\d+)\s*[x×*]\s*)?(.+?)\s*$", re.IGNORECASE)


def parse_gpus(text: str, *, nodes: int = 1) -> GpuSet:
    """``"2x24GB"`` -> two 24 GB GPUs, ``"2xrtx4090"``, ``"h100"`` -> one; memory is read as
    ``--gpu`` reads it (GB = 2^30, card names). ``nodes`` machines share the GPUs evenly."""
    m = _GPUS.match(text)
    if not m:
        raise UsageError(f"cannot read --gpus {text!r}: write it like 2x24GB or 4x80GiB")
    count = int(m.group(1) or 1)
    try:
        memory = parse_gpu(m.group(2))
    except UsageError:
        raise UsageError(
            f"cannot read --gpus {text!r}: write COUNTxMEMORY or COUNTxNAME, like 2x24GB, "
            "4x80GiB or 2xrtx4090 (GB = 2^30, as cards are sold)"
        ) from None
    if count < 1 or memory <= 0:
        raise UsageError(f"--gpus {text!r}: need at least one GPU with memory above 0")
    if nodes < 1 or count % nodes:
        raise UsageError(f"--gpus {text!r} on {nodes} nodes: the GPUs must split evenly per node")
    return GpuSet(count, memory, nodes, m.group(2).strip().lower())


# ---------------------------------------------------------------------------------------------
# vLLM's arithmetic, written out (the tests hold it against vLLM's own worked examples)


def page_size_bytes(
    kv_heads: int, head_dim: int, dtype_bytes: int = 2, block_size: int = BLOCK_SIZE
) -> int:
    """``AttentionSpec.page_size_bytes``: K and V of ``block_size`` tokens for one layer."""
    return 2 * block_size * kv_heads * head_dim * dtype_bytes


def kv_blocks_per_request(
    window: int | None,
    max_model_len: int,
    max_num_batched_tokens: int,
    block_size: int = BLOCK_SIZE,
) -> int:
    """Blocks one sequence of ``max_model_len`` tokens needs in one layer (``max_memory_usage_bytes``
    of ``FullAttentionSpec`` for ``window=None``, else of ``SlidingWindowSpec``)."""
    if window is None:
        return _cdiv(max_model_len, block_size)
    tokens = min(window - 1 + max_num_batched_tokens, max_model_len)
    return _cdiv(tokens, block_size) + 1


def group_layers(kinds: Sequence[str]) -> list[list[int]]:
    """Layer indices per KV cache group (``get_kv_cache_groups`` with the hybrid allocator).

    ``kinds[i]`` names layer i's spec ("full", "sliding", ...). One kind: one group of every
    layer. Several: groups of ``min`` layers per kind (or ``max`` when it is under 1.5 x ``min``),
    layers dealt round-robin (``layers[i::num_groups]``)."""
    by_kind: dict[str, list[int]] = {}
    for i, k in enumerate(kinds):
        by_kind.setdefault(k, []).append(i)
    if len(by_kind) <= 1:
        return [list(range(len(kinds)))] if kinds else []
    sizes = [len(v) for v in by_kind.values()]
    group_size = max(sizes) if max(sizes) < min(sizes) * 1.5 else min(sizes)
    groups = []
    for layers in by_kind.values():
        n = _cdiv(len(layers), group_size)
        groups += [layers[i::n] for i in range(n)]
    return groups


def num_blocks(available: int, page_size: int, group_size: int) -> int:
    """``get_num_blocks``: blocks in each of the ``group_size`` shared KV tensors."""
    return max(available // page_size // group_size, 0)


def max_memory_usage(
    group_windows: Sequence[int | None],
    group_size: int,
    page_size: int,
    max_model_len: int,
    max_num_batched_tokens: int,
) -> int:
    """``_max_memory_usage_bytes_from_groups``: KV bytes one longest sequence needs."""
    blocks = sum(
        kv_blocks_per_request(w, max_model_len, max_num_batched_tokens) for w in group_windows
    )
    return group_size * page_size * blocks


def max_concurrency(
    blocks: int,
    group_windows: Sequence[int | None],
    max_model_len: int,
    max_num_batched_tokens: int,
) -> float:
    """``get_max_concurrency_for_kv_cache_config``: sequences of ``max_model_len`` at once."""
    per_request = sum(
        kv_blocks_per_request(w, max_model_len, max_num_batched_tokens) for w in group_windows
    )
    return blocks / per_request


def pp_partition(num_layers: int, pp: int) -> list[tuple[int, int]]:
    """``get_pp_indices`` for every stage: [start, end) layer ranges."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    out, start = [], 0
    for p in parts:
        out.append((start, start + p))
        start += p
    return out


def tp_problems(size: Size, tp: int, *, vision: bool) -> list[str]:
    """Why ``tp`` cannot shard this size (empty when it can), as vLLM's asserts would say."""
    problems = []
    if size.num_heads % tp:
        problems.append(
            f"{size.num_heads} attention heads do not divide by tensor-parallel size {tp}"
        )
    kv = size.num_kv_heads
    if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
        problems.append(f"{kv} KV heads and tensor-parallel size {tp}: one must divide the other")
    if vision and size.vision and size.vision.num_heads % tp:
        problems.append(
            f"SigLIP's {size.vision.num_heads} heads do not divide by tensor-parallel size {tp}"
        )
    return problems


# ---------------------------------------------------------------------------------------------
# weights per rank


def _linear_bytes(n_in: int, n_out: int, weights: str) -> int:
    if weights == "bf16":
        return n_in * n_out * 2
    # int4 AWQ (awq_marlin keeps the same sizes): packed codes, a 16-bit scale and a packed 4-bit
    # zero point per 32 inputs and output column
    groups = _cdiv(n_in, _INT4_GROUP)
    return n_in * n_out // 2 + groups * n_out * 2 + groups * n_out // 2


def _layer_bytes(s: Size, tp: int, weights: str) -> int:
    h, d = s.hidden_size, s.head_dim
    q = s.num_heads // tp * d
    kv = max(1, s.num_kv_heads // tp) * d
    f = s.intermediate_size // tp
    linears = (
        _linear_bytes(h, q + 2 * kv, weights)  # qkv_proj
        + _linear_bytes(s.num_heads * d // tp, h, weights)  # o_proj
        + _linear_bytes(h, 2 * f, weights)  # gate_up_proj
        + _linear_bytes(f, h, weights)  # down_proj
    )
    norms = (4 * h + 2 * d) * 2  # four RMSNorms + q_norm/k_norm, bf16, replicated
    return linears + norms


def _embedding_bytes(s: Size, tp: int) -> int:
    vocab = _cdiv(s.vocab_size, _VOCAB_PAD) * _VOCAB_PAD
    return vocab // tp * s.hidden_size * 2 + s.hidden_size * 2  # + final norm


def _vision_bytes(s: Size, tp: int) -> int:
    """SigLIP (bf16 in both checkpoints) sharded over ``tp`` plus the replicated projector."""
    v = SIGLIP
    d, f = v.hidden_size, v.intermediate_size
    per_layer = (
        d * 3 * d // tp * 2
        + 3 * d // tp * 2  # qkv + bias
        + d // tp * d * 2
        + d * 2  # out_proj + bias
        + d * f // tp * 2
        + f // tp * 2  # fc1 + bias
        + f // tp * d * 2
        + d * 2  # fc2 + bias
        + 4 * d * 2  # two LayerNorms (weight + bias)
    )
    patches = (v.image_size // v.patch_size) ** 2
    fixed = (
        3 * v.patch_size**2 * d * 2
        + d * 2  # patch embedding conv
        + patches // tp * d * 2  # position embedding (VocabParallelEmbedding)
        + 2 * d * 2  # post LayerNorm
        + d * s.hidden_size * 2
        + d * 2  # mm_input_projection_weight + mm_soft_emb_norm
    )
    return v.num_layers * per_layer + fixed


# ---------------------------------------------------------------------------------------------
# the plan


def activation_estimate(s: Size, tp: int, batched_tokens: int, max_num_seqs: int) -> int:
    """An estimate (not vLLM's profile) of the peak activations of vLLM's profiling run on one
    rank: one step of ``batched_tokens`` tokens through a layer (hidden states, qkv, the MLP's
    gate/up and activation in bf16), the logits of ``max_num_seqs`` sequences in float32 twice
    (logits and probabilities, full vocabulary on every rank), plus 1 GiB for CUDA graphs, NCCL
    and other memory outside PyTorch's allocator."""
    h, f = s.hidden_size, s.intermediate_size // tp
    qkv = (s.num_heads // tp + 2 * max(1, s.num_kv_heads // tp)) * s.head_dim
    layer = batched_tokens * (4 * h + qkv + 3 * f) * 2
    logits = 2 * max_num_seqs * s.vocab_size * 4
    return layer + logits + GIB


@dataclass
class VllmStage:
    """One pipeline stage: what each of its ``tp`` GPUs holds."""

    index: int
    layers: tuple[int, int]  # [start, end)
    weights: int
    activations: int  # estimate
    kv_budget: int  # total * utilization - weights - activations
    num_blocks: int
    kv: int  # bytes of KV the stage allocates per GPU


@dataclass
class VllmPlan:
    """A Gemma 3 size on ``gpus`` under vLLM; ``to_dict()`` is what ``plan --json`` prints."""

    engine: str
    source: str
    size: str
    hf_model: str
    weights_kind: str  # "bf16" or "int4"
    gpus: int
    gpu_memory: int
    nodes: int
    tensor_parallel: int
    pipeline_parallel: int
    gpu_memory_utilization: float
    kv_cache_dtype: str
    max_num_batched_tokens: int
    max_num_seqs: int
    vision: bool
    problems: list[str]  # non-empty: vLLM refuses this tensor-parallel size
    weights_per_gpu: dict[str, int]  # {"bf16": B, "int4": B} on the fullest stage
    page_size: int
    kv_bytes_per_token: int  # per GPU, each token past the sliding window (the global group)
    kv_bytes_per_token_all_global: int  # per GPU, if every layer kept every token
    kv_sliding_per_sequence: int  # per GPU, the sliding groups' blocks of one sequence
    kv_groups: int
    group_size: int
    stages: list[VllmStage]
    num_blocks: int  # the smallest over stages (vLLM uses it everywhere)
    kv_cache_tokens: int  # "GPU KV cache size: N tokens"
    max_model_len: int  # as asked, else the largest that fits (up to the trained context)
    largest_max_model_len: int  # the largest that fits at all (0: not even one token)
    max_concurrency: float  # sequences of max_model_len at once
    commands: list[str]
    basis: str = COMPUTED
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return (
            not self.problems
            and self.largest_max_model_len > 0
            and self.max_model_len <= self.largest_max_model_len
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fits"] = self.fits
        return d

    def to_text(self) -> str:
        """The report ``gemma3-pack plan TARGET --engine vllm --gpus ...`` prints: the layout,
        the weights and KV cache per GPU, what fits, the commands and the notes."""
        layout = f"TP {self.tensor_parallel} x PP {self.pipeline_parallel}"
        lines = [
            f"{self.source} ({self.weights_kind}) on {self.gpus} x {format_bytes(self.gpu_memory)}"
            f"{f' over {self.nodes} nodes' if self.nodes > 1 else ''}, {layout}, "
            f"--gpu-memory-utilization {self.gpu_memory_utilization:g} ({self.basis})"
        ]
        w = self.weights_per_gpu
        lines.append(
            f"  weights per GPU: bf16 {format_bytes(w['bf16'])}, int4 QAT/AWQ "
            f"{format_bytes(w['int4'])}" + (" (with SigLIP)" if self.vision else "")
        )
        lines += [
            f"  stage {s.index}: layers {s.layers[0]}-{s.layers[1] - 1}, weights "
            f"{format_bytes(s.weights)}, activations ~{format_bytes(s.activations)}, "
            f"KV {format_bytes(s.kv)} per GPU"
            for s in self.stages
        ]
        lines.append(
            f"  KV: {self.kv_groups} groups of {self.group_size} layers, page {self.page_size} B; "
            f"{self.kv_bytes_per_token} B/token/GPU past the window "
            f"({self.kv_bytes_per_token_all_global} if every layer were global)"
        )
        lines.append(
            f"  GPU KV cache size: {self.kv_cache_tokens} tokens; largest --max-model-len "
            f"{self.largest_max_model_len}; {self.max_concurrency}x concurrency at "
            f"{self.max_model_len}"
        )
        lines.append("commands:")
        lines += [f"  {cmd}" for cmd in self.commands]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _max_model_len_for(
    available: int, groups_windows: list[int | None], group_size: int, page: int, limit: int, b: int
) -> int:
    """``_estimate_max_model_len_from_groups``: binary search over 1..limit."""
    if max_memory_usage(groups_windows, group_size, page, 1, b) > available:
        return 0
    lo, hi, best = 1, limit, 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if max_memory_usage(groups_windows, group_size, page, mid, b) <= available:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _resolve_size(target: str | Variant | Size) -> tuple[Size, str, str]:
    if isinstance(target, Size):
        v = VARIANTS[f"gemma3-{target.name}-it"]
    elif isinstance(target, Variant):
        v = target
    elif str(target).lower() in SIZES:
        v = VARIANTS[f"gemma3-{str(target).lower()}-it"]
    else:
        if str(target).lower().endswith(".gguf"):
            raise UsageError(
                "vLLM serves Hugging Face checkpoints, not GGUFs: give a variant (gemma3-27b-it)"
            )
        v = get_variant(str(target))
    return v.size, v.name, v.hf_repo


def plan_vllm(
    target: str | Variant | Size,
    gpus: str | GpuSet,
    *,
    nodes: int = 1,
    weights: str = "bf16",
    tensor_parallel: int | None = None,
    pipeline_parallel: int | None = None,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    kv_cache_dtype: str = "auto",
    max_num_batched_tokens: int | None = None,
    max_num_seqs: int | None = None,
    vision: bool | None = None,
    activations: int | None = None,
    master_addr: str = "HEAD_IP",
) -> VllmPlan:
    """Gemma 3 ``target`` (a variant or size) on ``gpus`` under vLLM's V1 engine.

    ``gpus`` is ``"2x24GB"`` (or a :class:`GpuSet`); with ``nodes`` > 1 the default layout is
    tensor parallel inside a node and pipeline parallel across nodes. ``weights`` is ``"bf16"``
    (Google's checkpoint) or ``"int4"`` (the QAT int4 AWQ checkpoint). ``activations`` replaces
    the estimate of the profiled peak (bytes per GPU). Every figure is computed, not measured.
    """
    size, name, hf_repo = _resolve_size(target)
    g = gpus if isinstance(gpus, GpuSet) else parse_gpus(gpus, nodes=nodes)
    weights = weights.lower()
    if weights in ("awq", "int4-awq", "qat"):
        weights = "int4"
    if weights not in WEIGHTS:
        raise UsageError(f"unknown weights {weights!r} for vLLM: choose bf16 or int4 (QAT AWQ)")
    kv_key = kv_cache_dtype.lower()
    if kv_key not in _KV_DTYPE_BYTES:
        raise UsageError(
            f"unknown KV cache dtype {kv_cache_dtype!r} for vLLM: choose auto (bf16) or fp8"
        )
    if not 0 < gpu_memory_utilization <= 1:
        raise UsageError("--gpu-memory-utilization must be above 0 and at most 1")
    per_node = g.count // g.nodes
    tp = tensor_parallel or per_node
    pp = pipeline_parallel or g.count // tp
    if tp * pp != g.count:
        raise UsageError(
            f"tensor-parallel {tp} x pipeline-parallel {pp} = {tp * pp} GPUs, but --gpus gives "
            f"{g.count}: make the product the GPU count"
        )
    if pp > size.num_layers:
        raise UsageError(f"{pp} pipeline stages for {size.num_layers} layers: use fewer")
    want_vision = size.multimodal if vision is None else vision
    if want_vision and not size.multimodal:
        raise UsageError(f"{name} has no vision tower (Gemma 3 270M and 1B are text-only)")
    big = g.memory >= 70 * GIB and "a100" not in g.name  # get_batch_defaults
    b = max_num_batched_tokens or (8192 if big else 2048)
    seqs = max_num_seqs or (1024 if big else 256)
    problems = tp_problems(size, tp, vision=want_vision)
    kv_heads = max(1, size.num_kv_heads // tp)
    page = page_size_bytes(kv_heads, size.head_dim, _KV_DTYPE_BYTES[kv_key])
    kinds = [
        "sliding" if (i + 1) % size.sliding_window_pattern else "full"
        for i in range(size.num_layers)
    ]
    window = {"full": None, "sliding": size.sliding_window}
    groups = group_layers(kinds)
    group_windows = [window[kinds[grp[0]]] for grp in groups]
    acts = (
        activations if activations is not None else activation_estimate(size, tp, b, min(seqs, b))
    )
    requested = int(g.memory * gpu_memory_utilization)
    stages: list[VllmStage] = []
    per_stage_windows: list[tuple[list[int | None], int]] = []
    weights_per_gpu = {"bf16": 0, "int4": 0}
    for i, (start, end) in enumerate(pp_partition(size.num_layers, pp)):
        own = set(range(start, end))
        proj = [[layer for layer in grp if layer in own] for grp in groups]
        stage_group_size = max(len(p) for p in proj)
        stage_windows = [w for w, p in zip(group_windows, proj, strict=True) if p]
        per_stage_windows.append((stage_windows, stage_group_size))
        w_each = {}
        for kind in WEIGHTS:
            w = _embedding_bytes(size, tp) + (end - start) * _layer_bytes(size, tp, kind)
            if want_vision:
                w += _vision_bytes(size, tp)
            w_each[kind] = w
            weights_per_gpu[kind] = max(weights_per_gpu[kind], w)
        budget = requested - w_each[weights] - acts
        blocks = num_blocks(max(budget, 0), page, stage_group_size)
        stages.append(VllmStage(i, (start, end), w_each[weights], acts, budget, blocks, 0))
    blocks = min(s.num_blocks for s in stages)
    for s, (_, gsz) in zip(stages, per_stage_windows, strict=True):
        s.kv = blocks * page * gsz  # vLLM shrinks every stage to the smallest block count
    spans = [s.layers for s in stages]
    stage_size = max(gsz for _, gsz in per_stage_windows)
    limit = size.context_length
    largest = min(
        _max_model_len_for(max(s.kv_budget, 0), w, gsz, page, limit, b)
        for s, (w, gsz) in zip(stages, per_stage_windows, strict=True)
    )
    chosen = max_model_len if max_model_len is not None else largest
    concurrency = (
        max_concurrency(blocks, group_windows, chosen, b) if chosen > 0 and blocks else 0.0
    )
    hf_model = hf_repo if weights == "bf16" else f"./gemma-3-{size.name}-it-int4-awq"
    commands = _commands(
        hf_model,
        tp,
        pp,
        g,
        gpu_memory_utilization,
        chosen or limit,
        kv_key,
        want_vision,
        size,
        master_addr,
    )
    notes = [
        "figures computed from vLLM's code (V1 engine, hybrid KV cache manager), not measured;"
        f" activations are an estimate ({format_bytes(acts)} per GPU): vLLM profiles them at start"
    ]
    if max_model_len is not None and max_model_len > largest:
        notes.append(
            f"--max-model-len {max_model_len} does not fit: vLLM would refuse to start; "
            f"the largest is {largest}"
        )
    if max_model_len is not None and max_model_len > limit:
        notes.append(f"{max_model_len} is beyond the model's trained context of {limit}")
    if kv_heads * tp > size.num_kv_heads:
        notes.append(
            f"{size.num_kv_heads} KV head(s) over {tp} GPUs: each GPU keeps a replica, so the KV "
            "cache per GPU does not shrink with more GPUs"
        )
    return VllmPlan(
        engine="vllm",
        source=name,
        size=size.name,
        hf_model=hf_model,
        weights_kind=weights,
        gpus=g.count,
        gpu_memory=g.memory,
        nodes=g.nodes,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        gpu_memory_utilization=gpu_memory_utilization,
        kv_cache_dtype=kv_key,
        max_num_batched_tokens=b,
        max_num_seqs=seqs,
        vision=want_vision,
        problems=problems,
        weights_per_gpu=weights_per_gpu,
        page_size=page,
        kv_bytes_per_token=page * stage_size // BLOCK_SIZE,
        kv_bytes_per_token_all_global=page // BLOCK_SIZE * max(e - s for s, e in spans),
        kv_sliding_per_sequence=page
        * stage_size
        * sum(kv_blocks_per_request(w, max(chosen, 1), b) for w in group_windows if w is not None),
        kv_groups=len(groups),
        group_size=max(len(grp) for grp in groups),
        stages=stages,
        num_blocks=blocks,
        kv_cache_tokens=blocks // len(groups) * BLOCK_SIZE,
        max_model_len=chosen,
        largest_max_model_len=largest,
        max_concurrency=round(concurrency, 2),
        commands=commands,
        notes=notes,
    )


def _commands(
    model: str,
    tp: int,
    pp: int,
    g: GpuSet,
    util: float,
    max_len: int,
    kv: str,
    vision: bool,
    size: Size,
    master: str,
) -> list[str]:
    base = f"vllm serve {model} --tensor-parallel-size {tp}"
    if pp > 1:
        base += f" --pipeline-parallel-size {pp}"
    opts = f" --max-model-len {max_len} --gpu-memory-utilization {util:g}"
    if kv not in ("auto", "bf16", "bfloat16"):
        opts += f" --kv-cache-dtype {kv}"
    if size.multimodal and not vision:
        opts += " --limit-mm-per-prompt '{\"image\": 0}'"
    if g.nodes == 1:
        return [base + opts]
    cmds = []
    for rank in range(g.nodes):
        cmd = (
            base
            + opts
            + f" --distributed-executor-backend mp --nnodes {g.nodes} --node-rank {rank}"
            + f" --master-addr {master}"
        )
        cmds.append(cmd + (" --headless" if rank else ""))
    return cmds


TABLE_SETUPS: tuple[tuple[str, str, str], ...] = (
    ("4b", "1x24GB", "bf16"),
    ("12b", "1x24GB", "int4"),
    ("12b", "2x24GB", "bf16"),
    ("27b", "2x24GB", "int4"),
    ("27b", "4x24GB", "bf16"),
    ("27b", "1x80GB", "bf16"),
    ("27b", "2x80GB", "bf16"),
)


def markdown_table() -> str:
    """docs/plan.md's vLLM table: a few common set-ups, computed (not measured)."""
    lines = [
        '| model | GPUs | weights | TP | weights per GPU | "GPU KV cache size" (tokens) '
        "| largest --max-model-len | sequences at it | sequences at 32K |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, gpus, weights in TABLE_SETUPS:
        p = plan_vllm(size, gpus, weights=weights)
        at32 = plan_vllm(size, gpus, weights=weights, max_model_len=32768)
        fits = p.largest_max_model_len > 0
        lines.append(
            f"| {SIZES[size].params} | {gpus} | {weights} | {p.tensor_parallel} "
            f"| {p.weights_per_gpu[weights] / GIB:.2f} GiB "
            f"| {p.kv_cache_tokens if fits else '-'} "
            f"| {p.largest_max_model_len if fits else 'does not fit'} "
            f"| {f'{p.max_concurrency:.2f}' if fits else '-'} "
            f"| {f'{at32.max_concurrency:.2f}' if at32.fits else '-'} |"
        )
    return "\n".join(lines)
