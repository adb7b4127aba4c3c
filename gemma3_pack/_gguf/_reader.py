"""A GGUF header parser that reads only as far as it must.

``gguf.GGUFReader`` builds a numpy view for every token string (~14 s on the 270M file here);
patching and inspecting need the *layout* of the header instead: where each key/value record
starts and ends (to copy it byte for byte), a few decoded scalars, and single items of the big
token arrays. This module memory-maps the file and walks the header with ``struct``, decoding
only small values; big arrays stay as offsets and are read item by item or as a numpy view.

Layout (GGUF v2/v3; gguf-py ``constants.py`` names the types)::

    magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
    n_kv x (key: string, type: u32, value)
    n_tensors x (name: string, n_dims u32, dims u64 x n_dims, ggml type u32, offset u64)
    padding to general.alignment (default 32)
    tensor data (offsets above are relative to here)

Every malformed or truncated input becomes :class:`~gemma3_pack._errors.NotGGUF`.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
)

from .._errors import InputError, NotGGUF
from .._inputs import printable, regular_input

__all__ = ["KV", "SCALAR_FORMAT", "GGUFHeader", "TensorInfo", "open_gguf"]

# struct format of each fixed-size GGUF value type
SCALAR_FORMAT: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}
_NUMPY_DTYPE: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "u1",
    GGUFValueType.INT8: "i1",
    GGUFValueType.UINT16: "u2",
    GGUFValueType.INT16: "i2",
    GGUFValueType.UINT32: "u4",
    GGUFValueType.INT32: "i4",
    GGUFValueType.FLOAT32: "f4",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "u8",
    GGUFValueType.INT64: "i8",
    GGUFValueType.FLOAT64: "f8",
}
# arrays up to this many items are decoded eagerly (general.tags, image_mean, ...)
SMALL_ARRAY = 64
MAX_NESTING = 8  # arrays of arrays deeper than this are refused (llama.cpp reads none at all)
# bytes of the file examined per step of the fast string-array walk: bounds its memory (~20x this)
FAST_WINDOW = 1 << 20


@dataclass
class KV:
    """One key/value record: its decoded value (if small) and its byte span in the file."""

    key: str
    vtype: GGUFValueType
    start: int  # first byte of the record (the key's length prefix)
    value_start: int  # first byte of the value (after the u32 type)
    end: int  # one past the last byte of the record
    sub_type: GGUFValueType | None = None  # item type of an array
    count: int = 0  # array length
    value: Any = None  # scalar, str, or list for arrays of <= SMALL_ARRAY items; else None

    @property
    def items_start(self) -> int:
        """Offset of an array's first item (after item type u32 and count u64)."""
        return self.value_start + 12

    @property
    def type_name(self) -> str:
        if self.vtype == GGUFValueType.ARRAY and self.sub_type is not None:
            return f"array[{self.sub_type.name.lower()}]"
        return self.vtype.name.lower()


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order (fastest-varying first), as stored
    ggml_type: int
    offset: int  # relative to the data section
    nbytes: int | None  # None when gguf-py does not know the type

    @property
    def type_name(self) -> str:
        try:
            return GGMLQuantizationType(self.ggml_type).name
        except ValueError:
            return f"type{self.ggml_type}"


