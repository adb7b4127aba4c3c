"""`gemma3-pack eval` / `export --eval` against llama.cpp's own ``llama-perplexity --kl-divergence``.

Same files, same text, same windows (``-c 512 --chunks 2``): the mean KL divergence must agree
within 1 % and the top-1 agreement within half a point (llama-perplexity stores the reference's
log-probabilities as 16-bit integers, we keep float32, so they are not bit-identical). The real
270M weights are exported to BF16 (the reference) and two quant types in one pass.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import _assets_ckpt
import _engines_llama
import pytest

from gemma3_pack import export
from gemma3_pack._export._eval import builtin_text

N_CTX, CHUNKS = 512, 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("eval") / "o"
    return export(
        _assets_ckpt.hf_checkpoint_270m(),
        output_dir=out,
        quants="BF16,Q4_0,IQ4_XS",
        name="g3",
        progress=False,
        evaluate=True,
    )


def perplexity_kld(base: Path, model: Path, text: Path, work: Path) -> tuple[float, float]:
    """(mean KLD, same-top fraction) as llama-perplexity --kl-divergence prints them."""
    exe = str(_engines_llama.llama_bin("llama-perplexity"))
    common = ["-c", str(N_CTX), "--chunks", str(CHUNKS), "-t", "2", "--no-repack", "-b", "512"]
    logits = work / "base.kld"
    if not logits.exists():
        res = subprocess.run(
            [exe, "-m", str(base), "-f", str(text), "--kl-divergence-base", str(logits), *common],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run(
        [exe, "-m", str(model), "--kl-divergence-base", str(logits), "--kl-divergence", *common],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    kld = re.search(r"Mean\s+KLD:\s+([0-9.]+)", log)
    same = re.search(r"Same top p:\s+([0-9.]+)", log)
    assert kld and same, log[-3000:]
    return float(kld.group(1)), float(same.group(1)) / 100


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.llama_server
@pytest.mark.parametrize("quant", ["Q4_0", "IQ4_XS"])
def test_kld_agrees_with_llama_perplexity(exported, quant: str, tmp_path_factory) -> None:
    work = tmp_path_factory.getbasetemp() / "ppl"
    work.mkdir(exist_ok=True)
    text = work / "eval.txt"
    text.write_text(builtin_text(), "utf-8")
    paths = {m.quant: m.path for m in exported.models}
    theirs_kld, theirs_top = perplexity_kld(paths["BF16"], paths[quant], text, work)
    manifest = json.loads(exported.manifest.read_text())
    ours = {r["quant"]: r for r in manifest["eval"]["results"]}[quant]
    assert ours["kld"] == pytest.approx(theirs_kld, rel=0.01)
    assert ours["top1"] == pytest.approx(theirs_top, abs=0.005)
    assert theirs_kld > 0.001  # a real difference was measured, not two copies of one file


@pytest.mark.slow
@pytest.mark.llama
def test_export_eval_goes_into_manifest_and_card(exported) -> None:
    manifest = json.loads(exported.manifest.read_text())
    ev = manifest["eval"]
    assert ev["reference"]["quant"] == "BF16" and ev["reference"]["path"] == "g3-BF16.gguf"
    assert [r["quant"] for r in ev["results"]] == ["Q4_0", "IQ4_XS"]
    assert ev["positions"] == CHUNKS * (N_CTX - 1 - N_CTX // 2)
    for r in ev["results"]:
        size = (exported.output_dir / r["path"]).stat().st_size
        assert r["size"] == size and 4 < r["bpw"] < 9
        assert 0 < r["kld"] < 1 and 0.5 < r["top1"] < 1
    card = exported.readme.read_text()
    assert "KLD vs reference" in card
    rows = [ln for ln in card.splitlines() if ln.startswith("| `g3-")]
    by_kld = sorted(ev["results"], key=lambda r: r["kld"])
    assert [r.split("`")[1] for r in rows[-3:]] == ["g3-BF16.gguf"] + [r["path"] for r in by_kld]


@pytest.mark.slow
@pytest.mark.llama
def test_eval_command_json_and_reference_choice(exported, cli) -> None:
    paths = {m.quant: m.path for m in exported.models}
    # the reference is the file with the most bits per weight, whatever the order given
    res = cli("eval", str(paths["Q4_0"]), str(paths["BF16"]), "--chunks", "1", "--json")
    assert res.code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["reference"]["quant"] == "BF16"
    assert [r["quant"] for r in data["results"]] == ["Q4_0"]
    assert data["positions"] == N_CTX - 1 - N_CTX // 2


def test_eval_refusals(cli, tmp_path: Path) -> None:
    res = cli("eval", str(tmp_path / "missing.gguf"))
    assert res.code == 2 and "missing.gguf not found" in res.stderr
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf")
    res = cli("eval", str(bad), str(bad))
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1
