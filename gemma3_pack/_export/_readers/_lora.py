"""Merge a PEFT LoRA adapter onto its base, tensor by tensor, while the GGUF is written.

``W' = W + scale · B @ A`` in float32, then cast back to the base's dtype (what PEFT's
``merge_and_unload`` + ``save_pretrained`` would have saved), with ``scale = alpha / r`` or
``alpha / sqrt(r)`` for rsLoRA (per-module ``rank_pattern`` / ``alpha_pattern`` honoured). Only one
merged tensor is held at a time; untouched tensors stay zero-copy mmaps of the base.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..._errors import CheckpointError, InputNotFound
from ..._inputs import check_number, read_json_object
from ._source import Checkpoint, TensorInfo, _parse_safetensors

__all__ = ["LoraCheckpoint", "is_lora", "lora_base", "open_lora"]

_LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$"
)


def is_lora(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def _config(adapter: Path) -> dict[str, Any]:
    """adapter_config.json through the validating reader; every field the merge uses checked."""
    file = "adapter_config.json"
    cfg = read_json_object(adapter / file)
    check_number(cfg.get("r", 8), file, "r", 1, 1 << 16)
    check_number(cfg.get("lora_alpha", 8), file, "lora_alpha", -1e6, 1e6, integer=False)
    for key, lo, integer in (("rank_pattern", 1, True), ("alpha_pattern", -1e6, False)):
        pattern = cfg.get(key) or {}
        if not isinstance(pattern, dict):
            raise CheckpointError(f"{file}: {key} is not an object of module -> number: fix it")
        for module, v in pattern.items():
            check_number(
                v, file, f"{key}.{module}", lo, 1e6 if not integer else 1 << 16, integer=integer
            )
    base = cfg.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise CheckpointError(
            f"{file}: base_model_name_or_path is not a string: fix it or pass --base PATH|REPO"
        )
    if cfg.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(
            f"adapter is {cfg.get('peft_type')}, only LoRA adapters can be merged"
        )
    if cfg.get("use_dora"):
        raise CheckpointError(
            "DoRA adapters are not supported: merge with PEFT first "
            "(merge_and_unload, save_pretrained)"
        )
    return cfg


def lora_base(adapter: Path, base: str | None) -> str:
    """The base model to merge onto: ``--base`` or the adapter's ``base_model_name_or_path``."""
    if base:
        return base
    name = _config(adapter).get("base_model_name_or_path")
    if not name:
        raise CheckpointError(
            "the adapter does not name its base model (no base_model_name_or_path): pass --base PATH|REPO"
        )
    # A relative path in the adapter's own config means "relative to the adapter", wherever the
    # command runs from (PEFT stores what from_pretrained was given).
    beside = adapter / name
    if not Path(name).is_absolute() and not name.startswith("~") and beside.is_dir():
        return str(beside)
    return str(name)


def _norm(module: str) -> str:
    """Module path without the layout prefixes, so adapter and base keys meet."""
    return module.replace("language_model.", "").removeprefix("model.")


