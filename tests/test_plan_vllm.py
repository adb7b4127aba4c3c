"""`plan --engine vllm`: Gemma 3 under vLLM's tensor / pipeline parallelism, computed from vLLM's code.

No vLLM runs here (no GPU, and vLLM is not a dependency). The arithmetic of
``gemma3_pack._memory._plan_vllm`` is held against vLLM's own worked examples, the numbers its unit tests
assert, so a drift from vLLM's code shows up as a failing example:

* ``tests/v1/core/test_kv_cache_utils.py``: ``test_get_kv_cache_config_one_worker`` (layer grouping
  of full + sliding-window layers and the block count for a given memory),
  ``test_get_max_concurrency_for_kv_cache_config`` (concurrency with a sliding window),
  ``test_estimate_max_model_len`` (the largest max_model_len for 8 GiB);
* ``tests/distributed/test_pipeline_partition.py``: ``test_uneven_auto_partition``.

Gemma 3's own facts (heads per size, the 5:1 sliding pattern, windows) come from the family table.
"""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error

from gemma3_pack._errors import UsageError
from gemma3_pack._family import SIZES
from gemma3_pack._memory._plan_vllm import (
    GIB,
    group_layers,
    kv_blocks_per_request,
    max_concurrency,
    max_memory_usage,
    num_blocks,
    page_size_bytes,
    parse_gpus,
    plan_vllm,
    pp_partition,
    tp_problems,
)

# vLLM's test spec: block 16, 2 KV heads, head size 64, float32
MEM_PER_BLOCK_PER_LAYER = 16 * 2 * 64 * 4 * 2


def test_page_size_is_vllms() -> None:
    assert page_size_bytes(2, 64, 4) == MEM_PER_BLOCK_PER_LAYER
    # Gemma 3 27B over 2 GPUs in bf16: 8 KV heads of 128 per rank
    assert page_size_bytes(8, 128, 2) == 65536


# test_get_kv_cache_config_one_worker: (layer kinds, memory in per-layer blocks, groups, blocks)
GROUPING = [
    (["full", "full"], 2 * 32, [[0, 1]], 32),
    (["sliding", "sliding"], 2 * 32, [[0, 1]], 32),
    (["full", "sliding"], 2 * 32, [[0], [1]], 64),
    (["full"] * 2 + ["sliding"] * 4, 2 * 32, [[0, 1], [2, 4], [3, 5]], 32),
    (["full"] * 3 + ["sliding"] * 7, 3 * 32, [[0, 1, 2], [3, 6, 9], [4, 7], [5, 8]], 32),
    (["full"] * 6 + ["sliding"] * 5, 6 * 32, [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], 32),
]


@pytest.mark.parametrize(("kinds", "blocks_of_memory", "groups", "blocks"), GROUPING)
def test_grouping_and_blocks_match_vllms_worked_examples(
    kinds: list[str], blocks_of_memory: int, groups: list[list[int]], blocks: int
) -> None:
    got = group_layers(kinds)
    assert got == groups
    group_size = max(len(g) for g in got)
    available = MEM_PER_BLOCK_PER_LAYER * blocks_of_memory
    assert num_blocks(available, MEM_PER_BLOCK_PER_LAYER, group_size) == blocks


def test_max_concurrency_matches_vllms_worked_example() -> None:
    # test_get_max_concurrency_for_kv_cache_config: max_model_len 16384, 1024 batched tokens
    assert max_concurrency(int(1024 * 1.5), [None], 16384, 1024) == 1.5
    assert kv_blocks_per_request(1024, 16384, 1024) == 129  # cdiv(1023 + 1024, 16) + 1
    assert max_concurrency(129 * 3, [1024], 16384, 1024) == 3
    assert max_concurrency((1024 + 129) * 3, [None, 1024], 16384, 1024) == 3


@pytest.mark.parametrize(("limit", "want"), [(16385, 16384), (16383, 16383)])
def test_estimate_max_model_len_matches_vllms_worked_example(limit: int, want: int) -> None:
    # test_estimate_max_model_len: 32 full layers, 32 KV heads of 128, fp16, 8 GiB, 32768 batched
    from gemma3_pack._memory._plan_vllm import _max_model_len_for

    page = page_size_bytes(32, 128, 2)
    assert _max_model_len_for(8 * GIB, [None], 32, page, limit, 32768) == want
    assert max_memory_usage([None], 32, page, 16384, 32768) == 8 * GIB


