#!/usr/bin/env python3
"""Recipe: make a downloaded Gemma 3 GGUF (and its mmproj) chat-ready for every runtime.

Many published Gemma 3 GGUFs — base models, fine-tunes, some QAT exports — ship without a chat
template or sampling settings, and their projector files often have names phone apps do not pick
up. This recipe uses only gemma3-pack's public API:

  1. ``inspect_gguf`` lists what is wrong (findings with codes),
  2. ``patch_gguf`` writes Google's template + Gemma's sampling settings into a copy,
  3. an mmproj is copied under a name apps find (``mmproj-<name>.gguf``), patched with a name,
  4. ``inspect_gguf`` again: the findings the patch fixes are gone.

Usage::

    python converters/patch_downloaded_gguf.py gemma-3-4b-it-Q4_K_M.gguf [mmproj.gguf] --out ready/

Then: ``gemma3-pack modelfile ready/<model>.gguf [ready/mmproj-...gguf] -o ready/Modelfile``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gemma3_pack import Gemma3PackError, inspect_gguf, is_mmproj_name, patch_gguf


def prepare(model: Path, mmproj: Path | None, out: Path, *, name: str | None = None) -> list[Path]:
    """Patch ``model`` (and ``mmproj``) into ``out``; returns the written files."""
    out.mkdir(parents=True, exist_ok=True)
    before = inspect_gguf(model)
    print(f"{model.name}: {', '.join(f.code for f in before.findings) or 'no findings'}")
    written = [patch_gguf(model, out / model.name, name=name, force=True).dst]
    if mmproj is not None:
        target = mmproj.name if is_mmproj_name(mmproj) else f"mmproj-{mmproj.name}"
        label = f"{name} vision projector" if name else None
        written.append(patch_gguf(mmproj, out / target, name=label, force=True).dst)
    for path in written:
        after = inspect_gguf(path)
        status = "ready" if after.ok else ", ".join(f.code for f in after.findings)
        print(f"wrote {path} ({after.kind}): {status}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("mmproj", type=Path, nargs="?")
    ap.add_argument("--out", type=Path, default=Path("gemma3-ready"))
    ap.add_argument("--name", default=None, help="general.name to write")
    args = ap.parse_args(argv)
    try:
        files = prepare(args.model, args.mmproj, args.out, name=args.name)
    except Gemma3PackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if all(inspect_gguf(f).ok for f in files) else 1


if __name__ == "__main__":
    sys.exit(main())
