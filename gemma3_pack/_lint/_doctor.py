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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gguf.constants import GGUFValueType, Keys, LlamaFileType, TokenType

from .._errors import UsageError
from .._family import Size, size_for_layers
from .._gguf._encode import encode_kv
from .._gguf._inspect import GGUFReport, report_of
from .._gguf._patch import (
    Change,
    Plan,
    check_copyable,
    check_output,
    gemma3_kind,
    plan_patch,
    same_file,
    same_value,
    write_plan,
)
from .._gguf._reader import GGUFHeader, open_gguf
from .._rules import RULES, Finding, finding

__all__ = ["DoctorReport", "doctor_gguf"]

VOCAB_TEXT = 262144  # 270M, 1B
VOCAB_VISION = 262208  # 4B+: + <image_soft_token> and padding
EOS_IDS = (1, 106)
IMAGE_TOKENS = {255999: "<start_of_image>", 256000: "<end_of_image>"}
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
        return not any(f.level in ("error", "warning") for f in self.findings)

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


def _model_findings(h: GGUFHeader, size: Size | None) -> list[Finding]:
    out: list[Finding] = []
    add = out.append
    if size is not None:
        want = size.rope_scaling_factor or 1.0
        got = rope_factor(h)
        if abs(got - want) > 1e-6:
            add(
                finding(
                    "rope-scaling",
                    f"the global layers' rope scaling is x{got:g}, Gemma 3 {size.params} was "
                    f"trained with {'linear x' + format(want, 'g') if want != 1 else 'none'}: "
                    + ("long prompts degrade" if want != 1 else "every prompt is mis-positioned"),
                )
            )
        window = h.get("gemma3.attention.sliding_window")
        if isinstance(window, int) and window != size.sliding_window:
            add(
                finding(
                    "sliding-window-wrong",
                    f"gemma3.attention.sliding_window is {window}, Gemma 3 {size.params} "
                    f"attends over {size.sliding_window} tokens on its local layers",
                )
            )
        context = h.get("gemma3.context_length")
        if isinstance(context, int) and context != size.context_length:
            add(
                finding(
                    "context-length",
                    f"gemma3.context_length is {context}, Gemma 3 {size.params} was trained "
                    f"for {size.context_length}: Ollama and apps cap num_ctx by it",
                )
            )
        tokens = h.kvs.get(Keys.Tokenizer.LIST)
        expected = VOCAB_VISION if size.multimodal else VOCAB_TEXT
        if tokens is not None and tokens.count != expected:
            add(
                finding(
                    "vocab-size-unusual",
                    f"the vocabulary has {tokens.count} tokens, Google's Gemma 3 "
                    f"{size.params} has {expected}: a tokenizer from another size or added tokens",
                )
            )
        if size.multimodal:
            types_kv = h.kvs.get(Keys.Tokenizer.TOKEN_TYPE)
            if types_kv is not None:
                for tid, text in IMAGE_TOKENS.items():
                    if tid < types_kv.count:
                        raw = int(h.array_item(Keys.Tokenizer.TOKEN_TYPE, tid))
                        if raw != TokenType.CONTROL:
                            add(
                                finding(
                                    "image-token-not-control",
                                    f"{text} ({tid}) is typed {_type_name(raw)}, not CONTROL: "
                                    "it can show up in decoded text",
                                )
                            )
    pattern = h.get("gemma3.attention.sliding_window_pattern")
    if isinstance(pattern, int) and pattern != 6:
        add(
            finding(
                "sliding-window-pattern",
                f"gemma3.attention.sliding_window_pattern is {pattern}: Gemma 3 has one global "
                "layer in every 6 (llama.cpp's default when the key is absent)",
            )
        )
    if h.get(Keys.General.NAME) is None:
        add(finding("name-missing", "no general.name: Ollama, LM Studio and apps show no name"))
    if h.get(Keys.General.BASENAME) is None:
        add(finding("basename-missing", "no general.basename: projectors are paired by it"))
    eos = h.get(Keys.Tokenizer.EOS_ID)
    if isinstance(eos, int) and eos not in EOS_IDS:
        add(
            finding(
                "eos-unusual",
                f"tokenizer.ggml.eos_token_id is {eos}, not 1 (<eos>) or 106 (<end_of_turn>): "
                "generation may not stop",
            )
        )
    if h.get(Keys.Tokenizer.ADD_BOS) is False:
        add(
            finding(
                "add-bos-false",
                "tokenizer.ggml.add_bos_token is false: llama.cpp will not prepend <bos> and "
                "Gemma 3 degrades without it",
            )
        )
    file_type = h.get(Keys.General.FILE_TYPE)
    ftype = _FILE_TYPE.get(file_type) if isinstance(file_type, int) else None
    embd = next((t for t in h.tensors if t.name == "token_embd.weight"), None)
    if ftype and embd is not None:
        from .._memory._plan import QUANT_DEFAULT, Arch, quant_tensor_types

        if ftype in QUANT_DEFAULT and size is not None and len(embd.shape) == 2:
            arch = replace(Arch.from_size(size), hidden=embd.shape[0], vocab=embd.shape[1])
            want_type = quant_tensor_types(replace(arch, layers=0), ftype)[0][2]
            if embd.type_name != want_type:
                add(
                    finding(
                        "embedding-type-unusual",
                        f"token_embd is {embd.type_name}; llama.cpp's quantizer stores it as "
                        f"{want_type} in a {ftype} file (a custom recipe or a mislabelled file "
                        "type)",
                    )
                )
    if ftype and not _quant_in_name(Path(h.path).name, ftype):
        stem = Path(h.path).stem
        add(
            finding(
                "filename-quant",
                f"the file name does not say {ftype}: phone apps and `-hf` repos read the quant "
                f"from it; name it e.g. {stem}-{ftype}.gguf",
            )
        )
    fused = sum(t.name.startswith(("v.", "mm.")) for t in h.tensors)
    if fused:
        add(
            finding(
                "fused-vision",
                f"{fused} vision tensors are fused into this GGUF (Ollama's layout): llama.cpp "
                "and phone apps load only a separate mmproj; split it into text + mmproj",
            )
        )
    return out


