"""Every quant type of the streamed export against ``llama-quantize`` run on the BF16 GGUF.

The export writes all types in one pass, quantizing with ggml's kernels (``gemma3_pack._export._ggml``)
and llama.cpp's choice of type per tensor (``gemma3_pack._quants.tensor_types``). The reference is
the classic route: our BF16 file (itself byte-identical to ``convert_hf_to_gguf.py``'s, see
``test_export.py``) quantized by llama.cpp's own ``llama-quantize`` program, built from the same
llama.cpp commit as the installed llama-cpp-python (``_engines_llama``). Every tensor must carry the
same type and the same bytes; fixtures: the real 270M weights (640-wide rows: the fallbacks), a
1B-shaped checkpoint (1152-wide, GQA 4) and the 4B-shaped one (2560-wide, GQA 2), with and without
an importance matrix, and the QAT recipe.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import _assets_ckpt
import _engines_llama
import _oracle
import numpy as np
import pytest

from gemma3_pack import export
from gemma3_pack._quants import GGML, QUANTS, VALID_TYPES

LLAMA_TYPES = [q for q in VALID_TYPES if q not in ("F32", "F16", "BF16")]


def llama_quantize(src: Path, dst: Path, quant: str, *options: str) -> Path:
    """``llama-quantize [options] src dst QUANT 2``; the file it wrote."""
    exe = _engines_llama.llama_bin("llama-quantize")
    res = subprocess.run(
        [str(exe), *options, str(src), str(dst), quant, "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return dst


def assert_same_tensors(ref: Path, ours: Path) -> None:
    """Same tensor set, and per tensor the same type, shape and bytes (llama-quantize writes them
    in its own sorted order; ours keep the converter's, so order is not compared)."""
    diff = _oracle.compare_gguf(ref, ours)
    assert diff["tensors_only_a"] == [] and diff["tensors_only_b"] == []
    assert diff["tensors_differ"] == {}, dict(list(diff["tensors_differ"].items())[:4])
    assert diff["keys_differ"].keys() <= {"general.name"}, diff["keys_differ"]


def write_imatrix(path: Path, entries: dict[str, np.ndarray], *, chunks: int = 10) -> Path:
    """A GGUF imatrix as llama-imatrix writes it (in_sum2 + counts, and the metadata
    llama-quantize requires)."""
    import gguf

    w = gguf.GGUFWriter(path, arch="imatrix")
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", ["synthetic"])
    w.add_uint32("imatrix.chunk_count", chunks)
    w.add_uint32("imatrix.chunk_size", 512)
    for name, sums in entries.items():
        w.add_tensor(name + ".in_sum2", sums.astype(np.float32))
        w.add_tensor(name + ".counts", np.array([chunks * 512], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def imatrix_for(gguf_path: Path, path: Path, seed: int = 5) -> Path:
    """Random positive importances for every 2-D weight of ``gguf_path`` (row width each)."""
    rng = np.random.default_rng(seed)
    _keys, tensors = _oracle.gguf_summary(gguf_path)
    entries = {
        name: rng.random(t["shape"][0]).astype(np.float32) * 50 + 0.01
        for name, t in tensors.items()
        if len(t["shape"]) == 2 and name != "token_embd.weight"
    }
    return write_imatrix(path, entries)


def hf_checkpoint_1b_shaped(*, layers: int = 2) -> Path:
    """Gemma 3 1B widths (1152 wide, 4 heads / 1 KV head, 6912 FFN, 262144 tokens), ``layers``
    text layers, random bf16 weights (fixed seed), the 270M's tokenizer."""
    key = f"g3-1b-shaped-l{layers}-v{_assets_ckpt.FIXTURE_VERSION}"
    hidden, ffn, heads, kv, head_dim, vocab = 1152, 6912, 4, 1, 256, 262144

    def build(folder: Path) -> None:
        import torch

        gen = torch.Generator().manual_seed(1)

        def rand(*shape: int, scale: float = 0.02) -> Any:
            return (torch.randn(*shape, generator=gen) * scale).to(torch.bfloat16)

        p = "model."
        tensors: dict[str, Any] = {p + "embed_tokens.weight": rand(vocab, hidden)}
        for i in range(layers):
            lp = f"{p}layers.{i}."
            tensors |= {
                lp + "self_attn.q_proj.weight": rand(heads * head_dim, hidden),
                lp + "self_attn.k_proj.weight": rand(kv * head_dim, hidden),
                lp + "self_attn.v_proj.weight": rand(kv * head_dim, hidden),
                lp + "self_attn.o_proj.weight": rand(hidden, heads * head_dim),
                lp + "self_attn.q_norm.weight": rand(head_dim, scale=0.1),
                lp + "self_attn.k_norm.weight": rand(head_dim, scale=0.1),
                lp + "mlp.gate_proj.weight": rand(ffn, hidden),
                lp + "mlp.up_proj.weight": rand(ffn, hidden),
                lp + "mlp.down_proj.weight": rand(hidden, ffn),
                lp + "input_layernorm.weight": rand(hidden, scale=0.1),
                lp + "post_attention_layernorm.weight": rand(hidden, scale=0.1),
                lp + "pre_feedforward_layernorm.weight": rand(hidden, scale=0.1),
                lp + "post_feedforward_layernorm.weight": rand(hidden, scale=0.1),
            }
        tensors[p + "norm.weight"] = rand(hidden, scale=0.1)
        _assets_ckpt._save_shards(folder, tensors, 1)
        config = {
            **_assets_ckpt.TEXT_CONFIG_270M,
            "hidden_size": hidden,
            "intermediate_size": ffn,
            "num_hidden_layers": layers,
            "layer_types": ["sliding_attention"] * layers,
        }
        _assets_ckpt._write_json(folder / "config.json", config)
        _assets_ckpt._write_tokenizer(folder)

    return _assets_ckpt._cached(key, "gemma-3-1b-it", build)


def _export(ckpt: Path, out: Path, quants: list[str], **kw: Any) -> dict[str, Path]:
    res = export(ckpt, output_dir=out, quants=",".join(quants), name="g", progress=False, **kw)
    return {m.quant: m.path for m in res.models}


# ---------------------------------------------------------------------------------------------
# 270M, real weights: every llama.cpp type, one pass


@pytest.fixture(scope="module")
def all_270m(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("q270") / "o"
    return _export(_assets_ckpt.hf_checkpoint_270m(), out, ["BF16", *LLAMA_TYPES])


@pytest.mark.slow
@pytest.mark.llama_server
@pytest.mark.parametrize("quant", LLAMA_TYPES)
def test_270m_every_type_equals_llama_quantize(
    all_270m: dict[str, Path], quant: str, tmp_path: Path
) -> None:
    ref = llama_quantize(all_270m["BF16"], tmp_path / "ref.gguf", quant)
    assert_same_tensors(ref, all_270m[quant])
    with open(all_270m[quant], "rb") as fh:
        assert fh.read(4) == b"GGUF"
    keys, _ = _oracle.gguf_summary(all_270m[quant])
    assert keys["general.file_type"] == QUANTS[quant].ftype


@pytest.mark.slow
def test_one_pass_leaves_only_the_outputs(all_270m: dict[str, Path]) -> None:
    folder = next(iter(all_270m.values())).parent
    names = sorted(p.name for p in folder.iterdir())
    expected = {p.name for p in all_270m.values()} | {
        "Modelfile",
        "README.md",
        "SHA256SUMS",
        "export.json",
    }
    assert set(names) == expected  # no intermediate, no temp file
    manifest = json.loads((folder / "export.json").read_text())
    assert [m["quant"] for m in manifest["models"]] == ["BF16", *LLAMA_TYPES]


@pytest.mark.slow
@pytest.mark.llama_server
@pytest.mark.parametrize("quant", ["Q4_0", "Q5_0", "IQ4_NL", "IQ4_XS", "Q4_K_M", "Q2_K"])
def test_270m_with_imatrix_equals_llama_quantize(
    all_270m: dict[str, Path], quant: str, tmp_path: Path
) -> None:
    imx = imatrix_for(all_270m["BF16"], tmp_path / "imatrix.gguf")
    ours = _export(_assets_ckpt.hf_checkpoint_270m(), tmp_path / "o", [quant], imatrix=imx)[quant]
    ref = llama_quantize(all_270m["BF16"], tmp_path / "ref.gguf", quant, "--imatrix", str(imx))
    assert_same_tensors(ref, ours)
    plain = all_270m[quant]
    assert _oracle.gguf_summary(plain)[1] != _oracle.gguf_summary(ours)[1]  # the weights count


# ---------------------------------------------------------------------------------------------
# 1B- and 4B-shaped checkpoints: the real row widths and head counts


@pytest.mark.slow
@pytest.mark.llama_server
@pytest.mark.parametrize(
    ("shape", "quants"),
    [
        ("1b", ["Q4_K_M", "Q5_K_S", "Q3_K_L", "IQ4_XS", "Q2_K", "Q8_0"]),
        ("4b", ["Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q4_K_S", "IQ4_XS", "Q4_0", "Q8_0"]),
    ],
)
def test_shaped_checkpoints_equal_llama_quantize(
    shape: str, quants: list[str], tmp_path: Path
) -> None:
    ckpt = (
        hf_checkpoint_1b_shaped()
        if shape == "1b"
        else _assets_ckpt.hf_checkpoint_4b_shaped(layers=2)
    )
    ours = _export(ckpt, tmp_path / "o", ["BF16", *quants])
    for q in quants:
        ref = llama_quantize(ours["BF16"], tmp_path / f"ref-{q}.gguf", q)
        assert_same_tensors(ref, ours[q])
        ref.unlink()


@pytest.mark.slow
@pytest.mark.llama_server
@pytest.mark.parametrize("quant", ["Q4_0", "Q4_K_M"])
def test_qat_recipe_equals_llama_quantize(quant: str, tmp_path: Path) -> None:
    ckpt = _assets_ckpt.hf_checkpoint_4b_shaped(layers=2)
    ours = _export(ckpt, tmp_path / "o", [quant], qat=True, keep_bf16=True)
    assert set(ours) == {quant, "BF16"}  # --keep-bf16 adds the float file to the same pass
    ref = llama_quantize(
        ours["BF16"],
        tmp_path / "ref.gguf",
        quant,
        "--token-embedding-type",
        "q8_0",
        "--output-tensor-type",
        "q8_0",
    )
    assert_same_tensors(ref, ours[quant])
    _, tensors = _oracle.gguf_summary(ours[quant])
    assert tensors["token_embd.weight"]["type"] == "Q8_0"


# ---------------------------------------------------------------------------------------------
# ggml's kernels vs the numpy ports kept for installs without llama-cpp-python


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_ggml_and_gguf_py_give_the_same_blocks(qtype: str) -> None:
    import gguf

    from gemma3_pack._export._ggml import quantize_rows
    from gemma3_pack._export._readers._open import open_checkpoint

    ck = open_checkpoint(_assets_ckpt.hf_checkpoint_270m())
    name = next(n for n in ck.names() if n.endswith("embed_tokens.weight"))
    rows = ck.read_rows(name, 0, 20000)
    ours = quantize_rows(qtype, rows)
    ref = gguf.quants.quantize(rows, gguf.GGMLQuantizationType[qtype])
    assert ours.shape == ref.shape and np.array_equal(ours, ref)
    assert ours.shape[1] == rows.shape[1] // GGML[qtype].block * GGML[qtype].size
