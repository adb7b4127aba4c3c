"""Report and lint a Gemma 3 GGUF: what llama.cpp, LM Studio and phone apps will see in it.

Reads only the header (``_reader``), so it takes milliseconds even for a 27B file. The lint
findings name the problems this project exists to fix — a missing or non-official chat template,
turn tokens typed NORMAL, missing sampling settings, an mmproj file name apps will not pick up —
and, where gemma3-pack fixes them, the command that does.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from gguf.constants import Keys, LlamaFileType, TokenType

from .._chat import template_kind
from .._family import EOT_TOKEN_ID, FUNCTIONGEMMA_TOKENS, GGUF_SAMPLING, TOKENS, size_for_layers
from .._rules import Checks, Finding, passes  # one Finding and one rule table (inspect, doctor)
from ._reader import GGUFHeader, open_gguf

__all__ = [
    "ANY_GGUF",
    "MMPROJ",
    "MMPROJ_NAME",
    "MODEL",
    "Finding",
    "GGUFReport",
    "Subject",
    "inspect_gguf",
    "is_mmproj_name",
    "report_of",
]

# How phone apps (PocketPal, and llama.cpp's own -hf download) recognise a projector file.
MMPROJ_NAME = re.compile(r"[-_.]*mmproj[-_.].+\.gguf", re.IGNORECASE)


def is_mmproj_name(path: str | os.PathLike[str]) -> bool:
    """Whether a file name says "vision projector" the way Ollama and llama.cpp name one
    (``mmproj-….gguf``, ``….mmproj-f16.gguf``): the name is all that is read."""
    return MMPROJ_NAME.search(Path(path).name) is not None


PATCH_HINT = "run `gemma3-pack patch FILE --in-place`"
SPECIAL_IDS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
)


@dataclass
class GGUFReport:
    """Everything :func:`inspect_gguf` found; ``to_dict()`` is what ``inspect --json`` prints."""

    path: str
    file_size: int
    kind: str  # "model", "mmproj", or "other" (not Gemma 3)
    architecture: str | None
    name: str | None = None
    size_label: str | None = None
    file_type: str | None = None
    gguf_version: int = 3
    tensor_count: int = 0
    tensor_types: dict[str, dict[str, int]] = field(default_factory=dict)
    context_length: int | None = None
    sliding_window: int | None = None
    embedding_length: int | None = None
    block_count: int | None = None
    vocab_size: int | None = None
    template_present: bool = False
    # _chat.template_kind: "official", "official-no-bos", "ollama-launch", "other" or None
    template_kind: str | None = None
    template_length: int = 0
    sampling: dict[str, float | int] = field(default_factory=dict)
    add_bos_token: bool | None = None
    eot_token_id: int | None = None
    special_tokens: list[dict[str, Any]] = field(default_factory=list)
    projector: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No errors or warnings (info findings are fine)."""
        return passes(self.findings)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def to_text(self) -> str:
        """The human report ``gemma3-pack inspect`` prints."""
        rows: list[tuple[str, str]] = [
            ("file", f"{self.path} ({self.file_size / 1e6:,.1f} MB, GGUF v{self.gguf_version})"),
            ("architecture", f"{self.architecture} ({self.kind})"),
        ]
        if self.name or self.size_label:
            rows.append(("name", f"{self.name or '-'} [{self.size_label or '?'}]"))
        if self.file_type:
            rows.append(("file type", self.file_type))
        mix = ", ".join(
            f"{t} {v['count']} ({v['bytes'] / 1e6:,.1f} MB)" for t, v in self.tensor_types.items()
        )
        rows.append(("tensors", f"{self.tensor_count}: {mix}"))
        if self.kind != "mmproj":
            rows += [
                ("context", _fmt(self.context_length)),
                ("sliding window", _fmt(self.sliding_window)),
                ("embedding / blocks", f"{_fmt(self.embedding_length)} / {_fmt(self.block_count)}"),
                ("vocab", _fmt(self.vocab_size)),
                (
                    "chat template",
                    f"{self.template_kind} ({self.template_length} chars)"
                    if self.template_present
                    else "missing",
                ),
                (
                    "sampling",
                    ", ".join(
                        f"{k.removeprefix('general.sampling.')}={v:g}"
                        for k, v in self.sampling.items()
                    )
                    or "none",
                ),
                ("add_bos / eot", f"{self.add_bos_token} / {_fmt(self.eot_token_id)}"),
            ]
            for tok in self.special_tokens:
                rows.append((f"token {tok['id']}", f"{tok['text']!r} {tok['type']}"))
        if self.projector:
            p = self.projector
            rows.append(
                (
                    "projector",
                    f"{p['projector_type']}, {p['image_size']} px, patch "
                    f"{p['patch_size']}, {p['vision_blocks']} blocks, projects to "
                    f"{p['projection_dim']}; apps find it by name: "
                    f"{'yes' if p['name_matches_apps'] else 'NO'}",
                )
            )
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        if self.findings:
            lines.append("findings:")
            lines += [f"  {f.level:<7} {f.code}: {f.message}" for f in self.findings]
        else:
            lines.append("findings: none - ready for llama.cpp, Ollama, LM Studio and phone apps")
        return "\n".join(lines)


