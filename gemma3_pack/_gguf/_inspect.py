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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from gguf.constants import Keys, LlamaFileType, TokenType

from .._chat import template_kind
from .._family import EOT_TOKEN_ID, GGUF_SAMPLING, TOKENS, size_for_layers
from .._rules import RULES, Finding  # one Finding and one rule table (inspect, doctor)
from ._reader import GGUFHeader, open_gguf

__all__ = ["MMPROJ_NAME", "Finding", "GGUFReport", "inspect_gguf", "is_mmproj_name"]

# How phone apps (PocketPal, and llama.cpp's own -hf download) recognise a projector file.
MMPROJ_NAME = re.compile(r"[-_.]*mmproj[-_.].+\.gguf", re.IGNORECASE)


def is_mmproj_name(path: str | os.PathLike[str]) -> bool:
    """Whether a file name says "vision projector" the way Ollama and llama.cpp name one
    (``mmproj-….gguf``, ``….mmproj-f16.gguf``): the name is all that is read."""
    return MMPROJ_NAME.search(Path(path).name) is not None


Level = Literal["error", "warning", "info"]
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
        return not any(f.level in ("error", "warning") for f in self.findings)

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
        report = report_of(h)
    # the fix column comes from the rule table (gemma3_pack/_rules.py)
    report.findings = [
        replace(f, fix=RULES[f.code].fix) if f.code in RULES else f for f in report.findings
    ]
    return report


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
    add = r.findings.append
    for problem in h.problems:  # what llama.cpp's loader would refuse (the reader collected it)
        add(Finding("llama-cpp-rejects", "error", f"{problem}: re-convert the model"))

    if kind == "other":
        add(
            Finding(
                "not-gemma3",
                "error",
                f"architecture is {arch!r} (projector {h.get('clip.projector_type')!r})"
                if arch == "clip"
                else f"architecture is {arch!r}, not gemma3: gemma3-pack's settings do not apply",
            )
        )
    if kind == "mmproj":
        _projector(h, r)
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
    _lint_model(h, r)
    return r


