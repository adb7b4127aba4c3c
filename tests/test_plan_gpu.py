"""`gemma3-pack plan --gpu`: llama.cpp's CUDA placement against what it allocated on an NVIDIA H200.

tests/data/cuda_alloc/cases.json holds ``llama_get_memory_breakdown()`` per buffer type (bytes) of
every case benchmarks/gpu/run.sh measured (llama.cpp 0c1e57098 built with CUDA, Gemma 3
1B/4B/12B/27B-shaped Q4_0 and Q4_K_M files with zero weights: allocations depend only on the
header). manifest.json has each file's shapes and tensor types, from which this test writes an
identical sparse header. The plan must give the weights and KV cache of every device to the byte
and the compute buffers within 2 %.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

from gemma3_pack._errors import UsageError
from gemma3_pack._memory._plan_gpu import (
    GPU_ALIASES,
    GPU_RESERVE,
    fit_gpus,
    gpu_table,
    layer_devices,
    parse_gpu,
    plan_gpu,
)

DATA = Path(__file__).parent / "data" / "cuda_alloc"
MANIFEST = {f["file"]: f for f in json.loads((DATA / "manifest.json").read_text())["files"]}
CASES = json.loads((DATA / "cases.json").read_text())["cases"]
H200 = 143155 * 2**20  # the measured card (cudaMemGetInfo total)


# ---------------------------------------------------------------------------------------------
# the files: identical headers, sparse data


def _tensor_list(entry: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, ggml ne, type) in the order llama.cpp's converter writes them (make_ggufs.py)."""
    s = entry["shape"]
    e, f, h, hkv, d = s["n_embd"], s["n_ff"], s["n_head"], s["n_head_kv"], s["head_dim"]
    types = {k: (v[0] if isinstance(v, list) else v) for k, v in entry["tensor_types"].items()}
    q6k = entry.get("q6k_layers") or {}
    out = [
        ("output_norm.weight", (e,), types["output_norm.weight"]),
        ("token_embd.weight", (e, s["n_vocab"]), types["token_embd.weight"]),
    ]
    block = {
        "attn_k.weight": (e, hkv * d),
        "attn_k_norm.weight": (d,),
        "attn_norm.weight": (e,),
        "attn_output.weight": (h * d, e),
        "attn_q.weight": (e, h * d),
        "attn_q_norm.weight": (d,),
        "attn_v.weight": (e, hkv * d),
        "ffn_down.weight": (f, e),
        "ffn_gate.weight": (e, f),
        "ffn_norm.weight": (e,),
        "ffn_up.weight": (e, f),
        "post_attention_norm.weight": (e,),
        "post_ffw_norm.weight": (e,),
    }
    for il in range(s["n_layer"]):
        for name, ne in block.items():
            all_types = entry["tensor_types"][name]
            t = types[name]
            if isinstance(all_types, list) and len(all_types) > 1:  # Q4_K_M: Q6_K on some layers
                t = "Q6_K" if il in q6k.get(name, []) else next(x for x in all_types if x != "Q6_K")
            out.append((f"blk.{il}.{name}", ne, t))
    return out


def _write_sparse(entry: dict, path: Path) -> None:
    import gguf

    s = entry["shape"]
    w = gguf.GGUFWriter(str(path), "gemma3")
    a = "gemma3"
    w.add_uint32(f"{a}.context_length", s["n_ctx_train"])
    w.add_uint32(f"{a}.embedding_length", s["n_embd"])
    w.add_uint32(f"{a}.block_count", s["n_layer"])
    w.add_uint32(f"{a}.feed_forward_length", s["n_ff"])
    w.add_uint32(f"{a}.attention.head_count", s["n_head"])
    w.add_uint32(f"{a}.attention.head_count_kv", s["n_head_kv"])
    w.add_uint32(f"{a}.attention.key_length", s["head_dim"])
    w.add_uint32(f"{a}.attention.value_length", s["head_dim"])
    w.add_uint32(f"{a}.attention.sliding_window", s["swa"])
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_file_type(entry["file_type"])
    total = 0
    for name, ne, t in _tensor_list(entry):
        qt = gguf.GGMLQuantizationType[t]
        block, size = gguf.GGML_QUANT_SIZES[qt]
        nbytes = ne[0] // block * size * int(np.prod(ne[1:], dtype=np.int64))
        w.add_tensor_info(name, tuple(reversed(ne)), np.dtype(np.float32), nbytes, raw_dtype=qt)
        total += (nbytes + 31) // 32 * 32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    fout.truncate(fout.tell() + total)
    fout.close()
    w.fout = None


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cuda_alloc")
    out = {}
    for name in sorted({c["model"] for c in CASES}):
        out[name] = root / name
        _write_sparse(MANIFEST[name], out[name])
    return out


