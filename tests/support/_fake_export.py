"""An export folder as `gemma3-pack export` writes it (small GGUFs, export.json with sizes and sha256), for the\ncreate-from-export suites."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def _gguf(path: Path, arch: str, payload: int) -> Path:
    """A small but valid GGUF: one architecture key and one F32 tensor of ``payload`` floats."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(path.stem)
    writer.add_tensor(
        "blk.0.weight" if arch != "clip" else "v.patch_embd.weight",
        np.arange(payload, dtype=np.float32),
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entry(folder: Path, rel: str, quant: str | None = None, sha: str | None = None) -> dict:
    path = folder / rel
    entry = {"path": rel, "size": path.stat().st_size, "sha256": sha or _sha(path)}
    if quant:
        entry["quant"] = quant
    return entry


def make_export(
    folder: Path,
    *,
    vision: bool = False,
    fused: bool = False,
    quants: tuple[str, ...] = ("Q4_K_M",),
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    models = []
    for i, quant in enumerate(quants):
        rel = f"my-gemma-{quant}.gguf"
        _gguf(folder / rel, "gemma3", 4096 + i)
        models.append(_entry(folder, rel, quant))
    manifest = {
        "format": 1,
        "name": "my-gemma",
        "source": "ckpt",
        "variant": "gemma3-4b-it",
        "models": models,
        "mmproj": None,
        "fused": None,
        "modelfile": "Modelfile",
    }
    if vision:
        _gguf(folder / "mmproj-my-gemma-f16.gguf", "clip", 2048)
        manifest["mmproj"] = _entry(folder, "mmproj-my-gemma-f16.gguf")
    if fused:
        _gguf(folder / "my-gemma-fused.gguf", "gemma3", 6144)
        manifest["fused"] = _entry(folder, "my-gemma-fused.gguf")
    (folder / "export.json").write_text(json.dumps(manifest, indent=2))
    return folder
