"""llama.cpp's own programs run our files: ``llama-server``, ``llama-mtmd-cli``, ``llama-quantize``.

These are the programs users run (and llama.cpp's native C++ Jinja engine is the one phone apps
embed), built from the llama.cpp tree vendored in the installed llama-cpp-python's sdist
(``tests/support/_engines_llama.py``). Two text GGUFs are served: the real PyPI 270M after ``patch_gguf``,
and a fresh ``export`` of the 270M checkpoint fixture (Q4_K_M). On each:

* ``POST /apply-template`` (the server's own chat rendering, ``--jinja``) equals Google's Jinja
  template rendered by jinja2, conversation for conversation, minus the leading ``<bos>`` the server
  strips because its tokenizer adds one;
* the tokens the server evaluates for a chat carry exactly one ``<bos>``;
* ``/v1/chat/completions`` answers;
* the sampling defaults the server reports (``/props`` and each completion's
  ``generation_settings``) are the ``general.sampling.*`` values in the file — and an unpatched file
  gets llama.cpp's own defaults instead, so the keys are what made the difference.

Vision: ``llama-mtmd-cli`` and ``llama-server --mmproj`` answer an image with an exported text GGUF
+ mmproj; the image is 256 tokens. Quantization: ``llama-quantize`` from the exported BF16 gives a
Q4_K_M byte-identical to the exporter's (llama-cpp-python's ``llama_model_quantize``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _assets_ckpt
import _engines_llama
import numpy as np
import pytest
from _assets_vision import hf_checkpoint_vision
from _conversations import CORPUS
from _engines_llama import LlamaServer, llama_bin, llama_server

from gemma3_pack import export, patch_gguf
from gemma3_pack._chat import render_chat
from gemma3_pack._family import GGUF_SAMPLING
from gemma3_pack._gguf._reader import open_gguf

# llama_server_bin (conftest) builds the three programs on first use, showing progress.
pytestmark = [
    pytest.mark.llama_server,
    pytest.mark.slow,
    pytest.mark.usefixtures("llama_server_bin"),
]

BOS = 2
SERVER_ARGS = ("--jinja", "--ctx-size", "4096", "--parallel", "1", "--seed", "1")
# llama.cpp's built-in sampling defaults (common/common.h common_params_sampling), which a GGUF
# without general.sampling.* gets.
LLAMA_CPP_DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
# GGUF key -> the name the server reports it under (tools/server/server-task.cpp to_json)
REPORTED = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_k": "top_k",
    "general.sampling.top_p": "top_p",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repeat_penalty",
}


# --------------------------------------------------------------------------------------------
# the files


@pytest.fixture(scope="module")
def patched_270m(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return patch_gguf(gguf_270m, tmp_path_factory.mktemp("patched") / "gemma3-270m.gguf").dst


@pytest.fixture(scope="module")
def exported_270m(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("export") / "g3-gguf"
    return export(
        _assets_ckpt.hf_checkpoint_270m(),
        output_dir=out,
        quants="BF16,Q4_K_M",
        name="g3",
        progress=False,
    )


@pytest.fixture(scope="module")
def exported_vision(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Text GGUF + mmproj from the vision fixture (real 270M text, small SigLIP tower)."""
    out = tmp_path_factory.mktemp("export-vision") / "out"
    return export(
        hf_checkpoint_vision("new"), output_dir=out, quants="Q8_0", ollama_format="pair",
        progress=False,
    )  # fmt: skip


def _model(kind: str, request: pytest.FixtureRequest) -> Path:
    if kind == "patched":
        return Path(request.getfixturevalue("patched_270m"))
    exported = request.getfixturevalue("exported_270m")
    return Path(next(m.path for m in exported.models if m.quant == "Q4_K_M"))