@dataclass
class GGUFHeader:
    """The parsed header of a memory-mapped GGUF file (valid inside :func:`open_gguf`)."""

    path: Path
    buf: mmap.mmap
    size: int
    endian: str  # "<" or ">"
    version: int
    kvs: dict[str, KV]
    tensors: list[TensorInfo]
    kv_start: int
    ti_start: int
    ti_end: int
    alignment: int
    data_start: int
    data_end: int = 0  # end of the last tensor's bytes (<= size)
    extra: dict[str, Any] = field(default_factory=dict)
    # what llama.cpp's gguf loader (ggml/src/gguf.cpp) refuses but this reader can still walk:
    # duplicate keys or tensor names, nested arrays, >4-D tensors, unknown ggml types, tensors
    # whose data overlap or are out of order; each is one sentence (inspect makes them findings)
    problems: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        kv = self.kvs.get(key)
        return default if kv is None or kv.value is None else kv.value

    @property
    def architecture(self) -> str | None:
        arch = self.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def array(self, key: str) -> np.ndarray:
        """A fixed-size array as a read-only numpy view into the map (no copy)."""
        kv = self.kvs[key]
        assert kv.vtype == GGUFValueType.ARRAY and kv.sub_type in _NUMPY_DTYPE
        dtype = np.dtype(_NUMPY_DTYPE[kv.sub_type]).newbyteorder(self.endian)  # type: ignore[arg-type]
        # a copy: a view would pin the map open past the with-block
        return np.frombuffer(self.buf, dtype=dtype, count=kv.count, offset=kv.items_start).copy()

    def item_offset(self, key: str, index: int) -> int:
        """File offset of item ``index`` of a fixed-size array."""
        kv = self.kvs[key]
        assert kv.sub_type in SCALAR_FORMAT and 0 <= index < kv.count
        return kv.items_start + index * struct.calcsize(SCALAR_FORMAT[kv.sub_type])

    def array_item(self, key: str, index: int) -> Any:
        kv = self.kvs[key]
        if kv.sub_type == GGUFValueType.STRING:
            return self.strings(key, [index]).get(index)
        fmt = self.endian + SCALAR_FORMAT[kv.sub_type]  # type: ignore[index]
        return struct.unpack_from(fmt, self.buf, self.item_offset(key, index))[0]

    def strings(self, key: str, indices: Iterable[int]) -> dict[int, str]:
        """Items of a string array, one pass up to the largest index asked for."""
        kv = self.kvs[key]
        assert kv.sub_type == GGUFValueType.STRING
        wanted = {i for i in indices if 0 <= i < kv.count}
        out: dict[int, str] = {}
        if not wanted:
            return out
        last = max(wanted)
        unpack = struct.Struct(self.endian + "Q").unpack_from
        buf, pos = self.buf, kv.items_start
        for i in range(last + 1):
            (n,) = unpack(buf, pos)
            if i in wanted:
                out[i] = buf[pos + 8 : pos + 8 + n].decode("utf-8", errors="replace")
            pos += 8 + n
        return out


