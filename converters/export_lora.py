#!/usr/bin/env python3
"""Recipe: ship a Gemma 3 LoRA adapter as GGUFs without merging it yourself first.

The usual route (load the base in transformers, ``merge_and_unload``, ``save_pretrained``, run
llama.cpp's converter, then ``llama-quantize``) needs the whole model in RAM twice and a compiled
llama.cpp. gemma3-pack merges the adapter tensor by tensor while it writes the GGUF, in float32,
with the adapter's own scaling (``alpha/r``, or ``alpha/sqrt(r)`` for rsLoRA). This recipe uses
only the public API:

  1. ``export`` on the adapter folder (the base comes from ``base_model_name_or_path`` or
     ``--base``), to the requested types;
  2. ``inspect_gguf`` on the first file: Google's template, sampling keys, end-of-turn token;
  3. prints the ``ollama create`` line for the Modelfile written beside the GGUFs.

Usage::

    python converters/export_lora.py my-lora/ --base google/gemma-3-1b-it -q Q8_0,Q4_K_M
    python converters/export_lora.py my-lora/ -o out/ --name my-gemma --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gemma3_pack import Gemma3PackError, export, inspect_gguf


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "adapter",
        type=Path,
        help="PEFT adapter folder (adapter_config.json + adapter_model.safetensors)",
    )
    ap.add_argument("--base", default=None, help="base model folder or HF repo id")
    ap.add_argument("-q", "--quant", default=None, help="types, e.g. Q8_0,Q4_K_M")
    ap.add_argument("-o", "--output-dir", type=Path, default=None)
    ap.add_argument("--name", default=None)
    ap.add_argument("--json", action="store_true", help="print the export result as JSON")
    args = ap.parse_args(argv)
    try:
        result = export(
            args.adapter,
            base=args.base,
            quants=args.quant,
            output_dir=args.output_dir,
            name=args.name,
            progress=not args.json and sys.stderr.isatty(),
        )
        report = inspect_gguf(result.models[0].path)
    except Gemma3PackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"export": result.to_dict(), "inspect_ok": report.ok}, indent=2))
        return 0 if report.ok else 1
    for m in result.models:
        print(f"{m.path}  {m.quant}  {m.size / 1e6:,.1f} MB  {m.seconds:.1f} s")
    print(f"inspect {result.models[0].path.name}: {'clean' if report.ok else 'PROBLEMS'}")
    for f in report.findings:
        print(f"  {f.level} {f.code}: {f.message}")
    print(f"next: ollama create {result.name} -f {result.modelfile}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