def _lint_model(h: GGUFHeader, r: GGUFReport) -> None:
    add = r.findings.append
    # chat template
    if not r.template_present:
        add(
            Finding(
                "template-missing",
                "error",
                "no tokenizer.chat_template: llama-cpp-python "
                "falls back to llama-2 and llama.cpp to ChatML, so chat is garbled; " + PATCH_HINT,
            )
        )
    elif r.template_kind == "official-no-bos":
        add(
            Finding(
                "template-no-bos",
                "info",
                "Google's template without its leading "
                "{{ bos_token }}: llama.cpp adds BOS itself, but tools that recognise the "
                f"official text (Hugging Face's Ollama mapper) will not; {PATCH_HINT}",
            )
        )
    elif r.template_kind == "ollama-launch":
        add(
            Finding(
                "template-launch-era",
                "warning",
                "the launch-era Gemma 3 template: it "
                f"breaks on list-content system prompts; {PATCH_HINT} to update it",
            )
        )
    elif r.template_kind not in ("official", "tools"):  # tools: patch --tools
        add(
            Finding(
                "template-not-official",
                "warning",
                f"the chat template is not Google's "
                f"official one (kind: {r.template_kind}); {PATCH_HINT} to replace it",
            )
        )
    # turn tokens
    for tok in r.special_tokens:
        if tok["name"] in ("<start_of_turn>", "<end_of_turn>"):
            if tok["text"] != tok["name"]:
                add(
                    Finding(
                        "vocab-mismatch",
                        "error",
                        f"token {tok['id']} is {tok['text']!r}, "
                        f"not {tok['name']}: not a Gemma 3 vocabulary; re-convert the model",
                    )
                )
            elif tok["type"] != "CONTROL":
                add(
                    Finding(
                        "turn-token-not-control",
                        "error",
                        f"{tok['name']} ({tok['id']}) is "
                        f"typed {tok['type']}, not CONTROL: it will be printed and may not "
                        f"end turns; {PATCH_HINT}",
                    )
                )
    # sampling
    missing = [k for k in GGUF_SAMPLING if k not in r.sampling]
    if missing:
        add(
            Finding(
                "sampling-missing",
                "warning",
                "no "
                + ", ".join(k.removeprefix("general.sampling.") for k in missing)
                + " in general.sampling.*: "
                "llama.cpp will use its own defaults instead of Gemma's; " + PATCH_HINT,
            )
        )
    for key, value in r.sampling.items():
        want = GGUF_SAMPLING[key][0]
        if _float32(float(value)) != _float32(float(want)):
            add(
                Finding(
                    "sampling-off-spec",
                    "warning",
                    f"{key} is {value:g}, the Gemma team "
                    f"recommends {want:g}; {PATCH_HINT} to reset it",
                )
            )
    # end of turn / BOS
    if r.eot_token_id is None:
        add(
            Finding(
                "eot-missing",
                "info",
                "no tokenizer.ggml.eot_token_id: llama.cpp finds "
                "<end_of_turn> by its text; " + PATCH_HINT + " to make it explicit",
            )
        )
    elif r.eot_token_id != EOT_TOKEN_ID:
        add(
            Finding(
                "eot-unusual",
                "warning",
                f"tokenizer.ggml.eot_token_id is {r.eot_token_id}, "
                f"not {EOT_TOKEN_ID} (<end_of_turn>): turns may not end",
            )
        )
    template = h.get(Keys.Tokenizer.CHAT_TEMPLATE) or ""
    renders_bos = "bos_token" in template or "<bos>" in template
    if r.add_bos_token is False and r.template_present and not renders_bos:
        add(
            Finding(
                "bos-missing",
                "warning",
                "add_bos_token is false and the template does not "
                "render <bos>: prompts start without BOS and Gemma degrades",
            )
        )
    if r.add_bos_token and "<bos>" in template and "bos_token" not in template:
        add(
            Finding(
                "double-bos",
                "warning",
                "the template writes a literal <bos> and "
                "add_bos_token is true: runtimes that do not strip it see two BOS tokens; "
                + PATCH_HINT,
            )
        )
    # architecture sanity
    if r.sliding_window is None:
        add(
            Finding(
                "sliding-window-missing",
                "warning",
                "no gemma3.attention.sliding_window: "
                "llama.cpp uses full attention on every layer, unlike Gemma 3; re-convert",
            )
        )
    if r.block_count is not None and size_for_layers(r.block_count) is None:
        add(
            Finding(
                "unusual-depth",
                "info",
                f"{r.block_count} layers is not a released Gemma 3 "
                "size: llama.cpp picks attention scale by layer count (27B = 62)",
            )
        )
    embd = next((t for t in h.tensors if t.name == "token_embd.weight"), None)
    rows = embd.shape[-1] if embd is not None and embd.shape else 0  # a 0-D tensor has no rows
    if embd is not None and r.vocab_size is not None and rows != r.vocab_size:
        add(
            Finding(
                "vocab-size-mismatch",
                "error",
                f"token_embd has {rows} rows but "
                f"the vocabulary has {r.vocab_size} tokens: re-convert the model",
            )
        )
    if (r.vocab_size or 0) <= TOKENS["<end_of_turn>"]:  # empty: no turn tokens at all
        add(
            Finding(
                "vocab-mismatch",
                "error",
                f"the vocabulary has {r.vocab_size or 0} tokens, too few to hold Gemma 3's turn "
                "tokens (its vocabulary has 262,144): re-convert the model",
            )
        )
    if MMPROJ_NAME.search(Path(r.path).name):
        add(
            Finding(
                "model-named-like-mmproj",
                "warning",
                "this text model's file name matches "
                "the mmproj pattern apps use for projectors: rename it without 'mmproj'",
            )
        )


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
    add = r.findings.append
    if not r.projector["name_matches_apps"]:
        add(
            Finding(
                "mmproj-name",
                "warning",
                f"phone apps find projectors by a name matching "
                f"{MMPROJ_NAME.pattern!r}; rename {name!r} to e.g. 'mmproj-{name}'",
            )
        )
    if r.projector["use_gelu"] is not True:
        add(
            Finding(
                "mmproj-gelu",
                "error",
                "clip.use_gelu is not true: clip.cpp falls back to "
                "gelu_quick and image features are wrong; re-export the mmproj",
            )
        )
    for key in (
        "clip.vision.image_size",
        "clip.vision.patch_size",
        "clip.vision.block_count",
        "clip.vision.projection_dim",
        "clip.vision.embedding_length",
    ):
        if h.get(key) is None:
            add(
                Finding(
                    "mmproj-key-missing",
                    "error",
                    f"{key} is missing: llama.cpp's clip "
                    "loader refuses the file; re-export the mmproj",
                )
            )
