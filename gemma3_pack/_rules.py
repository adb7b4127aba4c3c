"""One table of every check gemma3-pack makes on a GGUF, a projector pair, a Modelfile or a .litertlm.

``inspect`` (GGUF header lint), ``doctor`` (inspect's rules plus the model-fact, pair and layout
rules; ``doctor model.litertlm`` for phone bundles) and ``modelfile --check`` (the Modelfile
linter) all report :class:`Finding`\\ s whose
``code`` is a row of :data:`RULES`; the README's rule list is :func:`rules_markdown`. A row says
what is checked, how bad it is, and what fixes it:

    fix = "doctor"   ``gemma3-pack doctor FILE --fix -o OUT`` rewrites the header (tensors copied)
          "patch"    the same fix ``gemma3-pack patch`` makes (doctor --fix includes it)
          "split"    ``gemma3-pack doctor FILE --split`` (fused Ollama layout -> text + mmproj)
          "rename"   give the file another name (the message says which)
          "edit"     change the Modelfile (the message says how)
          None       re-convert or re-export the model; nothing in the header can repair it

Levels: ``error`` — llama.cpp/Ollama refuse the file or Gemma 3 misbehaves; ``warning`` — works,
but not as the Gemma team intends (or some apps fail); ``info`` — worth knowing, nothing breaks.

A row's level and fix are written here once; its check and message live beside the input they
read, registered under the row's code with a :class:`Checks` of that linter (``@CHECKS("code")``:
a function that yields one message per problem). :meth:`Checks.run` runs a linter's checks in the
table's order and builds every finding the one way, with :func:`finding`. Each code has exactly one
check (tests/test_doctor.py holds the table and the registered checks against each other).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = [
    "RULES",
    "Check",
    "Checks",
    "Finding",
    "Hit",
    "Level",
    "Rule",
    "checked_codes",
    "finding",
    "passes",
    "rules_markdown",
]

Level = Literal["error", "warning", "info"]
Scope = Literal["gguf", "mmproj", "pair", "modelfile", "litertlm"]


@dataclass(frozen=True)
class Finding:
    """One result of one rule. ``code`` is stable (for scripts); ``message`` says what to do."""

    code: str
    level: Level
    message: str
    line: int | None = None  # Modelfile line, when there is one
    fix: str | None = None  # how it is fixed (see the module docstring), from the rule

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.level}: {where}{self.message} [{self.code}]"


@dataclass(frozen=True)
class Rule:
    code: str
    level: Level
    scope: Scope
    checks: str  # one line: what is checked, against which model facts
    fix: str | None = None


def _r(code: str, level: Level, scope: Scope, checks: str, fix: str | None = None) -> Rule:
    return Rule(code, level, scope, checks, fix)


RULES: dict[str, Rule] = {
    r.code: r
    for r in (
        # --- GGUF: what inspect reports (gemma3_pack/_gguf/_inspect.py) -------------------------
        _r(
            "llama-cpp-rejects",
            "error",
            "gguf",
            "nothing llama.cpp's gguf loader refuses: duplicate keys or tensor names, nested "
            "arrays, >4-D tensors, unknown ggml types, overlapping or out-of-order tensor data",
        ),
        _r(
            "not-gemma3",
            "error",
            "gguf",
            "general.architecture is gemma3 (or a gemma3 clip projector)",
        ),
        _r("template-missing", "error", "gguf", "tokenizer.chat_template is present", "patch"),
        _r(
            "template-not-official",
            "warning",
            "gguf",
            "the chat template is Google's official Gemma 3 template",
            "patch",
        ),
        _r(
            "template-launch-era",
            "warning",
            "gguf",
            "not the launch-era template that breaks on list-content system prompts",
            "patch",
        ),
        _r(
            "template-no-bos",
            "info",
            "gguf",
            "the official template keeps its leading {{ bos_token }}",
            "patch",
        ),
        _r(
            "vocab-mismatch",
            "error",
            "gguf",
            "tokens 105/106 are <start_of_turn>/<end_of_turn> (a Gemma 3 vocabulary)",
        ),
        _r(
            "turn-token-not-control",
            "error",
            "gguf",
            "<start_of_turn>/<end_of_turn> are typed CONTROL",
            "patch",
        ),
        _r(
            "functiongemma-token-not-control",
            "error",
            "gguf",
            "FunctionGemma's control tokens (ids 46-52: <start_function_declaration> ... <escape>) "
            "are typed CONTROL",
            "patch",
        ),
        _r(
            "sampling-missing",
            "warning",
            "gguf",
            "general.sampling.{temp,top_k,top_p,min_p,penalty_repeat} are present",
            "patch",
        ),
        _r(
            "sampling-off-spec",
            "warning",
            "gguf",
            "sampling keys hold the Gemma team's 1.0 / 64 / 0.95 / 0.0 / 1.0",
            "patch",
        ),
        _r("eot-missing", "info", "gguf", "tokenizer.ggml.eot_token_id is set", "patch"),
        _r(
            "eot-unusual",
            "warning",
            "gguf",
            "tokenizer.ggml.eot_token_id is 106 (<end_of_turn>)",
            "doctor",
        ),
        _r(
            "bos-missing",
            "warning",
            "gguf",
            "prompts get a <bos>: add_bos_token, or the template renders it",
            "doctor",
        ),
        _r(
            "double-bos",
            "warning",
            "gguf",
            "no literal <bos> in the template while add_bos_token is true",
            "patch",
        ),
        _r(
            "sliding-window-missing",
            "warning",
            "gguf",
            "gemma3.attention.sliding_window is present (512 for 270M/1B, 1024 for 4B+)",
            "doctor",
        ),
        _r("unusual-depth", "info", "gguf", "block_count is a released size (18/26/34/48/62)"),
        _r(
            "vocab-size-mismatch",
            "error",
            "gguf",
            "token_embd rows equal the tokenizer's token count",
        ),
        _r(
            "model-named-like-mmproj",
            "warning",
            "gguf",
            "a text model's file name does not look like a projector's",
            "rename",
        ),
        _r(
            "mmproj-name",
            "warning",
            "mmproj",
            "the projector's file name matches the mmproj pattern phone apps search for",
            "rename",
        ),
        _r(
            "mmproj-gelu",
            "error",
            "mmproj",
            "clip.use_gelu is true (else clip.cpp uses gelu_quick)",
            "doctor",
        ),
        _r(
            "mmproj-key-missing",
            "error",
            "mmproj",
            "clip.vision.{image_size,patch_size,block_count,projection_dim,embedding_length} exist",
        ),
        # --- GGUF: model facts doctor checks against the family table (gemma3_pack/_lint/_doctor.py) --
        _r(
            "rope-scaling",
            "error",
            "gguf",
            "global layers' rope scaling: linear x8 for 4B/12B/27B, none for 270M/1B",
            "doctor",
        ),
        _r(
            "sliding-window-wrong",
            "error",
            "gguf",
            "gemma3.attention.sliding_window is the size's window (512 / 1024)",
            "doctor",
        ),
        _r(
            "sliding-window-pattern",
            "error",
            "gguf",
            "gemma3.attention.sliding_window_pattern, if present, is 6 (5 local : 1 global)",
            "doctor",
        ),
        _r(
            "context-length",
            "warning",
            "gguf",
            "gemma3.context_length is the size's trained context (32768 / 131072)",
            "doctor",
        ),
        _r(
            "vocab-size-unusual",
            "warning",
            "gguf",
            "the vocabulary has 262144 tokens (270M/1B) or 262208 (4B+)",
        ),
        _r(
            "name-missing",
            "warning",
            "gguf",
            "general.name is set (apps and Ollama show it)",
            "doctor",
        ),
        _r(
            "basename-missing",
            "info",
            "gguf",
            "general.basename is set (pairs are matched by it)",
            "doctor",
        ),
        _r(
            "eos-unusual",
            "error",
            "gguf",
            "tokenizer.ggml.eos_token_id is 1 (<eos>) or 106",
            "doctor",
        ),
        _r(
            "add-bos-false",
            "warning",
            "gguf",
            "tokenizer.ggml.add_bos_token is not false",
            "doctor",
        ),
        _r(
            "image-token-not-control",
            "info",
            "gguf",
            "4B+: <start_of_image>/<end_of_image> are typed CONTROL",
            "doctor",
        ),
        _r(
            "embedding-type-unusual",
            "info",
            "gguf",
            "token_embd's type is what llama.cpp's quantizer gives it for the file type",
        ),
        _r(
            "filename-quant",
            "info",
            "gguf",
            "the file name ends in the quant (…-Q4_K_M.gguf), which phone apps and -hf parse",
            "rename",
        ),
        _r(
            "fused-vision",
            "warning",
            "gguf",
            "no v.*/mm.* tensors inside the text GGUF (Ollama's layout; llama.cpp ignores them)",
            "split",
        ),
        # --- pairs: a text GGUF and its projector ------------------------------------------------
        _r("pair-not-mmproj", "error", "pair", "the second file is a Gemma 3 clip projector"),
        _r(
            "pair-width",
            "error",
            "pair",
            "the projector's output width equals the text model's embedding width",
        ),
        _r(
            "pair-text-only-size",
            "error",
            "pair",
            "no projector beside a text-only size (270M, 1B)",
        ),
        _r(
            "pair-basename",
            "warning",
            "pair",
            "both files carry the same general.basename",
            "doctor",
        ),
        # --- Modelfiles (gemma3_pack/_modelfile check_modelfile) -------------------------------
        _r("syntax", "error", "modelfile", "Ollama's parser accepts the file"),
        _r("no-from", "error", "modelfile", "there is a FROM line", "edit"),
        _r("no-template", "warning", "modelfile", "there is a TEMPLATE", "edit"),
        _r(
            "template-system-turn",
            "warning",
            "modelfile",
            "not ollama.com's e0a42594d802 template (system prompt as its own turn)",
            "edit",
        ),
        _r(
            "template-not-gemma",
            "error",
            "modelfile",
            "the TEMPLATE uses <start_of_turn>/<end_of_turn>",
            "edit",
        ),
        _r(
            "template-legacy",
            "warning",
            "modelfile",
            "the TEMPLATE uses .Messages, not .Prompt",
            "edit",
        ),
        _r("template-custom", "warning", "modelfile", "the TEMPLATE is a known-good one", "edit"),
        _r(
            "template-trailing-newline",
            "error",
            "modelfile",
            "the TEMPLATE does not end in a newline",
            "edit",
        ),
        _r("template-bos", "error", "modelfile", "the TEMPLATE writes no <bos>", "edit"),
        _r(
            "template-image-token",
            "error",
            "modelfile",
            "the TEMPLATE writes no <start_of_image>",
            "edit",
        ),
        _r("no-stop", "error", "modelfile", 'PARAMETER stop "<end_of_turn>" is set', "edit"),
        _r("deprecated-parameter", "warning", "modelfile", "no deprecated PARAMETER", "edit"),
        _r(
            "unknown-parameter", "error", "modelfile", "every PARAMETER is one Ollama knows", "edit"
        ),
        _r("bad-parameter-value", "error", "modelfile", "every PARAMETER value parses", "edit"),
        _r(
            "off-spec-parameter",
            "warning",
            "modelfile",
            "sampling PARAMETERs hold the Gemma team's values",
            "edit",
        ),
        _r(
            "unset-parameter",
            "warning",
            "modelfile",
            "a non-library FROM sets every sampling PARAMETER",
            "edit",
        ),
        _r(
            "mmproj-as-adapter",
            "error",
            "modelfile",
            "a projector is a second FROM, not an ADAPTER",
            "edit",
        ),
        # --- .litertlm bundles (gemma3_pack/_lint/_litertlm_doctor.py): fixed by re-exporting --
        _r(
            "litertlm-no-model",
            "error",
            "litertlm",
            "a TFLiteModel section holds the prefill/decode model",
        ),
        _r(
            "litertlm-no-tokenizer",
            "error",
            "litertlm",
            "a SentencePiece or HF tokenizer section is present and readable",
        ),
        _r(
            "litertlm-vocab",
            "error",
            "litertlm",
            "the tokenizer has Gemma 3's 262144 pieces with <bos>=2, <eos>=1, <start_of_turn>=105, "
            "<end_of_turn>=106",
        ),
        _r("litertlm-no-metadata", "error", "litertlm", "an LlmMetadata section is present"),
        _r("litertlm-start-token", "error", "litertlm", "the start token is <bos> (2)"),
        _r(
            "litertlm-stop-end-of-turn",
            "error",
            "litertlm",
            "<end_of_turn> (106) is a stop token: without it a chat turn never ends",
        ),
        _r("litertlm-stop-eos", "warning", "litertlm", "<eos> (1) is a stop token too"),
        _r(
            "litertlm-template-missing",
            "error",
            "litertlm",
            "a chat template (Jinja, or prompt affixes) is in the metadata",
        ),
        _r(
            "litertlm-template-not-official",
            "warning",
            "litertlm",
            "the Jinja template is Google's Gemma 3 template",
        ),
        _r(
            "litertlm-model-type",
            "warning",
            "litertlm",
            "the LLM model type is gemma3 or generic (LiteRT-LM applies per-model settings by it)",
        ),
        _r(
            "litertlm-context",
            "info",
            "litertlm",
            "max_num_tokens (the KV cache the runtime allocates) and the family's trained context",
        ),
    )
}


def passes(findings: Iterable[Finding]) -> bool:
    """No error or warning among ``findings`` (info findings are fine): a report's ``ok``."""
    return not any(f.level in ("error", "warning") for f in findings)


