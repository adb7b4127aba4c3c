"""Property-based fuzzing of the readers issue 19 found soft: the vision-layout conversions
(``split_fused`` / ``fuse_pair`` over any key values and tensor shapes), the facts ``plan`` reads
from a GGUF (every count and shape it loops over or divides by), QAT int4 configs of any shape,
imatrix files with any sums and counts, and JSON that ``json`` itself chokes on.

Same rules as tests/test_fuzz.py: each target may only raise the project's own one-line errors;
anything else (ZeroDivisionError, TypeError, OverflowError, MemoryError, ...) is a bug, shrunk to
the input that caused it. Nothing is written when a conversion refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _fused_keys import _CLIP, _VISION, _with_tensors
from _fuzzing import FUZZ, _folder, _own_errors_only
from _hostile import ARR, BOOL, F32, STR, U32, U64, gemma3_kvs, kv, raw_gguf, tensor_info
from hypothesis import event, given
from hypothesis import strategies as st

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


# a small valid Gemma-3-shaped text header; the fuzzer edits any of these keys
_PLAN_KEYS = {
    "gemma3.block_count": (U32, 1),
    "gemma3.embedding_length": (U32, 8),
    "gemma3.feed_forward_length": (U32, 16),
    "gemma3.attention.head_count": (U32, 2),
    "gemma3.attention.head_count_kv": (U32, 1),
    "gemma3.attention.key_length": (U32, 4),
    "gemma3.context_length": (U32, 32768),
    "gemma3.attention.sliding_window": (U32, 512),
    "gemma3.attention.sliding_window_pattern": (U32, 6),
    "general.file_type": (U32, 1),
    **{k: v for k, v in _VISION.items() if k != "gemma3.vision.block_count"},
}
_PLAN_VALUES = st.one_of(
    _VALUES,
    st.tuples(st.just(U32), st.sampled_from([0, 1, 2, 6, 2**20, 2**31, 2**32 - 1])),
    st.tuples(st.just(U64), st.sampled_from([2**31, 2**63, 2**64 - 1])),
    st.tuples(st.just(BOOL), st.booleans()),
    st.tuples(st.just(ARR), st.tuples(st.just(U32), st.lists(st.integers(0, 9), max_size=4))),
)


def _sized_gguf(path: Path, records: list[bytes], shapes: dict[str, tuple[int, ...]]) -> Path:
    """A GGUF whose F32 tensors each get the bytes their shape needs (32-byte aligned)."""
    infos, offset = [], 0
    for name, shape in shapes.items():
        infos.append(tensor_info(name, shape, 0, offset))
        offset += -(-4 * int(np.prod(shape)) // 32) * 32
    return raw_gguf(path, records, infos, b"\0" * offset)


@FUZZ
@given(
    edits=st.dictionaries(st.sampled_from(sorted(_PLAN_KEYS)), _PLAN_VALUES, max_size=3),
    embd=st.just((8, 16)) | _SHAPES,
    vision=st.booleans(),
    ctx=st.sampled_from([1, 4096, 131072, 2**31]),
    engine=st.sampled_from(["llama.cpp", "ollama"]),
)
def test_fuzz_plan(
    edits: dict[str, Any], embd: tuple[int, ...], vision: bool, ctx: int, engine: str
) -> None:
    """``plan_memory`` and ``auto_context`` (``modelfile --num-ctx auto``) on a GGUF whose header
    says anything: a plan or one line, in bounded time (no loop sized by a claimed count)."""
    import time

    from gemma3_pack import plan_memory
    from gemma3_pack._memory._plan_gpu import auto_context

    with _folder() as d:
        keys = {**_PLAN_KEYS, **edits}
        records = [
            kv("general.architecture", STR, "gemma3"),
            *(kv(k, *v) for k, v in keys.items() if v is not None),
        ]
        names = ["token_embd.weight", "blk.0.attn_q.weight"]
        if vision:
            names.append("v.patch_embd.weight")  # a fused file: the vision keys are read too
        shapes = {"token_embd.weight": embd, "blk.0.attn_q.weight": (8, 8)}
        src = _sized_gguf(d / "m.gguf", records, {n: shapes.get(n, (8,)) for n in names})
        before = src.read_bytes()
        t0 = time.monotonic()
        planned: list[object] = []
        _own_errors_only(lambda: planned.append(plan_memory(src, ctx=ctx, engine=engine)))
        event("planned" if planned else "refused")  # --hypothesis-show-statistics: both occur
        _own_errors_only(lambda: auto_context(src, "8GB"))
        assert time.monotonic() - t0 < 10
        assert src.read_bytes() == before and {p.name for p in d.iterdir()} == {"m.gguf"}


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
