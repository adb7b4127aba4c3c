"""QAT int4 checkpoints (AWQ or compressed-tensors ``pack-quantized``) read as typed tensors.

Google trained the QAT Gemma 3 models with their linear weights on a symmetric int4 grid, one scale
per 32 inputs. GGUF's Q4_0 block is the same thing: 32 weights, one fp16 scale ``d``, 4-bit codes
``c`` and value ``(c - 8) * d``. So a checkpoint that stores those integers and scales becomes a
Q4_0 GGUF by *repacking* — ``d = fp16(scale)``, code = the stored 4-bit value — with no
re-quantization, and every block of the output holds exactly the checkpoint's numbers. This module
is the one reader for such checkpoints; the rest of the exporter sees ordinary tensor names.

Layouts, and where each fact comes from:

* **AWQ "gemm"** (``quantization_config.quant_method == "awq"``), as written by the converter of the
  published ``gemma-3-*-it-int4-awq`` checkpoints (gau-nernst/gemma3-int4 ``convert_flax.py``,
  ``convert_awq``) and read by AutoAWQ (``awq/utils/packing_utils.py``):
  ``<m>.qweight`` int32 ``(in, out/8)``: eight unsigned 4-bit codes per word along the output axis,
  slot ``i`` (bits ``4i..4i+3``) holding column ``AWQ_ORDER[i]`` of the group of eight, with
  ``AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]`` (AutoAWQ undoes it with ``AWQ_REVERSE_ORDER =
  [0, 4, 1, 5, 2, 6, 3, 7]``); ``<m>.qzeros`` int32 ``(in/g, out/8)`` packed the same way;
  ``<m>.scales`` 16-bit ``(in/g, out)``; weight ``= (code - zero) * scale`` (``dequantize_gemm``).
  The QAT converter stores ``code = q + 8`` and every zero ``= 8`` (``0x88888888`` words), keeps
  the embedding, norms, vision tower and projector in bf16, and its scales are bf16.
* **compressed-tensors** ``format: pack-quantized`` (``quant_method == "compressed-tensors"``;
  vllm-project/compressed-tensors ``compressors/quantized_compressors/pack_quantized.py``,
  ``pack_to_int32``): ``<m>.weight_packed`` int32 ``(out, in/8)``, code ``q + 8`` of column
  ``8j + i`` in bits ``4i..4i+3`` of word ``j`` (little-nibble order); ``<m>.weight_scale``
  ``(out, in/g)``; ``<m>.weight_shape`` ``[out, in]``; symmetric schemes have zero point 0 (a stored
  ``weight_zero_point`` must be all zero), an ``actorder`` scheme stores ``weight_g_idx``.
* **Q4_0** (ggml ``block_q4_0``; gguf-py ``quants.py`` ``Q4_0``): 2 bytes fp16 ``d``, then 16 bytes
  whose low nibbles are values 0..15 of the block and high nibbles values 16..31; value
  ``(nibble - 8) * d``.

Only what is exactly Q4_0 is accepted: 4 bits, group size 32, zero point 8 in every group (AWQ) or
symmetric (compressed-tensors), no activation reordering, every scale exactly representable in
fp16 (zero or a finite fp16 normal number: any bf16 value in that range converts exactly). Anything
else is a one-line :class:`CheckpointError` raised while opening, before anything is written.
Checked here too, because it is cheap (about 1/30 of the file): every zero point and every scale.

Other output types (``-q F16``, ``Q8_0``, K-quants ...) read the exactly dequantized weights as
float32 (``(code - 8) * scale`` has at most 4 + 8 significant bits: exact in float32 and in
float16; BF16 and the quantized types round them, as they would round any float weights).
Everything is read with ``pread`` per tensor, so memory stays at about one tensor, flat in model
size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..._errors import CheckpointError
from ._source import Checkpoint, TensorInfo, _parse_safetensors, bf16_to_f32

__all__ = ["EMBEDDING_TYPES", "Int4Checkpoint", "check_quantization_config", "open_int4"]

GROUP = 32  # Q4_0's block size (QK4_0 in ggml)
# --embedding-type choices. F16 is the default because Google's own QAT GGUFs
# (google/gemma-3-*-it-qat-q4_0-gguf) keep token_embd in F16 rather than llama-quantize's Q6_K
# (stated by stduhpf/google-gemma-3-27b-it-qat-q4_0-gguf-small, which re-typed only that table).
EMBEDDING_TYPES = ("F16", "Q8_0", "Q6_K", "Q4_0")
# AutoAWQ awq/utils/packing_utils.py: slot i of a packed word holds column AWQ_ORDER[i].
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
_INT_DTYPES: dict[str, tuple[str, int]] = {
    "BF16": ("<u2", 2),
    "F16": ("<f2", 2),
    "F32": ("<f4", 4),
    "I32": ("<i4", 4),
    "I64": ("<i8", 8),
    "I8": ("i1", 1),
    "U8": ("u1", 1),
}
_FP16_MAX = 65504.0
_FP16_MIN_NORMAL = 2.0**-14
_FIX = "only int4 checkpoints on Q4_0's exact grid can be repacked (4 bits, group 32, zero point 8)"


def _refuse(what: str) -> CheckpointError:
    return CheckpointError(f"{what}: {_FIX}; de-quantize to bf16 and export that instead")


def check_quantization_config(qc: dict[str, Any]) -> str:
    """The format (``"awq"`` or ``"compressed-tensors"``) of a Q4_0-compatible config, else raise."""
    method = qc.get("quant_method", "")
    method = method.lower() if isinstance(method, str) else _shown(method)
    if method == "awq":
        bits, group = qc.get("bits", qc.get("w_bit")), qc.get("group_size", qc.get("q_group_size"))
        if bits != 4:
            raise _refuse(f"the AWQ checkpoint has {_shown(bits)}-bit weights")
        if group != GROUP:
            raise _refuse(f"the AWQ checkpoint has group size {_shown(group)}, not 32")
        if qc.get("zero_point") is False:
            raise _refuse("the AWQ checkpoint has zero_point=false (unsigned codes, no offset)")
        version = qc.get("version", "gemm")
        if not isinstance(version, str) or version.lower() != "gemm":
            raise _refuse(
                f"the AWQ checkpoint uses the {_shown(version)} packing (only 'gemm' is read)"
            )
        return "awq"
    if method == "compressed-tensors":
        groups = qc.get("config_groups") or {}
        if not isinstance(groups, dict) or not groups:
            raise _refuse("the compressed-tensors config has no config_groups")
        for gname, scheme in groups.items():
            gname = _shown(gname)
            if not isinstance(scheme, dict) or not isinstance(scheme.get("weights") or {}, dict):
                raise _refuse(
                    f"compressed-tensors group {gname} is not an object with a weights object "
                    f"(got {_shown(scheme)})"
                )
            fmt = _shown(scheme.get("format") or qc.get("format") or "")
            if fmt != "pack-quantized":
                raise _refuse(f"compressed-tensors group {gname} is {fmt or 'unknown'}-format")
            if scheme.get("input_activations") or scheme.get("output_activations"):
                raise _refuse(f"compressed-tensors group {gname} also quantizes activations")
            w = scheme.get("weights") or {}
            if w.get("num_bits") != 4 or str(w.get("type", "int")) != "int":
                raise _refuse(
                    f"compressed-tensors group {gname} has {_shown(w.get('num_bits'))}-bit "
                    f"{_shown(w.get('type'))} weights"
                )
            if not w.get("symmetric", True):
                raise _refuse(f"compressed-tensors group {gname} is asymmetric (zero points)")
            if w.get("strategy") != "group" or w.get("group_size") != GROUP:
                raise _refuse(
                    f"compressed-tensors group {gname} uses strategy {_shown(w.get('strategy'))} "
                    f"with group size {_shown(w.get('group_size'))}, not groups of 32"
                )
            if w.get("actorder"):
                raise _refuse(
                    f"compressed-tensors group {gname} uses GPTQ act-order "
                    f"({_shown(w['actorder'])}), "
                    "which permutes the groups"
                )
        return "compressed-tensors"
    raise CheckpointError(f"{method!r} is not an int4 format gemma3-pack reads")  # pragma: no cover


def _shown(value: Any) -> str:
    """A config value in a message: printable, one line, at most 60 characters."""
    from ..._inputs import printable

    text = printable(value if isinstance(value, str) else repr(value))
    return text if len(text) <= 60 else text[:59] + "…"


@dataclass(frozen=True)
class QuantTensor:
    """One quantized linear weight: its logical ``(out, in)`` shape and where its parts are."""

    name: str  # logical name, e.g. language_model.model.layers.0.mlp.up_proj.weight
    out: int
    inp: int
    codes: TensorInfo  # qweight / weight_packed
    scales: TensorInfo
    zeros: TensorInfo | None  # qzeros / weight_zero_point


def _pread(info: TensorInfo) -> np.ndarray:
    """The stored bytes of one tensor, read without a memory map (RSS stays one tensor)."""
    with open(info.file, "rb") as fh:
        buf = os.pread(fh.fileno(), info.nbytes, info.offset)
    if len(buf) != info.nbytes:
        raise CheckpointError(f"{info.file.name} is truncated: re-download the checkpoint")
    return np.frombuffer(buf, dtype=_INT_DTYPES[info.dtype][0]).reshape(info.shape)


def _scales_f32(info: TensorInfo) -> np.ndarray:
    raw = _pread(info)
    if info.dtype == "BF16":
        return bf16_to_f32(raw)
    return raw.astype(np.float32)


class Int4Checkpoint(Checkpoint):
    """A checkpoint whose quantized linears appear as ``<module>.weight`` tensors.

    For the Q4_0 output :meth:`typed_rows` gives the repacked blocks; for every other type
    :meth:`raw` gives the exactly dequantized float32 weight (dtype ``"F32"``).
    """

    def __init__(
        self,
        root: Path,
        config: dict[str, Any],
        tensors: dict[str, TensorInfo],
        quant: dict[str, QuantTensor],
        fmt: str,
    ) -> None:
        plain = {n: t for n, t in tensors.items() if n not in _parts(quant)}
        virtual = {
            q.name: TensorInfo(
                q.codes.file, q.codes.offset, q.out * q.inp * 4, "F32", (q.out, q.inp)
            )
            for q in quant.values()
        }
        super().__init__(root, config, {**plain, **virtual})
        self.quant = quant
        self.format = fmt
        self._cache: tuple[str, np.ndarray] | None = None  # codes of the last tensor read
        self._floats: tuple[str, np.ndarray] | None = None  # its dequantized values
        self._scales: tuple[str, np.ndarray] | None = None  # its scales, (out, in/32)

    @property
    def repacked(self) -> list[str]:
        """Checkpoint names of the tensors that are int4 in the source."""
        return list(self.quant)

    def _codes(self, name: str) -> np.ndarray:
        """The unsigned 4-bit codes of a quantized weight as uint8 ``(out, in)``."""
        if self._cache is not None and self._cache[0] == name:
            return self._cache[1]
        q = self.quant[name]
        words = _pread(q.codes).view(np.uint32)
        if self.format == "awq":  # (in, out/8): slot i of word j holds column 8j + AWQ_ORDER[i]
            by_in = np.empty((q.inp, q.out), dtype=np.uint8)
            for slot, col in enumerate(AWQ_ORDER):
                by_in[:, col::8] = (words >> np.uint32(4 * slot)) & np.uint32(0xF)
            codes = by_in.T  # a view: row chunks are copied when they are encoded, not here
        else:  # compressed-tensors (out, in/8): nibble i of word j is column 8j + i
            codes = np.empty((q.out, q.inp), dtype=np.uint8)
            for nib in range(8):
                codes[:, nib::8] = (words >> np.uint32(4 * nib)) & np.uint32(0xF)
        self._cache = (name, codes)
        return codes

    def _scale_rows(self, name: str) -> np.ndarray:
        """Scales as float32 ``(out, in/32)`` (the last tensor's are kept: one read per tensor)."""
        if self._scales is not None and self._scales[0] == name:
            return self._scales[1]
        q = self.quant[name]
        s = _scales_f32(q.scales)
        rows = np.ascontiguousarray(s.T) if self.format == "awq" else s
        self._scales = (name, rows)
        return rows

    def typed_rows(self, name: str, qtype: str, start: int, stop: int) -> np.ndarray | None:
        """Rows ``start:stop`` as Q4_0 blocks (uint8, 18 bytes per 32 weights) for int4 tensors."""
        if qtype != "Q4_0" or name not in self.quant:
            return None
        q = self.quant[name]
        codes = self._codes(name)[start:stop].reshape(stop - start, q.inp // GROUP, GROUP)
        packed = codes[..., :16] | (codes[..., 16:] << np.uint8(4))
        d = self._scale_rows(name)[start:stop].astype(np.float16)  # exact: checked at open
        d_bytes = d.view(np.uint8).reshape(stop - start, q.inp // GROUP, 2)
        return np.concatenate([d_bytes, packed], axis=-1).reshape(stop - start, -1)

    def dequantized(self, name: str) -> np.ndarray:
        """``(code - 8) * scale`` as float32 ``(out, in)``: exact (at most 12 significant bits)."""
        if self._floats is not None and self._floats[0] == name:
            return self._floats[1]
        q = self.quant[name]
        out = np.ascontiguousarray(self._codes(name), dtype=np.float32)  # (out, in), C order
        out -= np.float32(8)
        out.reshape(q.out, q.inp // GROUP, GROUP)[:] *= self._scale_rows(name)[..., None]
        out.flags.writeable = False
        self._floats = (name, out)
        return out

    def file_span(self, name: str, start: int, stop: int) -> tuple[Path, int, int] | None:
        return None if name in self.quant else super().file_span(name, start, stop)

    def raw(self, name: str) -> np.ndarray:
        if name in self.quant:
            return self.dequantized(name)
        return super().raw(name)

    def read_f32(self, name: str) -> np.ndarray:
        if name in self.quant:
            return np.array(self.dequantized(name))
        return super().read_f32(name)

    def release(self, name: str, start: int = 0, stop: int | None = None) -> None:
        if name not in self.quant:
            super().release(name, start, stop)


def _parts(quant: dict[str, QuantTensor]) -> set[str]:
    names: set[str] = set()
    for q in quant.values():
        stem = q.name.removesuffix(".weight")
        names.update(
            stem + s
            for s in (
                ".qweight",
                ".qzeros",
                ".scales",
                ".weight_packed",
                ".weight_scale",
                ".weight_shape",
                ".weight_zero_point",
            )
        )
    return names


def _need(tensors: dict[str, TensorInfo], name: str, stem: str) -> TensorInfo:
    t = tensors.get(name)
    if t is None:
        raise CheckpointError(f"{stem} is quantized but {name} is missing: re-download or re-save")
    return t


def _find_awq(tensors: dict[str, TensorInfo]) -> dict[str, QuantTensor]:
    found: dict[str, QuantTensor] = {}
    for name in tensors:
        if not name.endswith(".qweight"):
            continue
        stem = name.removesuffix(".qweight")
        codes = tensors[name]
        zeros = _need(tensors, stem + ".qzeros", stem)
        scales = _need(tensors, stem + ".scales", stem)
        if codes.dtype != "I32" or zeros.dtype != "I32" or len(codes.shape) != 2:
            raise CheckpointError(f"{stem}: qweight/qzeros must be 2-D int32 (AWQ gemm packing)")
        inp, out = codes.shape[0], codes.shape[1] * 8
        if scales.dtype not in ("BF16", "F16", "F32") or scales.shape != (inp // GROUP, out):
            raise _refuse(
                f"{stem}.scales is {scales.shape} for a {out}x{inp} weight, not one scale per 32 "
                "inputs"
            )
        if inp % GROUP or zeros.shape != (inp // GROUP, out // 8):
            raise _refuse(f"{stem}.qzeros is {zeros.shape}, not one zero point per 32 inputs")
        out_q = QuantTensor(stem + ".weight", out, inp, codes, scales, zeros)
        found[out_q.name] = out_q
    return found


def _find_ct(tensors: dict[str, TensorInfo]) -> dict[str, QuantTensor]:
    out: dict[str, QuantTensor] = {}
    for name in tensors:
        if not name.endswith(".weight_packed"):
            continue
        stem = name.removesuffix(".weight_packed")
        if stem + ".weight_g_idx" in tensors:
            raise _refuse(f"{stem} uses GPTQ act-order (weight_g_idx permutes the groups)")
        codes = tensors[name]
        scales = _need(tensors, stem + ".weight_scale", stem)
        if codes.dtype != "I32" or len(codes.shape) != 2:
            raise CheckpointError(f"{stem}.weight_packed must be 2-D int32 (pack-quantized)")
        rows, inp = codes.shape[0], codes.shape[1] * 8
        shape_t = tensors.get(stem + ".weight_shape")
        if shape_t is not None:
            rows, inp = (int(x) for x in _pread(shape_t).reshape(-1)[:2])
        if (
            inp % GROUP
            or codes.shape != (rows, -(-inp // 8))
            or scales.dtype not in ("BF16", "F16", "F32")
            or scales.shape != (rows, inp // GROUP)
        ):
            raise _refuse(
                f"{stem}.weight_scale is {scales.shape} for a {rows}x{inp} weight, not one scale "
                "per 32 inputs"
            )
        out_q = QuantTensor(
            stem + ".weight", rows, inp, codes, scales, tensors.get(stem + ".weight_zero_point")
        )
        out[out_q.name] = out_q
    return out


def _check_values(q: QuantTensor, fmt: str) -> None:
    """Every zero point 8 (AWQ) / 0 (compressed-tensors), every scale exact in fp16."""
    if q.zeros is not None:
        z = _pread(q.zeros)
        if fmt == "awq":
            bad = np.flatnonzero(z.view(np.uint32).reshape(-1) != np.uint32(0x88888888))
            if bad.size:
                word = int(z.view(np.uint32).reshape(-1)[bad[0]])
                raise _refuse(
                    f"{q.name.removesuffix('.weight')}.qzeros holds a zero point other than 8 "
                    f"(word 0x{word:08x}), so its groups are not symmetric"
                )
        elif np.any(z != 0):
            raise _refuse(f"{q.name.removesuffix('.weight')}.weight_zero_point is not zero")
    s = _scales_f32(q.scales)
    mag = np.abs(s)
    bad_scale = ~np.isfinite(s) | (mag > _FP16_MAX) | ((mag < _FP16_MIN_NORMAL) & (mag != 0))
    if not bad_scale.any():
        bad_scale = s.astype(np.float16).astype(np.float32) != s  # f32 scales with too many bits
    if bad_scale.any():
        value = float(s.reshape(-1)[np.flatnonzero(bad_scale.reshape(-1))[0]])
        raise _refuse(
            f"{q.name.removesuffix('.weight')}.{'scales' if fmt == 'awq' else 'weight_scale'} "
            f"holds {value!r}, which fp16 (Q4_0's scale type) cannot hold exactly"
        )


def open_int4(
    root: Path, config: dict[str, Any], qc: dict[str, Any], files: list[Path]
) -> Int4Checkpoint:
    """Open and fully check an AWQ / compressed-tensors int4 checkpoint (nothing is written)."""
    fmt = check_quantization_config(qc)
    tensors: dict[str, TensorInfo] = {}
    for f in files:
        for name, info in _parse_safetensors(f, root, dtypes=_INT_DTYPES).items():
            if name in tensors:
                raise CheckpointError(f"tensor {name!r} appears in two files ({f.name}): re-save")
            tensors[name] = info
    quant = _find_awq(tensors) if fmt == "awq" else _find_ct(tensors)
    if not quant:
        raise CheckpointError(
            f"config.json says {fmt} but no tensor is packed that way: the config does not match "
            "the weights"
        )
    stray = sorted(
        n
        for n, t in tensors.items()
        if t.dtype not in ("BF16", "F16", "F32") and n not in _parts(quant)
    )
    if stray:
        raise CheckpointError(
            f"tensor {stray[0]!r} is {tensors[stray[0]].dtype} and not part of a {fmt} weight: "
            "gemma3-pack cannot export it"
        )
    for q in quant.values():
        _check_values(q, fmt)
    return Int4Checkpoint(root, config, tensors, quant, fmt)
