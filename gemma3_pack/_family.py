"""The Gemma 3 family: one table of truth.

Everything that depends on the model size reads this module: the CLI's choices, the generated
Modelfiles, the README's variants table, the exporter's config defaults and default quant types.

Sizes are approximate (GB = 1e9 bytes) and meant for planning; ``bf16_gb`` is the merged 16-bit
checkpoint, ``q4_k_m_gb`` the text GGUF at Q4_K_M.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ._errors import UsageError
from ._settings import GGUF_SAMPLING as _GGUF_SAMPLING
from ._settings import SAMPLING as _SAMPLING
from ._settings import STOP as _STOP

__all__ = [
    "EOT_TOKEN_ID",
    "FAMILY",
    "FUNCTIONGEMMA",
    "FUNCTIONGEMMA_MIN_OLLAMA",
    "FUNCTIONGEMMA_TOKENS",
    "GGUF_SAMPLING",
    "SAMPLING",
    "SIZES",
    "SLIDING_WINDOW_PATTERN",
    "STOP",
    "TOKENS",
    "VARIANTS",
    "Size",
    "Variant",
    "Vision",
    "get_size",
    "get_variant",
    "size_for_layers",
    "variants_markdown",
    "variants_text",
]

Kind = Literal["pt", "it", "it-qat"]


@dataclass(frozen=True)
class Vision:
    """The SigLIP vision tower shared by 4B, 12B and 27B."""

    image_size: int = 896
    patch_size: int = 14
    tokens_per_image: int = 256
    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 27
    num_heads: int = 16
    layer_norm_eps: float = 1e-6
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    params: str = "417M"


SIGLIP = Vision()


# One global attention layer in every 6 (5 local : 1 global), in every size (llama.cpp's default
# when gemma3.attention.sliding_window_pattern is absent).
SLIDING_WINDOW_PATTERN = 6


@dataclass(frozen=True)
class Size:
    """One model size and its architecture (Gemma3TextConfig values)."""

    name: str  # "270m", "1b", "4b", "12b", "27b"
    params: str  # size label as GGUF writes it (general.size_label)
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    context_length: int
    sliding_window: int
    rope_theta: float = 1_000_000.0
    rope_local_theta: float = 10_000.0
    rope_scaling_factor: float | None = None  # linear, global layers only
    query_pre_attn_scalar: int = 256
    sliding_window_pattern: int = SLIDING_WINDOW_PATTERN
    rms_norm_eps: float = 1e-6
    vision: Vision | None = None
    bf16_gb: float = 0.0
    q4_k_m_gb: float = 0.0

    @property
    def multimodal(self) -> bool:
        return self.vision is not None

    @property
    def architecture(self) -> str:
        return "Gemma3ForConditionalGeneration" if self.vision else "Gemma3ForCausalLM"


SIZES: dict[str, Size] = {
    s.name: s
    for s in (
        Size(
            "270m",
            "270M",
            18,
            640,
            4,
            1,
            256,
            2048,
            262144,
            32768,
            512,
            bf16_gb=0.54,
            q4_k_m_gb=0.25,
        ),
        Size(
            "1b", "1B", 26, 1152, 4, 1, 256, 6912, 262144, 32768, 512, bf16_gb=2.0, q4_k_m_gb=0.81
        ),
        Size(
            "4b",
            "4B",
            34,
            2560,
            8,
            4,
            256,
            10240,
            262208,
            131072,
            1024,
            rope_scaling_factor=8.0,
            vision=SIGLIP,
            bf16_gb=8.6,
            q4_k_m_gb=2.5,
        ),
        Size(
            "12b",
            "12B",
            48,
            3840,
            16,
            8,
            256,
            15360,
            262208,
            131072,
            1024,
            rope_scaling_factor=8.0,
            vision=SIGLIP,
            bf16_gb=24.4,
            q4_k_m_gb=7.3,
        ),
        Size(
            "27b",
            "27B",
            62,
            5376,
            32,
            16,
            128,
            21504,
            262208,
            131072,
            1024,
            rope_scaling_factor=8.0,
            query_pre_attn_scalar=168,
            vision=SIGLIP,
            bf16_gb=54.8,
            q4_k_m_gb=16.5,
        ),
    )
}


@dataclass(frozen=True)
class Variant:
    """A published checkpoint: a size plus pretrained / instruction-tuned / QAT."""

    size: Size
    kind: Kind
    hf_repo: str
    ollama_tag: str | None
    hf_gguf: str | None  # a GGUF repo `ollama run hf.co/<repo>:<QUANT>` can pull
    default_quants: tuple[str, ...]
    quant_by_target: dict[str, str] = field(default_factory=dict)
    # "gemma3", or a Gemma 3 model with its own prompt format ("functiongemma").
    family: str = "gemma3"
    # Ollama's built-in prompt renderer and reply parser for it (RENDERER/PARSER), if any.
    renderer: str | None = None

    @property
    def name(self) -> str:
        """The variant's id, e.g. ``gemma3-4b-it``, ``gemma3-12b-it-qat`` or
        ``functiongemma-270m-it``."""
        return f"{self.family}-{self.size.name}-{self.kind}"

    @property
    def qat(self) -> bool:
        return self.kind == "it-qat"

    @property
    def from_ref(self) -> str | None:
        """What a Modelfile's FROM names for this variant (library tag, else hf.co GGUF)."""
        if self.ollama_tag:
            return self.ollama_tag
        if self.hf_gguf:
            quant = "Q4_0" if self.qat else "Q4_K_M"
            return f"hf.co/{self.hf_gguf}:{quant}"
        return None

    def to_dict(self) -> dict[str, object]:
        """One row of ``gemma3-pack variants --json``."""
        s = self.size
        return {
            "variant": self.name,
            "hf_repo": self.hf_repo,
            "ollama_tag": self.ollama_tag,
            "params": s.params,
            "layers": s.num_layers,
            "hidden": s.hidden_size,
            "heads": s.num_heads,
            "kv_heads": s.num_kv_heads,
            "head_dim": s.head_dim,
            "ffn": s.intermediate_size,
            "vocab": s.vocab_size,
            "context": s.context_length,
            "sliding_window": s.sliding_window,
            "rope_scaling": s.rope_scaling_factor,
            "vision": s.multimodal,
            "default_quants": list(self.default_quants),
            "quant_by_target": dict(self.quant_by_target),
            "bf16_gb": s.bf16_gb,
            "q4_k_m_gb": s.q4_k_m_gb,
        }


