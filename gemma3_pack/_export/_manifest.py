"""What an export folder says about itself: export.json, SHA256SUMS, the Modelfile and a model card.

All written atomically (temp file beside the target + ``os.replace``), with paths relative to the
folder so it can be moved, uploaded to a hub or copied to a phone as is.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._chat import OLLAMA_TEMPLATE
from .._family import SAMPLING, STOP
from .._files import sha256_file, write_text_atomic

__all__ = [
    "render_card",
    "sha256",
    "write_manifest",
    "write_modelfile_for",
    "write_sums",
]


def sha256(path: Path) -> str:
    return sha256_file(path)


def write_manifest(out_dir: Path, data: dict[str, Any]) -> Path:
    doc = {"format": 1, **data, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = out_dir / "export.json"
    write_text_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return path


def write_sums(out_dir: Path, entries: list[tuple[str, str]]) -> Path:
    """``sha256sum -c`` compatible: ``<hex>  <relative path>``."""
    path = out_dir / "SHA256SUMS"
    write_text_atomic(path, "".join(f"{digest}  {rel}\n" for rel, digest in entries))
    return path


def _fallback_modelfile(gguf_rel: str, mmproj_rel: str | None) -> str:
    """Our own rendering, used only if the shared Modelfile module is unavailable."""
    lines = [f"FROM ./{gguf_rel}"]
    if mmproj_rel:
        lines.append(f"FROM ./{mmproj_rel}")
    lines.append(f'TEMPLATE """{OLLAMA_TEMPLATE}"""')
    for key, value in SAMPLING.items():
        lines.append(f"PARAMETER {key} {value}")
    lines.append(f'PARAMETER stop "{STOP}"')
    return "\n".join(lines) + "\n"


def write_modelfile_for(out_dir: Path, gguf_path: Path, mmproj: Path | None = None) -> Path:
    """The Modelfile for the first/default GGUF (shared spec if available, else our rendering)."""
    path = out_dir / "Modelfile"
    try:
        from .._modelfile import spec_for_gguf, write_modelfile  # engineer A's module
    except ImportError:
        write_text_atomic(
            path, _fallback_modelfile(gguf_path.name, mmproj.name if mmproj else None)
        )
        return path
    spec = spec_for_gguf(gguf_path, mmproj, relative_to=out_dir)
    write_modelfile(spec, path)
    return path


def render_card(
    *,
    name: str,
    source: str,
    variant: str | None,
    models: list[dict[str, Any]],
    mmproj: dict[str, Any] | None,
) -> str:
    """README.md for the export folder: what it is and how to run it on each runtime."""
    first = models[0]["path"]
    rows = "\n".join(
        f"| `{m['path']}` | {m['quant']} | {m['size'] / 1e6:,.0f} MB |" for m in models
    )
    vision = (
        f"\nVision projector: `{mmproj['path']}` (pass it with `--mmproj` to llama.cpp).\n"
        if mmproj
        else ""
    )
    mm_flag = f" --mmproj {mmproj['path']}" if mmproj else ""
    return f"""# {name} (GGUF)

Gemma 3 {variant or ""} exported from `{source}` with [gemma3-pack](https://example.invalid/gemma3-pack).
Each file carries Google's chat template, the Gemma sampling settings (temperature 1.0, top_k 64,
top_p 0.95, min_p 0.0) and `<end_of_turn>` as end-of-turn token.

| file | type | size |
|---|---|---|
{rows}
{vision}
## Ollama

```sh
ollama create {name} -f Modelfile
ollama run {name}
```

## llama.cpp

```sh
llama-cli -m {first}{mm_flag} -cnv
llama-server -m {first}{mm_flag} --jinja
```

## Phones (PocketPal AI, ChatterUI, other llama.cpp apps)

Copy `{first}` to the phone and add it as a local model; the chat template and stop token are read
from the file. Q4_0 is fastest on ARM CPUs, Q4_K_M a good default, Q8_0 best quality for small models.

Check the download with `sha256sum -c SHA256SUMS`.

Gemma is provided under and subject to the Gemma Terms of Use: https://ai.google.dev/gemma/terms
"""
