"""Read a ``.litertlm`` file (LiteRT-LM's model bundle) without LiteRT: header, sections, metadata.

The layout, as ``litert-lm-builder`` 0.18 writes it (``litertlm_core.py``, ``litertlm_peek.py``):

    0   b"LITERTLM"            magic
    8   u32 major, minor, patch  format version (1.x)
    24  u64 header end           the flatbuffer header spans bytes 32 .. header end
    32  LiteRTLMMetaData        flatbuffer: system metadata (key/value pairs) and one
                                SectionObject per section (items, begin/end offset, data type)
    ..  sections                 16 KiB aligned: TFLite models and weights, the tokenizer
                                (SentencePiece, or zlib'd HF tokenizer.json), LlmMetadata
                                (a protobuf: start and stop tokens, chat template, context)

The flatbuffer and the few protobuf fields doctor needs are decoded here by hand (a table walk and
a wire-format walk, both bounds-checked), so ``doctor model.litertlm`` works without the
``[litert]`` extra; a file the decoders cannot walk is :class:`NotLiteRTLM`, never a traceback.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import InputError
from .._inputs import regular_input

__all__ = [
    "HF_TOKENIZER_ZLIB",
    "LLM_METADATA",
    "SP_TOKENIZER",
    "TFLITE_MODEL",
    "LiteRTLM",
    "LlmMetadata",
    "NotLiteRTLM",
    "Section",
    "read_litertlm",
]

MAGIC = b"LITERTLM"
HEADER_BEGIN = 32
MAX_HEADER = 64 << 20  # a real header is a few KiB; refuse to read more than this

# AnySectionDataType (litertlm_header_schema.fbs)
SECTION_TYPES = {
    0: "NONE",
    1: "GenericBinaryData",
    2: "Deprecated",
    3: "TFLiteModel",
    4: "SP_Tokenizer",
    5: "LlmMetadataProto",
    6: "HF_Tokenizer_Zlib",
    7: "TFLiteWeights",
    8: "EmbeddingMetadataProto",
    9: "ExecutorMetadataProto",
    10: "TtsMetadataProto",
    11: "AsrMetadataProto",
}
TFLITE_MODEL, SP_TOKENIZER, LLM_METADATA, HF_TOKENIZER_ZLIB = (
    "TFLiteModel",
    "SP_Tokenizer",
    "LlmMetadataProto",
    "HF_Tokenizer_Zlib",
)
# VData union: value type -> struct format of the single field of its table (9 = string).
_VDATA = {1: "<B", 2: "<b", 3: "<H", 4: "<h", 5: "<I", 6: "<i", 7: "<f", 8: "<?", 10: "<Q"}
_VDATA.update({11: "<q", 12: "<d"})
# LlmModelType's oneof (llm_model_type.proto): field number -> model family
_MODEL_TYPES = {
    1: "generic_model",
    2: "gemma3n",
    3: "function_gemma",
    4: "gemma3",
    5: "qwen3",
    7: "qwen2p5",
    8: "gemma4",
    9: "fast_vlm",
    11: "lfm2",
    12: "minicpm5",
    13: "minicpmv4",
}
_SAMPLER_TYPES = {0: "unspecified", 1: "top_k", 2: "top_p", 3: "greedy"}


class NotLiteRTLM(InputError, ValueError):
    """The file is not a readable ``.litertlm`` bundle (bad magic, truncated, corrupt header)."""


@dataclass(frozen=True)
class Section:
    """One section of the bundle: its data type, byte range and key/value items."""

    index: int
    data_type: str
    begin: int
    end: int
    items: dict[str, Any]

    @property
    def size(self) -> int:
        return self.end - self.begin


@dataclass
class LlmMetadata:
    """The fields of LiteRT-LM's ``LlmMetadata`` protobuf that decide how a chat is run."""

    start_token: int | str | list[int] | None = None
    stop_tokens: list[int | str | list[int]] = field(default_factory=list)
    jinja_prompt_template: str | None = None
    prompt_templates: dict[str, dict[str, str]] = field(default_factory=dict)
    max_num_tokens: int | None = None
    model_type: str | None = None
    sampler: dict[str, Any] = field(default_factory=dict)


@dataclass
class LiteRTLM:
    """A parsed ``.litertlm``: version, system metadata, sections and the decoded LLM metadata."""

    path: Path
    size: int
    version: tuple[int, int, int]
    system: dict[str, Any]
    sections: list[Section]
    metadata: LlmMetadata | None
    vocab: list[str] | None  # the tokenizer's pieces by id (None when it cannot be read)
    tokenizer: str | None  # "sentencepiece", "huggingface" or None

    def of_type(self, data_type: str) -> list[Section]:
        return [s for s in self.sections if s.data_type == data_type]

    def token_id(self, text: str) -> int | None:
        if self.vocab is None:
            return None
        try:
            return self.vocab.index(text)
        except ValueError:
            return None


