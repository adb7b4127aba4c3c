"""Property-based fuzzing of the readers issue 19 found soft: the vision-layout conversions
(``split_fused`` / ``fuse_pair`` over any key values and tensor shapes), QAT int4 configs of any
shape, imatrix files with any sums and counts, and JSON that ``json`` itself chokes on.

Same rules as tests/test_fuzz.py: each target may only raise the project's own one-line errors;
anything else (ZeroDivisionError, TypeError, OverflowError, MemoryError, ...) is a bug, shrunk to
the input that caused it. Nothing is written when a conversion refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _hostile import F32, STR, U32, U64, gemma3_kvs, kv
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import FUZZ, _folder, _own_errors_only
from test_hostile_r3 import _CLIP, _VISION, _with_tensors

from gemma3_pack._gguf._layout import _names, fuse_pair, split_fused

pytestmark = pytest.mark.fuzz

# a key's value as a (GGUF type, value) pair a hostile file could hold
_VALUES = st.one_of(
    st.tuples(st.just(U32), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(U32), st.sampled_from([0, 1, 14, 896, 1 << 31])),
    st.tuples(st.just(U64), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(F32), st.floats(width=32)),
    st.tuples(st.just(STR), st.text(max_size=8)),
    st.none(),  # the key is missing
)
_SHAPES = st.lists(st.integers(0, 16), max_size=3).map(tuple)


def _nothing_written_unless_done(folder: Path, inputs: set[str], done: bool) -> None:
    left = {p.name for p in folder.iterdir()} - inputs
    assert done or not left, left  # a refusal leaves neither output nor a .part


@FUZZ
@given(
    edits=st.dictionaries(st.sampled_from([*sorted(_VISION), "gemma3.embedding_length"]), _VALUES),
    shape=_SHAPES,
    which=st.sampled_from(sorted(_names(1))),
)
def test_fuzz_split(edits: dict[str, Any], shape: tuple[int, ...], which: str) -> None:
    with _folder() as d:
        keys = {**_VISION, **edits}
        records = [*gemma3_kvs(), *(kv(k, *v) for k, v in keys.items() if v is not None)]
        names = ["token_embd.weight", *_names(1)]
        src = _with_tensors(d / "fused.gguf", records, names, {which: shape})
        done = []

        def run() -> None:
            split_fused(src, d / "t.gguf", d / "mm.gguf")
            done.append(True)

        _own_errors_only(run)
        _nothing_written_unless_done(d, {"fused.gguf"}, bool(done))


@FUZZ
@given(
    edits=st.dictionaries(
        st.sampled_from([*sorted(_CLIP), "clip.vision.projector.scale_factor"]), _VALUES
    )
)
def test_fuzz_fuse(edits: dict[str, Any]) -> None:
    with _folder() as d:
        text = _with_tensors(d / "text.gguf", gemma3_kvs(), ["token_embd.weight"])
        keys = {**_CLIP, **edits}
        records = [kv(k, *v) for k, v in keys.items() if v is not None]
        mm = _with_tensors(d / "mm.gguf", records, list(_names(1).values()))
        done = []

        def run() -> None:
            fuse_pair(text, mm, d / "fused.gguf")
            done.append(True)

        _own_errors_only(run)
        _nothing_written_unless_done(d, {"text.gguf", "mm.gguf"}, bool(done))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_GROUP = (
    st.fixed_dictionaries(
        {},
        optional={
            "format": st.sampled_from(["pack-quantized", "float"]) | _JSON,
            "weights": st.fixed_dictionaries(
                {},
                optional={
                    "num_bits": st.sampled_from([4, 8]) | _JSON,
                    "type": st.sampled_from(["int", "float"]) | _JSON,
                    "symmetric": _JSON,
                    "strategy": st.sampled_from(["group", "channel"]) | _JSON,
                    "group_size": st.sampled_from([32, 128]) | _JSON,
                    "actorder": _JSON,
                },
            )
            | _JSON,
            "input_activations": _JSON,
        },
    )
    | _JSON
)


@FUZZ
@given(
    qc=st.fixed_dictionaries(
        {"quant_method": st.sampled_from(["awq", "compressed-tensors"]) | _JSON},
        optional={
            "config_groups": st.dictionaries(st.text(max_size=6), _GROUP, max_size=2) | _JSON,
            "bits": _JSON,
            "group_size": _JSON,
            "zero_point": _JSON,
            "version": _JSON,
            "format": _JSON,
        },
    )
)
def test_fuzz_int4_config(qc: dict[str, Any]) -> None:
    from gemma3_pack._export._readers._int4 import check_quantization_config

    _own_errors_only(check_quantization_config, qc)


@FUZZ
@given(
    sums=st.lists(st.floats(width=32), min_size=0, max_size=24),
    counts=st.lists(st.floats(width=32), min_size=0, max_size=4),
    with_counts=st.booleans(),
)
def test_fuzz_imatrix(sums: list[float], counts: list[float], with_counts: bool) -> None:
    import gguf

    from gemma3_pack._export._quantize import load_imatrix

    with _folder() as d:
        w = gguf.GGUFWriter(d / "imatrix.gguf", arch="imatrix")
        w.add_string("general.type", "imatrix")
        w.add_tensor("blk.0.attn_q.weight.in_sum2", np.array(sums or [0.0], dtype=np.float32))
        if with_counts:
            w.add_tensor("blk.0.attn_q.weight.counts", np.array(counts or [0.0], dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        out: list[Any] = []
        _own_errors_only(lambda: out.append(load_imatrix(d / "imatrix.gguf")))
        for values in out[0].values() if out else ():
            assert values.dtype == np.float32 and np.isfinite(values).all()


@FUZZ
@given(
    digits=st.integers(4301, 6000),
    depth=st.integers(1000, 30000),
    where=st.sampled_from(["config.json", "adapter_config.json", "export.json"]),
)
def test_fuzz_json_that_json_cannot_read(digits: int, depth: int, where: str) -> None:
    from gemma3_pack._inputs import read_json
    from gemma3_pack._sdk._client import read_export

    for raw in (b"[" + b"7" * digits + b"]", b"[" * depth + b"]" * depth):
        with _folder() as d:
            (d / where).write_bytes(raw)
            if where == "export.json":
                _own_errors_only(read_export, d)
            else:
                _own_errors_only(read_json, d / where)