def _fmt(v: object) -> str:
    return "-" if v is None else str(v)


def _float32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def inspect_gguf(path: str | os.PathLike[str]) -> GGUFReport:
    """Read ``path``'s header and report on it; lint findings in ``report.findings``.

    Works on any GGUF (a non-Gemma-3 file gets a ``not-gemma3`` error finding); raises
    ``NotGGUF``/``InputNotFound`` only when the file cannot be read as GGUF at all.
    """
    with open_gguf(path) as h:
        return report_of(h)


def report_of(h: GGUFHeader) -> GGUFReport:
    arch = h.architecture
    kind = "other"
    if arch == "gemma3":
        kind = "model"
    elif arch == "clip" and h.get("clip.projector_type") == "gemma3":
        kind = "mmproj"
    ftype = h.get(Keys.General.FILE_TYPE)
    try:
        ftype_name = (
            LlamaFileType(ftype).name.removeprefix("MOSTLY_") if ftype is not None else None
        )
    except ValueError:
        ftype_name = str(ftype)
    r = GGUFReport(
        str(h.path),
        h.size,
        kind,
        arch,
        name=h.get(Keys.General.NAME),
        size_label=h.get(Keys.General.SIZE_LABEL),
        file_type=ftype_name,
        gguf_version=h.version,
        tensor_count=len(h.tensors),
    )
    mix: dict[str, dict[str, int]] = {}
    for t in h.tensors:
        slot = mix.setdefault(t.type_name, {"count": 0, "bytes": 0})
        slot["count"] += 1
        slot["bytes"] += t.nbytes or 0
    r.tensor_types = dict(sorted(mix.items(), key=lambda kv: -kv[1]["bytes"]))
    r.findings = ANY_GGUF.run(Subject(h, r))
    if kind == "mmproj":
        _projector(h, r)
        r.findings += MMPROJ.run(Subject(h, r))
        return r

    r.context_length = h.get(f"{arch}.context_length")
    r.sliding_window = h.get(f"{arch}.attention.sliding_window")
    r.embedding_length = h.get(f"{arch}.embedding_length")
    r.block_count = h.get(f"{arch}.block_count")
    tokens = h.kvs.get(Keys.Tokenizer.LIST)
    r.vocab_size = tokens.count if tokens else None
    template = h.get(Keys.Tokenizer.CHAT_TEMPLATE)
    r.template_present = isinstance(template, str)
    r.template_kind = template_kind(template) if r.template_present else None
    r.template_length = len(template) if r.template_present else 0
    # f32 values shown as the shortest decimal that round-trips (0.95, not 0.949999988)
    r.sampling = {
        k: float(f"{v:.7g}") if isinstance(v, float) else v
        for k in GGUF_SAMPLING
        if (v := h.get(k)) is not None
    }
    r.add_bos_token = h.get(Keys.Tokenizer.ADD_BOS)
    r.eot_token_id = h.get(Keys.Tokenizer.EOT_ID)
    if kind == "other":
        return r

    if tokens is not None:
        texts = h.strings(Keys.Tokenizer.LIST, [TOKENS[n] for n in SPECIAL_IDS])
        types_kv = h.kvs.get(Keys.Tokenizer.TOKEN_TYPE)
        for name in SPECIAL_IDS:
            tid = TOKENS[name]
            if tid >= tokens.count:
                continue
            ttype: str | None = None
            if types_kv is not None and tid < types_kv.count:
                raw = int(h.array_item(Keys.Tokenizer.TOKEN_TYPE, tid))
                ttype = TokenType(raw).name if raw in TokenType._value2member_map_ else str(raw)
            r.special_tokens.append(
                {"name": name, "id": tid, "text": texts.get(tid), "type": ttype}
            )
        # FunctionGemma: its seven control tokens, listed only when all are at their ids.
        fg = h.strings(Keys.Tokenizer.LIST, FUNCTIONGEMMA_TOKENS.values())
        if all(fg.get(tid) == name for name, tid in FUNCTIONGEMMA_TOKENS.items()):
            for name, tid in FUNCTIONGEMMA_TOKENS.items():
                ttype = None
                if types_kv is not None and tid < types_kv.count:
                    raw = int(h.array_item(Keys.Tokenizer.TOKEN_TYPE, tid))
                    ttype = TokenType(raw).name if raw in TokenType._value2member_map_ else str(raw)
                r.special_tokens.append({"name": name, "id": tid, "text": name, "type": ttype})
    r.findings += MODEL.run(Subject(h, r))
    return r