def _type_name(raw: int) -> str:
    try:
        return TokenType(raw).name
    except ValueError:
        return str(raw)


def _pair_findings(text: GGUFHeader, size: Size | None, proj: GGUFHeader) -> list[Finding]:
    out: list[Finding] = []
    if gemma3_kind(proj) != "mmproj":
        return [
            finding(
                "pair-not-mmproj",
                f"{proj.path} is not a Gemma 3 projector (architecture "
                f"{proj.architecture!r}, projector {proj.get('clip.projector_type')!r})",
            )
        ]
    if size is not None and not size.multimodal:
        out.append(
            finding(
                "pair-text-only-size",
                f"Gemma 3 {size.params} is text-only: a projector cannot be used with it",
            )
        )
    width = text.get("gemma3.embedding_length")
    proj_w = proj.get("clip.vision.projection_dim")
    inp = next((t for t in proj.tensors if t.name == "mm.input_projection.weight"), None)
    if inp is not None:
        proj_w = inp.shape[0]
    if isinstance(width, int) and isinstance(proj_w, int) and width != proj_w:
        out.append(
            finding(
                "pair-width",
                f"the projector outputs {proj_w}-wide embeddings, the text model is {width} "
                "wide: it belongs to another size (mtmd refuses the pair)",
            )
        )
    a, b = text.get(Keys.General.BASENAME), proj.get(Keys.General.BASENAME)
    if isinstance(a, str) and isinstance(b, str) and a != b:
        out.append(
            finding(
                "pair-basename",
                f"the text model's basename is {a!r}, the projector's {b!r}: they may come from "
                "different models",
            )
        )
    return out


# --- fixes ----------------------------------------------------------------------------------------


