#!/usr/bin/env python3
"""Recipe: ship a `gemma3-pack export` folder into Ollama, then smoke-test the result.

    python converters/ship_export_to_ollama.py ./export/my-gemma my-gemma [--host H]
        [--quant Q8_0] [--packaging auto|pair|fused] [--system TEXT] [--num-ctx N]

Steps (each one is a public SDK call, so this file doubles as documentation):

1. ``Client(host).version()``      the daemon answers, and which packaging it needs for vision;
2. ``create_from_export(...)``     blobs uploaded once (HEAD first, sha256 from export.json), then
                                   ``create`` with Gemma 3's template, stop, sampling and license;
3. ``show(name)``                  the model carries our template and ``stop "<end_of_turn>"``;
4. ``chat(...)``                   a short greedy answer comes back; for vision exports, the
                                   ``vision`` capability is present.

The test-suite runs this recipe against its loopback Ollama with an export folder made from the
real Gemma 3 270M GGUF (tests/test_client_create.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def ship(
    export_dir: Path,
    name: str,
    *,
    host: str | None = None,
    quant: str | None = None,
    packaging: str = "auto",
    system: str | None = None,
    num_ctx: int | None = None,
    progress: bool = True,
) -> dict[str, object]:
    """Ship and smoke-test; returns what was checked (raises on the first failure)."""
    from gemma3_pack import Client, read_export

    manifest = read_export(export_dir)
    with Client(host, model=name) as client:
        version = client.version()
        print(f"ollama {version} at {client.host}", file=sys.stderr)
        result = client.create_from_export(
            export_dir,
            name,
            quant=quant,
            packaging=packaging,  # type: ignore[arg-type]
            system=system,
            num_ctx=num_ctx,
            progress=progress,
        )
        show = client.show(name)
        template_ok = "<start_of_turn>" in (show.template or "")
        stop_ok = "<end_of_turn>" in (show.parameters or "")
        vision_expected = manifest.mmproj is not None or manifest.fused is not None
        vision = client.has_vision(name)
        reply = client.chat(
            "Reply with one short sentence: what are you?",
            options={"num_predict": 32, "temperature": 0, "seed": 1},
        )
    checks = {
        "model": name,
        "ollama": version,
        "status": result.status,
        "template": template_ok,
        "stop": stop_ok,
        "vision_expected": vision_expected,
        "vision": vision,
        "reply": reply.message.content,
    }
    failed = [k for k in ("template", "stop") if not checks[k]]
    if vision_expected and not vision:
        failed.append("vision")
    if not (reply.message.content or "").strip():
        failed.append("reply")
    if failed:
        raise SystemExit(
            f"smoke test failed for {name}: {', '.join(failed)}\n{json.dumps(checks, indent=2)}"
        )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", nargs="?", type=Path)
    parser.add_argument("name", nargs="?")
    parser.add_argument("--host", default=None)
    parser.add_argument("--quant", default=None)
    parser.add_argument("--packaging", choices=["auto", "pair", "fused"], default="auto")
    parser.add_argument("--system", default=None)
    parser.add_argument("--num-ctx", type=int, default=None)
    args = parser.parse_args()
    if args.export_dir is None or args.name is None:
        parser.error("EXPORT_DIR and NAME are required")
    else:
        from gemma3_pack import Gemma3PackError

        try:
            checks = ship(
                args.export_dir,
                args.name,
                host=args.host,
                quant=args.quant,
                packaging=args.packaging,
                system=args.system,
                num_ctx=args.num_ctx,
            )
        except Gemma3PackError as err:
            raise SystemExit(f"error: {err}") from None
    print(json.dumps(checks, indent=2))


if __name__ == "__main__":
    main()