def _projector(h: GGUFHeader, r: GGUFReport) -> None:
    name = Path(h.path).name
    r.projector = {
        "projector_type": h.get("clip.projector_type"),
        "image_size": h.get("clip.vision.image_size"),
        "patch_size": h.get("clip.vision.patch_size"),
        "vision_blocks": h.get("clip.vision.block_count"),
        "embedding_length": h.get("clip.vision.embedding_length"),
        "projection_dim": h.get("clip.vision.projection_dim"),
        "use_gelu": h.get("clip.use_gelu"),
        "name_matches_apps": bool(MMPROJ_NAME.search(name)),
    }


# --- the checks of the rule table's GGUF rows (gemma3_pack/_rules.py), in the table's order ------


class Subject(NamedTuple):
    """What a GGUF check reads: the header and the report built from it."""

    h: GGUFHeader
    r: GGUFReport


ANY_GGUF: Checks[Subject] = Checks("gguf")  # every GGUF, Gemma 3 or not
MODEL: Checks[Subject] = Checks("gguf")  # a Gemma 3 text model
MMPROJ: Checks[Subject] = Checks("mmproj")  # a Gemma 3 projector


@ANY_GGUF("llama-cpp-rejects")
def _llama_cpp_rejects(s: Subject) -> Iterator[str]:
    for problem in s.h.problems:  # what llama.cpp's loader would refuse (the reader collected it)
        yield f"{problem}: re-convert the model"


@ANY_GGUF("not-gemma3")
def _not_gemma3(s: Subject) -> Iterator[str]:
    if s.r.kind == "other":
        arch = s.r.architecture
        yield (
            f"architecture is {arch!r} (projector {s.h.get('clip.projector_type')!r})"
            if arch == "clip"
            else f"architecture is {arch!r}, not gemma3: gemma3-pack's settings do not apply"
        )


@MODEL("template-missing")
def _template_missing(s: Subject) -> Iterator[str]:
    if not s.r.template_present:
        yield (
            "no tokenizer.chat_template: llama-cpp-python falls back to llama-2 and llama.cpp to "
            "ChatML, so chat is garbled; " + PATCH_HINT
        )


def _functiongemma(r: GGUFReport) -> list[dict[str, Any]]:
    return [t for t in r.special_tokens if t["name"] in FUNCTIONGEMMA_TOKENS]