def _targets(size: str, kind: Kind) -> dict[str, str]:
    """Recommended quant per target (PocketPal's device rules; ggml-org's QAT recipe)."""
    if kind == "it-qat":
        return {"desktop": "Q4_0", "android": "Q4_0", "ios": "Q4_0"}
    if size == "270m":
        return {"desktop": "Q8_0", "android": "Q8_0", "ios": "Q8_0"}
    if size == "1b":
        return {"desktop": "Q4_K_M", "android": "Q4_K_M", "ios": "Q4_K_M"}
    return {"desktop": "Q4_K_M", "android": "Q4_0", "ios": "Q4_K_M"}


def _variant(size: str, kind: Kind) -> Variant:
    s = SIZES[size]
    suffix = {"pt": "pt", "it": "it", "it-qat": "it-qat-q4_0-unquantized"}[kind]
    # 270M's pretrained repo has no suffix; the others are "-pt".
    hf_repo = (
        f"google/gemma-3-{size}"
        if (size == "270m" and kind == "pt")
        else f"google/gemma-3-{size}-{suffix}"
    )
    tag: str | None
    if kind == "it":
        tag = f"gemma3:{size}"
    elif kind == "it-qat":
        tag = None if size == "270m" else f"gemma3:{size}-it-qat"
    else:
        tag = None
    hf_gguf = {
        "it": f"ggml-org/gemma-3-{size}-it-GGUF",
        "it-qat": f"google/gemma-3-{size}-it-qat-q4_0-gguf",
        "pt": None,
    }[kind]
    if kind == "it-qat":
        defaults: tuple[str, ...] = ("Q4_0",)
    elif size == "270m":
        defaults = ("Q8_0", "Q4_K_M")
    else:
        defaults = ("Q4_K_M",)
    return Variant(s, kind, hf_repo, tag, hf_gguf, defaults, _targets(size, kind))


_KINDS: tuple[Kind, ...] = ("pt", "it", "it-qat")
VARIANTS: dict[str, Variant] = {
    v.name: v for size in SIZES for kind in _KINDS for v in [_variant(size, kind)]
}
# FunctionGemma: Gemma 3 270M trained for function calling, with its own prompt format and seven
# control tokens (FUNCTIONGEMMA_TOKENS). Ollama (>= 0.13.5, FUNCTIONGEMMA_MIN_OLLAMA) prompts and
# parses it with its built-in `functiongemma` renderer and parser.
FUNCTIONGEMMA = Variant(
    SIZES["270m"],
    "it",
    "google/functiongemma-270m-it",
    "functiongemma:270m",
    "unsloth/functiongemma-270m-it-GGUF",
    ("Q8_0", "Q4_K_M"),
    _targets("270m", "it"),
    family="functiongemma",
    renderer="functiongemma",
)
VARIANTS[FUNCTIONGEMMA.name] = FUNCTIONGEMMA

FAMILY = VARIANTS  # alias used in docs