# --- flatbuffers: a bounds-checked table walk ---------------------------------------------------


class _Buf:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def _unpack(self, fmt: str, pos: int) -> Any:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise NotLiteRTLM("its header points outside itself (truncated or corrupt)")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def _field(self, table: int, slot: int) -> int | None:
        """Absolute position of field ``slot`` of the table at ``table``, or None if absent."""
        vtable = table - self._unpack("<i", table)
        vt_size = self._unpack("<H", vtable)
        at = 4 + 2 * slot
        if at + 2 > vt_size:
            return None
        off = self._unpack("<H", vtable + at)
        return table + off if off else None

    def _deref(self, pos: int) -> int:
        return pos + self._unpack("<I", pos)

    def scalar(self, table: int, slot: int, fmt: str, default: Any = 0) -> Any:
        pos = self._field(table, slot)
        return default if pos is None else self._unpack(fmt, pos)

    def table(self, table: int, slot: int) -> int | None:
        pos = self._field(table, slot)
        return None if pos is None else self._deref(pos)

    def string(self, table: int, slot: int) -> str | None:
        pos = self.table(table, slot)
        if pos is None:
            return None
        n = self._unpack("<I", pos)
        if pos + 4 + n > len(self.data):
            raise NotLiteRTLM("a string in its header runs past the header")
        return self.data[pos + 4 : pos + 4 + n].decode("utf-8", "replace")

    def tables(self, table: int, slot: int) -> Iterator[int]:
        vec = self.table(table, slot)
        if vec is None:
            return
        n = self._unpack("<I", vec)
        if vec + 4 + 4 * n > len(self.data):
            raise NotLiteRTLM("a vector in its header runs past the header")
        for i in range(n):
            yield self._deref(vec + 4 + 4 * i)


