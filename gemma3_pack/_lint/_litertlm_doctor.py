"""``doctor model.litertlm``: will LiteRT-LM and AI Edge Gallery run this Gemma 3 bundle right?

It reads the bundle's sections (:mod:`._litertlm_read`, no LiteRT needed) and checks what the
runtime takes from them: a prefill/decode TFLite model, a tokenizer with Gemma 3's vocabulary and
turn tokens, and the LlmMetadata (start token ``<bos>``, stop tokens ``<end_of_turn>`` and
``<eos>``, a chat template, Gemma 3 as the model type, the context). Each check is a
``litertlm`` row of the one rule table (:mod:`gemma3_pack._rules`, :data:`LITERTLM_RULES`);
nothing in a ``.litertlm`` can be patched in place, so every fix is a re-export.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._chat import template_kind
from .._family import SIZES, TOKENS
from .._rules import RULES, Checks, Finding, Rule, passes, rules_markdown
from ._litertlm_read import HF_TOKENIZER_ZLIB, SP_TOKENIZER, TFLITE_MODEL, LiteRTLM, read_litertlm

__all__ = [
    "LITERTLM",
    "LITERTLM_RULES",
    "LiteRTLMReport",
    "doctor_litertlm",
    "litertlm_rules_markdown",
]

# the tokens the runtime needs at Gemma 3's ids (the family table's)
CHECKED_TOKENS = {TOKENS[t]: t for t in ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>")}
BOS, EOS, START_TURN, END_TURN = CHECKED_TOKENS
MIN_VOCAB = min(s.vocab_size for s in SIZES.values())  # 262144: 270M and 1B
FIX = "re-export: gemma3-pack export CKPT --format litertlm"
# the rows of the one rule table (gemma3_pack/_rules.py) that this doctor checks
LITERTLM_RULES: dict[str, Rule] = {c: r for c, r in RULES.items() if r.scope == "litertlm"}
LITERTLM: Checks[LiteRTLM] = Checks("litertlm")


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
        return passes(self.findings)

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


@LITERTLM("litertlm-no-model")
def _no_model(b: LiteRTLM) -> Iterator[str]:
    if not b.of_type(TFLITE_MODEL):
        yield f"no TFLiteModel section: the runtime has nothing to run; {FIX}"


def _has_tokenizer(b: LiteRTLM) -> bool:
    return bool(b.of_type(SP_TOKENIZER) or b.of_type(HF_TOKENIZER_ZLIB)) and b.vocab is not None


@LITERTLM("litertlm-no-tokenizer")
def _no_tokenizer(b: LiteRTLM) -> Iterator[str]:
    if not _has_tokenizer(b):
        yield f"no readable tokenizer section; {FIX}"


@LITERTLM("litertlm-vocab")
def _vocab(b: LiteRTLM) -> Iterator[str]:
    if not _has_tokenizer(b) or b.vocab is None:
        return
    wrong = [
        f"{text}={b.vocab[i] if i < len(b.vocab) else 'missing'!r} at {i}"
        for i, text in CHECKED_TOKENS.items()
        if i >= len(b.vocab) or b.vocab[i] != text
    ]
    if len(b.vocab) < MIN_VOCAB or wrong:
        detail = f"; {', '.join(wrong)}" if wrong else ""
        yield f"the tokenizer has {len(b.vocab)} pieces{detail}: not Gemma 3's; {FIX}"


@LITERTLM("litertlm-no-metadata")
def _no_metadata(b: LiteRTLM) -> Iterator[str]:
    if b.metadata is None:
        yield f"no LlmMetadata section: no start/stop tokens or template; {FIX}"


@LITERTLM("litertlm-start-token")
def _start_token(b: LiteRTLM) -> Iterator[str]:
    md = b.metadata
    if md is not None and _as_id(b, md.start_token) != BOS:
        yield (
            f"the start token is {md.start_token!r}, not <bos> ({BOS}): Gemma 3 answers badly "
            f"without it; {FIX}"
        )


def _stops(b: LiteRTLM) -> set[int | None]:
    return set() if b.metadata is None else {_as_id(b, t) for t in b.metadata.stop_tokens}


@LITERTLM("litertlm-stop-end-of-turn")
def _stop_end_of_turn(b: LiteRTLM) -> Iterator[str]:
    if b.metadata is not None and END_TURN not in _stops(b):
        yield (
            f"stop tokens {b.metadata.stop_tokens!r} lack <end_of_turn> ({END_TURN}): replies "
            f"run on past the turn; {FIX}"
        )


@LITERTLM("litertlm-stop-eos")
def _stop_eos(b: LiteRTLM) -> Iterator[str]:
    if b.metadata is not None and EOS not in _stops(b):
        yield f"stop tokens {b.metadata.stop_tokens!r} lack <eos> ({EOS}); {FIX}"


@LITERTLM("litertlm-template-missing")
def _template_missing(b: LiteRTLM) -> Iterator[str]:
    md = b.metadata
    if md is not None and not md.jinja_prompt_template and not md.prompt_templates:
        yield f"no chat template: prompts reach the model without Gemma's turn markers; {FIX}"


@LITERTLM("litertlm-template-not-official")
def _template_not_official(b: LiteRTLM) -> Iterator[str]:
    md = b.metadata
    if md is None or not md.jinja_prompt_template:
        return
    kind = template_kind(md.jinja_prompt_template)
    if kind not in ("official", "official-no-bos"):
        yield (
            f"the Jinja template is not Google's Gemma 3 template ({kind or 'unknown'}); "
            "fine if your fine-tune was trained on it"
        )


@LITERTLM("litertlm-model-type")
def _model_type(b: LiteRTLM) -> Iterator[str]:
    md = b.metadata
    if md is not None and md.model_type not in ("gemma3", "generic_model", None):
        yield (
            f"the LLM model type is {md.model_type}, not gemma3: LiteRT-LM formats "
            f"Gemma 3 prompts as that model's; {FIX}"
        )


@LITERTLM("litertlm-context")
def _context(b: LiteRTLM) -> Iterator[str]:
    md = b.metadata
    if md is not None and md.max_num_tokens:
        longest = max(s.context_length for s in SIZES.values())
        yield (
            f"KV cache of {md.max_num_tokens} tokens (prompt + reply"
            f"{'; more than any Gemma 3 was trained on' if md.max_num_tokens > longest else ''})"
            ": re-export with --litert-cache N for another size"
        )


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
        findings=LITERTLM.run(b),
    )


def litertlm_rules_markdown() -> str:
    """The rule table's .litertlm rows."""
    return rules_markdown(("litertlm",))