@pytest.fixture(scope="module", params=["patched", "exported"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path, LlamaServer]]:
    """``llama-server --jinja`` on one of the two text GGUFs (one server per file)."""
    model = _model(request.param, request)
    with llama_server(model, *SERVER_ARGS) as srv:
        yield request.param, model, srv


# --------------------------------------------------------------------------------------------
# chat rendering and tokens


def _google(messages: list[dict[str, Any]]) -> str:
    """Google's template, with what llama-server does to it: no leading <bos>, and a final
    assistant message continued (rendered without a generation prompt, its turn left open)."""
    if messages[-1]["role"] == "assistant":
        text = render_chat(messages, add_generation_prompt=False).removesuffix("<end_of_turn>\n")
    else:
        text = render_chat(messages)
    assert text.startswith("<bos>")
    return text.removeprefix("<bos>")


def test_llama_server_renders_the_corpus_like_googles_jinja(server) -> None:
    kind, _model_path, srv = server
    differ = {}
    for name, messages in CORPUS:
        reply = srv.post("/apply-template", {"messages": messages})
        assert reply.status_code == 200, (name, reply.text)
        got = reply.json()["prompt"]
        if got != _google(messages):
            differ[name] = (got, _google(messages))
    same = len(CORPUS) - len(differ)
    print(f"\nllama-server --jinja == Google's Jinja ({kind}): {same}/{len(CORPUS)} conversations")
    assert differ == {}


# Where llama.cpp's built-in (non-Jinja) Gemma formatter, src/llama-chat.cpp, departs from Google's
# template: it trims the system prompt and drops an empty one, joins list content differently, and
# closes a final assistant turn instead of continuing it. Measured on this llama.cpp; pinned here.
NO_JINJA_DIFFERS = {
    "prefill: final assistant stays open",
    "prefill with system",
    "system with trailing space kept",
    "system with blank lines",
    "empty system",
    "list content, several text items",
}


def test_without_jinja_the_builtin_formatter_differs_where_pinned(patched_270m: Path) -> None:
    """``--no-jinja`` (the default is Jinja on in this version) uses llama.cpp's own formatter."""
    with llama_server(patched_270m, *SERVER_ARGS, "--no-jinja") as srv:
        got = {
            name: srv.post("/apply-template", {"messages": messages}).json()["prompt"]
            for name, messages in CORPUS
        }
    differ = {name for name, messages in CORPUS if got[name] != _google(messages)}
    print(f"\nllama-server --no-jinja == Google's Jinja: {len(CORPUS) - len(differ)}/{len(CORPUS)}")
    assert differ == NO_JINJA_DIFFERS
    assert got["system with trailing space kept"].startswith("<start_of_turn>user\nBe kind.\n\n")
    assert got["prefill with system"].endswith("1, 2,<end_of_turn>\n")  # turn closed, no prefill


def _texts(messages: list[dict[str, Any]]) -> str:
    return json.dumps([m["content"] for m in messages], ensure_ascii=False)


def test_llama_server_feeds_exactly_one_bos(server) -> None:
    """The tokens the server evaluates for a chat: BOS once, then Google's render tokenized."""
    _kind, _model_path, srv = server
    for name, messages in CORPUS:
        prompt = srv.post("/apply-template", {"messages": messages}).json()["prompt"]
        # how the server tokenizes a chat prompt (server-context.cpp: tokenize_mixed(prompt,
        # add_special=true, parse_special=true))
        tokens = srv.post(
            "/tokenize", {"content": prompt, "add_special": True, "parse_special": True}
        ).json()["tokens"]
        assert tokens[0] == BOS and tokens[1] != BOS, name
        # a literal "<bos>" typed in a message is parsed as the BOS token too (parse_special)
        assert tokens.count(BOS) == 1 + _texts(messages).count("<bos>"), name
        # ... and they are Google's full render (its own <bos> included) with nothing added
        google = render_chat(messages, add_generation_prompt=messages[-1]["role"] != "assistant")
        plain = srv.post(
            "/tokenize", {"content": google, "add_special": False, "parse_special": True}
        ).json()["tokens"]
        if messages[-1]["role"] == "assistant":
            plain = plain[: len(tokens)]  # the continued turn stays open
        assert tokens == plain, name
        counted = srv.post("/v1/chat/completions/input_tokens", {"messages": messages}).json()
        assert counted["input_tokens"] == len(tokens), name


