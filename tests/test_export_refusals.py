"""Every input the exporter refuses: one line, exit 2, no traceback, nothing written.

The checkpoints here are tiny hand-made folders (a 2-layer, 64-wide Gemma 3 with the real
tokenizer where one is needed), so each case costs one CLI start-up, not an export.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from _tiny_ckpt import TINY_CONFIG, make_ckpt, tiny_tensors
from conftest import assert_one_line_error
from safetensors.numpy import save_file

from gemma3_pack import (
    CheckpointError,
    InputNotFound,
    InsufficientDisk,
    MissingDependency,
    NotGemma3,
    UsageError,
    export,
)
from gemma3_pack._export._readers import _source


@pytest.fixture
def tiny(tmp_path: Path, tokenizer_dir: Path) -> Path:
    return make_ckpt(tmp_path / "tiny", tokenizer_dir)


def test_tiny_checkpoint_exports(tiny: Path, tmp_path: Path) -> None:
    """The control case: the same folder, unbroken, exports (so the refusals below are real)."""
    res = export(tiny, output_dir=tmp_path / "out", quants="F32", name="tiny", progress=False)
    import gguf

    r = gguf.GGUFReader(res.models[0].path)
    norm = next(t for t in r.tensors if t.name == "output_norm.weight")
    assert np.array_equal(np.asarray(norm.data), np.ones(64, np.float32))  # 0 + 1
    q = next(t for t in r.tensors if t.name == "blk.0.attn_q.weight")
    assert np.array_equal(
        np.asarray(q.data), tiny_tensors()["model.layers.0.self_attn.q_proj.weight"]
    )
    assert res.variant is None  # 64 wide: no published size, so general.base_model is not claimed


def _cli_refuses(cli, src: Path, out: Path, *needles: str, extra: tuple[str, ...] = ()) -> None:
    res = cli("export", str(src), "-o", str(out), "-q", "F16", *extra)
    assert_one_line_error(res, *needles)
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_not_gemma3_names_what_it_is(cli, tiny: Path, tmp_path: Path) -> None:
    cfg = dict(TINY_CONFIG, architectures=["LlamaForCausalLM"], model_type="llama")
    (tiny / "config.json").write_text(json.dumps(cfg))
    _cli_refuses(cli, tiny, tmp_path / "o", "LlamaForCausalLM", "not Gemma 3")


def test_prequantized_weights_refused(cli, tiny: Path, tmp_path: Path) -> None:
    cfg = dict(
        TINY_CONFIG, quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True}
    )
    (tiny / "config.json").write_text(json.dumps(cfg))
    _cli_refuses(cli, tiny, tmp_path / "o", "bitsandbytes", "merge to 16-bit first")


def test_attention_softcap_refused(cli, tiny: Path, tmp_path: Path) -> None:
    (tiny / "config.json").write_text(json.dumps(dict(TINY_CONFIG, attn_logit_softcapping=50.0)))
    _cli_refuses(cli, tiny, tmp_path / "o", "attn_logit_softcapping", "llama.cpp")


def test_pickle_only_checkpoint_never_unpickled(cli, tiny: Path, tmp_path: Path) -> None:
    (tiny / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    # a pickle that would create `marker` if anything loaded it
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (tiny / "pytorch_model.bin").write_bytes(payload)
    _cli_refuses(cli, tiny, tmp_path / "o", "pytorch_model.bin", "never unpickles")
    assert not marker.exists()


@pytest.mark.parametrize("cut", [4, 100, -10])
def test_truncated_or_corrupt_safetensors(cli, tiny: Path, tmp_path: Path, cut: int) -> None:
    f = tiny / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:cut])  # header cut short, inside the header, or data cut short
    _cli_refuses(cli, tiny, tmp_path / "o", "model.safetensors", "corrupt or truncated")


def test_index_pointing_outside_the_folder(cli, tiny: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(tiny / "model.safetensors", outside)
    index = {"metadata": {}, "weight_map": {"model.norm.weight": "../elsewhere.safetensors"}}
    (tiny / "model.safetensors.index.json").write_text(json.dumps(index))
    _cli_refuses(cli, tiny, tmp_path / "o", "outside the checkpoint folder")


def test_symlinked_shards_with_an_index_export(tiny: Path, tmp_path: Path) -> None:
    """The Hugging Face cache layout: every file a symlink into a blob store outside the folder.

    The index names files inside the folder; that they resolve elsewhere is how the cache works,
    so the export must go through (it used to be refused as "points outside the checkpoint").
    """
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for f in tiny.iterdir():
        target = blobs / f"blob-{f.name}"
        shutil.move(f, target)
        (snapshot / f.name).symlink_to(Path("..") / "blobs" / target.name)
    names = [n for n, _ in _st_names(blobs / "blob-model.safetensors")]
    index = {"metadata": {}, "weight_map": dict.fromkeys(names, "model.safetensors")}
    (blobs / "blob-index").write_text(json.dumps(index))
    (snapshot / "model.safetensors.index.json").symlink_to(Path("..") / "blobs" / "blob-index")
    before = {p.name: p.read_bytes() for p in blobs.iterdir()}
    res = export(snapshot, output_dir=tmp_path / "out", quants="F16", name="tiny", progress=False)
    assert res.models[0].path.is_file()
    assert {p.name: p.read_bytes() for p in blobs.iterdir()} == before  # inputs untouched
    assert all(p.is_symlink() for p in snapshot.iterdir())


def _st_names(path: Path) -> list[tuple[str, object]]:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return [(k, None) for k in f.keys()]  # noqa: SIM118 - safe_open has no __iter__


def test_unknown_quant_lists_valid_ones(cli, tiny: Path, tmp_path: Path) -> None:
    res = cli("export", str(tiny), "-o", str(tmp_path / "o"), "-q", "Q4_K_M,Q7_X")
    assert_one_line_error(res, "Q7_X", "Q4_K_M", "Q8_0", "BF16")


def test_missing_tokenizer_offers_tokenizer_from(cli, tmp_path: Path, tokenizer_dir: Path) -> None:
    ck = make_ckpt(tmp_path / "notok")
    _cli_refuses(cli, ck, tmp_path / "o", "tokenizer.model", "--tokenizer-from")
    res = cli(
        "export",
        str(ck),
        "-o",
        str(tmp_path / "o2"),
        "-q",
        "F16",
        "--quiet",
        "--tokenizer-from",
        str(tokenizer_dir),
    )
    assert res.code == 0, res.stderr
    assert (tmp_path / "o2" / "notok-F16.gguf").is_file()


def test_missing_source(cli, tmp_path: Path) -> None:
    res = cli("export", str(tmp_path / "nope"), "-o", str(tmp_path / "o"))
    assert_one_line_error(res, "not found")


def test_lora_base_not_found(cli, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": 4,
                "lora_alpha": 8,
                "base_model_name_or_path": str(tmp_path / "gone"),
            }
        )
    )
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros(
                (4, 64), np.float32
            )
        },
        str(adapter / "adapter_model.safetensors"),
    )
    _cli_refuses(cli, adapter, tmp_path / "o", "base model", "--base")


def test_disk_preflight_says_how_much(monkeypatch, tiny: Path, tmp_path: Path) -> None:
    import gemma3_pack._export as ex

    monkeypatch.setattr(ex, "_free_bytes", lambda path: 1000)
    with pytest.raises(
        InsufficientDisk, match=r"needs about .* GB \(\d+ bytes\), 0.00 GB are free"
    ):
        export(tiny, output_dir=tmp_path / "o", quants="F16", progress=False)
    assert not (tmp_path / "o").exists()  # the folder made for the disk check is removed again


def test_k_quant_without_llama_cpp_names_the_extra(monkeypatch, tiny: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingDependency, match=r"pip install 'gemma3-pack\[quantize\]'"):
        export(tiny, output_dir=tmp_path / "o", quants="Q8_0,Q4_K_M", progress=False)
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_gated_repo_maps_to_licence_hint(monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    calls = []

    def gated(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        import httpx

        request = httpx.Request("GET", f"https://huggingface.co/api/models/{repo_id}")
        raise GatedRepoError("403 gated", response=httpx.Response(403, request=request))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(CheckpointError, match=r"accept the Gemma licence .* then `hf auth login`"):
        _source.fetch("google/gemma-3-4b-it")
    assert calls[0][0] == "google/gemma-3-4b-it"
    assert "tokenizer.model" in calls[0][1]["allow_patterns"]
    assert "*.safetensors" in calls[0][1]["allow_patterns"]


def test_repo_not_found_and_offline(monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, **kwargs):
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(InputNotFound, match="HF_HUB_OFFLINE"):
        _source.fetch("someone/gemma-ft")


def test_error_classes_for_library_callers(tiny: Path, tmp_path: Path) -> None:
    (tiny / "config.json").write_text(
        json.dumps(dict(TINY_CONFIG, architectures=["Qwen2ForCausalLM"], model_type="qwen2"))
    )
    with pytest.raises(NotGemma3):
        export(tiny, output_dir=tmp_path / "o", quants="F16", progress=False)
    with pytest.raises(UsageError):
        export(tiny, output_dir=tmp_path / "o", quants="nonsense", progress=False)


def test_cli_json_and_default_folder(cli, tiny: Path, tmp_path: Path) -> None:
    """Success through the CLI: --json is the result object, the folder defaults to ./<name>-gguf."""
    res = cli("export", str(tiny), "-q", "F16,Q8_0", "--json", cwd=tmp_path)
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert Path(doc["output_dir"]) == tmp_path / "tiny-gguf"
    assert [Path(m["path"]).name for m in doc["models"]] == ["tiny-F16.gguf", "tiny-Q8_0.gguf"]
    assert doc["variant"] is None and doc["mmproj"] is None
    table = cli("export", str(tiny), "-q", "F16", "-o", str(tmp_path / "t"))
    assert table.code == 0, table.stderr
    assert "tiny-F16.gguf  F16" in table.stdout
    assert f"ollama create tiny -f {tmp_path / 't' / 'Modelfile'}" in table.stdout


def write_imatrix(path: Path, entries: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """A GGUF imatrix as llama-imatrix writes it: <name>.in_sum2 and <name>.counts (F32)."""
    import gguf

    w = gguf.GGUFWriter(path, arch="imatrix")
    w.add_string("general.type", "imatrix")
    for name, (sums, counts) in entries.items():
        w.add_tensor(name + ".in_sum2", sums.astype(np.float32))
        w.add_tensor(name + ".counts", counts.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_imatrix_is_normalised_like_llama_quantize(tmp_path: Path) -> None:
    from gemma3_pack._export._quantize import load_imatrix

    f = tmp_path / "imatrix.gguf"
    write_imatrix(
        f,
        {
            "blk.0.ffn_down.weight": (np.arange(1, 129, dtype=np.float32), np.array([4.0])),
            "blk.1.attn_q.weight": (np.full(64, 3.0), np.array([0.0])),
        },
    )
    m = load_imatrix(f)
    assert all(v.dtype == np.float32 for v in m.values())  # arrays, not lists of Python floats
    assert (
        m["blk.0.ffn_down.weight"].tolist() == (np.arange(1, 129) / 4.0).astype(np.float32).tolist()
    )
    assert m["blk.1.attn_q.weight"].tolist() == [1.0] * 64  # count 0 -> 1, as quantize.cpp does


@pytest.mark.llama
def test_imatrix_reaches_llama_quantizer(tiny: Path, tmp_path: Path) -> None:
    """Q4_0 with an importance matrix quantizes ffn_down differently (weighted rounding)."""
    rng = np.random.default_rng(1)
    f = tmp_path / "imatrix.gguf"
    write_imatrix(
        f,
        {
            f"blk.{i}.{n}.weight": (rng.random(k) * 100 + 1e-3, np.array([1.0]))
            for i in range(2)
            for n, k in (
                ("ffn_down", 128),
                ("ffn_up", 64),
                ("ffn_gate", 64),
                ("attn_q", 64),
                ("attn_k", 64),
                ("attn_v", 64),
                ("attn_output", 64),
            )
        },
    )
    plain = export(tiny, output_dir=tmp_path / "a", quants="Q4_0", name="t", progress=False)
    weighted = export(
        tiny, output_dir=tmp_path / "b", quants="Q4_0", name="t", imatrix=f, progress=False
    )
    assert plain.models[0].size == weighted.models[0].size
    assert plain.models[0].sha256 != weighted.models[0].sha256
