"""Opening a checkpoint folder: validate it and pick its reader (float safetensors or int4).

The one place that knows every reader, so the readers never import each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..._errors import CheckpointError, InputNotFound, UsageError
from ..._inputs import check_config
from ._int4 import Int4Checkpoint, open_int4
from ._source import (
    INT4_METHODS,
    Checkpoint,
    TensorInfo,
    _check_config,
    _check_shapes,
    _load_json,
    _parse_safetensors,
    _weight_files,
)

__all__ = ["open_checkpoint"]


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint | Int4Checkpoint:
    """Open and validate a checkpoint folder; every input refusal is raised here."""
    root = Path(path).expanduser()
    if not root.exists():
        raise InputNotFound(f"checkpoint folder not found: {root}")
    if root.is_file():
        raise UsageError(
            f"{root} is a file: pass the checkpoint folder (with config.json and *.safetensors)"
        )
    if (root / "adapter_config.json").is_file() and not (root / "config.json").is_file():
        raise CheckpointError(
            f"{root} is a LoRA adapter, not a full checkpoint: export it with `gemma3-pack export "
            f"{root}` (merged onto its base) or pass --base"
        )
    cfg_path = root / "config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{root} has no config.json: not a Hugging Face checkpoint folder")
    config = _load_json(cfg_path)
    text = check_config(config)
    _check_config(config, text)
    files = _weight_files(root)
    if not files:
        pickles = sorted(p.name for p in root.glob("*.bin")) + sorted(
            p.name for p in root.glob("*.pt")
        )
        if pickles:
            raise CheckpointError(
                f"only pickle weights found ({pickles[0]}); gemma3-pack never unpickles files: "
                "re-save with safetensors (model.save_pretrained(dir, safe_serialization=True))"
            )
        raise CheckpointError(f"no *.safetensors weights in {root}")
    qc = config.get("quantization_config") or text.get("quantization_config")
    if isinstance(qc, dict) and str(qc.get("quant_method", "")).lower() in INT4_METHODS:
        int4 = open_int4(root, config, qc, files)  # quantized linears appear as (out, in)
        _check_shapes(text, int4._tensors)
        return int4
    tensors: dict[str, TensorInfo] = {}
    for f in files:
        for name, info in _parse_safetensors(f, root).items():
            if name in tensors:
                raise CheckpointError(f"tensor {name!r} appears in two files ({f.name}): re-save")
            tensors[name] = info
    _check_shapes(text, tensors)
    return Checkpoint(root, config, tensors)
