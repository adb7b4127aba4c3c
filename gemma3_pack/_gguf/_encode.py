"""GGUF bytes, written one way for the whole package: values, records, headers, padding.

    file   = magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
             | n_kv key/value records | n_tensors tensor infos | zero padding to the alignment
             | tensor data (each tensor at an aligned offset from the start of the data)
    string = length u64 | UTF-8 bytes
    record = key (string) | value type u32 | value
    array  = item type u32 | count u64 | items
    info   = name (string) | n_dims u32 | dims u64 x n_dims (fastest-varying first)
             | ggml type u32 | offset u64 (from the start of the data)

The patcher (``_patch``), the doctor, the vision layout converter (``_layout``), the fused Ollama
writer (``_export._fused``) and the exporter's gguf-py writers (``_export._writer``,
``_export._mmproj``, through :func:`gguf_writer`) all encode through this module. Type codes and
formats are gguf-py's (``GGUFValueType``, ``GGUF_MAGIC``, ``GGUF_VERSION``) and the reader's
``SCALAR_FORMAT``, never retyped numbers.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Any

from gguf.constants import GGUF_MAGIC, GGUF_VERSION, GGUFValueType

from ._reader import SCALAR_FORMAT

__all__ = [
    "encode_array",
    "encode_header",
    "encode_kv",
    "encode_string",
    "encode_tensor_info",
    "gguf_writer",
    "padding",
    "write_through",
]

BULK_ARRAY = 1024  # arrays at least this long are packed in bulk by gguf_writer's writers


def padding(n: int, alignment: int) -> int:
    """Zero bytes that bring ``n`` up to a multiple of ``alignment``."""
    return -n % alignment


def encode_string(text: str | bytes, e: str = "<") -> bytes:
    """A GGUF string: u64 length, then the UTF-8 bytes (``bytes`` are taken as they are)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack(e + "Q", len(raw)) + raw


def encode_kv(key: str, value: Any, vtype: GGUFValueType, e: str = "<") -> bytes:
    """One key/value record as GGUF stores it (scalars and strings only)."""
    head = encode_string(key, e) + struct.pack(e + "I", int(vtype))
    if vtype == GGUFValueType.STRING:
        return head + encode_string(value, e)
    return head + struct.pack(e + SCALAR_FORMAT[vtype], value)


def encode_array(key: str, values: Iterable[Any], sub_type: GGUFValueType, e: str = "<") -> bytes:
    """One key/value record holding an array of scalars (``sub_type`` is not STRING/ARRAY)."""
    vals = list(values)
    return (
        encode_string(key, e)
        + struct.pack(e + "IIQ", int(GGUFValueType.ARRAY), int(sub_type), len(vals))
        + struct.pack(f"{e}{len(vals)}{SCALAR_FORMAT[sub_type]}", *vals)
    )


def encode_tensor_info(
    name: str, dims: Sequence[int], ggml_type: int, offset: int, e: str = "<"
) -> bytes:
    """One tensor info; ``dims`` in GGUF order (fastest-varying first, i.e. numpy's reversed)."""
    return (
        encode_string(name, e)
        + struct.pack(e + "I", len(dims))
        + struct.pack(f"{e}{len(dims)}Q", *dims)
        + struct.pack(e + "IQ", int(ggml_type), offset)
    )


def encode_header(
    n_tensors: int,
    n_kv: int,
    parts: Iterable[bytes | bytearray | memoryview],
    *,
    alignment: int,
    e: str = "<",
    lead: bytes | None = None,
) -> bytes:
    """Everything in front of the tensor data: magic, version, counts, ``parts``, padding.

    ``parts`` are the encoded records then the tensor infos, in file order. ``lead`` is the
    8-byte magic + version to write (a source file's own, when copying one); by default
    gguf-py's magic and version in the byte order ``e``.
    """
    if lead is None:
        lead = struct.pack("<I", GGUF_MAGIC) + struct.pack(e + "I", GGUF_VERSION)  # magic: b"GGUF"
    body = b"".join([lead, struct.pack(e + "QQ", n_tensors, n_kv), *parts])
    return body + b"\0" * padding(len(body), alignment)


def _bulk_array(val: Sequence[Any], ltype: GGUFValueType, head: bytes) -> bytes | None:
    """A long little-endian array's items packed in one go (the bytes gguf-py would write)."""
    import numpy as np

    if ltype == GGUFValueType.STRING:
        # u64 length + bytes per item, laid out with numpy: one record start per item, the
        # lengths' 8 bytes and the items' bytes scattered into place (3x faster than joining
        # 2 x 262k small bytes objects)
        enc = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in val]
        n = len(enc)
        lens = np.fromiter(map(len, enc), dtype=np.int64, count=n)
        text = np.frombuffer(b"".join(enc), dtype=np.uint8)
        ends = np.cumsum(lens + 8)
        starts = ends - (lens + 8)
        out = np.empty(int(ends[-1]), dtype=np.uint8)
        out[(starts[:, None] + np.arange(8)).ravel()] = lens.astype("<u8").view(np.uint8)
        out[np.repeat(starts + 8 - (np.cumsum(lens) - lens), lens) + np.arange(text.size)] = text
        return head + out.tobytes()
    if ltype in _NUMERIC:
        return head + np.asarray(val, dtype=_NUMERIC[ltype]).tobytes()
    return None


_NUMERIC = {
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.FLOAT64: "<f8",
    GGUFValueType.UINT8: "u1",
    GGUFValueType.INT8: "i1",
}


@functools.cache
def _writer_class() -> type:
    import gguf

    class Writer(gguf.GGUFWriter):
        """GGUFWriter whose long metadata arrays pack in bulk.

        gguf-py packs array items one ``struct.pack`` at a time: 786k calls and ~5 s per file for
        a 262k-token vocabulary. The bytes are identical (item type, count, then items; strings
        as u64 length + UTF-8); other values and big-endian files go through gguf-py itself.
        """

        def _pack_val(self, val: Any, vtype: Any, add_vtype: bool, sub_type: Any = None) -> bytes:
            if (
                vtype == GGUFValueType.ARRAY
                and self.endianess == gguf.GGUFEndian.LITTLE
                and not isinstance(val, (bytes, bytearray))
                and len(val) >= BULK_ARRAY
            ):
                ltype = sub_type if sub_type is not None else GGUFValueType.get_type(val[0])
                head = (struct.pack("<I", vtype) if add_vtype else b"") + struct.pack(
                    "<IQ", ltype, len(val)
                )
                packed = _bulk_array(val, ltype, head)
                if packed is not None:
                    return packed
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return Writer


def gguf_writer(path: str | PathLike[str], arch: str) -> Any:
    """A ``gguf.GGUFWriter`` for ``path`` (bulk array packing; same bytes as gguf-py's)."""
    return _writer_class()(path, arch=arch)


def write_through(w: Any, fout: Any) -> None:
    """Make gguf writer ``w`` write to ``fout``, an open file-like object for its path, instead of
    the file gguf-py would open (the exporter's :class:`~.._files.HashingWriter`). Call it once the
    tensor infos are added, before ``write_header_to_file``; ``tofile`` objects given to ``w`` must
    then write with ``fout.write`` (numpy arrays' ``tofile`` needs a real file)."""
    import gguf

    if w.state is not gguf.gguf_writer.WriterState.NO_FILE:
        raise ValueError(f"the gguf writer has already opened its file ({w.state})")
    w.fout = [fout]
    w.state = gguf.gguf_writer.WriterState.EMPTY  # open_output_file(path) keeps it
