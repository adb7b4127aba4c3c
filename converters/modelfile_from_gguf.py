#!/usr/bin/env python3
"""Recipe: write an Ollama Modelfile beside a Gemma 3 GGUF, ready for ``ollama create``.

Uses only gemma3-pack's public API:

  1. ``spec_for_gguf`` describes the model: the GGUF (and its vision projector) as FROM lines
     relative to the Modelfile, our Gemma 3 TEMPLATE, the Gemma team's sampling settings,
     stop "<end_of_turn>" and the license;
  2. ``write_modelfile`` writes ``<stem>.Modelfile`` beside the GGUF (atomically);
  3. ``check_modelfile`` lints the result (it must be clean);
  4. ``create_kwargs`` shows the same model as ``ollama.Client.create(...)`` arguments, with the
     files' sha256 digests computed here, for creating it from Python instead.

Usage::

    python converters/modelfile_from_gguf.py gemma-3-4b-it-Q4_K_M.gguf [mmproj.gguf] \\
        [--system "Answer briefly."] [--num-ctx 8192] [--json]

Then: ``ollama create my-gemma3 -f gemma-3-4b-it-Q4_K_M.Modelfile``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from gemma3_pack import (
    Gemma3PackError,
    check_modelfile,
    create_kwargs,
    spec_for_gguf,
    write_modelfile,
)


def sha256_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def modelfile_beside(
    model: Path,
    mmproj: Path | None = None,
    *,
    system: str | None = None,
    num_ctx: int | None = None,
) -> tuple[Path, dict]:
    """Write ``<model stem>.Modelfile`` next to ``model``; returns it and the create kwargs."""
    out = model.with_suffix(".Modelfile")
    spec = spec_for_gguf(model, mmproj, system=system, num_ctx=num_ctx, relative_to=out.parent)
    write_modelfile(spec, out)
    problems = [f for f in check_modelfile(out) if f.level == "error"]
    if problems:
        raise SystemExit(f"error: the written Modelfile has lint errors: {problems}")
    files = {p.name: sha256_digest(p) for p in [model] + ([mmproj] if mmproj else [])}
    return out, create_kwargs(spec, files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="the Gemma 3 GGUF")
    ap.add_argument("mmproj", type=Path, nargs="?", help="its vision projector GGUF, if any")
    ap.add_argument("--system", help="a default system prompt")
    ap.add_argument("--num-ctx", type=int, help="context length in tokens")
    ap.add_argument("--json", action="store_true", help="print the create kwargs as JSON")
    args = ap.parse_args(argv)
    try:
        out, kwargs = modelfile_beside(
            args.model, args.mmproj, system=args.system, num_ctx=args.num_ctx
        )
    except Gemma3PackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"modelfile": str(out), "create_kwargs": kwargs}, indent=2))
    else:
        print(f"wrote {out}")
        print(f"next: ollama create my-gemma3 -f {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