def _want(plan: Plan, h: GGUFHeader, key: str, value: Any, vtype: GGUFValueType) -> None:
    kv = h.kvs.get(key)
    if kv is not None and kv.vtype in _INTS and vtype in _INTS:
        vtype = kv.vtype  # keep the stored integer width
    if kv is not None and same_value(kv, value, vtype):
        return
    plan.records[key] = encode_kv(key, value, vtype, h.endian)
    old = None if kv is None else (kv.value if kv.value is not None else f"<{kv.type_name}>")
    plan.changes.append(Change(key, "added" if kv is None else "replaced", old, value))


def _fix_plan(h: GGUFHeader, kind: str, size: Size | None, findings: list[Finding]) -> Plan:
    codes = {f.code for f in findings}
    name = None
    if "name-missing" in codes:
        name = f"Gemma 3 {size.params}" if size else Path(h.path).stem
    plan = plan_patch(h, kind, name=name)  # template, sampling, EOT, turn tokens (as `patch`)
    u32, f32, string = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING
    if kind == "mmproj":
        if "mmproj-gelu" in codes:
            _want(plan, h, "clip.use_gelu", True, GGUFValueType.BOOL)
        return plan
    if size is not None:
        if "rope-scaling" in codes:
            if size.rope_scaling_factor:
                _want(plan, h, "gemma3.rope.scaling.type", "linear", string)
                _want(plan, h, "gemma3.rope.scaling.factor", float(size.rope_scaling_factor), f32)
            else:
                _want(plan, h, "gemma3.rope.scaling.type", "none", string)
                if "gemma3.rope.scaling.factor" in h.kvs:
                    _want(plan, h, "gemma3.rope.scaling.factor", 1.0, f32)
        if codes & {"sliding-window-wrong", "sliding-window-missing"}:
            _want(plan, h, "gemma3.attention.sliding_window", size.sliding_window, u32)
        if "context-length" in codes:
            _want(plan, h, "gemma3.context_length", size.context_length, u32)
        if "image-token-not-control" in codes:
            for tid, text in IMAGE_TOKENS.items():
                old = int(h.array_item(Keys.Tokenizer.TOKEN_TYPE, tid))
                if old != TokenType.CONTROL:
                    plan.token_types[tid] = int(TokenType.CONTROL)
                    plan.changes.append(
                        Change(
                            f"{Keys.Tokenizer.TOKEN_TYPE}[{tid}] {text}",
                            "repaired",
                            _type_name(old),
                            "CONTROL",
                        )
                    )
    if "sliding-window-pattern" in codes:
        _want(plan, h, "gemma3.attention.sliding_window_pattern", 6, u32)
    if "basename-missing" in codes:
        _want(plan, h, Keys.General.BASENAME, "gemma-3", string)
    if "eos-unusual" in codes:
        _want(plan, h, Keys.Tokenizer.EOS_ID, 1, u32)
    if "eot-unusual" in codes:
        _want(plan, h, Keys.Tokenizer.EOT_ID, 106, u32)
    if codes & {"add-bos-false", "bos-missing"}:
        _want(plan, h, Keys.Tokenizer.ADD_BOS, True, GGUFValueType.BOOL)
    return plan


# --- the entry point ------------------------------------------------------------------------------


def _check(h: GGUFHeader) -> tuple[GGUFReport, Size | None, list[Finding]]:
    report = report_of(h)
    kind = report.kind
    size = _size(h) if kind == "model" else None
    findings = list(report.findings)
    if kind == "model":
        findings += _model_findings(h, size)
    findings = [replace(f, fix=RULES[f.code].fix) if f.code in RULES else f for f in findings]
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
                findings += [
                    replace(f, fix=RULES[f.code].fix) if f.code in RULES else f
                    for f in proj_report.findings
                    if f.code != "not-gemma3"
                ]
                findings += _pair_findings(h, size, p)
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
        plan = _fix_plan(
            h, report.kind, size, [f for f in findings if f.fix in ("doctor", "patch")]
        )
        check_output(src, dst, in_place=False, force=force, need=h.size + (1 << 20))
        write_plan(h, plan, dst, progress=progress)
    result.fixed = str(dst)
    result.changes = [c.describe() for c in plan.changes] or ["nothing to change (copied as is)"]
    result.after = doctor_gguf(dst, mmproj)
    return result