def _key_values(buf: _Buf, table: int, slot: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in buf.tables(table, slot):
        key = buf.string(kv, 0)
        vtype = buf.scalar(kv, 1, "<B")
        value_table = buf.table(kv, 2)
        value: Any = None
        if value_table is not None:
            if vtype == 9:
                value = buf.string(value_table, 0)
            elif vtype in _VDATA:
                value = buf.scalar(value_table, 0, _VDATA[vtype])
        if key is not None:
            out[key] = value
    return out


# --- protobuf: the wire format, for the few messages doctor reads -------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise NotLiteRTLM("its LlmMetadata section is not a valid protobuf")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> dict[int, list[Any]]:
    """field number -> values (ints for varint/fixed, bytes for length-delimited)."""
    out: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        num, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(data, pos)
            value, pos = data[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise NotLiteRTLM("its LlmMetadata section is not a valid protobuf")
        if pos > len(data) or num == 0:
            raise NotLiteRTLM("its LlmMetadata section is not a valid protobuf")
        out.setdefault(num, []).append(value)
    return out


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _token_union(data: bytes) -> int | str | list[int]:
    """TokenUnion: oneof token_ids (TokenIds, repeated int32 ids) / token_str."""
    f = _fields(data)
    if 2 in f:
        return _text(f[2][-1])
    ids: list[int] = []
    for raw in _fields(f.get(1, [b""])[-1]).get(1, []):
        if isinstance(raw, bytes):  # packed
            pos = 0
            while pos < len(raw):
                v, pos = _varint(raw, pos)
                ids.append(v)
        else:
            ids.append(raw)
    return ids[0] if len(ids) == 1 else ids


def parse_llm_metadata(data: bytes) -> LlmMetadata:
    """Decode the ``LlmMetadata`` fields listed on :class:`LlmMetadata` (llm_metadata.proto)."""
    f = _fields(data)
    md = LlmMetadata()
    if 1 in f:
        md.start_token = _token_union(f[1][-1])
    md.stop_tokens = [_token_union(b) for b in f.get(2, [])]
    if 3 in f:
        for num, role in ((1, "user"), (2, "model"), (3, "system")):
            for affixes in _fields(f[3][-1]).get(num, []):
                a = _fields(affixes)
                md.prompt_templates[role] = {
                    "prefix": _text(a.get(1, [b""])[-1]),
                    "suffix": _text(a.get(2, [b""])[-1]),
                }
    if 4 in f:
        s = _fields(f[4][-1])
        md.sampler = {"type": _SAMPLER_TYPES.get(s.get(1, [0])[-1], "unknown")}
        if 2 in s:
            md.sampler["top_k"] = s[2][-1]
        if 3 in s:
            md.sampler["top_p"] = round(struct.unpack("<f", s[3][-1])[0], 6)
        if 4 in s:
            md.sampler["temperature"] = round(struct.unpack("<f", s[4][-1])[0], 6)
    if 5 in f:
        md.max_num_tokens = struct.unpack("<i", struct.pack("<I", f[5][-1] & 0xFFFFFFFF))[0]
    if 6 in f:
        kinds = _fields(f[6][-1])
        md.model_type = next((_MODEL_TYPES.get(k, f"type {k}") for k in kinds), None)
    if 7 in f:
        md.jinja_prompt_template = _text(f[7][-1])
    return md


# --- tokenizers ---------------------------------------------------------------------------------


def _sp_vocab(data: bytes) -> list[str] | None:
    """Pieces of a SentencePiece ModelProto (field 1, each a SentencePiece with piece = field 1)."""
    try:
        return [_text(_fields(p).get(1, [b""])[-1]) for p in _fields(data).get(1, [])]
    except NotLiteRTLM:
        return None


def _hf_vocab(data: bytes) -> list[str] | None:
    import json

    try:
        doc = json.loads(zlib.decompress(data[8:] if data[:1] != b"\x78" else data))
    except (zlib.error, ValueError, RecursionError):
        try:  # litert-lm-builder prefixes the zlib stream with the uncompressed size (u64)
            doc = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError, RecursionError):
            return None
    vocab = (doc.get("model") or {}).get("vocab") if isinstance(doc, dict) else None
    if not isinstance(vocab, dict):
        return None
    pieces: dict[int, str] = {int(i): str(p) for p, i in vocab.items() if isinstance(i, int)}
    for tok in doc.get("added_tokens") or []:
        if isinstance(tok, dict) and isinstance(tok.get("id"), int):
            pieces[tok["id"]] = str(tok.get("content"))
    n = max(pieces) + 1 if pieces else 0
    return [pieces.get(i, "") for i in range(n)]


# --- the reader ---------------------------------------------------------------------------------


def read_litertlm(path: str | Path) -> LiteRTLM:
    """Parse ``path`` (never modified); :class:`NotLiteRTLM` when it is not a valid bundle."""
    p = Path(path)
    size = regular_input(p, "LiteRT-LM file", error=NotLiteRTLM).st_size
    with open(p, "rb") as fh:
        head = fh.read(HEADER_BEGIN)
        if len(head) < HEADER_BEGIN or head[:8] != MAGIC:
            raise NotLiteRTLM(
                f"{p} is not a .litertlm file (it does not start with {MAGIC.decode()}): "
                "export one with gemma3-pack export CKPT --format litertlm"
            )
        version = struct.unpack_from("<III", head, 8)
        header_end = struct.unpack_from("<Q", head, 24)[0]
        if not HEADER_BEGIN < header_end <= min(size, HEADER_BEGIN + MAX_HEADER):
            raise NotLiteRTLM(f"{p} is truncated or corrupt: its header ends at byte {header_end}")
        buf = _Buf(fh.read(header_end - HEADER_BEGIN))
        try:
            root = buf._deref(0)
            system_table = buf.table(root, 0)
            system = _key_values(buf, system_table, 0) if system_table is not None else {}
            sections: list[Section] = []
            meta_table = buf.table(root, 1)
            if meta_table is not None:
                for i, obj in enumerate(buf.tables(meta_table, 0)):
                    dtype = buf.scalar(obj, 3, "<B")
                    sections.append(
                        Section(
                            i,
                            SECTION_TYPES.get(dtype, f"type {dtype}"),
                            buf.scalar(obj, 1, "<Q"),
                            buf.scalar(obj, 2, "<Q"),
                            _key_values(buf, obj, 0),
                        )
                    )
        except NotLiteRTLM as exc:
            raise NotLiteRTLM(f"{p}: {exc}") from None
        for s in sections:
            if not header_end <= s.begin <= s.end <= size:
                raise NotLiteRTLM(
                    f"{p} is truncated or corrupt: section {s.index} ({s.data_type}) spans bytes "
                    f"{s.begin}..{s.end} of a {size}-byte file"
                )

        def body(s: Section) -> bytes:
            fh.seek(s.begin)
            return fh.read(s.size)

        metadata = None
        for s in sections:
            if s.data_type == LLM_METADATA:
                try:
                    metadata = parse_llm_metadata(body(s))
                except NotLiteRTLM as exc:
                    raise NotLiteRTLM(f"{p}: {exc}") from None
        vocab = tokenizer = None
        for s in sections:
            if s.data_type == SP_TOKENIZER and s.size < 64 << 20:
                vocab, tokenizer = _sp_vocab(body(s)), "sentencepiece"
                break
            if s.data_type == HF_TOKENIZER_ZLIB and s.size < 256 << 20:
                vocab, tokenizer = _hf_vocab(body(s)), "huggingface"
                break
    return LiteRTLM(p, size, version, system, sections, metadata, vocab, tokenizer)