def test_sparse_headers_match_the_manifest(sparse: dict[str, Path]) -> None:
    from gemma3_pack._gguf._reader import open_gguf

    for name, path in sparse.items():
        m = MANIFEST[name]
        with open_gguf(path) as h:
            assert len(h.tensors) == m["n_tensors"]
            assert sum(int(t.nbytes or 0) for t in h.tensors) == m["tensor_bytes"]
            per_layer = [0] * m["shape"]["n_layer"]
            for t in h.tensors:
                if t.name.startswith("blk."):
                    per_layer[int(t.name.split(".")[1])] += int(t.nbytes or 0)
            assert per_layer == m["layer_bytes"]


# ---------------------------------------------------------------------------------------------
# every measured case


def _plan_case(case: dict, path: Path):
    p = case["params"]
    return plan_gpu(
        path,
        [H200],
        ctx=p["n_ctx"],
        ngl=p["ngl"],
        parallel=p["n_seq"],
        kv_type=p["type_k"],
        swa_full=bool(p["swa_full"]),
        unified=bool(p["kv_unified"]),
        flash_attn=p["fa"] == "on",
        n_ubatch=p["n_ubatch"],
        vision=False,
    )


def _within(planned: int, measured: int, tolerance: float) -> bool:
    return abs(planned - measured) <= tolerance * measured


@pytest.mark.parametrize("case", CASES, ids=[f"{c['run']}:{c['name']}" for c in CASES])
def test_plan_gpu_reproduces_the_h200_case(case: dict, sparse: dict[str, Path]) -> None:
    """Weights and KV per device to the byte; compute buffers within 2 %."""
    plan = _plan_case(case, sparse[case["model"]])
    b = case["breakdown"]
    gpu, host = plan.device("CUDA0"), plan.device("host")
    cuda = b["CUDA0"]
    assert gpu.weights == cuda["model"]
    assert gpu.kv == cuda["context"]
    assert host.weights == b.get("CPU_Mapped", {}).get("model", 0)
    assert host.kv == b.get("CPU", {}).get("context", 0)
    assert _within(gpu.compute, cuda["compute"], 0.02), (gpu.compute, cuda["compute"])
    assert _within(host.compute, b["CUDA_Host"]["compute"], 0.02), (
        host.compute,
        b["CUDA_Host"]["compute"],
    )
    outputs = [x["mib"] for x in case["buffers_mib"] if x["kind"] == "output"]
    assert host.output == round(sum(outputs) * 2**20)
    layers = int(case["offloaded_layers"].split("/")[0])
    assert plan.ngl == min(case["params"]["ngl"], layers) == layers


def test_flash_attention_compute_is_exact(sparse: dict[str, Path]) -> None:
    """With flash attention the device's and host's compute buffers are exact, not just close."""
    for case in CASES:
        if case["params"]["fa"] != "on":
            continue
        plan = _plan_case(case, sparse[case["model"]])
        assert plan.device("CUDA0").compute == case["breakdown"]["CUDA0"]["compute"], case["name"]
        if case["params"]["type_k"] == "f16":
            host = case["breakdown"]["CUDA_Host"]["compute"]
            assert plan.device("host").compute == host, case["name"]


# ---------------------------------------------------------------------------------------------
# placement rules


def test_layer_split_follows_llama_cpp() -> None:
    # 27B (62 blocks + output) with -ngl 40: blocks 23..61 and the output layer on the GPU
    where = layer_devices(62, 40, [1.0])
    assert where[:23] == [-1] * 23 and where[23:] == [0] * 40
    # two equal cards, everything offloaded: 63 layers cut at 31.5 -> 32 / 31
    where = layer_devices(62, 63, [1.0, 1.0])
    assert where.count(0) == 32 and where.count(1) == 31 and where[-1] == 1
    # a 3:1 split, in float32 like llama.cpp
    where = layer_devices(34, 35, [3.0, 1.0])
    assert where.count(0) == 27 and where.count(1) == 8


def test_two_gpus_share_layers_and_the_output_goes_last(sparse: dict[str, Path]) -> None:
    path = sparse["gemma3-27b-q4_0.gguf"]
    one = plan_gpu(path, ["80GB"], ctx=32768, vision=False)
    two = plan_gpu(path, ["24GB", "24GB"], ctx=32768, vision=False)
    assert two.ngl == 63 and two.fits
    d0, d1 = two.device("CUDA0"), two.device("CUDA1")
    assert d1.output_layer and not d0.output_layer
    assert d0.weights + d1.weights == one.device("CUDA0").weights
    assert d0.kv + d1.kv == one.device("CUDA0").kv
    assert "-ts 24576,24576" in two.commands["llama-server"]


