"""One table of every check gemma3-pack makes on a GGUF, a projector pair or a Modelfile.

``inspect`` (GGUF header lint), ``doctor`` (inspect's rules plus the model-fact, pair and layout
rules) and ``modelfile --check`` (the Modelfile linter) all report :class:`Finding`\\ s whose
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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RULES", "Finding", "Level", "Rule", "finding", "rules_markdown"]

Level = Literal["error", "warning", "info"]
Scope = Literal["gguf", "mmproj", "pair", "modelfile"]


@dataclass(frozen=True)
class Finding:
    """One result of one rule. ``code`` is stable (for scripts); ``message`` says what to do."""

    code: str
    level: Level
    message: str
    line: int | None = None  # Modelfile line, when there is one
    fix: str | None = None  # how it is fixed (see the module docstring), from the rule


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
    )
}


def finding(code: str, message: str, *, line: int | None = None) -> Finding:
    """A :class:`Finding` of rule ``code``, with the rule's level and fix."""
    rule = RULES[code]
    return Finding(code, rule.level, message, line, rule.fix)


def rules_markdown(scopes: tuple[Scope, ...] = ("gguf", "mmproj", "pair", "modelfile")) -> str:
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
            }.get(r.fix or "", "re-convert")
            lines.append(f"| `{r.code}` | {r.level} | {r.scope} | {r.checks} | {fix} |")
    return "\n".join(lines)