class _Parser:
    def __init__(
        self,
        buf: mmap.mmap,
        size: int,
        path: Path,
        endian: str,
        known_ends: Mapping[int, int] | None = None,
    ) -> None:
        self.buf, self.size, self.path, self.e = buf, size, path, endian
        self.known_ends = known_ends or {}
        self.u32 = struct.Struct(endian + "I").unpack_from
        self.u64 = struct.Struct(endian + "Q").unpack_from

    def fail(self, what: str) -> NotGGUF:
        return NotGGUF(
            f"{self.path} is not a valid GGUF file ({printable(what)}): re-download or "
            "re-convert it"
        )

    def need(self, pos: int, n: int, what: str) -> None:
        if n < 0 or pos + n > self.size:
            raise self.fail(f"truncated in {what} at byte {pos}")

    def string(self, pos: int, what: str) -> tuple[str, int]:
        self.need(pos, 8, what)
        (n,) = self.u64(self.buf, pos)
        self.need(pos + 8, n, what)
        try:
            text = self.buf[pos + 8 : pos + 8 + n].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None
        return text, pos + 8 + n

    def vtype(self, pos: int, what: str) -> GGUFValueType:
        self.need(pos, 4, what)
        (raw,) = self.u32(self.buf, pos)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise self.fail(f"unknown value type {raw} in {what}") from None

    def skip_items(
        self, sub: GGUFValueType, pos: int, count: int, what: str, depth: int = 0
    ) -> int:
        """Offset after ``count`` items of type ``sub`` starting at ``pos``."""
        if sub in SCALAR_FORMAT:
            n = count * struct.calcsize(SCALAR_FORMAT[sub])
            self.need(pos, n, what)
            return pos + n
        if sub == GGUFValueType.STRING:
            end = self.known_ends.get(pos)
            if end is not None:  # the caller already walked these exact bytes elsewhere
                self.need(pos, end - pos, what)
                return end
            return self.skip_strings(pos, count, what)
        if depth >= MAX_NESTING:
            raise self.fail(f"array {what} is nested more than {MAX_NESTING} deep")
        for _ in range(count):  # arrays of arrays (llama.cpp refuses them; inspect says so)
            inner = self.vtype(pos, what)
            self.need(pos + 4, 8, what)
            (n,) = self.u64(self.buf, pos + 4)
            if n > self.size:
                raise self.fail(f"array {what} claims {n} items")
            pos = self.skip_items(inner, pos + 12, n, what, depth + 1)
        return pos

    def skip_strings(self, pos: int, count: int, what: str) -> int:
        """Offset after ``count`` strings: proven numpy windows where they apply, else the exact loop.

        Memory is bounded by :data:`FAST_WINDOW`, not by the array (a sparse file claiming 12.5 M
        empty strings once cost 1.2 GB here). When the fast path does not apply (long strings,
        zeros), the exact loop runs in growing batches before the fast path is tried again.
        """
        unpack, buf = self.u64, self.buf
        left, batch = count, 4096
        while left:
            step = self.fast_strings(pos, left) if self.e == "<" and left >= 1024 else None
            if step is not None:
                done, pos = step
                left -= done
                batch = 4096
                continue
            k = min(left, batch)
            try:
                for _ in range(k):
                    pos += 8 + unpack(buf, pos)[0]
            except (struct.error, OverflowError):
                raise self.fail(f"truncated in {what}") from None
            self.need(pos, 0, what)
            left -= k
            batch = min(batch * 2, 1 << 20)
        self.need(pos, 0, what)
        return pos

    def fast_strings(self, pos: int, left: int) -> tuple[int, int] | None:
        """(strings walked, offset after them) for a run of short strings from ``pos``, or None.

        When a string is shorter than 256 bytes, the little-endian u64 length read at its start
        is < 256. Collect every offset in a window where that holds (a superset of the starts),
        then *prove* a prefix of them is exactly the chain the loop would walk: first = ``pos``
        and next = this + 8 + length. ~10 ms per MiB instead of a Python step per string.
        """
        n = min(self.size - pos, FAST_WINDOW)
        m = n // 8 - 1
        if m <= 0:
            return None
        mask = np.zeros(m * 8, dtype=bool)
        for k in range(8):
            view = np.frombuffer(self.buf, dtype="<u8", count=m, offset=pos + k)
            mask[k::8] = view < 256
            del view  # views pin the map; never keep one
        starts = np.flatnonzero(mask)[:left]
        del mask
        if len(starts) == 0 or starts[0] != 0:
            return None
        raw = np.frombuffer(self.buf, dtype=np.uint8, count=m * 8, offset=pos)
        lengths = raw[starts].astype(np.int64)
        del raw
        broken = np.flatnonzero(starts[1:] != starts[:-1] + 8 + lengths[:-1])
        done = int(broken[0]) + 1 if len(broken) else len(starts)
        if done < min(64, left):  # too little progress: let the exact loop take this stretch
            return None
        end = pos + int(starts[done - 1]) + 8 + int(lengths[done - 1])
        return (done, end) if end <= self.size else None

    def decode_items(self, sub: GGUFValueType, pos: int, count: int, what: str) -> list[Any]:
        if sub in SCALAR_FORMAT:
            fmt = f"{self.e}{count}{SCALAR_FORMAT[sub]}"
            self.need(pos, struct.calcsize(fmt), what)
            return list(struct.unpack_from(fmt, self.buf, pos))
        if sub == GGUFValueType.STRING:
            out = []
            for _ in range(count):
                text, pos = self.string(pos, what)
                out.append(text)
            return out
        return []  # nested arrays are kept as spans only

    def kv(self, pos: int) -> KV:
        start = pos
        key, pos = self.string(pos, "a metadata key")
        vtype = self.vtype(pos, key)
        pos += 4
        value_start = pos
        if vtype in SCALAR_FORMAT:
            fmt = self.e + SCALAR_FORMAT[vtype]
            self.need(pos, struct.calcsize(fmt), key)
            value = struct.unpack_from(fmt, self.buf, pos)[0]
            return KV(key, vtype, start, value_start, pos + struct.calcsize(fmt), value=value)
        if vtype == GGUFValueType.STRING:
            text, end = self.string(pos, key)
            return KV(key, vtype, start, value_start, end, value=text)
        sub = self.vtype(pos, key)
        self.need(pos + 4, 8, key)
        (count,) = self.u64(self.buf, pos + 4)
        if count > self.size:
            raise self.fail(f"array {key} claims {count} items")
        items = pos + 12
        value = self.decode_items(sub, items, count, key) if count <= SMALL_ARRAY else None
        end = self.skip_items(sub, items, count, key)
        return KV(key, vtype, start, value_start, end, sub_type=sub, count=count, value=value)