def test_ngl_defaults_to_the_most_that_fit(sparse: dict[str, Path]) -> None:
    path = sparse["gemma3-27b-q4_0.gguf"]
    p = plan_gpu(path, ["12GB"], ctx=8192, vision=False)
    assert p.ngl_auto and 0 < p.ngl < 63 and p.fits
    assert p.device("CUDA0").total + GPU_RESERVE <= 12 * 2**30
    more = plan_gpu(path, ["12GB"], ctx=8192, ngl=p.ngl + 1, vision=False)
    assert not more.fits
    assert f"-ngl {p.ngl} " in p.commands["llama-server"]
    assert f"PARAMETER num_gpu {p.ngl}" in p.commands["modelfile"]
    assert any("partial offload" in n for n in p.notes)


def test_projector_on_the_gpu_or_the_host() -> None:
    on = plan_gpu("gemma3-4b-it", ["16GB"], ctx=8192)
    off = plan_gpu("gemma3-4b-it", ["16GB"], ctx=8192, mmproj_offload=False)
    assert on.device("CUDA0").mmproj == off.device("host").mmproj == on.base.mmproj > 8 * 10**8
    assert on.device("host").mmproj == off.device("CUDA0").mmproj == 0
    assert "--no-mmproj-offload" in off.commands["llama-server"]


def test_max_ctx_is_the_largest_that_fits() -> None:
    p = plan_gpu("gemma3-12b-it", ["24GB"], quant="Q4_K_M", vision=False)
    assert p.max_ctx % 256 == 0 and 0 < p.max_ctx <= 131072
    if p.max_ctx < 131072:
        over = plan_gpu(
            "gemma3-12b-it", ["24GB"], quant="Q4_K_M", ctx=p.max_ctx + 256, ngl=p.ngl, vision=False
        )
        assert not over.fits
    at = plan_gpu("gemma3-12b-it", ["24GB"], quant="Q4_K_M", ctx=p.max_ctx, ngl=p.ngl, vision=False)
    assert at.fits


def test_fit_gpus_picks_the_best_quant() -> None:
    from gemma3_pack._memory._plan import COMMON_QUANTS

    fits = {f.variant: f for f in fit_gpus("24GB")}
    big = fits["gemma3-27b-it"]
    assert big.quant is not None and big.quant not in ("Q8_0", "BF16")  # 28 / 54 GB of weights
    better = COMMON_QUANTS[COMMON_QUANTS.index(big.quant) + 1]
    assert fit_gpus("24GB", "gemma3-27b-it", quant=better)[0].quant is None
    assert big.total + GPU_RESERVE <= 24 * 2**30
    assert fits["gemma3-1b-it"].quant == "BF16"
    assert fits["gemma3-27b-it-qat"].quant == "Q4_0"


@pytest.mark.parametrize(
    ("spec", "value"),
    [("24GB", 24 * 2**30), ("80GiB", 80 * 2**30), ("rtx4090", 24564 * 2**20), ("512MB", 2**29)],
)
def test_parse_gpu(spec: str, value: int) -> None:
    assert parse_gpu(spec) == value


@pytest.mark.parametrize("spec", ["", "lots", "24XB", "-1GB", "9" * 400, "1e30GB", "0.5KB"])
def test_parse_gpu_refuses(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_gpu(spec)


def test_aliases_are_whole_mib() -> None:
    assert all(v % 2**20 == 0 and 4 * 2**30 < v < 2**38 for v in GPU_ALIASES.values())


def test_gpu_table_is_monotonic() -> None:
    """More memory never fits less context, vision never fits more, and 27B Q8_0 (28.7 GB of
    weights) fits no card below 48 GB."""
    rows = [r for r in gpu_table().splitlines()[2:]]

    def ctx(cell: str) -> int:
        return 0 if cell == "-" else int(cell.rstrip("K")) * 1024

    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][2:]
        text = [ctx(c.split(" / ")[0]) for c in cells]
        assert text == sorted(text), row
        for c in cells:
            if " / " in c:
                t, v = (ctx(x) for x in c.split(" / "))
                assert v <= t, row
    q8 = next(r for r in rows if r.startswith("| 27B | Q8_0"))
    assert re.match(r"\| 27B \| Q8_0 \| (- / - \| ){4}\d", q8), q8


# ---------------------------------------------------------------------------------------------
# the command