def test_chat_completions_answers(server) -> None:
    _kind, _model_path, srv = server
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    reply = srv.post("/v1/chat/completions", {"messages": messages, "max_tokens": 16, "seed": 1})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert 1 <= body["usage"]["completion_tokens"] <= 16
    counted = srv.post("/v1/chat/completions/input_tokens", {"messages": messages}).json()
    assert body["usage"]["prompt_tokens"] == counted["input_tokens"]


def _file_sampling(model: Path) -> dict[str, float]:
    with open_gguf(model) as h:
        return {REPORTED[key]: h.get(key) for key in GGUF_SAMPLING}


def _reported(settings: dict[str, Any]) -> dict[str, float]:
    return {name: settings[name] for name in REPORTED.values()}


def test_sampling_defaults_are_the_files_general_sampling_keys(server) -> None:
    _kind, model, srv = server
    in_file = _file_sampling(model)
    assert in_file == pytest.approx(
        {REPORTED[k]: v for k, (v, _t) in GGUF_SAMPLING.items()}
    )  # the Gemma team's settings are in the file ...
    props = srv.get("/props").json()["default_generation_settings"]["params"]
    assert _reported(props) == pytest.approx(in_file)  # ... the server's defaults ...
    done = srv.post("/completion", {"prompt": "The capital of France is", "n_predict": 2}).json()
    assert _reported(done["generation_settings"]) == pytest.approx(in_file)  # ... and it uses them


def test_without_sampling_keys_the_server_uses_its_own_defaults(gguf_270m: Path) -> None:
    """The control: the unpatched PyPI 270M has no general.sampling.* keys."""
    with open_gguf(gguf_270m) as h:
        assert not any(h.get(key) is not None for key in GGUF_SAMPLING)
    with llama_server(gguf_270m, *SERVER_ARGS) as srv:
        props = srv.get("/props").json()["default_generation_settings"]["params"]
    got = {k: props[k] for k in LLAMA_CPP_DEFAULTS}
    assert got == pytest.approx(LLAMA_CPP_DEFAULTS)
    # temperature, top_k and min_p differ from Gemma's: the patched file's values came from its keys
    gemma = {REPORTED[k]: v for k, (v, _t) in GGUF_SAMPLING.items()}
    changed = {k for k in got if got[k] != pytest.approx(gemma[k])}
    assert changed == {"temperature", "top_k", "min_p"}


# --------------------------------------------------------------------------------------------
# vision


SIZE = 896