def finding(code: str, message: str, *, line: int | None = None) -> Finding:
    """A :class:`Finding` of rule ``code``, with the rule's level and fix (the one way to make one)."""
    rule = RULES[code]
    return Finding(code, rule.level, message, line, rule.fix)


Hit = str | tuple[str, int | None]
"""What a check yields per problem: the message, or (message, Modelfile line)."""
C = TypeVar("C")
Check = Callable[[C], Iterable[Hit]]
_CHECKED: dict[str, str] = {}  # code -> the check registered for it (module.function)
_ORDER = {code: i for i, code in enumerate(RULES)}


class Checks(Generic[C]):
    """The checks of one linter over one kind of input ``C``, keyed by rule code.

    ``@checks("code")`` registers a function ``C -> Iterable[Hit]`` as the check of that row (a
    row's scope must be one of ``scopes``; a code gets one check in the whole package).
    ``@checks("code", alone=True)``: when it finds something, it is the only finding (the input
    is too broken for the other checks, e.g. a Modelfile that does not parse).
    """

    def __init__(self, *scopes: Scope) -> None:
        self.scopes = scopes
        self._checks: dict[str, tuple[Check[C], bool]] = {}

    def __call__(self, code: str, *, alone: bool = False) -> Callable[[Check[C]], Check[C]]:
        rule = RULES[code]
        if rule.scope not in self.scopes:
            raise ValueError(f"rule {code} is a {rule.scope} rule, not one of {self.scopes}")

        def register(check: Check[C]) -> Check[C]:
            where = f"{check.__module__}.{check.__qualname__}"
            if code in _CHECKED:
                raise ValueError(f"rule {code} has two checks: {_CHECKED[code]} and {where}")
            _CHECKED[code] = where
            self._checks[code] = (check, alone)
            self._checks = dict(sorted(self._checks.items(), key=lambda kv: _ORDER[kv[0]]))
            return check

        return register

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._checks)

    def run(self, subject: C) -> list[Finding]:
        """Every finding of this linter on ``subject``, in the rule table's order."""
        out: list[Finding] = []
        for code, (check, alone) in self._checks.items():
            found = [
                finding(code, hit) if isinstance(hit, str) else finding(code, hit[0], line=hit[1])
                for hit in check(subject)
            ]
            if found and alone:
                return found
            out += found
        return out


def checked_codes() -> dict[str, str]:
    """Each rule code with the check registered for it so far (the linters register on import)."""
    return dict(_CHECKED)


def rules_markdown(
    scopes: tuple[Scope, ...] = ("gguf", "mmproj", "pair", "modelfile", "litertlm"),
) -> str:
    """The README's rule list: one row per rule, in table order."""
    lines = ["| code | level | applies to | checks | fix |", "|---|---|---|---|---|"]
    for r in RULES.values():
        if r.scope in scopes:
            fix = {
                "doctor": "`doctor --fix`",
                "patch": "`patch` / `doctor --fix`",
                "split": "`doctor --split`",
                "rename": "rename",
                "edit": "edit the Modelfile",
            }.get(r.fix or "", "re-export" if r.scope == "litertlm" else "re-convert")
            lines.append(f"| `{r.code}` | {r.level} | {r.scope} | {r.checks} | {fix} |")
    return "\n".join(lines)
