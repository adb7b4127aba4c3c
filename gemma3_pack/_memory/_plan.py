"""Will it fit? The memory llama.cpp allocates for a Gemma 3 model, computed before loading it.

Four buffers make up what a loaded model costs, each computed the way llama.cpp sizes it
(llama.cpp as vendored in llama-cpp-python 0.3.36; the source files are named per function):

    weights   every tensor's bytes: exactly from a GGUF's tensor table, or for a family variant
              from its shapes and llama.cpp's quantization policy (``src/llama-quant.cpp``)
    KV cache  per layer (``src/llama-kv-cache.cpp``, ``src/llama-kv-cache-iswa.cpp``): five of every
              six Gemma 3 layers are sliding-window layers whose cache holds the window plus one
              micro-batch (padded to 256 cells), the sixth is global and holds the whole context;
              ``swa_full`` gives every layer the whole context (llama.cpp's ``--swa-full``, and the
              C API's default that llama-cpp-python's ``Llama()`` inherits)
    compute   the scratch buffer of the worst-case graph (``src/llama-context.cpp``): the logits of
              one micro-batch (n_vocab x n_ubatch f32) dominate with flash attention; without it
              the global layers' attention scores (n_ctx x n_ubatch x n_head f32) can
    output    the logits kept for each sequence (n_vocab x n_seq f32)

plus, for 4B/12B/27B with images, the SigLIP projector (mmproj) and its image-encoder scratch.
``n_ctx`` is padded to a multiple of 256 as llama.cpp does; with ``parallel`` > 1 each sequence
gets ``n_ctx / parallel`` (again padded) unless the cache is unified.

Memory sizes are bytes; ``parse_memory("24GB")`` reads the usual spellings (GB = 1e9, GiB = 2^30).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .._errors import InputError, NotGemma3, UsageError
from .._family import SIZES, SLIDING_WINDOW_PATTERN, VARIANTS, Size, Variant, get_variant
from .._quants import GGML, QUANTS, TensorSpec, row_bytes, tensor_types

__all__ = [
    "COMMON_QUANTS",
    "KV_TYPES",
    "TABLE_CONTEXTS",
    "Arch",
    "Fit",
    "MemoryPlan",
    "fit_memory",
    "fits_text",
    "format_bytes",
    "kv_cache_bytes",
    "markdown_table",
    "parse_memory",
    "plan_memory",
    "quant_tensor_types",
]

_BY_ID = {t.id: t.name for t in GGML.values()}  # ggml type names by id (the one quant table)

# The file types a plan knows (what `-q` names) -> the default ggml type of their layer tensors.
QUANT_DEFAULT: dict[str, str] = {
    n: QUANTS[n].default for n in ("Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16")
}
COMMON_QUANTS: tuple[str, ...] = ("Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "BF16")
"""File types a plan knows, lowest to highest quality (``--memory`` picks the highest that fits)."""
TABLE_QUANTS: tuple[str, ...] = ("Q4_0", "Q4_K_M", "Q8_0", "BF16")
TABLE_CONTEXTS: tuple[int, ...] = (4096, 32768, 131072)
KV_TYPES: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
"""Cache types llama.cpp's ``-ctk``/``-ctv`` (and Ollama's ``OLLAMA_KV_CACHE_TYPE``) accept."""
# CPU backends copy these into a second, interleaved buffer ("CPU_REPACK") on x86 AVX2 and ARM.
_REPACKED = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})

N_UBATCH = 512  # llama.cpp's and Ollama's default micro-batch (num_batch)
MAX_SEQ = 256  # LLAMA_MAX_SEQ (src/llama-cparams.h): llama.cpp refuses more sequences
MAX_CTX = 2**32 - 1  # n_ctx is a uint32_t in llama_context_params
MAX_LAYERS = 1024  # far above any Gemma 3 (62); a header claiming more is refused before planning
CTX_PAD = 256  # llama-context.cpp: n_ctx = GGML_PAD(n_ctx, 256); the SWA cache too
DEFAULT_CTX = 4096  # Ollama's default num_ctx from v0.6.7 to v0.15.4
ENGINES = ("llama.cpp", "ollama")
_GGUF_ALIGN = 32


def format_bytes(n: float) -> str:
    """``1234567890`` -> ``"1.15 GiB"`` (binary units, as llama.cpp's log prints MiB)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


_MEMORY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_memory(text: str | int | float) -> int:
    """``"24GB"`` -> 24e9, ``"16GiB"`` -> 16 * 2**30, ``"512MB"``, ``"8g"``; a number is bytes."""
    if isinstance(text, int | float):
        if isinstance(text, bool) or not 0 <= text < 2**60:  # also NaN and inf
            raise UsageError(f"memory size {text!r}: give a number of bytes below 1 EiB")
        return int(text)
    m = _MEMORY.match(text)
    if not m or (not m.group(2) and m.group(3)):
        raise UsageError(f"cannot read memory size {text!r}: write it like 24GB, 16GiB or 512MB")
    number, prefix, binary = float(m.group(1)), m.group(2).lower(), bool(m.group(3))
    power = "kmgt".index(prefix) + 1 if prefix else 0
    value = number * (1024 if binary else 1000) ** power
    if not value < 2**60:  # also inf, from a number with hundreds of digits
        raise UsageError(f"memory size {text[:24]!r} is too large: give at most 1 EiB")
    return int(value)


@dataclass(frozen=True)
class Arch:
    """The shape facts memory depends on, from the family table or from a GGUF's header."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context_length: int
    sliding_window: int  # 0 = every layer global
    swa_pattern: int = (
        SLIDING_WINDOW_PATTERN  # llama.cpp: layer il is global iff il % pattern == pattern - 1
    )
    vision: bool = False

    @classmethod
    def from_size(cls, s: Size) -> Arch:
        return cls(
            layers=s.num_layers,
            hidden=s.hidden_size,
            heads=s.num_heads,
            kv_heads=s.num_kv_heads,
            head_dim=s.head_dim,
            ffn=s.intermediate_size,
            vocab=s.vocab_size,
            context_length=s.context_length,
            sliding_window=s.sliding_window,
            swa_pattern=s.sliding_window_pattern,
            vision=s.multimodal,
        )

    @classmethod
    def from_header(cls, kvs: dict[str, Any], vocab: int, *, n_tensors: int | None = None) -> Arch:
        """Read ``gemma3.*`` keys the way llama.cpp's ``llama_model_gemma3`` does (same defaults).

        Every count is checked before anything loops over it or divides by it: a whole number in
        the range a Gemma-3-shaped model can have (a header claiming 2**31 blocks, a string or a
        0 head count is refused in one line, not planned for hours)."""

        def key(name: str, default: Any = None, *, lo: int = 1, hi: int = 2**20) -> int:
            value = kvs.get(f"gemma3.{name}", default)
            if value is None:
                raise NotGemma3(f"the GGUF has no gemma3.{name}; it is not a Gemma 3 model file")
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                shown = repr(value) if len(repr(value)) < 40 else type(value).__name__
                raise InputError(
                    f"the GGUF's gemma3.{name} is {shown}, not a whole number from {lo} to {hi}: "
                    "the header is damaged or not Gemma 3's"
                )
            return value

        layers = key("block_count", hi=MAX_LAYERS)
        heads = key("attention.head_count", hi=1024)
        hidden = key("embedding_length")
        kv_heads = key("attention.head_count_kv", heads, hi=heads)
        pattern = kvs.get("gemma3.attention.sliding_window_pattern", SLIDING_WINDOW_PATTERN)
        if not isinstance(pattern, int) or isinstance(pattern, bool) or not 0 <= pattern <= layers:
            pattern = 6  # per-layer flags or nonsense: llama.cpp's Gemma 3 pattern
        if not 0 < vocab <= 2**24:
            raise InputError(f"the GGUF's vocabulary of {vocab} tokens is not a Gemma 3 one")
        arch = cls(
            layers=layers,
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=key("attention.key_length", max(hidden // heads, 1), hi=65536),
            ffn=key("feed_forward_length", hi=2**22),
            vocab=vocab,
            context_length=key("context_length", hi=MAX_CTX),
            sliding_window=key("attention.sliding_window", 0, lo=0, hi=MAX_CTX),
            swa_pattern=pattern,
        )
        if n_tensors is not None and layers > n_tensors:
            raise InputError(
                f"the GGUF claims {layers} blocks but holds {n_tensors} tensors: the header is damaged"
            )
        return arch

    def is_swa(self, il: int) -> bool:
        if not self.sliding_window:
            return False
        p = self.swa_pattern
        return p == 0 or il % p < p - 1

    @property
    def swa_layers(self) -> int:
        """Layers with a sliding window: all but every ``pattern``-th (counted, not looped)."""
        if not self.sliding_window:
            return 0
        p = self.swa_pattern
        return self.layers if p == 0 else self.layers - self.layers // p

    @property
    def global_layers(self) -> int:
        return self.layers - self.swa_layers


# ---------------------------------------------------------------------------------------------
# weights


def _tensor_shapes(a: Arch) -> list[tuple[str, tuple[int, ...]]]:
    """Every text tensor of a Gemma 3 GGUF in ggml order (ne0 first), as llama.cpp creates them."""
    q, kv = a.heads * a.head_dim, a.kv_heads * a.head_dim
    out: list[tuple[str, tuple[int, ...]]] = [
        ("token_embd.weight", (a.hidden, a.vocab)),
        ("output_norm.weight", (a.hidden,)),
    ]
    for i in range(a.layers):
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", (a.hidden,)),
            (b + "attn_q.weight", (a.hidden, q)),
            (b + "attn_k.weight", (a.hidden, kv)),
            (b + "attn_v.weight", (a.hidden, kv)),
            (b + "attn_output.weight", (q, a.hidden)),
            (b + "attn_q_norm.weight", (a.head_dim,)),
            (b + "attn_k_norm.weight", (a.head_dim,)),
            (b + "post_attention_norm.weight", (a.hidden,)),
            (b + "ffn_norm.weight", (a.hidden,)),
            (b + "ffn_gate.weight", (a.hidden, a.ffn)),
            (b + "ffn_up.weight", (a.hidden, a.ffn)),
            (b + "ffn_down.weight", (a.ffn, a.hidden)),
            (b + "post_ffw_norm.weight", (a.hidden,)),
        ]
    return out


def quant_tensor_types(a: Arch, quant: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, ggml type) per tensor of a text GGUF llama.cpp's quantizer writes at ``quant``.

    The exporter's choice (:func:`gemma3_pack._quants.tensor_types`, ``llama_tensor_get_type_impl``)
    over the tensors llama.cpp creates for ``a``. For Gemma 3's tied embeddings: ``token_embd`` gets the
    output policy (Q6_K, or Q8_0 when its rows do not fill 256-blocks or the file is Q8_0);
    Q4_K_M/Q5_K_M give ``attn_v`` and ``ffn_down`` Q6_K on the ``use_more_bits`` layers; then the
    shape fallback (270M/1B rows are not multiples of 256). 1-D tensors stay F32.
    """
    quant = quant.upper()
    if quant not in QUANT_DEFAULT:
        raise UsageError(
            f"unknown quant {quant!r} for planning: choose one of {', '.join(QUANT_DEFAULT)}"
        )
    default = QUANT_DEFAULT[quant]
    shapes = _tensor_shapes(a)
    specs = [  # llama.cpp's choice reads numpy order (rows first) and the float file's type
        TensorSpec(name, shape[::-1], "F32" if len(shape) == 1 else default)
        for name, shape in shapes
    ]
    types = tensor_types(specs, quant, n_layers=a.layers, n_head=a.heads, n_head_kv=a.kv_heads)
    return [(name, shape, t) for (name, shape), t in zip(shapes, types, strict=True)]


def _tensor_bytes(shape: tuple[int, ...], type_name: str) -> int:
    rows = 1
    for d in shape[1:]:
        rows *= d
    return row_bytes(type_name, shape[0]) * rows


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _weights_for_quant(a: Arch, quant: str) -> tuple[int, int]:
    """(bytes as laid out in the GGUF's data section, bytes a CPU backend repacks)."""
    total = repack = 0
    for _name, shape, t in quant_tensor_types(a, quant):
        n = _tensor_bytes(shape, t)
        total += _pad(n, _GGUF_ALIGN)
        if t in _REPACKED:
            repack += n
    return total, repack


# SigLIP-So400m as llama.cpp's converter writes the projector (`--mmproj`, F16): 2-D weights F16,
# embeddings and 1-D tensors F32, mm.input_projection forced F16 (see reference/llamacpp.md §2).
def _mmproj_bytes(text_hidden: int) -> int:
    from .._family import SIGLIP as v

    d, f, n = v.hidden_size, v.intermediate_size, v.num_layers
    patches = (v.image_size // v.patch_size) ** 2
    per_layer = 4 * (d * d * 2 + d * 4) + (d * f * 2 + f * 4) + (f * d * 2 + d * 4) + 4 * d * 4
    fixed = (
        v.patch_size * v.patch_size * 3 * d * 4  # v.patch_embd.weight
        + d * 4  # v.patch_embd.bias
        + patches * d * 4  # v.position_embd.weight
        + 2 * d * 4  # v.post_ln
        + text_hidden * d * 2  # mm.input_projection.weight
        + d * 4  # mm.soft_emb_norm.weight
    )
    return n * per_layer + fixed


def _mmproj_compute_bytes(flash_attn: bool, dims: tuple[int, int, int, int] | None = None) -> int:
    """Scratch of one image through the tower (SigLIP at 896 px: 4096 patches): activations, plus
    without flash attention all heads' patch x patch f32 scores. ``dims`` = (patches, width, ffn,
    heads) of a projector file; default Gemma 3's SigLIP."""
    from .._family import SIGLIP as v

    patches, width, ffn, heads = dims or (
        (v.image_size // v.patch_size) ** 2,
        v.hidden_size,
        v.intermediate_size,
        v.num_heads,
    )
    act = patches * (3 * width + 2 * ffn) * 4
    scores = 0 if flash_attn else 2 * heads * patches * patches * 4
    return act + scores


def _vision_dims(h: Any, prefix: str) -> tuple[int, int, int, int] | None:
    """(patches, width, ffn, heads) from ``clip.vision.*`` or a fused file's ``gemma3.vision.*``."""
    vals = [
        h.get(f"{prefix}.{k}")
        for k in (
            "image_size",
            "patch_size",
            "embedding_length",
            "feed_forward_length",
            "attention.head_count",
        )
    ]
    if not all(isinstance(x, int) and x > 0 for x in vals):
        return None
    image, patch, width, ffn, heads = vals
    return ((image // patch) ** 2, width, ffn, heads)


# ---------------------------------------------------------------------------------------------
# KV cache and compute


@dataclass(frozen=True)
class KVCache:
    """The two caches llama.cpp's ``llama_kv_cache_iswa`` allocates (or one without SWA)."""

    n_ctx: int  # after padding, as llama.cpp logs it
    n_ctx_seq: int
    streams: int
    global_cells: int
    swa_cells: int
    global_layers: int
    swa_layers: int
    global_bytes: int
    swa_bytes: int

    @property
    def bytes(self) -> int:
        return self.global_bytes + self.swa_bytes


def kv_cache_bytes(
    a: Arch,
    ctx: int,
    *,
    parallel: int = 1,
    kv_type: str = "f16",
    kv_type_v: str | None = None,
    swa_full: bool = False,
    unified: bool = False,
    n_ubatch: int = N_UBATCH,
) -> KVCache:
    """The KV cache llama.cpp allocates at ``ctx`` tokens (``n_ctx``) for ``parallel`` sequences."""
    kt, vt = kv_type.upper(), (kv_type_v or kv_type).upper()
    for t in (kt, vt):
        if t.lower() not in KV_TYPES:
            raise UsageError(
                f"unknown KV cache type {t.lower()!r}: choose one of {', '.join(KV_TYPES)}"
            )
    for name, value, hi in (("context", ctx, MAX_CTX), ("parallel", parallel, MAX_SEQ)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            shown = repr(value) if len(repr(value)) < 24 else "that"
            why = " (llama.cpp serves at most 256 sequences)" if name == "parallel" else ""
            raise UsageError(f"{name} must be a whole number from 1 to {hi}, not {shown}{why}")
    if isinstance(n_ubatch, bool) or not isinstance(n_ubatch, int) or not 1 <= n_ubatch <= 2**20:
        raise UsageError("the micro-batch (--ubatch) must be a whole number from 1 to 1048576")
    n_ctx = _pad(ctx, CTX_PAD)
    if unified:
        n_ctx_seq, streams = n_ctx, 1
    else:
        n_ctx_seq = _pad(n_ctx // parallel, CTX_PAD)
        n_ctx, streams = n_ctx_seq * parallel, parallel
    n_ubatch = min(n_ubatch, ctx)  # llama-context.cpp clamps n_batch to the asked n_ctx first
    per_cell = row_bytes(kt, a.kv_heads * a.head_dim) + row_bytes(vt, a.kv_heads * a.head_dim)
    if a.sliding_window:
        swa = _pad(
            min(n_ctx_seq, a.sliding_window * (parallel if unified else 1) + n_ubatch), CTX_PAD
        )
        if swa_full:
            swa = n_ctx_seq
    else:
        swa = 0
    g, s = a.global_layers, a.swa_layers
    return KVCache(
        n_ctx=n_ctx,
        n_ctx_seq=n_ctx_seq,
        streams=streams,
        global_cells=n_ctx_seq,
        swa_cells=swa,
        global_layers=g,
        swa_layers=s,
        global_bytes=g * n_ctx_seq * streams * per_cell,
        swa_bytes=s * swa * streams * per_cell,
    )


def _compute_bytes(a: Arch, kv: KVCache, *, n_ubatch: int, flash_attn: bool) -> int:
    """Estimate of llama.cpp's worst-case compute buffer. Its graph allocator reuses memory, so
    the buffer is the largest live set, not a sum: either the output stage (the logits of a whole
    micro-batch, n_vocab x n_ubatch f32, plus two hidden-state rows) or a global layer (its
    attention mask, the FFN's intermediates and, without flash attention, the f32 scores of all
    heads against the whole context). Fitted to llama.cpp's log; the error is in the README."""
    ub = min(n_ubatch, kv.n_ctx)
    output_stage = (a.vocab + 2 * a.hidden) * ub * 4
    n_kv = kv.global_cells if a.global_layers else kv.swa_cells
    per_kv = 2 if flash_attn else 4 * a.heads + 4  # f16 mask, or f32 scores + f32 mask
    layer_stage = n_kv * ub * per_kv + (a.ffn + 2 * a.hidden) * ub * 4
    return max(output_stage, layer_stage)


def _ollama_compute_bytes(a: Arch, kv: KVCache, *, n_ubatch: int) -> int:
    """Estimate of Ollama's "compute graph" for Gemma 3 (its log, 0.24.0): it reserves logits for
    one token only, so the buffer is the larger of an FFN stage and the global layers' f16 mask
    plus a ~20 MiB remainder. Fitted on three widths; the README gives the errors."""
    ub = min(n_ubatch, kv.n_ctx)
    n_kv = kv.global_cells if a.global_layers else kv.swa_cells
    return max((3 * a.ffn + 3 * a.hidden) * ub * 4, n_kv * ub * 2 + 20 * 2**20)


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class MemoryPlan:
    """What one model costs at one context; ``to_dict()`` is what ``plan --json`` prints."""

    engine: str  # "llama.cpp" or "ollama"
    source: str  # variant id or GGUF path
    size: str | None  # "270m" ... "27b" when known
    quant: str
    ctx: int  # as asked
    n_ctx: int  # as llama.cpp allocates it (padded to 256, times parallel)
    parallel: int
    kv_type: str
    swa_full: bool
    flash_attn: bool
    weights: int
    kv: int
    kv_global: int
    kv_swa: int
    kv_cells_global: int
    kv_cells_swa: int
    compute: int
    output: int
    mmproj: int = 0
    mmproj_compute: int = 0
    image_tokens: int = 0  # per image, when vision is planned
    cpu_repack: int = 0  # extra copy CPU backends make of Q4_0/Q4_K/IQ4_NL weights
    exact_weights: bool = False  # True when read from a GGUF's tensor table
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            self.weights + self.kv + self.compute + self.output + self.mmproj + self.mmproj_compute
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total"] = self.total
        return d

    def to_text(self) -> str:
        """The report ``gemma3-pack plan TARGET`` prints: one row per allocation, then the notes."""
        seqs = f"{self.parallel} sequence{'s' if self.parallel > 1 else ''}"
        lines = [
            f"{self.source} {self.quant} at {self.ctx} tokens on {self.engine} "
            f"(n_ctx {self.n_ctx}, {seqs})"
        ]
        where = "exact, from the tensor table" if self.exact_weights else "family table"
        rows = [
            ("weights", self.weights, where),
            (
                "KV cache",
                self.kv,
                f"{self.kv_type}: global {format_bytes(self.kv_global)} "
                f"({self.kv_cells_global} cells), "
                f"sliding {format_bytes(self.kv_swa)} ({self.kv_cells_swa} cells)",
            ),
            (
                "compute",
                self.compute,
                "estimate" + ("" if self.flash_attn else ", flash attention off"),
            ),
        ]
        if self.output:
            rows.append(("output", self.output, "logits per sequence"))
        if self.mmproj:
            rows.append(
                ("mmproj", self.mmproj, f"SigLIP projector; {self.image_tokens} tokens per image")
            )
            rows.append(("image encoder", self.mmproj_compute, "estimate, one 896x896 image"))
        lines += [f"  {label:14} {format_bytes(n):>11}  {why}" for label, n, why in rows]
        lines.append(f"  {'total':14} {format_bytes(self.total):>11}")
        if self.cpu_repack:
            lines.append(
                f"  (+{format_bytes(self.cpu_repack)} on CPU backends that repack Q4_0/Q4_K weights)"
            )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Source:
    name: str
    size: str | None
    arch: Arch
    quant: str
    weights: int
    repack: int
    exact: bool
    mmproj: int | None  # exact mmproj bytes when a projector file is given
    tied_output: int = 0  # token_embd bytes when there is no output.weight (Ollama loads it twice)
    vision_dims: tuple[int, int, int, int] | None = None  # from a projector file, else SigLIP


_READ_ONCE: contextvars.ContextVar[dict[tuple[Any, ...], Any] | None] = contextvars.ContextVar(
    "gemma3_pack_read_ggufs_once", default=None
)


@contextlib.contextmanager
def read_ggufs_once() -> Iterator[None]:
    """Inside this block, planning reads each GGUF's header once, however often the same file is
    planned (the model card's "Fits on" table plans every export for every card). The files must
    not change meanwhile; outside the block every plan reads the file afresh."""
    token = _READ_ONCE.set({})
    try:
        yield
    finally:
        _READ_ONCE.reset(token)


def read_once(key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
    """``read()``, or what it gave for ``key`` earlier inside :func:`read_ggufs_once`."""
    memo = _READ_ONCE.get()
    if memo is None:
        return read()
    if key not in memo:
        memo[key] = read()
    return memo[key]


def _gguf_source(path: Path, quant: str | None, mmproj_path: Path | None) -> _Source:
    key = ("source", str(path), str(mmproj_path))
    source: _Source = read_once(key, lambda: _read_gguf_source(path, None, mmproj_path))
    return source if quant is None else replace(source, quant=quant)  # a label only


def _read_gguf_source(path: Path, quant: str | None, mmproj_path: Path | None) -> _Source:
    from .._family import size_for_layers
    from .._gguf._reader import open_gguf

    with open_gguf(path) as h:
        arch_name = h.architecture
        if arch_name != "gemma3":
            raise NotGemma3(
                f"{path} is a {arch_name or 'non-model'} GGUF, not a Gemma 3 text model"
                + (
                    " (give the text GGUF first, the mmproj with --mmproj)"
                    if arch_name == "clip"
                    else ""
                )
            )
        kvs = {k: kv.value for k, kv in h.kvs.items() if kv.value is not None}
        tokens = h.kvs.get("tokenizer.ggml.tokens")
        embd = next((t for t in h.tensors if t.name == "token_embd.weight"), None)
        if embd is not None and len(embd.shape) != 2:
            raise InputError(
                f"{path}: token_embd.weight has shape {list(embd.shape)}, expected "
                "[embedding_length, vocab]: re-convert the model"
            )
        vocab = tokens.count if tokens else (embd.shape[1] if embd else 0)
        arch = Arch.from_header(kvs, vocab, n_tensors=len(h.tensors))
        text = [t for t in h.tensors if not t.name.startswith(("v.", "mm."))]
        if any(t.nbytes is None for t in text):
            raise InputError(f"{path} has tensors of a type this gguf version cannot size")
        weights = sum(int(t.nbytes or 0) for t in text)
        repack = sum(int(t.nbytes or 0) for t in text if _BY_ID.get(t.ggml_type) in _REPACKED)
        fused_vision = sum(
            int(t.nbytes or 0) for t in h.tensors if t.name.startswith(("v.", "mm."))
        )
        file_type = h.get("general.file_type")
        dims = _vision_dims(h, "gemma3.vision") if fused_vision else None
        tied = (
            int(embd.nbytes or 0)
            if embd is not None and not any(t.name == "output.weight" for t in text)
            else 0
        )
    if quant is None:
        from gguf.constants import LlamaFileType

        try:
            quant = (
                LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
                if file_type is not None
                else "?"
            )
        except ValueError:
            quant = str(file_type)
    mm: int | None = fused_vision or None
    if mmproj_path is not None:
        with open_gguf(mmproj_path) as m:
            if m.architecture != "clip":
                raise InputError(f"{mmproj_path} is not an mmproj (clip) GGUF")
            mm = sum(int(t.nbytes or 0) for t in m.tensors)
            dims = _vision_dims(m, "clip.vision")
    s = size_for_layers(arch.layers)
    if mm:
        arch = Arch(**{**asdict(arch), "vision": True})
    return _Source(
        str(path), s.name if s else None, arch, quant, weights, repack, True, mm, tied, dims
    )


def _variant_source(v: Variant, quant: str | None) -> _Source:
    q = (quant or v.default_quants[0]).upper()
    arch = Arch.from_size(v.size)
    weights, repack = _weights_for_quant(arch, q)
    name, shape, t = quant_tensor_types(replace(arch, layers=0), q)[0]
    assert name == "token_embd.weight"
    tied = _tensor_bytes(shape, t)
    return _Source(v.name, v.size.name, arch, q, weights, repack, False, None, tied)


def _names_a_variant(path: Path, text: str) -> bool:
    """A folder named like a variant (an HF checkout ``google/gemma-3-4b-it``, an export's
    ``-o``) in the working directory: the name is meant, not the folder."""
    if not path.is_dir():
        return False
    try:
        return text.lower() in SIZES or bool(get_variant(text))
    except UsageError:
        return False


def _resolve(
    target: str | Path | Variant | Size, quant: str | None, mmproj: str | Path | None
) -> _Source:
    if isinstance(target, Variant | Size) and mmproj is not None:
        raise UsageError(
            "--mmproj goes with a text GGUF; a variant's projector comes from the family table"
        )
    if isinstance(target, Variant):
        return _variant_source(target, quant)
    if isinstance(target, Size):
        return _variant_source(VARIANTS[f"gemma3-{target.name}-it"], quant)
    text = str(target)
    path = Path(text)
    if text.lower().endswith(".gguf") or (path.exists() and not _names_a_variant(path, text)):
        if not path.exists():
            from .._errors import InputNotFound

            raise InputNotFound(f"no such GGUF: {path}")
        # open_gguf refuses a folder, FIFO or device before opening it
        return _gguf_source(path, quant, Path(mmproj) if mmproj is not None else None)
    if mmproj is not None:
        raise UsageError(
            "--mmproj goes with a text GGUF; a variant's projector comes from the family table"
        )
    if text.lower() in SIZES:
        return _variant_source(VARIANTS[f"gemma3-{text.lower()}-it"], quant)
    return _variant_source(get_variant(text), quant)


def plan_memory(
    target: str | Path | Variant | Size,
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
    engine: str = "llama.cpp",
) -> MemoryPlan:
    """The memory llama.cpp allocates for ``target`` (a variant, a size or a GGUF path).

    ``quant`` picks the file type of a variant (default: its first default quant); for a GGUF
    it only relabels. ``vision`` adds the projector for 4B+ (default: on when the variant or
    file has vision, or an ``mmproj`` file is given). ``flash_attn`` is what llama.cpp's
    ``auto`` resolves to on CPU and recent GPUs, and what Ollama turns on for Gemma 3.

    ``engine="ollama"`` plans Ollama's own Gemma 3 engine instead (measured on Ollama 0.24.0):
    the same KV cache, the tied embedding loaded twice (as input and as output), a much smaller
    compute graph (it reserves logits for one token), and no separate output buffer.
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    src = _resolve(target, quant, mmproj)
    a = src.arch
    kv = kv_cache_bytes(
        a,
        ctx,
        parallel=parallel,
        kv_type=kv_type,
        swa_full=swa_full,
        unified=unified,
        n_ubatch=n_ubatch,
    )
    want_vision = a.vision if vision is None else vision
    if want_vision and not a.vision and src.mmproj is None:
        raise UsageError(f"{src.name} has no vision tower (Gemma 3 270M and 1B are text-only)")
    mm = (src.mmproj if src.mmproj is not None else _mmproj_bytes(a.hidden)) if want_vision else 0
    ollama = engine == "ollama"
    notes = []
    if kv.n_ctx != ctx:
        notes.append(f"llama.cpp pads the context to {kv.n_ctx} (multiples of 256 per sequence)")
    if ctx > a.context_length:
        notes.append(f"{ctx} is beyond the model's trained context of {a.context_length}")
    if kv_type.lower() != "f16" and not flash_attn:
        notes.append("llama.cpp needs flash attention for a quantized V cache")
    return MemoryPlan(
        engine=engine,
        source=src.name,
        size=src.size,
        quant=src.quant,
        ctx=ctx,
        n_ctx=kv.n_ctx,
        parallel=parallel,
        kv_type=kv_type.lower(),
        swa_full=swa_full,
        flash_attn=flash_attn,
        weights=src.weights + (src.tied_output if ollama else 0),
        kv=kv.bytes,
        kv_global=kv.global_bytes,
        kv_swa=kv.swa_bytes,
        kv_cells_global=kv.global_cells,
        kv_cells_swa=kv.swa_cells,
        compute=(
            _ollama_compute_bytes(a, kv, n_ubatch=n_ubatch)
            if ollama
            else _compute_bytes(a, kv, n_ubatch=n_ubatch, flash_attn=flash_attn)
        ),
        output=0 if ollama else a.vocab * parallel * 4,
        mmproj=mm,
        mmproj_compute=_mmproj_compute_bytes(flash_attn, src.vision_dims) if want_vision else 0,
        image_tokens=256 if want_vision else 0,
        cpu_repack=0 if ollama else src.repack,  # Ollama's log shows no repacked buffer
        exact_weights=src.exact,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# what fits


@dataclass
class Fit:
    """The best quant of one variant that fits a memory budget, and its largest context."""

    variant: str
    quant: str | None  # None: not even the smallest quant fits at the minimum context
    max_ctx: int
    total: int
    memory: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fits_text(
    fits: Sequence[Fit],
    memory: int | str,
    *,
    kv_type: str = "f16",
    parallel: int = 1,
    min_ctx: int = DEFAULT_CTX,
) -> str:
    """What ``gemma3-pack plan --memory`` prints for :func:`fit_memory`'s answer (given the same
    ``memory``, ``kv_type``, ``parallel`` and ``min_ctx``): the budget, then one row per variant."""
    lines = [
        f"budget {format_bytes(parse_memory(memory))} ({memory}); "
        f"KV {kv_type}, {parallel} sequence(s)"
    ]
    for f in fits:
        if f.quant is None:
            lines.append(f"  {f.variant:24} does not fit at {min_ctx} tokens")
        else:
            lines.append(
                f"  {f.variant:24} {f.quant:7} up to {f.max_ctx:>6} tokens ({format_bytes(f.total)})"
            )
    return "\n".join(lines)


def largest_context(fits: Any, *, limit: int, step: int = CTX_PAD) -> int:
    """The largest multiple of ``step`` up to ``limit`` for which ``fits(ctx)`` holds (0 if none);
    memory grows with context, so a bisection finds it."""
    lo, hi = 0, limit // step
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * step):
            lo = mid
        else:
            hi = mid - 1
    return lo * step


def fit_memory(
    memory: int | str,
    target: str | Path | Variant | None = None,
    *,
    quant: str | None = None,
    min_ctx: int = DEFAULT_CTX,
    **options: Any,
) -> list[Fit]:
    """For each variant (or just ``target``), the highest-quality quant that fits ``memory`` at
    ``min_ctx`` tokens, and the largest context (up to the trained one) it fits at.

    A GGUF target or an explicit ``quant`` is planned as is. QAT variants only ship Q4_0.
    """
    budget = parse_memory(memory)
    if target is not None:
        candidates = [(target, [quant])]
    else:
        candidates = [
            (v, [quant] if quant else (["Q4_0"] if v.qat else list(reversed(COMMON_QUANTS))))
            for v in VARIANTS.values()
            if v.kind != "pt"
        ]
    out = []
    for t, quants in candidates:
        best: Fit | None = None
        for q in quants:
            first = plan_memory(t, quant=q, ctx=min_ctx, **options)
            if first.total > budget:
                continue
            limit = _resolve(t, q, options.get("mmproj")).arch.context_length

            def fits(c: int, t: Any = t, q: str | None = q) -> bool:
                return plan_memory(t, quant=q, ctx=c, **options).total <= budget

            best_ctx = largest_context(fits, limit=limit)
            final = plan_memory(t, quant=q, ctx=best_ctx, **options)
            best = Fit(first.source, first.quant, best_ctx, final.total, budget)
            break
        if best is None:
            name = str(t) if not isinstance(t, Variant) else t.name
            best = Fit(name, None, 0, 0, budget)
        out.append(best)
    return out


def markdown_table(*, kv_type: str = "f16") -> str:
    """The README's plan table: every size x common quants x 4K/32K/128K contexts, in GiB,
    with vision (mmproj F16 + image scratch) included for 4B+."""
    head = (
        "| size | quant | weights | "
        + " | ".join(f"total @ {c // 1024}K" for c in TABLE_CONTEXTS)
        + " | KV @ 128K (SWA / if all global) |"
    )
    lines = [head, "|---|---|---|" + "---|" * len(TABLE_CONTEXTS) + "---|"]
    for s in SIZES.values():
        a = Arch.from_size(s)
        for q in TABLE_QUANTS:
            cells = []
            for c in TABLE_CONTEXTS:
                if c > s.context_length:
                    cells.append("-")
                    continue
                p = plan_memory(s, quant=q, ctx=c, kv_type=kv_type)
                cells.append(f"{p.total / 2**30:.2f}")
            c_max = s.context_length
            kv = kv_cache_bytes(a, c_max, kv_type=kv_type)
            full = kv_cache_bytes(a, c_max, kv_type=kv_type, swa_full=True)
            w = plan_memory(s, quant=q, ctx=DEFAULT_CTX).weights
            lines.append(
                f"| {s.params} | {q} | {w / 2**30:.2f} | "
                + " | ".join(cells)
                + f" | {kv.bytes / 2**30:.2f} / {full.bytes / 2**30:.2f} @ {c_max // 1024}K |"
            )
    return "\n".join(lines)