@MODEL("template-not-official")
def _template_not_official(s: Subject) -> Iterator[str]:
    if _functiongemma(s.r):  # FunctionGemma has its own format (patch keeps its template)
        return
    if s.r.template_present and s.r.template_kind not in (
        "official",
        "tools",  # patch --tools
        "official-no-bos",
        "ollama-launch",
    ):
        yield (
            f"the chat template is not Google's official one (kind: {s.r.template_kind}); "
            f"{PATCH_HINT} to replace it"
        )


@MODEL("template-launch-era")
def _template_launch_era(s: Subject) -> Iterator[str]:
    if s.r.template_kind == "ollama-launch":
        yield (
            "the launch-era Gemma 3 template: it breaks on list-content system prompts; "
            f"{PATCH_HINT} to update it"
        )


@MODEL("template-no-bos")
def _template_no_bos(s: Subject) -> Iterator[str]:
    if s.r.template_kind == "official-no-bos":
        yield (
            "Google's template without its leading {{ bos_token }}: llama.cpp adds BOS itself, "
            "but tools that recognise the official text (Hugging Face's Ollama mapper) will not; "
            + PATCH_HINT
        )


def _turn_tokens(r: GGUFReport) -> Iterator[dict[str, Any]]:
    return (t for t in r.special_tokens if t["name"] in ("<start_of_turn>", "<end_of_turn>"))


@MODEL("vocab-mismatch")
def _vocab_mismatch(s: Subject) -> Iterator[str]:
    for tok in _turn_tokens(s.r):
        if tok["text"] != tok["name"]:
            yield (
                f"token {tok['id']} is {tok['text']!r}, not {tok['name']}: not a Gemma 3 "
                "vocabulary; re-convert the model"
            )
    if (s.r.vocab_size or 0) <= TOKENS["<end_of_turn>"]:  # empty: no turn tokens at all
        yield (
            f"the vocabulary has {s.r.vocab_size or 0} tokens, too few to hold Gemma 3's turn "
            "tokens (its vocabulary has 262,144): re-convert the model"
        )


@MODEL("turn-token-not-control")
def _turn_token_not_control(s: Subject) -> Iterator[str]:
    for tok in _turn_tokens(s.r):
        if tok["text"] == tok["name"] and tok["type"] != "CONTROL":
            yield (
                f"{tok['name']} ({tok['id']}) is typed {tok['type']}, not CONTROL: it will be "
                f"printed and may not end turns; {PATCH_HINT}"
            )


@MODEL("functiongemma-token-not-control")
def _functiongemma_token_not_control(s: Subject) -> Iterator[str]:
    for tok in _functiongemma(s.r):
        if tok["type"] != "CONTROL":
            yield (
                f"FunctionGemma's {tok['name']} ({tok['id']}) is typed {tok['type']}, not "
                f"CONTROL: llama.cpp may split it into plain-text pieces in prompts; {PATCH_HINT}"
            )


@MODEL("sampling-missing")
def _sampling_missing(s: Subject) -> Iterator[str]:
    missing = [k for k in GGUF_SAMPLING if k not in s.r.sampling]
    if missing:
        yield (
            "no "
            + ", ".join(k.removeprefix("general.sampling.") for k in missing)
            + " in general.sampling.*: llama.cpp will use its own defaults instead of Gemma's; "
            + PATCH_HINT
        )


@MODEL("sampling-off-spec")
def _sampling_off_spec(s: Subject) -> Iterator[str]:
    for key, value in s.r.sampling.items():
        want = GGUF_SAMPLING[key][0]
        if _float32(float(value)) != _float32(float(want)):
            yield f"{key} is {value:g}, the Gemma team recommends {want:g}; {PATCH_HINT} to reset it"


@MODEL("eot-missing")
def _eot_missing(s: Subject) -> Iterator[str]:
    if s.r.eot_token_id is None:
        yield (
            "no tokenizer.ggml.eot_token_id: llama.cpp finds <end_of_turn> by its text; "
            + PATCH_HINT
            + " to make it explicit"
        )


