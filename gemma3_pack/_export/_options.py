"""The export options, written once: :class:`ExportOptions`.

:func:`gemma3_pack.export` and :func:`~gemma3_pack._export.plan_export` take them (as an object or
as keywords), and ``gemma3-pack export`` builds its flags from the same fields: each field's
``metadata`` holds what a command line needs (flags, help, metavar, choices), so a new option is
one field here, not six edits.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ExportOptions", "OllamaFormat"]

OllamaFormat = Literal["auto", "pair", "fused"]


def _cli(help: str, *flags: str, **click: Any) -> dict[str, Any]:
    """A field's ``metadata``: its command-line spelling. ``flags`` (default ``--field-name``),
    ``help``, and ``metavar`` / ``choices`` / ``case_sensitive`` / ``path`` (a file-system path) /
    ``show_default`` as ``click.option`` takes them."""
    return {"help": help, "flags": flags, **click}


@dataclass(frozen=True)
class ExportOptions:
    """How :func:`gemma3_pack.export` exports a checkpoint (every field has the CLI's default).

    >>> ExportOptions(quants="Q4_K_M,Q8_0", name="my-gemma").keep_bf16
    False
    """

    output_dir: str | os.PathLike[str] | None = field(
        default=None,
        metadata=_cli(
            "Folder for the outputs [default: ./<name>-gguf].", "-o", "--output-dir", path=True
        ),
    )
    quants: str | Sequence[str] | None = field(
        default=None,
        metadata=_cli(
            "Types to write, all in one pass: F32 F16 BF16 Q8_0, Q4_0 Q4_K_M Q5_K_M Q6_K "
            "Q4_K_S Q5_K_S Q3_K_M IQ4_XS ... (llama.cpp's mixes). [default: from the family table]",
            "-q",
            "--quant",
            metavar="QUANT[,QUANT...]",
        ),
    )
    name: str | None = field(
        default=None,
        metadata=_cli("File-name stem and general.name [default: SOURCE's name]."),
    )
    base: str | None = field(
        default=None,
        metadata=_cli(
            "Base model for a LoRA adapter [default: the adapter's base_model_name_or_path].",
            metavar="PATH|REPO",
        ),
    )
    qat: bool | None = field(
        default=None,
        metadata=_cli(
            "Treat as a QAT checkpoint: Q4_0 with Q8_0 embeddings [default: from the name].",
            "--qat/--no-qat",
        ),
    )
    tokenizer_from: str | None = field(
        default=None,
        metadata=_cli(
            "Take tokenizer.model (+ tokenizer files) from here when the checkpoint lacks it.",
            metavar="PATH|REPO",
        ),
    )
    imatrix: str | os.PathLike[str] | None = field(
        default=None,
        metadata=_cli(
            "Importance matrix (GGUF from llama-imatrix) for the llama.cpp quant types.", path=True
        ),
    )
    keep_bf16: bool = field(
        default=False,
        metadata=_cli(
            "Also write the BF16 GGUF the llama.cpp types are quantized from (no file otherwise)."
        ),
    )
    mmproj_type: str = field(
        default="f16",
        metadata=_cli(
            "Storage of the vision projector (multimodal checkpoints).",
            choices=("f16", "bf16", "f32", "q8_0"),
            show_default=True,
        ),
    )
    ollama_format: OllamaFormat = field(
        default="auto",
        metadata=_cli(
            "Vision models: Modelfile with GGUF + mmproj (pair) or one fused Ollama GGUF.",
            choices=("auto", "pair", "fused"),
            show_default=True,
        ),
    )
    embedding_type: str | None = field(
        default=None,
        metadata=_cli(
            "QAT int4 (AWQ / compressed-tensors) checkpoints: type of token_embd in the lossless "
            "Q4_0 export [default: F16, as in Google's own QAT GGUFs; Q6_K needs llama.cpp].",
            choices=("F16", "Q8_0", "Q6_K", "Q4_0"),
            case_sensitive=False,
        ),
    )
    force: bool = field(
        default=False,
        metadata=_cli("Replace files in -o that an earlier gemma3-pack export did not write."),
    )
    evaluate: bool = field(
        default=False,
        metadata=_cli(
            "Measure each quant against the float output (KL divergence, top-1 agreement, "
            "perplexity; llama.cpp on CPU) into export.json and the model card.",
            "--eval",
        ),
    )
    tools: bool = field(
        default=False,
        metadata=_cli(
            "Chat template with tool calling in every GGUF (as `patch --tools` writes it) and "
            "in the Modelfile: llama-server --jinja and Ollama return the calls as tool_calls."
        ),
    )

    @classmethod
    def build(cls, options: ExportOptions | None, overrides: dict[str, Any]) -> ExportOptions:
        """``options`` (default: all defaults) with ``overrides`` applied: what ``export(source,
        options, **overrides)`` means. An unknown keyword is a TypeError, as for any function."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(
                f"unexpected export option {unknown[0]!r}: ExportOptions has "
                + ", ".join(sorted(names))
            )
        base = options if options is not None else cls()
        if not isinstance(base, cls):
            raise TypeError(f"options must be an ExportOptions, not {type(base).__name__}")
        return dataclasses.replace(base, **overrides) if overrides else base