@pytest.mark.parametrize(
    ("layers", "pp", "ranges"),
    [
        (2, 2, [(0, 1), (1, 2)]),
        (3, 2, [(0, 2), (2, 3)]),
        (3, 3, [(0, 1), (1, 2), (2, 3)]),
        (4, 3, [(0, 1), (1, 3), (3, 4)]),
        (5, 3, [(0, 2), (2, 4), (4, 5)]),
        (62, 4, [(0, 15), (15, 31), (31, 47), (47, 62)]),  # 27B: the remainder before the last
    ],
)
def test_pipeline_partition_matches_get_pp_indices(
    layers: int, pp: int, ranges: list[tuple[int, int]]
) -> None:
    assert pp_partition(layers, pp) == ranges


# (size, tensor-parallel sizes vLLM accepts, sizes it refuses) — heads/KV heads 270M/1B 4/1,
# 4B 8/4, 12B 16/8, 27B 32/16; SigLIP 16 (4B+ with vision)
HEADS = [
    ("270m", [1, 2, 4], [3, 8]),
    ("1b", [1, 2, 4], [3, 8]),
    ("4b", [1, 2, 4, 8], [3, 16]),
    ("12b", [1, 2, 4, 8, 16], [3, 6, 32]),
    ("27b", [1, 2, 4, 8, 16], [3, 6, 32]),
]


@pytest.mark.parametrize(("size", "ok", "refused"), HEADS)
def test_tensor_parallel_divisibility(size: str, ok: list[int], refused: list[int]) -> None:
    s = SIZES[size]
    assert (s.num_heads, s.num_kv_heads) == {
        "270m": (4, 1),
        "1b": (4, 1),
        "4b": (8, 4),
        "12b": (16, 8),
        "27b": (32, 16),
    }[size]
    for tp in ok:
        assert tp_problems(s, tp, vision=True) == [], (size, tp)
    for tp in refused:
        assert tp_problems(s, tp, vision=True), (size, tp)


def test_siglip_limits_tp_only_with_vision() -> None:
    s = SIZES["27b"]
    assert tp_problems(s, 32, vision=False) == []  # 32 heads, 16 KV heads replicated twice
    problems = tp_problems(s, 32, vision=True)
    assert problems == ["SigLIP's 16 heads do not divide by tensor-parallel size 32"]


def test_gemma3_27b_groups_as_vllms_allocator_sizes_them() -> None:
    s = SIZES["27b"]
    kinds = ["sliding" if (i + 1) % 6 else "full" for i in range(s.num_layers)]
    groups = group_layers(kinds)
    # 10 global layers; 52 sliding layers dealt into 6 groups (9,9,9,9,8,8 - padded to 10)
    assert [len(g) for g in groups] == [9, 9, 9, 9, 8, 8, 10]
    assert groups[-1] == [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]
    p = plan_vllm("27b", "2x24GB", weights="int4", activations=2 * GIB)
    assert (p.kv_groups, p.group_size, p.page_size) == (7, 10, 65536)
    requested = int(24 * 2**30 * 0.9)
    budget = requested - p.stages[0].weights - 2 * GIB
    assert p.num_blocks == budget // 65536 // 10
    assert p.kv_cache_tokens == p.num_blocks // 7 * 16
    # one token past the window costs the global group only: 10 layers x 2 x 8 heads x 128 x 2 B
    assert p.kv_bytes_per_token == 10 * 2 * 8 * 128 * 2
    assert p.kv_bytes_per_token_all_global == 62 * 2 * 8 * 128 * 2
    # 2048 batched tokens (24 GB GPUs): each sliding group needs cdiv(1023 + 2048, 16) + 1 blocks
    per_request = 8192 + 6 * (192 + 1)  # 131072 / 16 for the global group
    assert p.max_model_len == 131072
    assert p.max_concurrency == round(p.num_blocks / per_request, 2)


