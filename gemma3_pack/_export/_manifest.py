"""What an export folder says about itself: export.json, SHA256SUMS, the Modelfile and a model card.

Both directions of ``export.json`` live here: the exporter writes it (:func:`write_manifest`) and
the SDK reads it back (:func:`read_export`, :func:`choose_packaging`) to ship the folder.
All written atomically (temp file beside the target + ``os.replace``), with paths relative to the
folder so it can be moved, uploaded to a hub or copied to a phone as is.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from .._errors import InputError, InputNotFound, UsageError
from .._files import sha256_file, write_text_atomic
from .._inputs import regular_input
from .._modelfile import spec_for_gguf, write_modelfile

__all__ = [
    "EXPORT_JSON",
    "FORMAT",
    "ExportFile",
    "ExportManifest",
    "choose_packaging",
    "fits_on_section",
    "parse_version",
    "pick_model",
    "read_export",
    "render_card",
    "sha256",
    "write_manifest",
    "write_modelfile_for",
    "write_sums",
]


def sha256(path: Path) -> str:
    return sha256_file(path)


EXPORT_JSON = "export.json"
FORMAT = 1  # export.json's format; read_export accepts exactly this one
PAIR_MIN_VERSION = (0, 30, 0)  # llama-server era: text GGUF + mmproj work as two files
# Split vision (text GGUF + mmproj) falls back to the llama.cpp engine from 0.11.11 (#12241);
# observed working on a real 0.24.0 (256 image tokens reach the model). Older ones ignore it.
SPLIT_VISION_MIN_VERSION = (0, 11, 11)


def write_manifest(out_dir: Path, data: dict[str, Any]) -> Path:
    doc = {
        "format": FORMAT,
        **data,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = out_dir / EXPORT_JSON
    write_text_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return path


def write_sums(out_dir: Path, entries: list[tuple[str, str]]) -> Path:
    """``sha256sum -c`` compatible: ``<hex>  <relative path>``."""
    path = out_dir / "SHA256SUMS"
    write_text_atomic(path, "".join(f"{digest}  {rel}\n" for rel, digest in entries))
    return path


def write_modelfile_for(
    out_dir: Path, gguf_path: Path, mmproj: Path | None = None, *, tools: bool = False
) -> Path:
    """The Modelfile for the first/default GGUF: the one spec of :mod:`gemma3_pack._modelfile`."""
    path = out_dir / "Modelfile"
    spec = spec_for_gguf(gguf_path, mmproj, relative_to=out_dir, tools=tools)
    write_modelfile(spec, path)
    return path


def render_card(
    *,
    name: str,
    source: str,
    variant: str | None,
    models: list[dict[str, Any]],
    mmproj: dict[str, Any] | None,
    int4: dict[str, Any] | None = None,
    quality: str | None = None,
    tools: bool = False,
    fits_on: str | None = None,
) -> str:
    """README.md for the export folder: what it is and how to run it on each runtime (and the
    quality table of ``export --eval``)."""
    quality_block = ("\n" + fits_on if fits_on else "") + ("\n" + quality if quality else "")
    template = (
        "gemma3-pack's chat template with tool calling (Google's text when a request has no "
        "tools; `llama-server --jinja` and Ollama return the calls as `tool_calls`)"
        if tools
        else "Google's chat template"
    )
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
    if int4 and int4.get("repacked_losslessly"):
        names = int4["repacked_losslessly"]
        vision += (
            f"\nQAT int4 ({int4['format']}) source: {len(names)} linear weights were **repacked "
            "losslessly** into Q4_0 (every block holds the checkpoint's own 4-bit values and "
            "scale; nothing was re-quantized): every `blk.N."
            + "`, `blk.N.".join(sorted({n.split(".", 2)[-1] for n in names}))
            + f"` (the full list is in export.json). `token_embd.weight` is "
            f"{int4['embedding_type']}; norms are F32.\n"
        )
    elif int4:
        vision += (
            f"\nQAT int4 ({int4['format']}) source, dequantized exactly ((q - 8) * scale) before "
            "conversion; export with `-q Q4_0` to keep the int4 weights lossless.\n"
        )
    return f"""# {name} (GGUF)

