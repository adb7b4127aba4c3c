#!/usr/bin/env python3
"""Recipe: give a fine-tuned Gemma 3 (4B/12B/27B) its eyes back.

Fine-tunes lose vision on the way to GGUF more than anything else: llama.cpp's converter writes an
mmproj with *no tensors* for ``model.vision_tower.*`` checkpoints (transformers 4.52+ saves) and
crashes on transformers 5.x ones; Ollama before 0.11.11 ignores a separate projector. Given the
fine-tuned Gemma3ForConditionalGeneration checkpoint folder (any of the three layouts, LoRA
already merged) this recipe uses only gemma3-pack's public API to write:

  1. ``mmproj-<name>-F16.gguf`` for llama.cpp, LM Studio and phone apps (``write_mmproj``);
  2. with ``--text-gguf``: the one-file Ollama layout (``write_fused``) that Ollama's own
     Go engine runs images from (0.6–0.29) and newer versions still load;
  3. ``inspect_gguf`` on each output, as a check.

Usage::

    python converters/export_vision.py my-finetune/ --out gguf/ --name my-finetune
    python converters/export_vision.py my-finetune/ --text-gguf gguf/my-finetune-Q4_K_M.gguf

For everything at once (text GGUFs, quants, Modelfile, export.json) use
``gemma3-pack export my-finetune/ --ollama-format pair|fused`` instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gemma3_pack import Gemma3PackError, inspect_gguf, write_fused, write_mmproj


def give_vision(
    checkpoint: Path, out: Path, *, name: str, text_gguf: Path | None = None, dtype: str = "f16"
) -> list[Path]:
    """Write the projector (and the fused Ollama file if ``text_gguf``); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    label = {"f16": "F16", "bf16": "BF16", "f32": "F32", "q8_0": "Q8_0"}[dtype]
    written = [
        write_mmproj(
            checkpoint,
            out / f"mmproj-{name}-{label}.gguf",
            dtype=dtype,  # type: ignore[arg-type]
            name=name,
            basename=name,
        )
    ]
    if text_gguf is not None:
        written.append(write_fused(text_gguf, checkpoint, out / f"{text_gguf.stem}-ollama.gguf"))
    for path in written:
        report = inspect_gguf(path)
        status = "ok" if report.ok else ", ".join(f.code for f in report.findings)
        print(f"wrote {path} ({report.kind}): {status}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="Gemma3ForConditionalGeneration folder")
    ap.add_argument("--out", type=Path, default=Path("gemma3-vision"))
    ap.add_argument("--name", default=None, help="model name (default: the folder's name)")
    ap.add_argument(
        "--text-gguf",
        type=Path,
        default=None,
        help="the text GGUF exported from the same checkpoint: also write the fused Ollama file",
    )
    ap.add_argument("--mmproj-type", choices=["f16", "bf16", "f32", "q8_0"], default="f16")
    args = ap.parse_args(argv)
    try:
        give_vision(
            args.checkpoint,
            args.out,
            name=args.name or args.checkpoint.resolve().name,
            text_gguf=args.text_gguf,
            dtype=args.mmproj_type,
        )
    except Gemma3PackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
