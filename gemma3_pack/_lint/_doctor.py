"""Is this Gemma 3 GGUF right? ``doctor`` checks a file (and its projector) and fixes what it can.

It runs every rule of the table in :mod:`gemma3_pack._rules`: ``inspect``'s header lint, then the
model facts the family table knows for the file's size (picked by its layer count, as llama.cpp
does): rope scaling on the global layers, the sliding window and its pattern, the trained
context, the vocabulary size, EOS/BOS, names, the embedding's storage type, the file name apps
parse, Ollama's fused vision layout; with a projector, whether the two belong together.

``--fix`` writes a corrected copy by the header-only path of ``patch`` (:mod:`._gguf._patch`):
new or re-encoded key/value records and token types, the tensor-info block and every tensor
byte copied as is, atomically; the input is never modified. The fixed file is checked again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from gguf.constants import GGUFValueType, Keys, LlamaFileType, TokenType

from .._errors import UsageError
from .._family import EOT_TOKEN_ID, SLIDING_WINDOW_PATTERN, TOKENS, Size, size_for_layers
from .._gguf._encode import encode_kv
from .._gguf._inspect import GGUFReport, report_of
from .._gguf._patch import (
    Change,
    HeaderEdits,
    check_copyable,
    check_output,
    gemma3_kind,
    plan_patch,
    same_file,
    same_value,
    write_plan,
)
from .._gguf._reader import GGUFHeader, open_gguf
from .._rules import Checks, Finding, passes

__all__ = ["FACTS", "PAIR", "DoctorReport", "Model", "Pair", "doctor_gguf"]

EOS_ID = TOKENS["<eos>"]
EOS_IDS = (EOS_ID, EOT_TOKEN_ID)
IMAGE_TOKENS = {TOKENS[t]: t for t in ("<start_of_image>", "<end_of_image>")}
_INTS = (
    GGUFValueType.UINT32,
    GGUFValueType.INT32,
    GGUFValueType.UINT64,
    GGUFValueType.INT64,
    GGUFValueType.UINT16,
    GGUFValueType.INT16,
)
_FILE_TYPE = {t.value: t.name.removeprefix("MOSTLY_").removeprefix("ALL_") for t in LlamaFileType}


@dataclass
class DoctorReport:
    """What :func:`doctor_gguf` found (and fixed); ``to_dict()`` is ``doctor --json``."""

    path: str
    mmproj: str | None
    kind: str
    size: str | None
    findings: list[Finding] = field(default_factory=list)
    fixed: str | None = None  # the corrected copy, when --fix wrote one
    changes: list[str] = field(default_factory=list)
    after: DoctorReport | None = None  # the corrected copy, checked again

    @property
    def ok(self) -> bool:
        return passes(self.findings)

    @property
    def fixable(self) -> list[Finding]:
        return [f for f in self.findings if f.fix in ("doctor", "patch")]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["after"] = self.after.to_dict() if self.after else None
        return d

    def to_text(self) -> str:
        what = f"{self.path}" + (f" + {self.mmproj}" if self.mmproj else "")
        lines = [f"{what}: Gemma 3 {self.size or '?'} {self.kind}"]
        for f in self.findings:
            how = {"doctor": " [--fix]", "patch": " [--fix]", "split": " [--split]"}.get(
                f.fix or "", ""
            )
            lines.append(f"  {f.level:<7} {f.code}: {f.message}{how}")
        if not self.findings:
            lines.append("  no findings: ready for llama.cpp, Ollama, LM Studio and phone apps")
        if self.fixed:
            lines.append(f"wrote {self.fixed}:")
            lines += [f"  {c}" for c in self.changes]
            left = self.after.findings if self.after else []
            lines.append(
                "  checked again: "
                + ("no findings" if not left else ", ".join(f"{f.code} ({f.level})" for f in left))
            )
        return "\n".join(lines)


# --- the model-fact rules -----------------------------------------------------------------------


def _size(h: GGUFHeader) -> Size | None:
    blocks = h.get("gemma3.block_count")
    return size_for_layers(int(blocks)) if isinstance(blocks, int) else None


def rope_factor(h: GGUFHeader) -> float:
    """The linear factor llama.cpp applies to the global layers (1.0 = none): ``rope.scaling.type``
    "none" disables it, else ``rope.scaling.factor`` (or the legacy ``rope.scale_linear``)."""
    if h.get("gemma3.rope.scaling.type") == "none":
        return 1.0
    factor = h.get("gemma3.rope.scaling.factor", h.get("gemma3.rope.scale_linear"))
    return float(factor) if isinstance(factor, int | float) and factor else 1.0


def _quant_in_name(name: str, file_type: str) -> bool:
    norm = re.sub(r"[^a-z0-9]", "", name.lower())
    return re.sub(r"[^a-z0-9]", "", file_type.lower()) in norm


# --- the checks of the model-fact and pair rows (gemma3_pack/_rules.py), in the table's order ---


class Model(NamedTuple):
    """What a model-fact check reads: the header and the size its layer count names."""

    h: GGUFHeader
    size: Size | None


class Pair(NamedTuple):
    """What a pair check reads: the text model, its size and the projector beside it."""

    text: GGUFHeader
    size: Size | None
    proj: GGUFHeader


FACTS: Checks[Model] = Checks("gguf")
PAIR: Checks[Pair] = Checks("pair")


def _image_tokens_typed(h: GGUFHeader) -> Iterator[tuple[int, str, int]]:
    """(id, text, stored type) of the image tokens the vocabulary holds."""
    types_kv = h.kvs.get(Keys.Tokenizer.TOKEN_TYPE)
    if types_kv is None:
        return
    for tid, text in IMAGE_TOKENS.items():
        if tid < types_kv.count:
            yield tid, text, int(h.array_item(Keys.Tokenizer.TOKEN_TYPE, tid))


@FACTS("rope-scaling")
def _rope_scaling(m: Model) -> Iterator[str]:
    if m.size is None:
        return
    want = m.size.rope_scaling_factor or 1.0
    got = rope_factor(m.h)
    if abs(got - want) > 1e-6:
        yield (
            f"the global layers' rope scaling is x{got:g}, Gemma 3 {m.size.params} was "
            f"trained with {'linear x' + format(want, 'g') if want != 1 else 'none'}: "
            + ("long prompts degrade" if want != 1 else "every prompt is mis-positioned")
        )


@FACTS("sliding-window-wrong")
def _sliding_window_wrong(m: Model) -> Iterator[str]:
    window = m.h.get("gemma3.attention.sliding_window")
    if m.size is not None and isinstance(window, int) and window != m.size.sliding_window:
        yield (
            f"gemma3.attention.sliding_window is {window}, Gemma 3 {m.size.params} "
            f"attends over {m.size.sliding_window} tokens on its local layers"
        )


@FACTS("sliding-window-pattern")
def _sliding_window_pattern(m: Model) -> Iterator[str]:
    pattern = m.h.get("gemma3.attention.sliding_window_pattern")
    if isinstance(pattern, int) and pattern != SLIDING_WINDOW_PATTERN:
        yield (
            f"gemma3.attention.sliding_window_pattern is {pattern}: Gemma 3 has one global "
            f"layer in every {SLIDING_WINDOW_PATTERN} (llama.cpp's default when the key is absent)"
        )


@FACTS("context-length")
def _context_length(m: Model) -> Iterator[str]:
    context = m.h.get("gemma3.context_length")
    if m.size is not None and isinstance(context, int) and context != m.size.context_length:
        yield (
            f"gemma3.context_length is {context}, Gemma 3 {m.size.params} was trained "
            f"for {m.size.context_length}: Ollama and apps cap num_ctx by it"
        )


@FACTS("vocab-size-unusual")
def _vocab_size_unusual(m: Model) -> Iterator[str]:
    tokens = m.h.kvs.get(Keys.Tokenizer.LIST)
    if m.size is not None and tokens is not None and tokens.count != m.size.vocab_size:
        yield (
            f"the vocabulary has {tokens.count} tokens, Google's Gemma 3 {m.size.params} has "
            f"{m.size.vocab_size}: a tokenizer from another size or added tokens"
        )


@FACTS("name-missing")
def _name_missing(m: Model) -> Iterator[str]:
    if m.h.get(Keys.General.NAME) is None:
        yield "no general.name: Ollama, LM Studio and apps show no name"


@FACTS("basename-missing")
def _basename_missing(m: Model) -> Iterator[str]:
    if m.h.get(Keys.General.BASENAME) is None:
        yield "no general.basename: projectors are paired by it"


@FACTS("eos-unusual")
def _eos_unusual(m: Model) -> Iterator[str]:
    eos = m.h.get(Keys.Tokenizer.EOS_ID)
    if isinstance(eos, int) and eos not in EOS_IDS:
        yield (
            f"tokenizer.ggml.eos_token_id is {eos}, not {EOS_ID} (<eos>) or {EOT_TOKEN_ID} "
            "(<end_of_turn>): generation may not stop"
        )


@FACTS("add-bos-false")
def _add_bos_false(m: Model) -> Iterator[str]:
    if m.h.get(Keys.Tokenizer.ADD_BOS) is False:
        yield (
            "tokenizer.ggml.add_bos_token is false: llama.cpp will not prepend <bos> and "
            "Gemma 3 degrades without it"
        )


@FACTS("image-token-not-control")
def _image_token_not_control(m: Model) -> Iterator[str]:
    if m.size is None or not m.size.multimodal:
        return
    for tid, text, raw in _image_tokens_typed(m.h):
        if raw != TokenType.CONTROL:
            yield (
                f"{text} ({tid}) is typed {_type_name(raw)}, not CONTROL: it can show up in "
                "decoded text"
            )


def _file_type(h: GGUFHeader) -> str | None:
    file_type = h.get(Keys.General.FILE_TYPE)
    return _FILE_TYPE.get(file_type) if isinstance(file_type, int) else None


@FACTS("embedding-type-unusual")
def _embedding_type_unusual(m: Model) -> Iterator[str]:
    ftype = _file_type(m.h)
    embd = next((t for t in m.h.tensors if t.name == "token_embd.weight"), None)
    if not ftype or embd is None or m.size is None or len(embd.shape) != 2:
        return
    from .._memory._plan import QUANT_DEFAULT, Arch, quant_tensor_types

    if ftype not in QUANT_DEFAULT:
        return
    arch = replace(Arch.from_size(m.size), hidden=embd.shape[0], vocab=embd.shape[1])
    want_type = quant_tensor_types(replace(arch, layers=0), ftype)[0][2]
    if embd.type_name != want_type:
        yield (
            f"token_embd is {embd.type_name}; llama.cpp's quantizer stores it as {want_type} in "
            f"a {ftype} file (a custom recipe or a mislabelled file type)"
        )


@FACTS("filename-quant")
def _filename_quant(m: Model) -> Iterator[str]:
    ftype = _file_type(m.h)
    if ftype and not _quant_in_name(Path(m.h.path).name, ftype):
        stem = Path(m.h.path).stem
        yield (
            f"the file name does not say {ftype}: phone apps and `-hf` repos read the quant "
            f"from it; name it e.g. {stem}-{ftype}.gguf"
        )


@FACTS("fused-vision")
def _fused_vision(m: Model) -> Iterator[str]:
    fused = sum(t.name.startswith(("v.", "mm.")) for t in m.h.tensors)
    if fused:
        yield (
            f"{fused} vision tensors are fused into this GGUF (Ollama's layout): llama.cpp "
            "and phone apps load only a separate mmproj; split it into text + mmproj"
        )


def _type_name(raw: int) -> str:
    try:
        return TokenType(raw).name
    except ValueError:
        return str(raw)


@PAIR("pair-not-mmproj", alone=True)
def _pair_not_mmproj(p: Pair) -> Iterator[str]:
    if gemma3_kind(p.proj) != "mmproj":
        yield (
            f"{p.proj.path} is not a Gemma 3 projector (architecture "
            f"{p.proj.architecture!r}, projector {p.proj.get('clip.projector_type')!r})"
        )


@PAIR("pair-width")
def _pair_width(p: Pair) -> Iterator[str]:
    width = p.text.get("gemma3.embedding_length")
    proj_w = p.proj.get("clip.vision.projection_dim")
    inp = next((t for t in p.proj.tensors if t.name == "mm.input_projection.weight"), None)
    if inp is not None:
        proj_w = inp.shape[0]
    if isinstance(width, int) and isinstance(proj_w, int) and width != proj_w:
        yield (
            f"the projector outputs {proj_w}-wide embeddings, the text model is {width} "
            "wide: it belongs to another size (mtmd refuses the pair)"
        )


@PAIR("pair-text-only-size")
def _pair_text_only_size(p: Pair) -> Iterator[str]:
    if p.size is not None and not p.size.multimodal:
        yield f"Gemma 3 {p.size.params} is text-only: a projector cannot be used with it"


@PAIR("pair-basename")
def _pair_basename(p: Pair) -> Iterator[str]:
    a, b = p.text.get(Keys.General.BASENAME), p.proj.get(Keys.General.BASENAME)
    if isinstance(a, str) and isinstance(b, str) and a != b:
        yield (
            f"the text model's basename is {a!r}, the projector's {b!r}: they may come from "
            "different models"
        )


# --- fixes ----------------------------------------------------------------------------------------


def _want(edits: HeaderEdits, h: GGUFHeader, key: str, value: Any, vtype: GGUFValueType) -> None:
    kv = h.kvs.get(key)
    if kv is not None and kv.vtype in _INTS and vtype in _INTS:
        vtype = kv.vtype  # keep the stored integer width
    if kv is not None and same_value(kv, value, vtype):
        return
    edits.records[key] = encode_kv(key, value, vtype, h.endian)
    old = None if kv is None else (kv.value if kv.value is not None else f"<{kv.type_name}>")
    edits.changes.append(Change(key, "added" if kv is None else "replaced", old, value))


def _fix_edits(h: GGUFHeader, kind: str, size: Size | None, findings: list[Finding]) -> HeaderEdits:
    codes = {f.code for f in findings}
    name = None
    if "name-missing" in codes:
        name = f"Gemma 3 {size.params}" if size else Path(h.path).stem
    edits = plan_patch(h, kind, name=name)  # template, sampling, EOT, turn tokens (as `patch`)
    u32, f32, string = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING
    if kind == "mmproj":
        if "mmproj-gelu" in codes:
            _want(edits, h, "clip.use_gelu", True, GGUFValueType.BOOL)
        return edits
    if size is not None:
        if "rope-scaling" in codes:
            if size.rope_scaling_factor:
                _want(edits, h, "gemma3.rope.scaling.type", "linear", string)
                _want(edits, h, "gemma3.rope.scaling.factor", float(size.rope_scaling_factor), f32)
            else:
                _want(edits, h, "gemma3.rope.scaling.type", "none", string)
                if "gemma3.rope.scaling.factor" in h.kvs:
                    _want(edits, h, "gemma3.rope.scaling.factor", 1.0, f32)
        if codes & {"sliding-window-wrong", "sliding-window-missing"}:
            _want(edits, h, "gemma3.attention.sliding_window", size.sliding_window, u32)
        if "context-length" in codes:
            _want(edits, h, "gemma3.context_length", size.context_length, u32)
        if "image-token-not-control" in codes:
            for tid, text in IMAGE_TOKENS.items():
                old = int(h.array_item(Keys.Tokenizer.TOKEN_TYPE, tid))
                if old != TokenType.CONTROL:
                    edits.token_types[tid] = int(TokenType.CONTROL)
                    edits.changes.append(
                        Change(
                            f"{Keys.Tokenizer.TOKEN_TYPE}[{tid}] {text}",
                            "repaired",
                            _type_name(old),
                            "CONTROL",
                        )
                    )
    if "sliding-window-pattern" in codes:
        _want(edits, h, "gemma3.attention.sliding_window_pattern", SLIDING_WINDOW_PATTERN, u32)
    if "basename-missing" in codes:
        _want(edits, h, Keys.General.BASENAME, "gemma-3", string)
    if "eos-unusual" in codes:
        _want(edits, h, Keys.Tokenizer.EOS_ID, EOS_ID, u32)
    if "eot-unusual" in codes:
        _want(edits, h, Keys.Tokenizer.EOT_ID, EOT_TOKEN_ID, u32)
    if codes & {"add-bos-false", "bos-missing"}:
        _want(edits, h, Keys.Tokenizer.ADD_BOS, True, GGUFValueType.BOOL)
    return edits


# --- the entry point ------------------------------------------------------------------------------


def _check(h: GGUFHeader) -> tuple[GGUFReport, Size | None, list[Finding]]:
    report = report_of(h)
    kind = report.kind
    size = _size(h) if kind == "model" else None
    findings = list(report.findings)
    if kind == "model":
        findings += FACTS.run(Model(h, size))
    return report, size, findings


def doctor_gguf(
    path: str | os.PathLike[str],
    mmproj: str | os.PathLike[str] | None = None,
    *,
    fix: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = False,
) -> DoctorReport:
    """Check ``path`` (a Gemma 3 text GGUF or projector) and, with ``mmproj``, the pair.

    With ``fix=OUT`` writes a corrected copy of ``path`` to ``OUT`` (atomically; an existing
    ``OUT`` only with ``force``; never over the input), checks it again (``report.after``) and
    lists what changed (``report.changes``). Findings whose rule has no header fix (re-convert,
    rename, split) are left for the user.
    """
    src = Path(path)
    with open_gguf(src) as h:
        report, size, findings = _check(h)
        if mmproj is not None and report.kind == "model":
            with open_gguf(mmproj) as p:
                proj_report = report_of(p)
                findings += [f for f in proj_report.findings if f.code != "not-gemma3"]
                findings += PAIR.run(Pair(h, size, p))
        elif mmproj is not None:
            raise UsageError(f"give the text GGUF first and the projector second, not {src.name}")
        result = DoctorReport(
            str(src),
            None if mmproj is None else str(mmproj),
            report.kind,
            size.name if size else None,
            findings,
        )
        if fix is None:
            return result
        dst = Path(fix)
        if dst.exists() and same_file(src, dst):
            raise UsageError(f"--fix -o {dst} is the input: choose another output path")
        if report.kind not in ("model", "mmproj"):
            raise UsageError(f"{src} is not a Gemma 3 GGUF: doctor can only fix Gemma 3 files")
        check_copyable(h)  # a file llama.cpp cannot load is re-converted, not copied
        edits = _fix_edits(
            h, report.kind, size, [f for f in findings if f.fix in ("doctor", "patch")]
        )
        check_output(src, dst, in_place=False, force=force, need=h.size + (1 << 20))
        write_plan(h, edits, dst, progress=progress)
    result.fixed = str(dst)
    result.changes = [c.describe() for c in edits.changes] or ["nothing to change (copied as is)"]
    result.after = doctor_gguf(dst, mmproj)
    return result