# Keys whose type every reader relies on -> the type classes accepted (llama.cpp's loader throws
# "wrong type" for the ones it reads, e.g. general.alignment must be u32); here a wrong type is one
# line instead of a traceback.
_STRING, _U32, _INT, _NUM, _BOOL = "string", "u32", "integer", "number", "bool"
KEY_TYPES: dict[str, str] = {
    "general.architecture": _STRING,
    "general.alignment": _U32,
    "general.name": _STRING,
    "general.description": _STRING,
    "general.type": _STRING,
    "general.size_label": _STRING,
    "general.file_type": _INT,
    "tokenizer.chat_template": _STRING,
    "tokenizer.ggml.model": _STRING,
    "tokenizer.ggml.pre": _STRING,
    "tokenizer.ggml.tokens": "array[string]",
    "tokenizer.ggml.token_type": "array[integer]",
    "tokenizer.ggml.scores": "array[number]",
    "tokenizer.ggml.bos_token_id": _INT,
    "tokenizer.ggml.eos_token_id": _INT,
    "tokenizer.ggml.eot_token_id": _INT,
    "tokenizer.ggml.padding_token_id": _INT,
    "tokenizer.ggml.unknown_token_id": _INT,
    "tokenizer.ggml.add_bos_token": _BOOL,
    "tokenizer.ggml.add_eos_token": _BOOL,
    "clip.projector_type": _STRING,
    "general.sampling.temp": _NUM,
    "general.sampling.top_k": _NUM,
    "general.sampling.top_p": _NUM,
    "general.sampling.min_p": _NUM,
    "general.sampling.penalty_repeat": _NUM,
    "gemma3.context_length": _INT,
    "gemma3.block_count": _INT,
    "gemma3.embedding_length": _INT,
    "gemma3.attention.sliding_window": _INT,
}
_INTS = {
    GGUFValueType.UINT8,
    GGUFValueType.INT8,
    GGUFValueType.UINT16,
    GGUFValueType.INT16,
    GGUFValueType.UINT32,
    GGUFValueType.INT32,
    GGUFValueType.UINT64,
    GGUFValueType.INT64,
}
_CLASSES: dict[str, set[GGUFValueType]] = {
    _STRING: {GGUFValueType.STRING},
    _U32: {GGUFValueType.UINT32},
    _INT: _INTS,
    _NUM: _INTS | {GGUFValueType.FLOAT32, GGUFValueType.FLOAT64},
    _BOOL: {GGUFValueType.BOOL},
}
MAX_DIMS_READ = 64  # beyond this the header is garbage; 5..64 dims are a finding (llama.cpp: 4)
GGML_MAX_DIMS = 4  # ggml.h
_NEWEST_TYPE = max(t.value for t in GGMLQuantizationType)
GGML_MAX_NAME = 64  # ggml.h: tensor names are shorter than this
MAX_TENSORS = 1 << 16  # the largest MoE files split per expert hold ~14,000; Gemma 3: ~1,300
MAX_KEYS = 1 << 16  # a real file has ~50 (a tokenizer is one array key, however long)


