"""The checkpoint protocol: what the exporter's planners and writers need from an input reader.

Three readers implement it, one module each, all opened by ``_open.open_checkpoint`` /
``_lora.open_lora``:

    _source.Checkpoint       float safetensors (bf16 / f16 / f32), zero-copy mmaps, pread
    _lora.LoraCheckpoint     a base checkpoint with a PEFT adapter merged on read
    _int4.Int4Checkpoint     AWQ / compressed-tensors int4, repacked to Q4_0 or dequantized

A reader names its tensors as the checkpoint does (the planners map them to GGUF names and order,
``_tensors.plan_tensors``), gives their logical shape and source dtype, and hands out rows:
``typed_rows`` already encoded in the planned GGUF type when the reader can do that without
loss (int4 -> Q4_0), else ``raw`` / ``read_rows`` for the float conversion; ``file_span`` says
where rows lie in a file byte for byte (None for tensors the reader computes), so they can be
copied without passing through memory. A new input format is
one new module implementing this, plus one dispatch line in ``open_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ._source import TensorInfo

__all__ = ["CheckpointReader"]


class CheckpointReader(Protocol):
    """An opened, validated, read-only checkpoint (see the module docstring)."""

    root: Path
    config: dict[str, Any]
    text_config: dict[str, Any]

    @property
    def architecture(self) -> str: ...

    def names(self) -> list[str]: ...

    def info(self, name: str) -> TensorInfo: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def dtype(self, name: str) -> str: ...

    def nbytes(self, name: str) -> int: ...

    def raw(self, name: str) -> np.ndarray: ...

    def read(self, name: str) -> np.ndarray: ...

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray: ...

    def read_f32(self, name: str) -> np.ndarray: ...

    def typed_rows(self, name: str, qtype: str, start: int, stop: int) -> np.ndarray | None: ...

    def release(self, name: str, start: int = 0, stop: int | None = None) -> None: ...

    def file_span(self, name: str, start: int, stop: int) -> tuple[Path, int, int] | None: ...
