"""Hand-built ``.litertlm`` bundles for the reader and doctor tests (no LiteRT needed).

The layout follows litert-lm-builder 0.18 (``litertlm_core.py``): ``LITERTLM``, version 1.7.0, the
header's end at byte 24, the flatbuffer ``LiteRTLMMetaData`` from byte 32, sections 16 KiB aligned.
The flatbuffer is laid out front to back (every table's vtable just before it, children after
their parent, so every uoffset points forward, as the format requires); the LlmMetadata protobuf
is encoded field by field. The real exporter's output is read by the same reader in the slow
tests, which is what keeps this builder honest.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

BLOCK = 16 * 1024
SECTION_IDS = {
    "TFLiteModel": 3,
    "SP_Tokenizer": 4,
    "LlmMetadataProto": 5,
    "HF_Tokenizer_Zlib": 6,
    "TFLiteWeights": 7,
}


# --- protobuf ------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_int(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def pb_bytes(num: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def pb_float(num: int, value: float) -> bytes:
    return _varint(num << 3 | 5) + struct.pack("<f", value)


def token(value: int | str) -> bytes:
    """TokenUnion: token_ids (TokenIds, packed int32) or token_str."""
    if isinstance(value, str):
        return pb_bytes(2, value)
    return pb_bytes(1, pb_bytes(1, _varint(value)))


def llm_metadata(
    *,
    start: int | str | None = 2,
    stops: tuple[int | str, ...] = (1, 106),
    template: str | None = None,
    max_tokens: int | None = 4096,
    model_type: int | None = 4,  # LlmModelType oneof field: 4 = gemma3, 1 = generic
) -> bytes:
    out = b""
    if start is not None:
        out += pb_bytes(1, token(start))
    for s in stops:
        out += pb_bytes(2, token(s))
    out += pb_bytes(4, pb_int(1, 1) + pb_int(2, 64) + pb_float(3, 0.95) + pb_float(4, 1.0))
    if max_tokens is not None:
        out += pb_int(5, max_tokens)
    if model_type is not None:
        out += pb_bytes(6, pb_bytes(model_type, b""))
    if template is not None:
        out += pb_bytes(7, template)
    return out


def sp_model(pieces: list[str]) -> bytes:
    """A SentencePiece ModelProto with just the pieces (field 1: piece, 2: score, 3: type)."""
    return b"".join(pb_bytes(1, pb_bytes(1, p) + pb_float(2, 0.0) + pb_int(3, 1)) for p in pieces)


# --- flatbuffers ---------------------------------------------------------------------------------


class _FB:
    def __init__(self) -> None:
        self.buf = bytearray(b"\0" * 4)  # root uoffset, patched at the end

    def _align(self, n: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % n)

    def string(self, text: str) -> int:
        self._align(4)
        pos = len(self.buf)
        data = text.encode()
        self.buf += struct.pack("<I", len(data)) + data + b"\0"
        return pos

    def table(self, fields: list[tuple[str, Any]]) -> int:
        """fields by slot: ("u8"|"u64", value), ("str", text), ("table", fn), ("tables", [fn]) or None."""
        n = len(fields)
        self._align(8)
        vt = len(self.buf)
        vt_size = 4 + 2 * n
        self.buf += b"\0" * vt_size
        self._align(8)
        if (len(self.buf) + 4) % 8:
            self.buf += b"\0" * 4
        table = len(self.buf)
        self.buf += struct.pack("<i", table - vt)
        offsets: list[int] = []
        pending: list[tuple[int, str, Any]] = []
        for f in fields:
            if f is None:
                offsets.append(0)
                continue
            kind, value = f
            if kind == "u64":
                self._align(8)
                offsets.append(len(self.buf) - table)
                self.buf += struct.pack("<Q", value)
            elif kind == "u8":
                offsets.append(len(self.buf) - table)
                self.buf += struct.pack("<B", value)
            else:
                self._align(4)
                offsets.append(len(self.buf) - table)
                pending.append((len(self.buf), kind, value))
                self.buf += b"\0" * 4
        struct.pack_into("<HH", self.buf, vt, vt_size, len(self.buf) - table)
        for i, off in enumerate(offsets):
            struct.pack_into("<H", self.buf, vt + 4 + 2 * i, off)
        for at, kind, value in pending:
            if kind == "str":
                target = self.string(value)
            elif kind == "table":
                target = value(self)
            else:  # vector of tables
                self._align(4)
                target = len(self.buf)
                self.buf += struct.pack("<I", len(value)) + b"\0" * (4 * len(value))
                for j, child in enumerate(value):
                    slot = target + 4 + 4 * j
                    struct.pack_into("<I", self.buf, slot, child(self) - slot)
            struct.pack_into("<I", self.buf, at, target - at)
        return table


def _kv(key: str, value: str | int) -> Any:
    """A KeyValuePair builder: strings as StringValue (VData 9), ints as UInt64 (VData 10)."""
    if isinstance(value, str):
        vtype, inner = 9, [("str", value)]
    else:
        vtype, inner = 10, [("u64", value)]
    return lambda fb: fb.table([("str", key), ("u8", vtype), ("table", lambda f: f.table(inner))])


def build_litertlm(path: Path, sections: list[tuple[str, bytes, dict[str, Any]]]) -> Path:
    """Write a bundle: ``sections`` are (data type name, body, key/value items)."""
    # Section offsets depend on the header size; lay the header out twice (sizes do not change).
    offsets: list[tuple[int, int]] = [(0, 0)] * len(sections)
    for _ in range(2):
        fb = _FB()

        def section(i: int, offsets: list[tuple[int, int]] = offsets) -> Any:
            kind, _body, items = sections[i]
            begin, end = offsets[i]
            return lambda f: f.table(
                [
                    ("tables", [_kv(k, v) for k, v in items.items()]) if items else None,
                    ("u64", begin),
                    ("u64", end),
                    ("u8", SECTION_IDS[kind]),
                ]
            )

        root = fb.table(
            [
                ("table", lambda f: f.table([("tables", [_kv("author", "gemma3-pack tests")])])),
                (
                    "table",
                    lambda f: f.table([("tables", [section(i) for i in range(len(sections))])]),
                ),
            ]
        )
        struct.pack_into("<I", fb.buf, 0, root)
        header = bytes(fb.buf)
        pos = 32 + len(header)
        new = []
        for _kind, body, _items in sections:
            pos += -pos % BLOCK
            new.append((pos, pos + len(body)))
            pos += len(body)
        offsets = new
    with open(path, "wb") as fh:
        fh.write(b"LITERTLM" + struct.pack("<III", 1, 7, 0) + b"\0" * 4)
        fh.write(struct.pack("<Q", 32 + len(header)))
        fh.write(header)
        for (begin, _end), (_kind, body, _items) in zip(offsets, sections, strict=True):
            fh.write(b"\0" * (begin - fh.tell()))
            fh.write(body)
    return path