class LoraCheckpoint(Checkpoint):
    """The base checkpoint with the adapter's deltas applied on read."""

    def __init__(self, base: Checkpoint, adapter: Path) -> None:
        super().__init__(base.root, base.config, base._tensors)
        self.adapter = adapter
        cfg = _config(adapter)
        self.lora_config = cfg
        files = sorted(adapter.glob("adapter_model*.safetensors"))
        if not files:
            if (adapter / "adapter_model.bin").is_file():
                raise CheckpointError(
                    "adapter_model.bin is a pickle; gemma3-pack never unpickles files: re-save "
                    "the adapter with safetensors (save_pretrained(dir, safe_serialization=True))"
                )
            raise CheckpointError(f"{adapter} has no adapter_model.safetensors")
        lora: dict[str, TensorInfo] = {}
        for f in files:
            lora.update(_parse_safetensors(f, adapter.resolve()))
        self._lora_store = Checkpoint(adapter, {}, lora)
        pairs: dict[str, dict[str, str]] = {}
        for key in lora:
            m = _LORA_KEY.match(key)
            if m:
                pairs.setdefault(_norm(m["module"]), {})[m["ab"]] = key
        by_norm = {_norm(n.removesuffix(".weight")): n for n in self.names()}
        self._deltas: dict[str, tuple[str, str, float]] = {}
        r, alpha = int(cfg.get("r", 8)), float(cfg.get("lora_alpha", 8))
        for module, ab in pairs.items():
            if set(ab) != {"A", "B"}:
                raise CheckpointError(f"adapter module {module} lacks lora_A or lora_B")
            target = by_norm.get(module)
            if target is None:
                raise CheckpointError(
                    f"adapter targets {module}, which the base model does not have: wrong --base?"
                )
            short = module.rsplit(".", 1)[-1]
            mr = int(cfg.get("rank_pattern", {}).get(short, r))
            ma = float(cfg.get("alpha_pattern", {}).get(short, alpha))
            scale = ma / math.sqrt(mr) if cfg.get("use_rslora") else ma / mr
            self._check_pair(adapter, module, target, ab["A"], ab["B"])
            self._deltas[target] = (ab["A"], ab["B"], scale)
        if not self._deltas:
            raise CheckpointError(f"{adapter} holds no LoRA weights (lora_A/lora_B tensors)")
        self._last: tuple[str, np.ndarray] | None = None

    def _check_pair(self, adapter: Path, module: str, target: str, a_key: str, b_key: str) -> None:
        """Shapes and values of one lora_A/lora_B pair, before anything is written: the merge
        must not fail (or write NaN) halfway through an export."""
        a, b = self._lora_store.info(a_key), self._lora_store.info(b_key)
        base = self.shape(target)
        fix = "re-save the adapter, or pass the --base it was trained on"
        if len(a.shape) != 2 or len(b.shape) != 2 or len(base) != 2:
            raise CheckpointError(
                f"{adapter.name}: {module} has lora_A {list(a.shape)} and lora_B "
                f"{list(b.shape)}, expected two matrices: {fix}"
            )
        if a.shape[0] != b.shape[1] or (b.shape[0], a.shape[1]) != tuple(base):
            raise CheckpointError(
                f"{adapter.name}: {module}'s lora_B {list(b.shape)} @ lora_A {list(a.shape)} "
                f"does not fit the base weight {list(base)}: {fix}"
            )
        for key, tensor in (("lora_A", a_key), ("lora_B", b_key)):
            values = self._lora_store.read_f32(tensor)
            if not np.isfinite(values).all():
                raise CheckpointError(
                    f"{adapter.name}: {module}.{key} holds NaN or infinite values: the merged "
                    "weights would be broken; re-train or re-save the adapter"
                )

    @property
    def merged_names(self) -> list[str]:
        return list(self._deltas)

    def merged_f32(self, name: str) -> np.ndarray:
        """``W + scale · B @ A`` in float32 (before the cast back to the base dtype)."""
        a_key, b_key, scale = self._deltas[name]
        w = self._to_f32(Checkpoint.raw(self, name), self.dtype(name))
        a = self._lora_store.read(a_key)
        b = self._lora_store.read(b_key)
        if b.shape[0] != w.shape[0] or a.shape[1] != w.shape[1]:
            raise CheckpointError(f"adapter shapes for {name} do not fit the base: wrong --base?")
        with np.errstate(over="ignore", invalid="ignore"):
            w += np.float32(scale) * (b @ a)
        if not np.isfinite(w).all():
            raise CheckpointError(
                f"merging the LoRA into {name} gives NaN or infinite weights (the adapter's "
                "values overflow float32): re-train or re-save the adapter"
            )
        return w

    def read_f32(self, name: str) -> np.ndarray:
        """Merged tensors as computed by :meth:`raw`; the others straight from the file."""
        if name in self._deltas:
            return self.read(name)
        return super().read_f32(name)

    def file_span(self, name: str, start: int, stop: int) -> tuple[Path, int, int] | None:
        return None if name in self._deltas else super().file_span(name, start, stop)

    def raw(self, name: str) -> np.ndarray:
        if name not in self._deltas:
            return super().raw(name)
        if self._last is not None and self._last[0] == name:
            return self._last[1]
        merged = self.merged_f32(name)
        dtype = self.dtype(name)
        if dtype == "BF16":
            import gguf

            out = gguf.quants.quantize(merged, gguf.GGMLQuantizationType.BF16).view(np.uint16)
            out = out.reshape(merged.shape)
        else:
            out = merged.astype(np.float16 if dtype == "F16" else np.float32)
        out.flags.writeable = False
        self._last = (name, out)
        return out


def open_lora(adapter: Path, base_dir: Path) -> LoraCheckpoint:
    from ._open import open_checkpoint

    if not base_dir.exists():
        raise InputNotFound(
            f"the LoRA's base model {base_dir} was not found: pass --base PATH|REPO"
        )
    return LoraCheckpoint(open_checkpoint(base_dir), adapter)