def test_weights_per_gpu_bf16_and_int4() -> None:
    p = plan_vllm("27b", "2x24GB")
    s = SIZES["27b"]
    h, f, d = s.hidden_size, s.intermediate_size, s.head_dim
    qkv = h * (32 // 2 + 2 * 16 // 2) * d
    layer = (qkv + 32 * d // 2 * h + h * f + f // 2 * h) * 2 + (4 * h + 2 * d) * 2
    embed = 262208 // 2 * h * 2 + h * 2
    bf16_text = 62 * layer + embed
    vision = p.weights_per_gpu["bf16"] - bf16_text
    assert 0.35 * GIB / 2 < vision < 0.45 * GIB  # SigLIP ~417M params, half of each matrix
    assert p.weights_per_gpu["bf16"] > 24 * 2**30 * 0.9  # 27B bf16 does not fit two 24 GB cards
    assert not p.fits and p.largest_max_model_len == 0
    q4 = plan_vllm("27b", "2x24GB", weights="int4")
    assert q4.fits and q4.weights_per_gpu == p.weights_per_gpu
    # int4: half a byte per weight, a bf16 scale and a 4-bit zero per 32 inputs
    ratio = (q4.weights_per_gpu["int4"] - embed - vision) / (bf16_text - embed)
    assert ratio == pytest.approx((0.5 + 2 / 32 + 0.5 / 32) / 2, rel=0.01)


def test_kv_heads_replicated_when_tp_exceeds_them() -> None:
    p = plan_vllm("1b", "4x24GB")
    assert p.page_size == page_size_bytes(1, 256, 2)  # each GPU keeps the one KV head
    assert any("replica" in n for n in p.notes)


def test_pipeline_parallel_multi_node_commands() -> None:
    p = plan_vllm("27b", "4x24GB", nodes=2, weights="int4", master_addr="10.0.0.1")
    assert (p.tensor_parallel, p.pipeline_parallel) == (2, 2)
    assert [s.layers for s in p.stages] == [(0, 31), (31, 62)]
    assert len(p.commands) == 2
    head, worker = p.commands
    for cmd in p.commands:
        assert "--tensor-parallel-size 2 --pipeline-parallel-size 2" in cmd
        assert "--nnodes 2" in cmd and "--master-addr 10.0.0.1" in cmd
    assert "--node-rank 0" in head and "--headless" not in head
    assert "--node-rank 1" in worker and worker.endswith("--headless")


def test_bad_inputs() -> None:
    with pytest.raises(UsageError, match="2x24GB"):
        parse_gpus("two cards")
    with pytest.raises(UsageError, match="split evenly"):
        parse_gpus("3x24GB", nodes=2)
    with pytest.raises(UsageError, match="product"):
        plan_vllm("27b", "4x24GB", tensor_parallel=3)
    with pytest.raises(UsageError, match="GGUF"):
        plan_vllm("model.gguf", "2x24GB")
    with pytest.raises(UsageError, match="bf16 or int4"):
        plan_vllm("27b", "2x24GB", weights="q4_k_m")


def test_cli_json_and_text(cli) -> None:
    r = cli("plan", "gemma3-27b-it", "--engine", "vllm", "--gpus", "2x24GB", "-q", "int4", "--json")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["engine"] == "vllm" and d["tensor_parallel"] == 2
    assert d["basis"] == "computed from vLLM's code, not measured"
    assert d["commands"][0].startswith("vllm serve ./gemma-3-27b-it-int4-awq")
    r = cli("plan", "gemma3-12b-it", "--engine", "vllm", "--gpus", "2x24GB")
    assert r.code == 0, r.stderr
    assert "not measured" in r.stdout and "vllm serve google/gemma-3-12b-it" in r.stdout


def test_cli_errors(cli) -> None:
    assert_one_line_error(cli("plan", "gemma3-12b-it", "--engine", "vllm"), "--gpus")
    assert_one_line_error(
        cli("plan", "gemma3-12b-it", "--engine", "vllm", "--gpus", "3x24GB"), "heads"
    )


def test_docs_table_is_current() -> None:
    from pathlib import Path

    from gemma3_pack._memory._plan_vllm import markdown_table

    text = (Path(__file__).parent.parent / "docs" / "plan.md").read_text()
    block = text.split("<!-- vllm-table -->\n", 1)[1].split("\n<!-- /vllm-table -->", 1)[0]
    assert block == markdown_table(), (
        "docs/plan.md vLLM table drifted: paste gemma3_pack._memory._plan_vllm.markdown_table() "
        "between the vllm-table markers"
    )