def _check_types(kvs: Mapping[str, KV], p: _Parser) -> None:
    for key, want in KEY_TYPES.items():
        kv = kvs.get(key)
        if kv is None:
            continue
        if want.startswith("array["):
            item = want[6:-1]
            ok = kv.vtype == GGUFValueType.ARRAY and kv.sub_type in _CLASSES[item]
        else:
            ok = kv.vtype in _CLASSES[want]
        if not ok:
            raise NotGGUF(
                f"{p.path}: {key} is stored as {kv.type_name}, expected {want}: the file is "
                "malformed; re-convert it"
            )


def _loader_problems(tensors: list[TensorInfo], alignment: int) -> list[str]:
    """What llama.cpp's gguf_init_from_file refuses in the tensor infos (ggml/src/gguf.cpp)."""
    out: list[str] = []
    seen: set[str] = set()
    expected: int | None = 0  # llama.cpp: each offset must be the padded end of the previous one
    for t in tensors:
        if t.name in seen:
            out.append(f"tensor {t.name} appears twice (llama.cpp refuses duplicate names)")
        seen.add(t.name)
        if len(t.name.encode()) >= GGML_MAX_NAME:
            out.append(f"tensor name {t.name[:40]}... is {len(t.name.encode())} bytes (max 63)")
        if len(t.shape) > GGML_MAX_DIMS:
            out.append(f"tensor {t.name} has {len(t.shape)} dimensions (llama.cpp reads at most 4)")
        if any(d >= 1 << 63 for d in t.shape) or math.prod(t.shape) >= 1 << 63:
            out.append(f"tensor {t.name} has shape {list(t.shape)}, which overflows int64")
        if t.nbytes is None:
            # Ids below gguf-py's newest that it lacks are types llama.cpp removed (Q4_2, Q4_0_4_4,
            # ...: block size 0, refused); a little above it may be a type newer than gguf-py
            # (not judged); far above is garbage (llama.cpp: type < GGML_TYPE_COUNT).
            if not _NEWEST_TYPE < t.ggml_type < 64:
                out.append(
                    f"tensor {t.name} has ggml type {t.ggml_type}, which llama.cpp does not know"
                )
            expected = None
            continue
        block = GGML_QUANT_SIZES[GGMLQuantizationType(t.ggml_type)][0]
        if t.shape and t.shape[0] % block:
            out.append(
                f"tensor {t.name} rows of {t.shape[0]} are not a multiple of its "
                f"{t.type_name} block size {block}"
            )
        if expected is not None and t.offset != expected:
            out.append(
                f"tensor {t.name} starts at data offset {t.offset}, expected {expected}: its "
                "data overlaps another tensor's or is out of order"
            )
            expected = None
        elif expected is not None:
            expected += -(-t.nbytes // alignment) * alignment
    return out


def _parse(
    buf: mmap.mmap, size: int, path: Path, known_ends: Mapping[int, int] | None = None
) -> GGUFHeader:
    if size < 24 or struct.unpack_from("<I", buf, 0)[0] != GGUF_MAGIC:
        head = bytes(buf[:4]) if size else b""
        raise NotGGUF(
            f"{path} is not a GGUF file (starts with {head!r}, expected b'GGUF'): "
            "pass a .gguf model file"
        )
    endian = "<"
    version = struct.unpack_from("<I", buf, 4)[0]
    if version & 0xFFFF == 0 and struct.unpack_from(">I", buf, 4)[0] in (2, 3):
        endian, version = ">", struct.unpack_from(">I", buf, 4)[0]
    p = _Parser(buf, size, path, endian, known_ends)
    if version not in (2, 3):
        raise NotGGUF(
            f"{path} is GGUF version {version}; only versions 2 and 3 are supported: "
            "re-convert it with a current llama.cpp"
        )
    n_tensors, n_kv = struct.unpack_from(endian + "QQ", buf, 8)
    if n_kv > size // 13 or n_tensors > size // 29:
        raise p.fail(f"header claims {n_kv} keys and {n_tensors} tensors")
    if n_kv > MAX_KEYS or n_tensors > MAX_TENSORS:
        # Each entry costs a Python object: a claim past any real model's count is refused
        # before the loop, not after minutes and gigabytes of parsing a sparse file.
        raise p.fail(
            f"header claims {n_kv:,} keys and {n_tensors:,} tensors, over the {MAX_KEYS:,} and "
            f"{MAX_TENSORS:,} any model file has (a Gemma 3 with its projector: about 1,300 "
            "tensors)"
        )
    pos = kv_start = 24
    kvs: dict[str, KV] = {}
    problems: list[str] = []
    for _ in range(n_kv):
        kv = p.kv(pos)
        if kv.key in kvs:  # llama.cpp: "duplicate key"; the first one is what we report
            problems.append(f"key {kv.key} appears twice (llama.cpp refuses duplicate keys)")
        else:
            kvs[kv.key] = kv
        if not kv.key:
            problems.append("a key is empty (llama.cpp refuses empty keys)")
        if kv.vtype == GGUFValueType.ARRAY and kv.sub_type == GGUFValueType.ARRAY:
            problems.append(f"{kv.key} is an array of arrays (llama.cpp reads no nested arrays)")
        pos = kv.end
    _check_types(kvs, p)
    alignment = GGUF_DEFAULT_ALIGNMENT
    if "general.alignment" in kvs:
        alignment = kvs["general.alignment"].value
        if alignment <= 0 or alignment & (alignment - 1):
            raise p.fail(f"general.alignment is {alignment!r}, not a power of two")
    ti_start = pos
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name, pos = p.string(pos, "a tensor name")
        p.need(pos, 4, name)
        (n_dims,) = p.u32(buf, pos)
        if n_dims > MAX_DIMS_READ:
            raise p.fail(f"tensor {name} has {n_dims} dimensions")
        p.need(pos + 4, 8 * n_dims + 12, name)
        shape = struct.unpack_from(f"{endian}{n_dims}Q", buf, pos + 4)
        pos += 4 + 8 * n_dims
        ggml_type, offset = struct.unpack_from(endian + "IQ", buf, pos)
        pos += 12
        nbytes: int | None = None
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
            n_el = 1
            for d in shape:
                n_el *= d
            nbytes = n_el // block * type_size
        except (ValueError, KeyError):
            pass
        tensors.append(TensorInfo(name, tuple(shape), ggml_type, offset, nbytes))
    ti_end = pos
    problems += _loader_problems(tensors, alignment)
    problems = [printable(text) for text in problems]  # names come from the file
    data_start = -(-ti_end // alignment) * alignment
    data_end = data_start if tensors else ti_end  # a metadata-only file may end unpadded
    for t in tensors:
        if t.offset % alignment:
            raise p.fail(f"tensor {t.name} offset {t.offset} is not aligned to {alignment}")
        if t.nbytes is not None:
            data_end = max(data_end, data_start + t.offset + t.nbytes)
    if data_end > size:
        raise NotGGUF(
            f"{path} is truncated: its tensors need {data_end:,} bytes but the file "
            f"has {size:,}: re-download or re-convert it"
        )
    return GGUFHeader(
        path,
        buf,
        size,
        endian,
        version,
        kvs,
        tensors,
        kv_start,
        ti_start,
        ti_end,
        alignment,
        data_start,
        data_end,
        problems=problems,
    )


@contextmanager
def open_gguf(
    path: str | os.PathLike[str], *, known_ends: Mapping[int, int] | None = None
) -> Iterator[GGUFHeader]:
    """Map ``path`` read-only and parse its header; the map closes when the block ends.

    ``known_ends`` maps the first item offset of a string array to its end offset, for a
    caller that has already checked those bytes (the patcher re-reading its own output).
    """
    p = Path(path)
    st = regular_input(p, "GGUF", error=NotGGUF)
    if st.st_size == 0:
        raise NotGGUF(f"{p} is empty (0 bytes): re-download or re-convert it")
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below, after the map
    except OSError as err:
        raise InputError(f"cannot read {p}: {err.strerror}") from None
    try:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as err:
        fh.close()
        raise InputError(f"cannot map {p}: {err}") from None
    try:
        try:
            header = _parse(buf, st.st_size, p, known_ends)
        except struct.error:
            raise NotGGUF(
                f"{p} is not a valid GGUF file (truncated header): re-download or re-convert it"
            ) from None
        yield header
    finally:
        buf.close()
        fh.close()
