"""The vision projector file (``mmproj-*.gguf``) that llama.cpp, LM Studio and phone apps load.

The file is what llama.cpp's reference converter writes with ``--mmproj`` for a
Gemma3ForConditionalGeneration checkpoint (``Gemma3VisionModel`` in llama.cpp's
``conversion/gemma.py``), tensor for tensor, with two differences that are the point of this module:

* every checkpoint layout gives the same file (the reference writes zero tensors for
  ``model.vision_tower.*`` checkpoints and crashes on transformers 5.x ones), and
* a tower with fewer tensors than its config implies is an error, never a smaller file.

Storage types follow the reference, because clip.cpp depends on them: ``mm.input_projection`` is F16
and not transposed (a quantized one crashes, ggml-org/llama.cpp#13025), patch and position
embeddings are F32, 1-D tensors and norms are F32, and the remaining matrices take ``dtype``; a
Q8_0 matrix whose rows are not a multiple of 32 falls back to F16, as upstream does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._errors import CheckpointError, OutputError, UsageError
from .._files import atomic_path
from .._gguf._vision_names import (
    TENSORS_OUTSIDE_LAYERS,
    TENSORS_PER_LAYER,
    canonical,
    expected_names,
)
from .._progress import progress_bar
from .._quants import QUANTS

__all__ = ["MMPROJ_PATTERN", "MmprojDtype", "mmproj_filename", "vision_plan", "write_mmproj"]

MmprojDtype = Literal["f16", "bf16", "f32", "q8_0"]

#: What phone apps (PocketPal, ChatterUI, llama.rn) look for to pair a projector with a model.
MMPROJ_PATTERN = re.compile(r"[-_.]*mmproj[-_.].+\.gguf", re.IGNORECASE)

_DTYPE_LABEL = {"f16": "F16", "bf16": "BF16", "f32": "F32", "q8_0": "Q8_0"}


def mmproj_filename(name: str, dtype: MmprojDtype = "f16") -> str:
    """``mmproj-<name>-F16.gguf``: found by phone apps' pattern and sorted next to the model."""
    if dtype not in _DTYPE_LABEL:
        raise UsageError(f"unknown mmproj type {dtype!r}; use one of {', '.join(_DTYPE_LABEL)}")
    return f"mmproj-{name}-{_DTYPE_LABEL[dtype]}.gguf"


def _open(ckpt: Any) -> Any:
    """The exporter's checkpoint reader for a folder path, or the caller's open checkpoint."""
    if not isinstance(ckpt, (str, os.PathLike)):
        return ckpt
    from ._readers._open import open_checkpoint

    return open_checkpoint(ckpt)


def _root_of(ck: Any) -> Path | None:
    for attr in ("path", "root", "directory", "folder"):
        value = getattr(ck, attr, None)
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
    return None


def _source_kind(dtype: object) -> str:
    """Normalise a dtype spelling ("BF16", "torch.bfloat16", np.float16...) to F32/F16/BF16."""
    text = str(dtype).lower()
    if "bf16" in text or "bfloat16" in text:
        return "BF16"
    if "f16" in text or "float16" in text:
        return "F16"
    return "F32"


# --------------------------------------------------------------------------------------------
# The plan: which tensors, under which names, stored how. Shared with the fused Ollama writer.


@dataclass(frozen=True)
class VisionTensor:
    """One vision/projector tensor: where it is in the checkpoint and what it is called."""

    canonical: str  # release-layout HF name, e.g. vision_tower.vision_model.post_layernorm.weight
    source: str  # the name as stored in this checkpoint
    shape: tuple[int, ...]  # numpy (row-major) shape
    source_kind: str  # F32 / F16 / BF16


@dataclass(frozen=True)
class VisionPlan:
    """Everything needed to write the vision part, checked against the config before any write."""

    vision: dict[str, Any]  # vision_config with Gemma 3 / SigLIP defaults filled in
    text_hidden: int
    tokens_per_image: int
    image_mean: list[float]
    image_std: list[float]
    image_seq_length: int
    tensors: list[VisionTensor]  # sorted by canonical name (the reference's order)