def _png(path: Path) -> Path:
    from PIL import Image

    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([(x * 255) // SIZE, (y * 255) // SIZE, ((x // 64 + y // 64) % 2) * 255], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(path, format="PNG")
    return path


def test_mtmd_cli_answers_an_image(exported_vision: Any, tmp_path: Path) -> None:
    image = _png(tmp_path / "card.png")
    proc = subprocess.run(
        [
            str(llama_bin("llama-mtmd-cli")),
            "-m", str(exported_vision.models[0].path),
            "--mmproj", str(exported_vision.mmproj.path),
            "--image", str(image),
            "-p", "What is in this picture?",
            "-n", "8", "--temp", "0", "--seed", "1", "-c", "1024", "-t", "2",
            "--log-verbosity", "4",  # the per-batch image decode lines are debug-level
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "n_tokens_batch = 256" in log, log[-3000:]  # the image became 256 tokens
    assert "image decoded" in log, log[-3000:]


def test_llama_server_with_mmproj_answers_an_image(exported_vision: Any, tmp_path: Path) -> None:
    png = _png(tmp_path / "card.png").read_bytes()
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    text = {"type": "text", "text": "What is in this picture?"}
    with_image = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, text]}
    ]
    without = [{"role": "user", "content": [text]}]
    model, mmproj = exported_vision.models[0].path, exported_vision.mmproj.path
    with llama_server(model, *SERVER_ARGS, "--mmproj", str(mmproj)) as srv:
        n_with = srv.post("/v1/chat/completions/input_tokens", {"messages": with_image}).json()
        n_without = srv.post("/v1/chat/completions/input_tokens", {"messages": without}).json()
        reply = srv.post(
            "/v1/chat/completions", {"messages": with_image, "max_tokens": 8, "seed": 1}
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["completion_tokens"] >= 1
    assert body["usage"]["prompt_tokens"] == n_with["input_tokens"]
    # 256 image tokens between <start_of_image> and <end_of_image>
    assert n_with["input_tokens"] - n_without["input_tokens"] == 256 + 2


# --------------------------------------------------------------------------------------------
# quantization


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_llama_quantize_is_byte_identical_to_the_exporters_k_quant(
    exported_270m: Any, tmp_path: Path
) -> None:
    """Same BF16 input, Q4_K_M through the llama-quantize binary and through the exporter's one pass:
    every tensor has the same name, type, shape and bytes (the metadata differs by design: the
    exporter writes its own keys, llama-quantize adds its quantize.* and rewrites file_type)."""
    files = {m.quant: m for m in exported_270m.models}
    out = tmp_path / "g3-Q4_K_M.llama-quantize.gguf"
    proc = subprocess.run(
        [str(llama_bin("llama-quantize")), str(files["BF16"].path), str(out), "Q4_K_M", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert files["Q4_K_M"].sha256 == _sha256(files["Q4_K_M"].path)
    import gguf

    theirs, ours = gguf.GGUFReader(out), gguf.GGUFReader(files["Q4_K_M"].path)
    # the same tensors (llama.cpp finds them by name; the two writers order them differently)
    by_name = {t.name: t for t in theirs.tensors}
    assert sorted(by_name) == sorted(t.name for t in ours.tensors)
    for a in ours.tensors:
        b = by_name[a.name]
        assert (a.tensor_type, list(a.shape)) == (b.tensor_type, list(b.shape)), a.name
        assert a.data.tobytes() == b.data.tobytes(), a.name


def test_qat_recipe_matches_llama_quantize_with_q8_0_embeddings(
    exported_270m: Any, tmp_path: Path
) -> None:
    """The QAT recipe (Q4_0, token embedding and output Q8_0) as the library applies it equals the
    llama-quantize command ggml-org documents for it."""
    from gemma3_pack._export._quantize import quantize

    bf16 = next(m.path for m in exported_270m.models if m.quant == "BF16")
    library, binary = tmp_path / "library.gguf", tmp_path / "binary.gguf"
    quantize(bf16, library, "Q4_0", qat=True)
    proc = subprocess.run(
        [
            str(llama_bin("llama-quantize")),
            "--token-embedding-type", "q8_0", "--output-tensor-type", "q8_0",
            str(bf16), str(binary), "Q4_0", "2",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert _sha256(binary) == _sha256(library)
    with open_gguf(library) as h:
        types = {t.name: t.type_name for t in h.tensors}
    assert types["token_embd.weight"] == "Q8_0"


def test_the_programs_are_the_sdists_llama_cpp() -> None:
    info = _engines_llama.build_info()
    assert info["llama_cpp_python"] == _engines_llama.llama_cpp_version()
    assert info["llama_cpp_commit"] != "unknown"
    proc = subprocess.run(
        [str(llama_bin("llama-server")), "--version"], capture_output=True, text=True
    )
    assert info["llama_cpp_commit"] in proc.stdout + proc.stderr