@MODEL("eot-unusual")
def _eot_unusual(s: Subject) -> Iterator[str]:
    if s.r.eot_token_id is not None and s.r.eot_token_id != EOT_TOKEN_ID:
        yield (
            f"tokenizer.ggml.eot_token_id is {s.r.eot_token_id}, not {EOT_TOKEN_ID} "
            "(<end_of_turn>): turns may not end"
        )


def _template_text(h: GGUFHeader) -> str:
    return h.get(Keys.Tokenizer.CHAT_TEMPLATE) or ""


@MODEL("bos-missing")
def _bos_missing(s: Subject) -> Iterator[str]:
    template = _template_text(s.h)
    renders_bos = "bos_token" in template or "<bos>" in template
    if s.r.add_bos_token is False and s.r.template_present and not renders_bos:
        yield (
            "add_bos_token is false and the template does not render <bos>: prompts start "
            "without BOS and Gemma degrades"
        )


@MODEL("double-bos")
def _double_bos(s: Subject) -> Iterator[str]:
    template = _template_text(s.h)
    if s.r.add_bos_token and "<bos>" in template and "bos_token" not in template:
        yield (
            "the template writes a literal <bos> and add_bos_token is true: runtimes that do "
            "not strip it see two BOS tokens; " + PATCH_HINT
        )


@MODEL("sliding-window-missing")
def _sliding_window_missing(s: Subject) -> Iterator[str]:
    if s.r.sliding_window is None:
        yield (
            "no gemma3.attention.sliding_window: llama.cpp uses full attention on every layer, "
            "unlike Gemma 3; re-convert"
        )


@MODEL("unusual-depth")
def _unusual_depth(s: Subject) -> Iterator[str]:
    if s.r.block_count is not None and size_for_layers(s.r.block_count) is None:
        yield (
            f"{s.r.block_count} layers is not a released Gemma 3 size: llama.cpp picks "
            "attention scale by layer count (27B = 62)"
        )


@MODEL("vocab-size-mismatch")
def _vocab_size_mismatch(s: Subject) -> Iterator[str]:
    embd = next((t for t in s.h.tensors if t.name == "token_embd.weight"), None)
    rows = embd.shape[-1] if embd is not None and embd.shape else 0  # a 0-D tensor has no rows
    if embd is not None and s.r.vocab_size is not None and rows != s.r.vocab_size:
        yield (
            f"token_embd has {rows} rows but the vocabulary has {s.r.vocab_size} tokens: "
            "re-convert the model"
        )


@MODEL("model-named-like-mmproj")
def _model_named_like_mmproj(s: Subject) -> Iterator[str]:
    if MMPROJ_NAME.search(Path(s.r.path).name):
        yield (
            "this text model's file name matches the mmproj pattern apps use for projectors: "
            "rename it without 'mmproj'"
        )


@MMPROJ("mmproj-name")
def _mmproj_name(s: Subject) -> Iterator[str]:
    assert s.r.projector is not None
    if not s.r.projector["name_matches_apps"]:
        name = Path(s.h.path).name
        yield (
            f"phone apps find projectors by a name matching {MMPROJ_NAME.pattern!r}; "
            f"rename {name!r} to e.g. 'mmproj-{name}'"
        )


@MMPROJ("mmproj-gelu")
def _mmproj_gelu(s: Subject) -> Iterator[str]:
    assert s.r.projector is not None
    if s.r.projector["use_gelu"] is not True:
        yield (
            "clip.use_gelu is not true: clip.cpp falls back to gelu_quick and image features "
            "are wrong; re-export the mmproj"
        )


@MMPROJ("mmproj-key-missing")
def _mmproj_key_missing(s: Subject) -> Iterator[str]:
    for key in (
        "clip.vision.image_size",
        "clip.vision.patch_size",
        "clip.vision.block_count",
        "clip.vision.projection_dim",
        "clip.vision.embedding_length",
    ):
        if s.h.get(key) is None:
            yield (
                f"{key} is missing: llama.cpp's clip loader refuses the file; re-export the mmproj"
            )