_VISION_DEFAULTS = {"image_size": 896, "patch_size": 14, "num_channels": 3, "layer_norm_eps": 1e-6}


def vision_plan(ck: Any) -> VisionPlan:
    """Check a Gemma3ForConditionalGeneration checkpoint's vision part and list its tensors.

    Raises CheckpointError when the config has no vision tower, a tensor the config implies is
    missing (or there are extra layers), or the projector does not map onto the text width.
    """
    config: dict[str, Any] = dict(ck.config)
    if not isinstance(config.get("vision_config"), dict):
        raise CheckpointError(
            "config.json has no vision_config: this is a text-only checkpoint, "
            "so there is no vision projector to export (drop --mmproj-type)"
        )
    vision = {**_VISION_DEFAULTS, **config["vision_config"]}
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        if not isinstance(vision.get(key), int):
            raise CheckpointError(
                f"config.json vision_config lacks {key}; re-save the checkpoint "
                "with transformers so the full vision config is written"
            )
    text = config.get("text_config") or {}
    text_hidden = int(text.get("hidden_size", config.get("hidden_size", 2560)))
    tokens = int(config.get("mm_tokens_per_image", 256))

    by_canon: dict[str, str] = {}
    for name in ck.names():
        canon = canonical(name)
        if canon is not None:
            by_canon[canon] = name
    n_layers = vision["num_hidden_layers"]
    want = expected_names(n_layers)
    missing = [n for n in want if n not in by_canon]
    if missing:
        raise CheckpointError(
            f"the checkpoint's vision tower is incomplete: {len(missing)} of the "
            f"{n_layers * TENSORS_PER_LAYER + TENSORS_OUTSIDE_LAYERS} tensors its vision_config "
            f"implies are missing (first: {missing[0]}); export from the full "
            "Gemma3ForConditionalGeneration checkpoint, not a text-only or partial save"
        )
    extra = sorted(set(by_canon) - set(want))
    if extra:
        raise CheckpointError(
            f"unexpected vision tensor {by_canon[extra[0]]} (vision_config says "
            f"{n_layers} layers); fix num_hidden_layers in vision_config"
        )

    tensors = [
        VisionTensor(
            c,
            by_canon[c],
            tuple(int(d) for d in ck.shape(by_canon[c])),
            _source_kind(ck.dtype(by_canon[c])),
        )
        for c in sorted(want)
    ]
    proj = next(t for t in tensors if t.canonical.endswith("mm_input_projection.weight"))
    if proj.shape != (vision["hidden_size"], text_hidden):
        raise CheckpointError(
            f"multi_modal_projector.mm_input_projection_weight is {proj.shape[0]}x{proj.shape[1]} "
            f"but must be {vision['hidden_size']}x{text_hidden} (vision width x text width): the "
            "projector does not belong to this text model"
        )

    root = _root_of(ck)
    pre: dict[str, Any] = {}
    if root is not None and (root / "preprocessor_config.json").exists():
        pre = _preprocessor(root / "preprocessor_config.json")
    seq = int(pre.get("image_seq_length", tokens))
    return VisionPlan(
        vision=vision,
        text_hidden=text_hidden,
        tokens_per_image=tokens,
        image_mean=[float(x) for x in pre.get("image_mean", [0.5, 0.5, 0.5])],
        image_std=[float(x) for x in pre.get("image_std", [0.5, 0.5, 0.5])],
        image_seq_length=seq,
        tensors=tensors,
    )


