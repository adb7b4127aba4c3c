"""Convert between Gemma 3's two vision layouts, copying tensor data (never re-quantizing).

    fused (Ollama's converter)          pair (llama.cpp's converter; LM Studio, phone apps)
    one gemma3 GGUF:                    text GGUF (gemma3)  +  mmproj-*.gguf (clip, gemma3 projector)
      text keys + gemma3.vision.*         text keys             clip.vision.*, clip.projector_type
      text tensors + v.* / mm.*           text tensors          v.* / mm.* in gguf-py's MMPROJ names
      (Ollama names: v.blk.N.mlp.fc1, v.patch_embedding, mm.mm_input_projection, ...)

:func:`split_fused` writes the pair from a fused file, :func:`fuse_pair` the fused file from a
pair. Text records and tensors are copied byte for byte; vision tensors keep their bytes and type,
except that splitting widens the F16 patch and position embeddings to F32 (exact), which is how
llama.cpp's converter stores them and what Ollama's own compatibility loader does. Key values
come from the other layout's keys and the family facts (mean/std 0.5, GELU, projection width =
the text width). Outputs are written atomically; inputs are never modified.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import GGMLQuantizationType, GGUFValueType

from .._errors import InputError, NotGemma3, OutputError
from .._files import atomic_path, refuse_special_output
from .._inputs import VISION_INT_BOUNDS, printable
from .._progress import NoBar
from ._encode import encode_array, encode_header, encode_kv, encode_tensor_info, padding
from ._patch import check_copyable, copy_range
from ._reader import GGUFHeader, TensorInfo, open_gguf

__all__ = ["fuse_pair", "split_fused"]

# gemma3.vision.* (fused, as Ollama's convert_gemma3.go writes) <-> clip.vision.* (llama.cpp)
_VISION_KEYS: tuple[tuple[str, str, GGUFValueType], ...] = (
    ("gemma3.vision.block_count", "clip.vision.block_count", GGUFValueType.UINT32),
    ("gemma3.vision.embedding_length", "clip.vision.embedding_length", GGUFValueType.UINT32),
    ("gemma3.vision.feed_forward_length", "clip.vision.feed_forward_length", GGUFValueType.UINT32),
    ("gemma3.vision.image_size", "clip.vision.image_size", GGUFValueType.UINT32),
    ("gemma3.vision.patch_size", "clip.vision.patch_size", GGUFValueType.UINT32),
    (
        "gemma3.vision.attention.head_count",
        "clip.vision.attention.head_count",
        GGUFValueType.UINT32,
    ),
    (
        "gemma3.vision.attention.layer_norm_epsilon",
        "clip.vision.attention.layer_norm_epsilon",
        GGUFValueType.FLOAT32,
    ),
)
_WIDEN = (
    "v.patch_embd.weight",
    "v.position_embd.weight",
)  # F16 in Ollama's file, F32 in llama.cpp's


def _names(n_layers: int) -> dict[str, str]:
    """Ollama's fused name -> llama.cpp's mmproj name, for every Gemma 3 vision tensor."""
    import gguf

    from ._vision_names import expected_names, ollama_name

    table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, n_layers)
    out = {}
    for canonical in expected_names(n_layers):
        name = table.get_name(canonical, try_suffixes=(".weight", ".bias"))
        assert name is not None, canonical  # gguf-py names every SigLIP/projector tensor
        out[ollama_name(canonical)] = name
    return out


@dataclass(frozen=True)
class _Out:
    """One tensor of an output file: where its bytes come from, and how it is stored."""

    name: str
    shape: tuple[int, ...]  # ggml order
    ggml_type: int
    src: TensorInfo
    widen: bool = False  # F16 source written as F32

    @property
    def nbytes(self) -> int:
        n = int(self.src.nbytes or 0)
        return n * 2 if self.widen else n


def _ti_record(t: _Out, offset: int) -> bytes:
    return encode_tensor_info(t.name, t.shape, t.ggml_type, offset)


_WIDEN_CHUNK = 8 << 20  # F16 values widened per step: memory stays flat, whatever the size


def _write(tmp: Path, src: GGUFHeader, records: list[bytes], tensors: list[_Out]) -> None:
    """A GGUF v3 file at ``tmp``: ``records`` (encoded KVs), then ``tensors`` with their bytes
    from ``src``. The caller owns ``tmp`` (an :func:`atomic_path`), so a pair is committed
    together or not at all."""
    align = src.alignment
    offsets, at = [], 0
    for t in tensors:
        offsets.append(at)
        at += t.nbytes + padding(t.nbytes, align)
    infos = [_ti_record(t, o) for t, o in zip(tensors, offsets, strict=True)]
    head = encode_header(len(tensors), len(records), [*records, *infos], alignment=align)
    with open(tmp, "r+b") as out, open(src.path, "rb") as fin:
        out.write(head)
        out.flush()
        fd = out.fileno()
        for t, o in zip(tensors, offsets, strict=True):
            start = src.data_start + t.src.offset
            if t.widen:
                count = int(t.src.nbytes or 0) // 2
                for i in range(0, count, _WIDEN_CHUNK):
                    n = min(_WIDEN_CHUNK, count - i)
                    part = np.frombuffer(src.buf, np.float16, n, start + 2 * i)
                    os.pwrite(fd, part.astype(np.float32).tobytes(), len(head) + o + 4 * i)
            else:
                copy_range(fin.fileno(), fd, start, len(head) + o, int(t.src.nbytes or 0), NoBar())
        out.truncate(len(head) + at)


def _little_endian(h: GGUFHeader) -> None:
    """The writers here encode little-endian records and copy tensor bytes as they are: a
    big-endian input (s390x builds) would come out corrupt, so it is refused before writing."""
    if h.endian != "<":
        raise InputError(
            f"{h.path} is a big-endian GGUF: --split/--fuse write little-endian files only; "
            f"convert it first with gguf-py's `gguf-convert-endian {h.path} little` (on a copy)"
        )


def _count(h: GGUFHeader, key: str, lo: int, hi: int) -> int:
    """An integer key checked for type and range before it sizes a loop or divides."""
    value = h.get(key)
    if type(value) is not int or not lo <= value <= hi:
        shown = printable(repr(value))[:60] if value is not None else "missing"
        raise InputError(
            f"{h.path}: {key} is {shown}, expected an integer from {lo} to {hi} "
            "(a Gemma 3 vision tower): re-convert the file"
        )
    return value


def _vision_facts(h: GGUFHeader, prefix: str) -> dict[str, int]:
    """The vision keys split/fuse compute with, all checked first (``prefix``: the key family)."""
    b = VISION_INT_BOUNDS
    facts = {
        "block_count": _count(h, f"{prefix}.block_count", *b["num_hidden_layers"]),
        "image_size": _count(h, f"{prefix}.image_size", *b["image_size"]),
        "patch_size": _count(h, f"{prefix}.patch_size", *b["patch_size"]),
    }
    if facts["image_size"] // facts["patch_size"] < 1:
        raise InputError(
            f"{h.path}: {prefix}.patch_size {facts['patch_size']} is larger than the image "
            f"({facts['image_size']}): re-convert the file"
        )
    return facts


def _check_vision_tensors(h: GGUFHeader, vision: list[TensorInfo]) -> None:
    for t in vision:
        if not t.shape or t.nbytes is None:
            raise InputError(
                f"{h.path}: vision tensor {printable(t.name)} has shape {list(t.shape)} and "
                f"type {t.ggml_type}: not Gemma 3's projector; re-convert the file"
            )


def _check_dst(src: Path, *dsts: Path, force: bool) -> None:
    """Every output checked before any is written: not an input, not special (lstat), not there
    unless ``force``."""
    for d in dsts:
        refuse_special_output(d)
        if d.exists() and d.resolve() == src.resolve():
            raise OutputError(f"{d} is the input: choose another output path")
        if os.path.lexists(d) and not force:
            raise OutputError(f"{d} exists: remove it or pass --force")
        if not d.parent.is_dir():
            raise OutputError(
                f"cannot write {d}: folder {d.parent} does not exist (create it first)"
            )
    if len({d.resolve() for d in dsts}) != len(dsts):
        raise OutputError("the text and mmproj outputs must be different files")


def split_fused(
    fused: str | os.PathLike[str],
    text_out: str | os.PathLike[str],
    mmproj_out: str | os.PathLike[str],
    *,
    force: bool = False,
) -> tuple[Path, Path]:
    """Split an Ollama-layout fused Gemma 3 GGUF into a text GGUF and a llama.cpp ``mmproj``."""
    src, text_dst, mm_dst = Path(fused), Path(text_out), Path(mmproj_out)
    _check_dst(src, text_dst, mm_dst, force=force)
    with open_gguf(src) as h:
        if h.architecture != "gemma3":
            raise NotGemma3(f"{src} is not a Gemma 3 model GGUF ({h.architecture!r})")
        _little_endian(h)
        check_copyable(h)
        vision = [t for t in h.tensors if t.name.startswith(("v.", "mm."))]
        if not vision:
            raise InputError(f"{src} has no vision tensors: it is already a text-only GGUF")
        _check_vision_tensors(h, vision)
        g = h.get
        if g("gemma3.vision.block_count") is None:
            raise InputError(f"{src} has vision tensors but no gemma3.vision.block_count")
        facts = _vision_facts(h, "gemma3.vision")
        names = _names(facts["block_count"])
        unknown = sorted(t.name for t in vision if t.name not in names)
        missing = sorted(set(names) - {t.name for t in vision})
        if unknown or missing:
            raise InputError(
                f"{src}'s vision tensors are not Gemma 3's SigLIP in Ollama's layout "
                f"({'unknown ' + printable(unknown[0]) if unknown else 'missing ' + missing[0]})"
            )
        # Every record of both outputs is built (and every key checked) before the first byte
        # is written: a key missing for the projector must not leave the text GGUF behind.
        # text: every record but the vision ones, every text tensor, bytes as they are
        keep = [kv for k, kv in h.kvs.items() if not k.startswith(("gemma3.vision.", "gemma3.mm."))]
        text_records = [bytes(h.buf[kv.start : kv.end]) for kv in keep]
        text_tensors = [
            _Out(t.name, t.shape, t.ggml_type, t)
            for t in h.tensors
            if not t.name.startswith(("v.", "mm."))
        ]
        # mmproj: llama.cpp's keys (Gemma3VisionModel) from Ollama's, tensors renamed
        u32, s, b = GGUFValueType.UINT32, GGUFValueType.STRING, GGUFValueType.BOOL
        width = _count(h, "gemma3.embedding_length", 1, 1 << 16)
        recs: list[bytes] = [
            encode_kv("general.architecture", "clip", s),
            encode_kv("general.type", "mmproj", s),
        ]
        for key in ("general.name", "general.basename"):
            if isinstance(g(key), str):
                recs.append(encode_kv(key, g(key), s))
        recs += [
            encode_kv("general.file_type", 1, u32),  # F16 (+ F32 norms, biases, embeddings)
            encode_kv("general.quantization_version", 2, u32),
            encode_kv("clip.has_vision_encoder", True, b),
            encode_kv("clip.projector_type", "gemma3", s),
            encode_kv("clip.use_gelu", True, b),
            encode_kv("clip.vision.projection_dim", width, u32),
            encode_array("clip.vision.image_mean", (0.5, 0.5, 0.5), GGUFValueType.FLOAT32),
            encode_array("clip.vision.image_std", (0.5, 0.5, 0.5), GGUFValueType.FLOAT32),
        ]
        recs += _vision_records(h, src, _VISION_KEYS, old_first=True)
        tokens = g("gemma3.mm.tokens_per_image")
        if type(tokens) is int and tokens > 0:
            per_side = round(tokens**0.5)
            scale = (facts["image_size"] // facts["patch_size"]) // max(per_side, 1)
            if scale != 4:  # clip.cpp's default n_merge for gemma3
                recs.append(encode_kv("clip.vision.projector.scale_factor", scale, u32))
        f16 = int(GGMLQuantizationType.F16)
        mm_tensors = []
        for t in vision:
            new = names[t.name]
            widen = new in _WIDEN and t.ggml_type == f16
            gtype = int(GGMLQuantizationType.F32) if widen else t.ggml_type
            mm_tensors.append(_Out(new, t.shape, gtype, t, widen))
        # both written to temp files; both renamed into place only when both are complete
        with atomic_path(text_dst) as text_tmp, atomic_path(mm_dst) as mm_tmp:
            _write(text_tmp, h, text_records, text_tensors)
            _write(mm_tmp, h, recs, mm_tensors)
    return text_dst, mm_dst


def _vision_records(
    h: GGUFHeader, path: Path, keys: tuple[tuple[str, str, GGUFValueType], ...], *, old_first: bool
) -> list[bytes]:
    """The vision keys renamed into the other layout, each present and of its type."""
    out = []
    for fused_key, clip_key, vtype in keys:
        old, new = (fused_key, clip_key) if old_first else (clip_key, fused_key)
        value: Any = h.get(old)
        ok = (
            type(value) is int and 0 <= value < 1 << 32
            if vtype == GGUFValueType.UINT32
            else isinstance(value, float) and value == value and abs(value) < 1
        )
        if not ok:
            shown = "missing" if value is None else printable(repr(value))[:60]
            raise InputError(
                f"{path}: {old} is {shown}: not a complete Gemma 3 file; re-convert it"
            )
        out.append(encode_kv(new, value, vtype))
    return out


def fuse_pair(
    text: str | os.PathLike[str],
    mmproj: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
) -> Path:
    """Fuse a text GGUF and its llama.cpp ``mmproj`` into Ollama's one-file layout."""
    text_p, mm_p, dst = Path(text), Path(mmproj), Path(out)
    _check_dst(text_p, dst, force=force)
    _check_dst(mm_p, dst, force=True)
    with open_gguf(text_p) as h, open_gguf(mm_p) as m:
        if h.architecture != "gemma3" or any(t.name.startswith(("v.", "mm.")) for t in h.tensors):
            raise NotGemma3(f"{text_p} is not a text-only Gemma 3 GGUF")
        if m.architecture != "clip" or m.get("clip.projector_type") != "gemma3":
            raise NotGemma3(f"{mm_p} is not a Gemma 3 projector (clip, projector gemma3)")
        _little_endian(h)
        _little_endian(m)
        check_copyable(h)
        check_copyable(m)
        _check_vision_tensors(m, list(m.tensors))
        width, proj = h.get("gemma3.embedding_length"), m.get("clip.vision.projection_dim")
        if width != proj:
            raise InputError(
                f"{mm_p.name} projects onto {printable(repr(proj))[:40]} but {text_p.name} is "
                f"{printable(repr(width))[:40]} wide: they are not the same model"
            )
        facts = _vision_facts(m, "clip.vision")
        inverse = {v: k for k, v in _names(facts["block_count"]).items()}
        unknown = sorted(t.name for t in m.tensors if t.name not in inverse)
        if unknown:
            raise InputError(
                f"{mm_p} has a tensor Ollama's Gemma 3 does not know: {printable(unknown[0])}"
            )
        missing = sorted(set(inverse) - {t.name for t in m.tensors})
        if missing:
            raise InputError(f"{mm_p} lacks {missing[0]}: not a complete Gemma 3 projector")
        records = [bytes(h.buf[kv.start : kv.end]) for kv in h.kvs.values()]
        records += _vision_records(m, mm_p, _VISION_KEYS, old_first=False)
        records.append(encode_kv("gemma3.vision.num_channels", 3, GGUFValueType.UINT32))
        scale = m.get("clip.vision.projector.scale_factor")
        if scale is None:
            scale = 4  # clip.cpp's gemma3 default
        elif type(scale) is not int or not 1 <= scale <= facts["image_size"]:
            raise InputError(
                f"{mm_p}: clip.vision.projector.scale_factor is {printable(repr(scale))[:40]}, "
                "expected a positive integer: re-convert it"
            )
        side = facts["image_size"] // facts["patch_size"] // scale
        records.append(encode_kv("gemma3.mm.tokens_per_image", side * side, GGUFValueType.UINT32))
        tensors = [_Out(t.name, t.shape, t.ggml_type, t) for t in h.tensors]
        # the projector's bytes come from the second file: write in two passes over one layout
        vision = [_Out(inverse[t.name], t.shape, t.ggml_type, t) for t in m.tensors]
        return _write_two(dst, h, m, records, tensors, vision)


def _write_two(
    dst: Path, a: GGUFHeader, b: GGUFHeader, records: list[bytes], ta: list[_Out], tb: list[_Out]
) -> Path:
    align = a.alignment
    layout: list[tuple[_Out, GGUFHeader, int]] = []
    at = 0
    for src, ts in ((a, ta), (b, tb)):
        for t in ts:
            layout.append((t, src, at))
            at += t.nbytes + padding(t.nbytes, align)
    infos = [_ti_record(t, o) for t, _, o in layout]
    head = encode_header(len(layout), len(records), [*records, *infos], alignment=align)
    with (
        atomic_path(dst) as tmp,
        open(tmp, "r+b") as out,
        open(a.path, "rb") as fa,
        open(b.path, "rb") as fb,
    ):
        out.write(head)
        out.flush()
        for t, src, o in layout:
            fin = fa if src is a else fb
            start, n = src.data_start + t.src.offset, int(t.src.nbytes or 0)
            copy_range(fin.fileno(), out.fileno(), start, len(head) + o, n, NoBar())
        out.truncate(len(head) + at)
    return dst
