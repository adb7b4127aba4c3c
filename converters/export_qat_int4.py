#!/usr/bin/env python3
"""Recipe: a QAT int4 checkpoint (AWQ or compressed-tensors) as the Q4_0 GGUF it really is.

Google's QAT Gemma 3 weights sit on a symmetric int4 grid with one scale per 32 inputs: GGUF's Q4_0
block. The int4 checkpoints people download (e.g. ``gemma-3-27b-it-int4-awq``, or a
compressed-tensors W4A16 save) store exactly those integers and scales, so gemma3-pack repacks
them into Q4_0 without re-quantizing, where dequantize + ``llama-quantize`` would move most
weights off the grid. Using only the public API this recipe:

  1. exports the checkpoint to Q4_0 (+ the mmproj for vision checkpoints) with the embedding type
     you choose (F16 as in Google's own QAT GGUFs, or Q8_0 for a smaller file);
  2. prints what was repacked losslessly (from the export's manifest) and the notes;
  3. runs ``inspect_gguf`` on the result.

Usage::

    python converters/export_qat_int4.py gemma-3-27b-it-int4-awq/ --out gguf/
    python converters/export_qat_int4.py my-w4a16-model/ --embedding-type Q8_0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gemma3_pack import Gemma3PackError, export, inspect_gguf


def export_int4(checkpoint: Path, out: Path, *, embedding_type: str = "F16") -> Path:
    """Export to Q4_0 by repacking; returns the GGUF path."""
    result = export(
        checkpoint, output_dir=out, quants="Q4_0", embedding_type=embedding_type, progress=False
    )
    manifest = json.loads(Path(result.manifest or out / "export.json").read_text())
    int4 = manifest.get("int4") or {}
    repacked = int4.get("repacked_losslessly") or []
    print(
        f"{checkpoint.name}: {int4.get('format', 'not int4')}, {len(repacked)} tensors repacked "
        f"losslessly into Q4_0, token_embd {int4.get('embedding_type')}"
    )
    for note in result.notes:
        print(f"note: {note}")
    for path in [m.path for m in result.models] + ([result.mmproj.path] if result.mmproj else []):
        report = inspect_gguf(path)
        status = "ok" if report.ok else ", ".join(f.code for f in report.findings)
        print(f"wrote {path} ({report.kind}): {status}")
    return result.models[0].path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="AWQ / compressed-tensors int4 checkpoint folder")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: <name>-gguf)")
    ap.add_argument("--embedding-type", choices=["F16", "Q8_0", "Q6_K", "Q4_0"], default="F16")
    args = ap.parse_args(argv)
    out = args.out or Path(f"{args.checkpoint.resolve().name}-gguf")
    try:
        export_int4(args.checkpoint, out, embedding_type=args.embedding_type)
    except Gemma3PackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