def _preprocessor(path: Path) -> dict[str, Any]:
    """preprocessor_config.json through the validating reader, the fields used checked."""
    from .._errors import CheckpointError
    from .._inputs import check_number, read_json_object

    pre = read_json_object(path)
    file = "preprocessor_config.json"
    if pre.get("image_seq_length") is not None:
        check_number(pre["image_seq_length"], file, "image_seq_length", 1, 4096)
    for key in ("image_mean", "image_std"):
        value = pre.get(key)
        if value is not None and not (isinstance(value, list) and len(value) == 3):
            raise CheckpointError(f"{file}: {key} is not a list of 3 numbers: fix {file}")
        for i, v in enumerate(value or []):
            check_number(v, file, f"{key}[{i}]", -1e6, 1e6, integer=False)
    return pre


def read_f32(ck: Any, name: str) -> np.ndarray:
    """One tensor as a new float32 array, through the checkpoint reader's own ``read_f32``.

    The exporter's readers read with ``pread`` (about one tensor of RSS; the biggest SigLIP matrix
    is 20 MB in f32) or compute the tensor (LoRA merge, int4 dequantization); any other object
    with a ``read`` works too.
    """
    reader = getattr(ck, "read_f32", None)
    data = reader(name) if reader is not None else ck.read(name)
    return np.ascontiguousarray(data, dtype=np.float32)


def read_vision_tensor(ck: Any, t: VisionTensor) -> np.ndarray:
    """The tensor as float32, with Gemma's ``(1 + w)`` folded into the soft-embedding RMSNorm.

    Added in float32, as the reference converter does (verified: its output is exactly
    ``w + 1`` for a bf16 source, no rounding back to bf16).
    """
    data = read_f32(ck, t.source).reshape(t.shape)
    if t.canonical.endswith("mm_soft_emb_norm.weight"):
        data = data + np.float32(1.0)
    return data


# --------------------------------------------------------------------------------------------
# Writing.