def test_cli_plan_gpu_json(cli, sparse: dict[str, Path]) -> None:
    path = sparse["gemma3-27b-q4_0.gguf"]
    r = cli("plan", str(path), "--ctx", "32768", "--gpu", "24GB", "--ngl", "40", "--json")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    case = next(c for c in CASES if c["name"] == "27b_q4_0_c32768_fa_ngl40")
    assert d["ngl"] == 40
    assert d["devices"]["CUDA0"]["weights"] == case["breakdown"]["CUDA0"]["model"]
    assert d["devices"]["CUDA0"]["kv"] == case["breakdown"]["CUDA0"]["context"]
    assert d["devices"]["host"]["kv"] == case["breakdown"]["CPU"]["context"]
    for dev in d["devices"].values():
        parts = ("weights", "kv", "compute", "output", "mmproj", "mmproj_compute")
        assert dev["total"] == sum(dev[k] for k in parts)
    assert "cpu_repack" not in d
    assert d["commands"]["llama-server"].startswith(f"llama-server -m {path} -ngl 40 -c 32768")


def test_cli_plan_gpu_text(cli, sparse: dict[str, Path]) -> None:
    path = sparse["gemma3-4b-q4_0.gguf"]
    r = cli("plan", str(path), "--gpu", "rtx4090", "--ctx", "32768")
    assert r.code == 0, r.stderr
    assert "CUDA0" in r.stdout and "host" in r.stdout and "llama-server" in r.stdout
    assert "repack" not in r.stdout  # the CPU-only line is not for GPU users
    assert "PARAMETER num_ctx 32768" in r.stdout


def test_cli_plan_gpu_search(cli) -> None:
    r = cli("plan", "--gpu", "16GB", "--json")
    assert r.code == 0, r.stderr
    fits = {f["variant"]: f for f in json.loads(r.stdout)}
    assert fits["gemma3-4b-it"]["quant"] == "BF16" and fits["gemma3-4b-it"]["max_ctx"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("gemma3-4b-it", "--gpu", "lots"), "cannot read --gpu"),
        (("gemma3-4b-it", "--gpu", "24GB", "--ngl", "-3"), "--ngl"),
        (("gemma3-4b-it", "--gpu", "24GB", "--ubatch", "0"), "--ubatch"),
        (("gemma3-4b-it", "--gpu", "24GB", "--parallel", "300"), "256"),
    ],
)
def test_cli_plan_gpu_bad_input(cli, args: tuple[str, ...], needle: str) -> None:
    assert_one_line_error(cli("plan", *args), needle)


def test_fits_on_table_in_docs_is_generated_by_plan() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "plan.md"
    block = re.search(r"<!-- gpu-table -->\n(.*?)\n<!-- /gpu-table -->", docs.read_text(), re.S)
    assert block, "docs/plan.md lost its gpu-table markers"
    assert block.group(1) == gpu_table(), (
        "docs/plan.md fits-on table drifted: paste `gemma3-pack plan --markdown --gpu 8GB "
        "--gpu 12GB --gpu 16GB --gpu 24GB --gpu 48GB --gpu 80GB` between the gpu-table markers"
    )


def test_num_ctx_auto_on_a_gpu_is_the_gpu_plans_largest_context(cli) -> None:
    from gemma3_pack._memory._plan_gpu import auto_context

    n = auto_context("gemma3-12b-it", gpu="rtx4090")
    assert n == fit_gpus("rtx4090", "gemma3-12b-it")[0].max_ctx
    p = plan_gpu("gemma3-12b-it", "rtx4090", ctx=n, ngl=49)
    assert p.fits and p.max_ctx == n
    r = cli("modelfile", "gemma3-12b-it", "--num-ctx", "auto", "--gpu", "rtx4090")
    assert r.code == 0, r.stderr
    assert f"PARAMETER num_ctx {n}\n" in r.stdout
    with pytest.raises(UsageError):
        auto_context("gemma3-12b-it", "16GB", gpu="24GB")
    assert_one_line_error(
        cli("modelfile", "gemma3-27b-it", "--num-ctx", "auto", "--gpu", "8GB"), "does not fit"
    )


def test_read_ggufs_once_reads_each_header_once(
    sparse: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning a file for eight cards (the model card's table) reads its header once inside
    read_ggufs_once, with the same results; outside it, every plan reads the file again."""
    from gemma3_pack._gguf import _reader
    from gemma3_pack._memory._plan import read_ggufs_once
    from gemma3_pack._memory._plan_gpu import TABLE_CARDS

    path = next(iter(sparse.values()))
    opened: list[Path] = []
    real = _reader.open_gguf

    def counting(p, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(Path(p))
        return real(p, *args, **kwargs)

    monkeypatch.setattr(_reader, "open_gguf", counting)
    plain = [fit_gpus(card, path)[0] for card in TABLE_CARDS]
    assert len(opened) >= 2 * len(TABLE_CARDS)
    opened.clear()
    with read_ggufs_once():
        once = [fit_gpus(card, path)[0] for card in TABLE_CARDS]
    assert once == plain
    assert opened == [path, path]  # the header for the plan, the tensor table for placing
    opened.clear()
    fit_gpus(TABLE_CARDS[0], path)
    assert len(opened) >= 2  # outside the block: read again