# The Gemma team's sampling settings: one table in gemma3_pack._settings (Modelfile/Ollama names
# here; GGUF_SAMPLING below holds llama.cpp's GGUF keys and types; the SDK reads per-server names).
SAMPLING = _SAMPLING
STOP = _STOP


def get_variant(name: str) -> Variant:
    """Look a variant up by id (``gemma3-4b-it``), Ollama tag (``gemma3:4b``) or HF repo."""
    key = name.strip()
    low = key.lower()
    if low in VARIANTS:
        return VARIANTS[low]
    for v in VARIANTS.values():
        if low in {(v.ollama_tag or "").lower(), v.hf_repo.lower(), v.name.removeprefix("gemma3-")}:
            return v
    if low in {"gemma3", "gemma3:latest"}:
        return VARIANTS["gemma3-4b-it"]
    if low in {"functiongemma", "functiongemma:latest"}:
        return FUNCTIONGEMMA
    raise UsageError(
        f"unknown Gemma 3 variant {name!r}: choose one of {', '.join(VARIANTS)} "
        "(or an Ollama tag such as gemma3:4b)"
    )


def get_size(name: str) -> Size:
    try:
        return SIZES[name.lower()]
    except KeyError:
        raise UsageError(
            f"unknown Gemma 3 size {name!r}: choose one of {', '.join(SIZES)}"
        ) from None


def size_for_layers(num_layers: int) -> Size | None:
    """The released size with this many text layers (llama.cpp keys model type off it)."""
    for s in SIZES.values():
        if s.num_layers == num_layers:
            return s
    return None


# The same settings under llama.cpp's GGUF key names (llama.cpp PR #17120), with their GGUF types.
GGUF_SAMPLING = _GGUF_SAMPLING

# Token ids every Gemma 3 vocabulary shares.
TOKENS: dict[str, int] = {
    "<pad>": 0,
    "<eos>": 1,
    "<bos>": 2,
    "<unk>": 3,
    "<mask>": 4,
    "<start_of_turn>": 105,
    "<end_of_turn>": 106,
    "<start_of_image>": 255999,
    "<end_of_image>": 256000,
}
EOT_TOKEN_ID = TOKENS["<end_of_turn>"]
# FunctionGemma's control tokens: Gemma 3's reserved slots <unused40>..<unused46> renamed (ids as
# Google's google/functiongemma-270m-it tokenizer has them). Code that types them checks the
# file's own token text at each id first and never acts on an id whose text differs.
FUNCTIONGEMMA_TOKENS: dict[str, int] = {
    "<start_function_declaration>": 46,
    "<end_function_declaration>": 47,
    "<start_function_call>": 48,
    "<end_function_call>": 49,
    "<start_function_response>": 50,
    "<end_function_response>": 51,
    "<escape>": 52,
}
# The first Ollama release with the `functiongemma` renderer and parser (ollama/ollama#13521).
FUNCTIONGEMMA_MIN_OLLAMA = "0.13.5"
IMAGE_SOFT_TOKEN_ID = 262144  # 4B+ only


def variants_text() -> str:
    """``gemma3-pack variants``: one line per variant (params, context, window, vision, tag,
    default quants)."""
    lines = [
        f"{'variant':<20} {'params':>6} {'ctx':>7} {'swa':>5} {'vision':>6}  "
        f"{'ollama tag':<20} default quants"
    ]
    for v in VARIANTS.values():
        s = v.size
        lines.append(
            f"{v.name:<20} {s.params:>6} {s.context_length:>7} {s.sliding_window:>5} "
            f"{'yes' if s.multimodal else 'no':>6}  {v.ollama_tag or '-':<20} "
            f"{','.join(v.default_quants)}"
        )
    return "\n".join(lines)


def variants_markdown() -> str:
    """The README's variants table (a test keeps README.md equal to this)."""
    lines = [
        "| variant | params | layers | hidden | heads/kv | ctx | window | vision | HF repo "
        "| Ollama tag | default quants | Android / iOS | ~BF16 / Q4_K_M GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS.values():
        s = v.size
        lines.append(
            f"| `{v.name}` | {s.params} | {s.num_layers} | {s.hidden_size} | "
            f"{s.num_heads}/{s.num_kv_heads} | {s.context_length // 1024}K | {s.sliding_window} | "
            f"{'SigLIP 896px, 256 tok' if s.multimodal else '-'} | `{v.hf_repo}` | "
            f"{'`' + v.ollama_tag + '`' if v.ollama_tag else '-'} | {', '.join(v.default_quants)} | "
            f"{v.quant_by_target['android']} / {v.quant_by_target['ios']} | "
            f"{s.bf16_gb:g} / {s.q4_k_m_gb:g} |"
        )
    return "\n".join(lines)