def _storage(t: VisionTensor, dtype: MmprojDtype) -> Any:
    """The GGML type the reference converter stores this tensor as (see the module docstring)."""
    from gguf import GGMLQuantizationType as Q

    name = t.canonical
    if "input_projection" in name:
        return Q.F16
    if ".embeddings." in name:
        return Q.F32
    if len(t.shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return Q.F32
    wanted = {"f16": Q.F16, "bf16": Q.BF16, "f32": Q.F32, "q8_0": Q.Q8_0}[dtype]
    if wanted == Q.Q8_0 and t.shape[-1] % 32:
        return Q.F16  # gguf raises QuantError here; the reference then stores F16
    return wanted


def _encode(data: np.ndarray, qtype: Any) -> np.ndarray:
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if qtype == Q.F32:
        return data.astype(np.float32, copy=False)
    if qtype == Q.F16:
        return data.astype(np.float16)
    return quants.quantize(data, qtype)


def _info_args(shape: tuple[int, ...], qtype: Any) -> tuple[tuple[int, ...], Any, int]:
    """(shape, numpy dtype, nbytes) for ``GGUFWriter.add_tensor_info`` before the data exists."""
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if qtype == Q.F32:
        return shape, np.float32, int(np.prod(shape)) * 4
    if qtype == Q.F16:
        return shape, np.float16, int(np.prod(shape)) * 2
    byte_shape = tuple(quants.quant_shape_to_byte_shape(shape, qtype))
    return byte_shape, np.uint8, int(np.prod(byte_shape))


@dataclass
class _Entry:
    name: str
    tensor: VisionTensor
    qtype: Any


def write_gguf_atomic(out_path: Path, fill: Callable[[Any], Iterator[None]], arch: str) -> Path:
    """Write a GGUF through a temporary file beside ``out_path`` and move it into place.

    ``fill(writer)`` adds KVs and tensor infos, yields once, then writes tensor data. On any error
    the temporary file is removed and ``out_path`` is left as it was.
    """
    from .._gguf._encode import gguf_writer

    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise OutputError(f"output folder {out_path.parent} does not exist; create it first")
    with atomic_path(out_path) as tmp:
        writer = gguf_writer(tmp, arch=arch)
        steps = fill(writer)
        next(steps)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _ in steps:
            pass
        writer.close()
    return out_path


def write_mmproj(
    ckpt: Any,
    out_path: str | os.PathLike[str],
    *,
    dtype: MmprojDtype = "f16",
    name: str | None = None,
    basename: str | None = None,
    progress: bool = False,
    plan: VisionPlan | None = None,
) -> Path:
    """Write llama.cpp's Gemma 3 vision projector (``clip`` arch, ``general.type`` mmproj).

    ``ckpt`` is a checkpoint folder or an open checkpoint. ``basename`` must be the text model's
    ``general.basename`` so tools can pair the two files; ``name`` is ``general.name``.
    Returns the path written. Nothing is written when the checkpoint fails a check.
    """
    import gguf

    if dtype not in _DTYPE_LABEL:
        raise UsageError(f"unknown mmproj type {dtype!r}; use one of {', '.join(_DTYPE_LABEL)}")
    ck = _open(ckpt)
    plan = plan if plan is not None else vision_plan(ck)  # the exporter passes its own
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, plan.vision["num_hidden_layers"])
    entries = [
        _Entry(
            names.get_name(t.canonical, try_suffixes=(".weight", ".bias")) or "",
            t,
            _storage(t, dtype),
        )
        for t in plan.tensors
    ]
    unnamed = [e.tensor.canonical for e in entries if not e.name]
    if unnamed:  # cannot happen with a complete plan; guards against a gguf-py table change
        raise CheckpointError(f"gguf has no MMPROJ name for {unnamed[0]}; upgrade gguf")
    ftype = QUANTS[_DTYPE_LABEL[dtype]].ftype  # general.file_type, from the one quant table
    v = plan.vision

    def fill(w: Any) -> Iterator[None]:
        w.add_type(gguf.GGUFType.MMPROJ)
        if name:
            w.add_name(name)
        if basename:
            w.add_basename(basename)
        # as the reference: the parameter count of this file (e.g. "417M" for Gemma 3's SigLIP)
        w.add_size_label(gguf.size_label(sum(int(np.prod(t.shape)) for t in plan.tensors), 0, 0, 0))
        w.add_file_type(ftype)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        # MmprojModel.set_gguf_parameters
        w.add_clip_has_vision_encoder(True)
        w.add_vision_projection_dim(plan.text_hidden)
        w.add_vision_image_size(v["image_size"])
        w.add_vision_patch_size(v["patch_size"])
        w.add_vision_embedding_length(v["hidden_size"])
        w.add_vision_feed_forward_length(v["intermediate_size"])
        w.add_vision_block_count(v["num_hidden_layers"])
        w.add_vision_head_count(v["num_attention_heads"])
        w.add_vision_image_mean(plan.image_mean)
        w.add_vision_image_std(plan.image_std)
        # Gemma3VisionModel.set_gguf_parameters
        w.add_clip_projector_type(gguf.VisionProjectorType.GEMMA3)
        w.add_vision_attention_layernorm_eps(v["layer_norm_eps"])
        w.add_vision_use_gelu(True)
        per_side = int(plan.image_seq_length**0.5)
        scale = (v["image_size"] // v["patch_size"]) // per_side if per_side else 0
        if scale > 0 and scale != 4:  # clip.cpp's default for gemma3 is 4; only tiny models differ
            w.add_vision_projector_scale_factor(scale)
        for e in entries:
            shape, np_dtype, nbytes = _info_args(e.tensor.shape, e.qtype)
            w.add_tensor_info(e.name, shape, np_dtype, nbytes, raw_dtype=e.qtype)
        yield
        with progress_bar(len(entries), "mmproj", progress=progress, unit="tensor") as bar:
            for e in entries:
                w.write_tensor_data(_encode(read_vision_tensor(ck, e.tensor), e.qtype))
                bar.update(1)

    return write_gguf_atomic(Path(out_path), fill, arch="clip")
