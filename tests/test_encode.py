"""The one GGUF encoder (``gemma3_pack._gguf._encode``) writes exactly what gguf-py's writer writes."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

from gemma3_pack._gguf._encode import (
    encode_array,
    encode_header,
    encode_kv,
    encode_tensor_info,
    gguf_writer,
    padding,
)
from gemma3_pack._gguf._reader import open_gguf

TENSORS = {
    "a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
    "b.weight": np.array([0.5, -1.0, 2.0, 3.25, 7.0], dtype=np.float16),
}


def _reference(path: Path, endianess: gguf.GGUFEndian) -> bytes:
    w = gguf.GGUFWriter(path, arch="gemma3", endianess=endianess)
    w.add_string("s.name", "ünï ▁ <start_of_turn>")
    w.add_uint32("s.u32", 106)
    w.add_int32("s.i32", -64)
    w.add_float32("s.f32", 0.95)
    w.add_bool("s.bool", True)
    w.add_array("s.mean", [0.5, 0.25, 0.125])
    for name, data in TENSORS.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


@pytest.mark.parametrize("endianess", [gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG])
def test_header_records_and_tensor_infos_match_gguf_py(
    tmp_path: Path, endianess: gguf.GGUFEndian
) -> None:
    ref = _reference(tmp_path / "ref.gguf", endianess)
    e = "<" if endianess == gguf.GGUFEndian.LITTLE else ">"
    records = [
        encode_kv("general.architecture", "gemma3", V.STRING, e),
        encode_kv("s.name", "ünï ▁ <start_of_turn>", V.STRING, e),
        encode_kv("s.u32", 106, V.UINT32, e),
        encode_kv("s.i32", -64, V.INT32, e),
        encode_kv("s.f32", 0.95, V.FLOAT32, e),
        encode_kv("s.bool", True, V.BOOL, e),
        encode_array("s.mean", [0.5, 0.25, 0.125], V.FLOAT32, e),
    ]
    infos, data, at = [], b"", 0
    for name, arr in TENSORS.items():
        qtype = Q.F32 if arr.dtype == np.float32 else Q.F16
        infos.append(encode_tensor_info(name, tuple(reversed(arr.shape)), qtype, at, e))
        blob = arr.astype(arr.dtype.newbyteorder(e)).tobytes()
        blob += b"\0" * padding(len(blob), 32)
        data += blob
        at += len(blob)
    head = encode_header(len(TENSORS), len(records), [*records, *infos], alignment=32, e=e)
    assert len(head) % 32 == 0
    assert head + data == ref


def test_padding() -> None:
    assert [padding(n, 32) for n in (0, 1, 31, 32, 33)] == [0, 31, 1, 0, 31]


def test_gguf_writer_bulk_arrays_are_gguf_py_bytes(tmp_path: Path) -> None:
    """Arrays long enough for the bulk path (strings, ints, floats) pack to gguf-py's bytes."""
    tokens: list = [f"tok{i}" if i % 7 else f"▁ü{i}" for i in range(3000)]
    tokens[1::11] = [b""] * len(tokens[1::11])  # empty items, and bytes as the vocabulary has them
    tokens[2::13] = [f"<b{i}>".encode() for i in range(len(tokens[2::13]))]
    scores = [float(-i) / 3 for i in range(3000)]
    types = [1 + i % 5 for i in range(3000)]
    out = {}
    for label, make in (("ref", gguf.GGUFWriter), ("ours", gguf_writer)):
        path = tmp_path / f"{label}.gguf"
        w = make(path, arch="gemma3")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_key_value("s.u64", [i * 2**40 for i in range(2000)], V.ARRAY, sub_type=V.UINT64)
        w.add_array("s.short", ["x", "y"])  # below the bulk size: gguf-py's own path
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()
        out[label] = path.read_bytes()
    assert type(gguf_writer(tmp_path / "x.gguf", arch="gemma3")) is not gguf.GGUFWriter
    assert out["ours"] == out["ref"]
    with open_gguf(tmp_path / "ours.gguf") as h:
        assert h.strings("tokenizer.ggml.tokens", {0: "", 2999: ""}) == {
            0: tokens[0],
            2999: tokens[2999],
        }