Gemma 3 {variant or ""} exported from `{source}` with [gemma3-pack](https://example.invalid/gemma3-pack).
Each file carries {template}, the Gemma sampling settings (temperature 1.0,
top_k 64, top_p 0.95, min_p 0.0) and `<end_of_turn>` as end-of-turn token.

| file | type | size |
|---|---|---|
{rows}
{vision}{quality_block}
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


def fits_on_section(models: list[Path], mmproj: Path | None, *, context_length: int) -> str:
    """The model card's "Fits on" section: for each GGUF, the largest context on common GPUs with
    every layer offloaded, as ``gemma3-pack plan FILE --gpu SIZE`` plans it (text only / with the
    vision projector on the GPU when there is one)."""
    from .._errors import Gemma3PackError
    from .._memory._plan import read_ggufs_once
    from .._memory._plan_gpu import TABLE_CARDS, fit_gpus

    def largest(path: Path, card: str, vision: bool) -> int:
        fit = fit_gpus(card, path, mmproj=mmproj if vision else None, vision=vision)[0]
        return fit.max_ctx if fit.quant is not None else 0

    kinds = [False, True] if mmproj is not None else [False]
    rows = []
    try:
        with read_ggufs_once():  # each file's header read once, not once per card
            for path in models:
                cells, full = [], dict.fromkeys(kinds, False)
                for card in TABLE_CARDS:  # smallest first: once the whole context fits, more
                    parts = []  # memory cannot give more: the larger cards are not planned
                    for vision in kinds:
                        n = context_length if full[vision] else largest(path, card, vision)
                        full[vision] = n >= context_length
                        parts.append(f"{n // 1024}K" if n else "-")
                    cells.append(" / ".join(parts))
                rows.append(f"| `{path.name}` | " + " | ".join(cells) + " |")
    except Gemma3PackError as err:
        return f"## Fits on\n\nNot planned: {err}\n"
    what = ", text only / with the vision projector on the GPU" if mmproj is not None else ""
    return (
        "## Fits on\n\n"
        f"The largest context each file runs at on one GPU with every layer offloaded{what}: "
        "llama.cpp's CUDA backend with flash attention and an f16 KV cache, 1 GiB of each card "
        'left free, as `gemma3-pack plan FILE --gpu SIZE` plans it ("-": not even 4K fits).\n\n'
        "| file | " + " | ".join(c.replace("GB", " GB") for c in TABLE_CARDS) + " |\n"
        "|---|" + "---|" * len(TABLE_CARDS) + "\n" + "\n".join(rows) + "\n"
    )


# --------------------------------------------------------------------------- reading it back


@dataclass(frozen=True)
class ExportFile:
    path: Path
    size: int | None
    sha256: str | None
    quant: str | None = None


@dataclass(frozen=True)
class ExportManifest:
    """The parts of ``export.json`` that shipping needs, each checked for type and place."""

    folder: Path
    name: str
    models: tuple[ExportFile, ...]
    mmproj: ExportFile | None
    fused: ExportFile | None
    tools: bool = False  # exported with --tools: the tool-calling chat template


def _export_file(folder: Path, entry: Any, what: str) -> ExportFile:
    where = folder / EXPORT_JSON
    if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
        raise InputError(f'{where}: {what} entry has no "path"; re-export the folder')
    rel = Path(entry["path"])
    # normpath, not resolve(): a symlink inside the folder to a big file elsewhere is fine,
    # a path that climbs out of the folder is not.
    path = Path(os.path.normpath(folder.absolute() / rel))
    if rel.is_absolute() or not path.is_relative_to(folder.absolute()):
        raise InputError(f"{where}: {what} path {entry['path']!r} points outside the export folder")
    if not path.is_file():
        raise InputNotFound(
            f"{path} (listed in export.json as {what}) does not exist: re-export "
            "or copy the whole folder"
        )
    sha = entry.get("sha256")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise InputError(f"{where}: {what} sha256 {sha!r} is not 64 hex digits")
    size, quant = entry.get("size"), entry.get("quant")
    if size is not None and (type(size) is not int or size < 0):
        raise InputError(f"{where}: {what} size {size!r} is not a byte count; re-export")
    if quant is not None and not isinstance(quant, str):
        raise InputError(f"{where}: {what} quant {quant!r} is not a quant name; re-export")
    return ExportFile(path, size, sha, quant)


def read_export(export_dir: str | os.PathLike[str]) -> ExportManifest:
    """Read and check an export folder's ``export.json`` (format 1)."""
    folder = Path(export_dir).expanduser()
    manifest_path = folder / EXPORT_JSON
    if not folder.exists():
        raise InputNotFound(f"export folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder: point --from at an export folder")
    if manifest_path.exists() and not manifest_path.is_file():
        regular_input(manifest_path, EXPORT_JSON)  # a FIFO or device: one line, never opened
    if not manifest_path.is_file():
        raise InputNotFound(
            f"{manifest_path} not found: point --from at a folder written by `gemma3-pack export`"
        )
    if manifest_path.stat().st_size > 16 << 20:
        raise InputError(f"{manifest_path} is over 16 MiB: not an export.json; re-export")
    from .._inputs import loads_json

    data = loads_json(
        manifest_path.read_bytes(), str(manifest_path), error=InputError, fix="re-export the folder"
    )
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else None
        raise InputError(
            f"{manifest_path}: unsupported format {got!r} (expected {FORMAT}); "
            "upgrade gemma3-pack or re-export"
        )
    models = data.get("models") or []
    if not isinstance(models, list):
        raise InputError(
            f'{manifest_path}: "models" is {type(models).__name__} {models!r}, '
            "expected a list of files; re-export the folder"
        )
    if not models:
        raise InputError(f"{manifest_path} lists no models; re-export the folder")
    name = data.get("name")
    return ExportManifest(
        folder=folder,
        name=name if isinstance(name, str) and name else folder.name,
        models=tuple(_export_file(folder, m, "model") for m in models),
        mmproj=_export_file(folder, data["mmproj"], "mmproj") if data.get("mmproj") else None,
        fused=_export_file(folder, data["fused"], "fused") if data.get("fused") else None,
        tools=data.get("tools") is True,
    )


def parse_version(text: str) -> tuple[int, int, int]:
    nums = [int(n) for n in re.findall(r"\d+", text)[:3]]
    return tuple([*nums, 0, 0, 0][:3])  # type: ignore[return-value]


def choose_packaging(
    manifest: ExportManifest, packaging: str, version: Callable[[], str]
) -> Literal["text", "pair", "fused"]:
    """How to ship vision: a text GGUF + mmproj pair (Ollama >= 0.30) or one fused GGUF (older).

    ``auto`` on 0.11.11-0.29 takes the fused file when the export has one (Ollama's own engine)
    and the pair otherwise (its llama.cpp engine; seen working on a real 0.24.0); before 0.11.11
    a separate projector is ignored, so only a fused file will do.
    """
    if packaging not in ("auto", "pair", "fused"):
        raise UsageError(f"packaging must be auto, pair or fused, not {packaging!r}")
    if manifest.mmproj is None and manifest.fused is None:
        if packaging != "auto":
            raise UsageError(
                f"--packaging {packaging} needs a vision export, but {manifest.folder} "
                "has no projector (a text-only model)"
            )
        return "text"
    chosen = packaging
    if packaging == "auto":
        daemon = parse_version(version())
        chosen = "pair" if daemon >= PAIR_MIN_VERSION else "fused"
        if chosen == "pair" and manifest.mmproj is None:
            chosen = "fused"  # >= 0.30 still loads old fused files (llama/compat shim)
        elif chosen == "fused" and manifest.fused is None and daemon >= SPLIT_VISION_MIN_VERSION:
            chosen = "pair"  # 0.11.11-0.29 run a separate projector on their llama.cpp engine
    if chosen == "pair" and manifest.mmproj is None:
        raise UsageError(
            f"{manifest.folder} has no mmproj file for pair packaging: re-export with "
            "--ollama-format pair (or use --packaging fused)"
        )
    if chosen == "fused" and manifest.fused is None:
        why = (
            "this Ollama is older than 0.11.11 and ignores a separate projector: it needs "
            "one fused GGUF for vision"
            if packaging == "auto"
            else "--packaging fused needs a fused GGUF"
        )
        raise UsageError(
            f"{why}, but {manifest.folder} has none: re-export with "
            "--ollama-format fused (or upgrade Ollama to 0.11.11+)"
        )
    return chosen  # type: ignore[return-value]


def pick_model(manifest: ExportManifest, quant: str | None) -> ExportFile:
    """The exported model to ship: the one of type ``quant``, or the first."""
    if quant is None:
        return manifest.models[0]
    for m in manifest.models:
        if (m.quant or "").upper() == quant.upper():
            return m
    have = ", ".join(str(m.quant) for m in manifest.models)
    raise UsageError(f"{manifest.folder} has no {quant} model (it has {have})")
