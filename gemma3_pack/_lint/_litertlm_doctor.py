"""``doctor model.litertlm``: will LiteRT-LM and AI Edge Gallery run this Gemma 3 bundle right?

It reads the bundle's sections (:mod:`._litertlm_read`, no LiteRT needed) and checks what the
runtime takes from them: a prefill/decode TFLite model, a tokenizer with Gemma 3's vocabulary and
turn tokens, and the LlmMetadata (start token ``<bos>``, stop tokens ``<end_of_turn>`` and
``<eos>``, a chat template, Gemma 3 as the model type, the context). Each check is a rule of
:data:`LITERTLM_RULES` with a stable code, like the GGUF rules of :mod:`._rules`; nothing in a
``.litertlm`` can be patched in place, so every fix is a re-export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._chat import template_kind
from .._family import SIZES
from .._rules import Finding, Level
from ._litertlm_read import HF_TOKENIZER_ZLIB, SP_TOKENIZER, TFLITE_MODEL, LiteRTLM, read_litertlm

__all__ = [
    "LITERTLM_RULES",
    "LiteRTLMReport",
    "LiteRTLMRule",
    "doctor_litertlm",
    "litertlm_rules_markdown",
]

BOS, EOS, START_TURN, END_TURN = 2, 1, 105, 106
TOKENS = {BOS: "<bos>", EOS: "<eos>", START_TURN: "<start_of_turn>", END_TURN: "<end_of_turn>"}
FIX = "re-export: gemma3-pack export CKPT --format litertlm"


@dataclass(frozen=True)
class LiteRTLMRule:
    """One check on a ``.litertlm`` (fixed only by re-exporting)."""

    code: str
    level: Level
    checks: str


LITERTLM_RULES: dict[str, LiteRTLMRule] = {
    r.code: r
    for r in (
        LiteRTLMRule(
            "litertlm-no-model", "error", "a TFLiteModel section holds the prefill/decode model"
        ),
        LiteRTLMRule(
            "litertlm-no-tokenizer",
            "error",
            "a SentencePiece or HF tokenizer section is present and readable",
        ),
        LiteRTLMRule(
            "litertlm-vocab",
            "error",
            "the tokenizer has Gemma 3's 262144 pieces with <bos>=2, <eos>=1, <start_of_turn>=105, <end_of_turn>=106",
        ),
        LiteRTLMRule("litertlm-no-metadata", "error", "an LlmMetadata section is present"),
        LiteRTLMRule("litertlm-start-token", "error", "the start token is <bos> (2)"),
        LiteRTLMRule(
            "litertlm-stop-end-of-turn",
            "error",
            "<end_of_turn> (106) is a stop token: without it a chat turn never ends",
        ),
        LiteRTLMRule("litertlm-stop-eos", "warning", "<eos> (1) is a stop token too"),
        LiteRTLMRule(
            "litertlm-template-missing",
            "error",
            "a chat template (Jinja, or prompt affixes) is in the metadata",
        ),
        LiteRTLMRule(
            "litertlm-template-not-official",
            "warning",
            "the Jinja template is Google's Gemma 3 template",
        ),
        LiteRTLMRule(
            "litertlm-model-type",
            "warning",
            "the LLM model type is gemma3 or generic (LiteRT-LM applies per-model settings by it)",
        ),
        LiteRTLMRule(
            "litertlm-context",
            "info",
            "max_num_tokens (the KV cache the runtime allocates) and the family's trained context",
        ),
    )
}


def _finding(code: str, message: str) -> Finding:
    rule = LITERTLM_RULES[code]
    return Finding(code, rule.level, message, None, None)


@dataclass
class LiteRTLMReport:
    """What :func:`doctor_litertlm` found; ``to_dict()`` is ``doctor --json``."""

    path: str
    version: str
    sections: list[dict[str, Any]]
    max_num_tokens: int | None
    stop_tokens: list[Any]
    model_type: str | None
    template: str | None  # template_kind of the Jinja template
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level in ("error", "warning") for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["kind"] = "litertlm"
        return d

    def to_text(self) -> str:
        kinds = ", ".join(f"{s['type']} {s['size'] / 1e6:,.1f} MB" for s in self.sections)
        lines = [f"{self.path}: LiteRT-LM {self.version} bundle ({kinds})"]
        for f in self.findings:
            lines.append(f"  {f.level:<7} {f.code}: {f.message}")
        if self.ok:
            lines.append(
                "  ready for LiteRT-LM and AI Edge Gallery"
                + ("" if not self.findings else " (info only)")
            )
        return "\n".join(lines)


def _as_id(bundle: LiteRTLM, token: Any) -> int | None:
    if isinstance(token, int):
        return token
    if isinstance(token, str):
        return bundle.token_id(token)
    if isinstance(token, list) and len(token) == 1 and isinstance(token[0], int):
        return token[0]
    return None


def _findings(b: LiteRTLM) -> list[Finding]:
    out: list[Finding] = []
    if not b.of_type(TFLITE_MODEL):
        out.append(
            _finding(
                "litertlm-no-model",
                f"no TFLiteModel section: the runtime has nothing to run; {FIX}",
            )
        )
    if not (b.of_type(SP_TOKENIZER) or b.of_type(HF_TOKENIZER_ZLIB)) or b.vocab is None:
        out.append(_finding("litertlm-no-tokenizer", f"no readable tokenizer section; {FIX}"))
    else:
        wrong = [
            f"{text}={b.vocab[i] if i < len(b.vocab) else 'missing'!r} at {i}"
            for i, text in TOKENS.items()
            if i >= len(b.vocab) or b.vocab[i] != text
        ]
        if len(b.vocab) < 262144 or wrong:
            detail = f"; {', '.join(wrong)}" if wrong else ""
            out.append(
                _finding(
                    "litertlm-vocab",
                    f"the tokenizer has {len(b.vocab)} pieces{detail}: not Gemma 3's; {FIX}",
                )
            )
    md = b.metadata
    if md is None:
        out.append(
            _finding(
                "litertlm-no-metadata",
                f"no LlmMetadata section: no start/stop tokens or template; {FIX}",
            )
        )
        return out
    start = _as_id(b, md.start_token)
    if start != BOS:
        out.append(
            _finding(
                "litertlm-start-token",
                f"the start token is {md.start_token!r}, not <bos> (2): Gemma 3 answers badly "
                f"without it; {FIX}",
            )
        )
    stops = {_as_id(b, t) for t in md.stop_tokens}
    if END_TURN not in stops:
        out.append(
            _finding(
                "litertlm-stop-end-of-turn",
                f"stop tokens {md.stop_tokens!r} lack <end_of_turn> (106): replies run on past "
                f"the turn; {FIX}",
            )
        )
    if EOS not in stops:
        out.append(
            _finding("litertlm-stop-eos", f"stop tokens {md.stop_tokens!r} lack <eos> (1); {FIX}")
        )
    kind = template_kind(md.jinja_prompt_template) if md.jinja_prompt_template else None
    if not md.jinja_prompt_template and not md.prompt_templates:
        out.append(
            _finding(
                "litertlm-template-missing",
                f"no chat template: prompts reach the model without Gemma's turn markers; {FIX}",
            )
        )
    elif md.jinja_prompt_template and kind not in ("official", "official-no-bos"):
        out.append(
            _finding(
                "litertlm-template-not-official",
                f"the Jinja template is not Google's Gemma 3 template ({kind or 'unknown'}); "
                "fine if your fine-tune was trained on it",
            )
        )
    if md.model_type not in ("gemma3", "generic_model", None):
        out.append(
            _finding(
                "litertlm-model-type",
                f"the LLM model type is {md.model_type}, not gemma3: LiteRT-LM formats "
                f"Gemma 3 prompts as that model's; {FIX}",
            )
        )
    if md.max_num_tokens:
        longest = max(s.context_length for s in SIZES.values())
        out.append(
            _finding(
                "litertlm-context",
                f"KV cache of {md.max_num_tokens} tokens (prompt + reply"
                f"{'; more than any Gemma 3 was trained on' if md.max_num_tokens > longest else ''})"
                ": re-export with --litert-cache N for another size",
            )
        )
    return out


def doctor_litertlm(path: str | Path) -> LiteRTLMReport:
    """Check a ``.litertlm`` (never modified); :class:`~._litertlm_read.NotLiteRTLM` if unreadable."""
    b = read_litertlm(path)
    md = b.metadata
    kind = (
        template_kind(md.jinja_prompt_template)
        if md is not None and md.jinja_prompt_template
        else None
    )
    return LiteRTLMReport(
        path=str(path),
        version=".".join(map(str, b.version)),
        sections=[
            {"type": s.data_type, "size": s.size, **({"items": s.items} if s.items else {})}
            for s in b.sections
        ],
        max_num_tokens=md.max_num_tokens if md else None,
        stop_tokens=list(md.stop_tokens) if md else [],
        model_type=md.model_type if md else None,
        template=kind,
        findings=_findings(b),
    )


def litertlm_rules_markdown() -> str:
    lines = ["| code | level | checks |", "|---|---|---|"]
    lines += [f"| `{r.code}` | {r.level} | {r.checks} |" for r in LITERTLM_RULES.values()]
    return "\n".join(lines)
