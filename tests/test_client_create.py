"""Shipping exports into Ollama over real HTTP: HEAD → POST blob → create, against the loopback daemon.

The loopback server (tests/support/_loopback.py) hashes every uploaded body itself, so a test passes only if
the SDK streamed exactly the file's bytes under the right digest. Export folders are built with
gguf-py's writer (a Gemma 3 text GGUF and a ``clip`` projector), as `gemma3-pack export` lays them out.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest
from _fake_export import _entry, _sha, make_export
from _loopback import LoopbackOllama
from conftest import assert_one_line_error

from gemma3_pack import InputError, InputNotFound, ModelNotFound, OllamaResponseError, UsageError
from gemma3_pack._chat import LICENSE_NOTICE, OLLAMA_TEMPLATE
from gemma3_pack._family import SAMPLING
from gemma3_pack._sdk._client import Client

PARAMETERS = {**SAMPLING, "stop": ["<end_of_turn>"]}


@pytest.fixture
def server():
    with LoopbackOllama() as srv:
        yield srv


@pytest.fixture
def client(server: LoopbackOllama):
    with Client(server.url) as c:
        yield c


def _digest(path: Path) -> str:
    return f"sha256:{_sha(path)}"


# --------------------------------------------------------------------------- happy paths


def test_text_export_goes_head_post_create_with_the_modelfile_spec(
    tmp_path: Path, server: LoopbackOllama, client: Client, monkeypatch
) -> None:
    export = make_export(tmp_path / "out")
    gguf_path = export / "my-gemma-Q4_K_M.gguf"
    before = gguf_path.read_bytes()

    def no_hashing(*a, **k):  # the manifest's sha256 is used; the file is read once, to upload
        raise AssertionError("sha256 recomputed although export.json has it")

    monkeypatch.setattr("gemma3_pack._sdk._client.sha256_file", no_hashing)

    result = client.create_from_export(export, "my-gemma", progress=False)

    assert result.status == "success"
    digest = _digest(gguf_path)
    assert [(r.method, r.path) for r in server.requests] == [
        ("HEAD", f"/api/blobs/{digest}"),
        ("POST", f"/api/blobs/{digest}"),
        ("POST", "/api/create"),
    ]
    assert server.requests[1].body == gguf_path.stat().st_size
    assert server.requests[2].body == {
        "model": "my-gemma",
        "files": {"my-gemma-Q4_K_M.gguf": digest},
        "template": OLLAMA_TEMPLATE,
        "parameters": PARAMETERS,
        "license": LICENSE_NOTICE,
        "stream": True,
    }
    assert gguf_path.read_bytes() == before  # inputs never modified
    assert client.show("my-gemma").capabilities == ["completion"]


def test_create_request_says_what_the_written_modelfile_says(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    """`ollama create -f Modelfile` and create_from_export must build the same model."""
    from gemma3_pack._modelfile import (
        create_kwargs,
        parse_modelfile,
        render_modelfile,
        spec_for_gguf,
    )

    export = make_export(tmp_path / "out", vision=True)
    model, mmproj = export / "my-gemma-Q4_K_M.gguf", export / "mmproj-my-gemma-f16.gguf"
    client.create_from_export(export, "vis", system="Be kind.", num_ctx=4096, progress=False)
    body = server.calls("POST", "/api/create")[0].body
    text = render_modelfile(
        spec_for_gguf(model, mmproj, system="Be kind.", num_ctx=4096, relative_to=export)
    )
    from_file = create_kwargs(parse_modelfile(text), body["files"])
    assert {k.removesuffix("_"): v for k, v in from_file.items()} == {
        k: v for k, v in body.items() if k not in ("model", "stream")
    }
    assert list(body["files"]) == [model.name, mmproj.name]


def test_blobs_the_daemon_has_are_not_uploaded_again(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    export = make_export(tmp_path / "out")
    client.create_from_export(export, "a", progress=False)
    server.requests.clear()
    client.create_from_export(export, "b", progress=False)
    assert [r.method for r in server.requests] == ["HEAD", "POST"]
    assert server.requests[1].path == "/api/create"


def test_quant_choice_system_and_num_ctx(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    export = make_export(tmp_path / "out", quants=("Q4_K_M", "Q8_0"))
    client.create_from_export(
        export, "q8", quant="q8_0", system="You are terse.", num_ctx=8192, progress=False
    )
    body = server.calls("POST", "/api/create")[0].body
    assert body["files"] == {"my-gemma-Q8_0.gguf": _digest(export / "my-gemma-Q8_0.gguf")}
    assert body["system"] == "You are terse."
    assert body["parameters"] == {**PARAMETERS, "num_ctx": 8192}
    with pytest.raises(UsageError, match=r"has no Q6_K model \(it has Q4_K_M, Q8_0\)"):
        client.create_from_export(export, "q6", quant="Q6_K", progress=False)


def test_missing_manifest_hash_is_computed_by_streaming(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    export = make_export(tmp_path / "out")
    manifest = json.loads((export / "export.json").read_text())
    del manifest["models"][0]["sha256"]
    (export / "export.json").write_text(json.dumps(manifest))
    client.create_from_export(export, "hashed", progress=False)
    assert server.calls("POST", "/api/create")[0].body["files"] == {
        "my-gemma-Q4_K_M.gguf": _digest(export / "my-gemma-Q4_K_M.gguf")
    }


# --------------------------------------------------------------------------- vision packaging


@pytest.mark.parametrize(
    ("version", "packaging", "files"),
    [
        ("0.30.1", "auto", ["my-gemma-Q4_K_M.gguf", "mmproj-my-gemma-f16.gguf"]),
        ("0.33.0-rc2", "auto", ["my-gemma-Q4_K_M.gguf", "mmproj-my-gemma-f16.gguf"]),
        ("0.29.3", "auto", ["my-gemma-fused.gguf"]),
        ("0.6.0", "auto", ["my-gemma-fused.gguf"]),
        ("0.6.0", "pair", ["my-gemma-Q4_K_M.gguf", "mmproj-my-gemma-f16.gguf"]),
        ("0.30.1", "fused", ["my-gemma-fused.gguf"]),
    ],
)
def test_vision_packaging_follows_the_daemon_version(
    tmp_path: Path, version: str, packaging: str, files: list[str]
) -> None:
    export = make_export(tmp_path / "out", vision=True, fused=True)
    with LoopbackOllama(version=version) as server, Client(server.url) as client:
        client.create_from_export(export, "vis", packaging=packaging, progress=False)  # type: ignore[arg-type]
        body = server.calls("POST", "/api/create")[0].body
        assert body["files"] == {name: _digest(export / name) for name in files}
        assert client.has_vision("vis")
        asked_version = bool(server.calls("GET", "/api/version"))
        assert asked_version == (packaging == "auto")


def test_new_daemon_takes_a_fused_only_export(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    export = make_export(tmp_path / "out", fused=True)
    client.create_from_export(export, "vis", progress=False)
    assert server.calls("POST", "/api/create")[0].body["files"] == {
        "my-gemma-fused.gguf": _digest(export / "my-gemma-fused.gguf")
    }


def test_old_daemon_without_a_fused_file_says_how_to_re_export(tmp_path: Path) -> None:
    export = make_export(tmp_path / "out", vision=True)
    with LoopbackOllama(version="0.11.10") as server, Client(server.url) as client:
        with pytest.raises(UsageError) as info:
            client.create_from_export(export, "vis", progress=False)
        assert "--ollama-format fused" in str(info.value)
        assert "older than 0.11.11" in str(info.value)
        assert server.calls("POST") == []  # nothing uploaded


@pytest.mark.parametrize("version", ["0.11.11", "0.24.0", "0.29.3"])
def test_split_vision_era_daemon_takes_a_pair_only_export(tmp_path: Path, version: str) -> None:
    """0.11.11-0.29 run a separate projector on their llama.cpp engine (real 0.24.0:
    tests/test_ollama_daemon.py), so a pair-only export ships as the pair."""
    export = make_export(tmp_path / "out", vision=True)
    with LoopbackOllama(version=version) as server, Client(server.url) as client:
        client.create_from_export(export, "vis", progress=False)
        assert set(server.calls("POST", "/api/create")[0].body["files"]) == {
            "my-gemma-Q4_K_M.gguf",
            "mmproj-my-gemma-f16.gguf",
        }


def test_packaging_for_a_text_only_export_is_refused(tmp_path: Path, client: Client) -> None:
    export = make_export(tmp_path / "out")
    with pytest.raises(UsageError, match="no projector"):
        client.create_from_export(export, "x", packaging="pair", progress=False)


# --------------------------------------------------------------------------- quantize


def test_quantize_is_passed_for_a_bf16_model_and_refused_for_a_quantized_one(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    export = make_export(tmp_path / "bf16", quants=("BF16", "Q4_K_M"))
    client.create_from_export(export, "q", quantize="Q4_K_M", progress=False)
    assert server.calls("POST", "/api/create")[0].body["quantize"] == "q4_K_M"
    with pytest.raises(UsageError, match="quantizes only F16/BF16/F32 GGUFs, this one is Q4_K_M"):
        client.create_from_export(export, "q", quant="Q4_K_M", quantize="q8_0", progress=False)
    with pytest.raises(UsageError, match="only to q4_K_M, q4_K_S, q8_0"):
        client.create_from_export(export, "q", quantize="Q5_K_M", progress=False)


# --------------------------------------------------------------------------- bad folders


def _rewrite(export: Path, **changes) -> None:
    manifest = json.loads((export / "export.json").read_text())
    manifest.update(changes)
    (export / "export.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        ("no-folder", InputNotFound, "does not exist"),
        ("no-manifest", InputNotFound, "gemma3-pack export"),
        ("not-json", InputError, "not valid JSON"),
        ("format-2", InputError, "unsupported format 2"),
        ("no-models", InputError, "lists no models"),
        ("escape", InputError, "points outside the export folder"),
        ("missing-file", InputNotFound, "listed in export.json as model"),
        ("bad-sha", InputError, "is not 64 hex digits"),
    ],
)
def test_broken_export_folders_fail_before_any_upload(
    tmp_path: Path, server: LoopbackOllama, client: Client, breakage, error, message
) -> None:
    export = make_export(tmp_path / "out")
    if breakage == "no-folder":
        export = tmp_path / "nope"
    elif breakage == "no-manifest":
        (export / "export.json").unlink()
    elif breakage == "not-json":
        (export / "export.json").write_text("{")
    elif breakage == "format-2":
        _rewrite(export, format=2)
    elif breakage == "no-models":
        _rewrite(export, models=[])
    elif breakage == "escape":
        _rewrite(export, models=[{"path": "../../etc/passwd", "sha256": None}])
    elif breakage == "missing-file":
        (export / "my-gemma-Q4_K_M.gguf").unlink()
    elif breakage == "bad-sha":
        _rewrite(export, models=[{"path": "my-gemma-Q4_K_M.gguf", "sha256": "abc"}])
    with pytest.raises(error, match=message):
        client.create_from_export(export, "x", progress=False)
    assert server.requests == []


# --------------------------------------------------------------------------- daemon failures


def test_digest_mismatch_is_reported_and_nothing_is_created(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    export = make_export(tmp_path / "out")
    _rewrite(export, models=[_entry(export, "my-gemma-Q4_K_M.gguf", "Q4_K_M", sha="0" * 64)])
    with pytest.raises(OllamaResponseError) as info:
        client.create_from_export(export, "x", progress=False)
    assert (info.value.error, info.value.status_code) == ("digest mismatch", 400)
    assert server.calls("POST", "/api/create") == []
    assert server.blobs == {}


def test_daemon_dropping_the_create_stream_is_an_error(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    export = make_export(tmp_path / "out")
    server.drop_after = 1
    with pytest.raises(OllamaResponseError, match="failed mid-request"):
        client.create_from_export(export, "x", progress=False)


def test_daemon_dropping_a_chat_stream_is_an_error(server: LoopbackOllama, client: Client) -> None:
    server.add_model("gemma3:4b", vision=True)
    server.reply = "one two three four"
    server.drop_after = 2
    seen = []
    with pytest.raises(OllamaResponseError, match="RemoteProtocolError"):
        for chunk in client.chat("count", stream=True):
            seen.append(chunk.message.content)
    assert seen == ["one", " two"]


def test_create_error_status_keeps_the_daemons_message(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    export = make_export(tmp_path / "out")
    server.fail["/api/create"] = (400, "invalid model name")
    with pytest.raises(OllamaResponseError, match=r"invalid model name \(status code: 400\)"):
        client.create_from_export(export, "Bad Name!", progress=False)


# --------------------------------------------------------------------------- variants


def test_create_from_variant_uses_from_and_pulls_the_base_first(
    server: LoopbackOllama, client: Client
) -> None:
    client.create_from_variant(
        "gemma3-4b-it", "pirate", system="Talk like a pirate.", num_ctx=8192, progress=False
    )
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/api/show"),
        ("POST", "/api/pull"),
        ("POST", "/api/create"),
    ]
    assert server.requests[-1].body == {
        "model": "pirate",
        "from": "gemma3:4b",
        "template": OLLAMA_TEMPLATE,
        "parameters": {**PARAMETERS, "num_ctx": 8192},
        "system": "Talk like a pirate.",
        "license": LICENSE_NOTICE,
        "stream": True,
    }
    server.requests.clear()
    client.create_from_variant("gemma3:4b", "pirate2", progress=False)
    assert [r.path for r in server.requests] == ["/api/show", "/api/create"]


def test_create_from_variant_num_ctx_auto_and_tools(server: LoopbackOllama, client: Client) -> None:
    """``num_ctx="auto"`` + ``gpu=`` and ``tools=True``: what ``modelfile --num-ctx auto --gpu
    --tools`` writes, sent as create arguments; a refused budget sends nothing."""
    from gemma3_pack._chat import OLLAMA_TOOLS_TEMPLATE
    from gemma3_pack._memory._plan_gpu import auto_context

    client.create_from_variant(
        "gemma3-12b-it", "tools12", num_ctx="auto", gpu="rtx4090", tools=True, progress=False
    )
    body = server.requests[-1].body
    assert body["template"] == OLLAMA_TOOLS_TEMPLATE
    assert body["parameters"] == {
        **PARAMETERS,
        "num_ctx": auto_context("gemma3-12b-it", gpu="rtx4090"),
    }
    server.requests.clear()
    with pytest.raises(UsageError, match="only go with --num-ctx auto"):
        client.create_from_variant("gemma3-12b-it", "x", num_ctx=4096, memory="16GB")
    with pytest.raises(UsageError, match="does not fit"):
        client.create_from_variant("gemma3-27b-it", "x", num_ctx="auto", memory="4GB")
    assert server.requests == []


@pytest.mark.parametrize(("exported", "asked", "template"), [
    (True, None, "tools"), (False, None, "plain"), (True, False, "plain"), (False, True, "tools"),
])  # fmt: skip
def test_create_from_export_follows_export_tools(
    tmp_path: Path, server: LoopbackOllama, client: Client, exported, asked, template
) -> None:
    """An ``export --tools`` folder ships with the tool-calling TEMPLATE unless told otherwise."""
    from gemma3_pack._chat import OLLAMA_TOOLS_TEMPLATE

    folder = make_export(tmp_path / "out")
    manifest = json.loads((folder / "export.json").read_text())
    (folder / "export.json").write_text(json.dumps({**manifest, "tools": exported}))
    client.create_from_export(folder, "g", tools=asked, progress=False)
    want = OLLAMA_TOOLS_TEMPLATE if template == "tools" else OLLAMA_TEMPLATE
    assert server.requests[-1].body["template"] == want


def test_create_from_gguf_on_a_missing_file(tmp_path: Path, client: Client) -> None:
    with pytest.raises(InputNotFound, match=r"nope\.gguf"):
        client.create_from_gguf(tmp_path / "nope.gguf", "x", progress=False)


def test_missing_model_on_chat_over_http(client: Client) -> None:
    with pytest.raises(ModelNotFound, match="gemma3:12b"):
        client.chat("Hi", model="gemma3:12b")


# --------------------------------------------------------------------------- memory


def test_uploading_a_200_mb_file_keeps_memory_flat(
    tmp_path: Path, server: LoopbackOllama, client: Client
) -> None:
    big = tmp_path / "big.gguf"
    with open(big, "wb") as fh:  # sparse: costs no disk
        fh.truncate(200 * 1024 * 1024)
    tracemalloc.start()
    try:
        digest = client.upload_blob(big, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert server.blobs[digest] == 200 * 1024 * 1024
    # client chunks + server chunks in flight: a few MiB, never the 200 MiB file
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


# --------------------------------------------------------------------------- README quickstart

# The README's SDK quickstart, verbatim (between <!-- sdk-quickstart --> markers in README.md).
QUICKSTART = """\
from gemma3_pack import Client

client = Client()            # OLLAMA_HOST or 127.0.0.1:11434, parsed like ollama's own client
client.ensure("gemma3:4b")   # pulls only if missing, with a progress bar

print(client.chat("Why is the sky blue? One sentence.").message.content)

for chunk in client.chat("Count to five.", stream=True):
    print(chunk.message.content, end="", flush=True)
print()

print(client.chat("What is in this picture?", images=["cat.png"]).message.content)

chat = client.conversation(system="You are terse.")
chat.send("Name a prime number.")
print(chat.send("And the next one?").message.content)
"""


def test_readme_sdk_quickstart_runs_as_written(server: LoopbackOllama, tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(
        r"<!-- sdk-quickstart -->\n```python\n(.*?)```\n<!-- /sdk-quickstart -->", readme, re.S
    )
    assert block is not None, "README.md lost its <!-- sdk-quickstart --> block"
    assert block.group(1) == QUICKSTART, "README SDK quickstart drifted from this test"
    from _fake_ollama import PNG

    (tmp_path / "cat.png").write_bytes(PNG)
    env = {**os.environ, "OLLAMA_HOST": server.url}
    proc = subprocess.run(
        [sys.executable, "-c", QUICKSTART],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello from Gemma.\n" * 4
    paths = [r.path for r in server.requests]
    assert paths == [
        "/api/show",
        "/api/pull",
        "/api/chat",
        "/api/chat",
        "/api/show",
        "/api/chat",
        "/api/chat",
        "/api/chat",
    ]
    last = server.calls("POST", "/api/chat")[-1].body["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]


# --------------------------------------------------------------------------- the recipe


def test_ship_recipe_with_the_real_270m_gguf(gguf_270m: Path, tmp_path: Path) -> None:
    """converters/ship_export_to_ollama.py, run as written, against the loopback daemon: the real
    270M GGUF is uploaded whole once, and shipping again uploads nothing."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "converters" / "ship_export_to_ollama.py"
    spec = importlib.util.spec_from_file_location("ship_export_to_ollama", path)
    assert spec is not None and spec.loader is not None
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    (tmp_path / gguf_270m.name).symlink_to(gguf_270m)
    (tmp_path / "export.json").write_text(
        json.dumps(
            {
                "format": 1,
                "name": "gemma3-270m-selftest",
                "source": "pypi",
                "variant": "gemma3-270m-it",
                "models": [
                    {"path": gguf_270m.name, "quant": "Q4_K_M", "size": gguf_270m.stat().st_size}
                ],
                "mmproj": None,
                "fused": None,
                "modelfile": "Modelfile",
            }
        )
    )
    with LoopbackOllama(version="0.30.1") as server:
        checks = recipe.ship(tmp_path, "gemma3-270m-selftest", host=server.url, progress=False)
        uploaded = [r for r in server.requests if r.method == "POST" and "blobs" in r.path]
        assert len(uploaded) == 1 and uploaded[0].body == gguf_270m.stat().st_size
        before = len(server.requests)
        recipe.ship(tmp_path, "gemma3-270m-selftest-2", host=server.url, progress=False)
        again = [r for r in server.requests[before:] if r.method == "POST" and "blobs" in r.path]
        assert again == [], "a second ship re-uploaded the blob"
    assert checks == {
        "model": "gemma3-270m-selftest",
        "ollama": "0.30.1",
        "status": "success",
        "template": True,
        "stop": True,
        "vision_expected": False,
        "vision": False,
        "reply": "Hello from Gemma.",
    }


# --------------------------------------------------------------------------- CLI


def test_cli_chat_streams_and_prints(server: LoopbackOllama, cli) -> None:
    server.add_model("gemma3:1b")
    result = cli("chat", "--host", server.url, "gemma3:1b", "Say hello")
    assert (result.code, result.stdout, result.stderr) == (0, "Hello from Gemma.\n", "")
    body = server.calls("POST", "/api/chat")[0].body
    assert body["stream"] is True
    assert body["options"] == SAMPLING
    assert body["messages"] == [{"role": "user", "content": "Say hello"}]


def test_cli_chat_json_system_and_options(server: LoopbackOllama, cli) -> None:
    server.add_model("gemma3:4b", vision=True)
    result = cli(
        "chat",
        "--host",
        server.url,
        "Hi",
        "--json",
        "-s",
        "Be terse.",
        "-o",
        "temperature=0.2",
        "-o",
        'stop=["x"]',
    )
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["message"]["content"] == "Hello from Gemma."
    body = server.calls("POST", "/api/chat")[0].body
    assert body["model"] == "gemma3:4b" and body["stream"] is False
    assert body["options"] == {**SAMPLING, "temperature": 0.2, "stop": ["x"]}
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}


def test_cli_chat_image_on_text_model_is_one_line(
    server: LoopbackOllama, cli, tmp_path: Path
) -> None:
    server.add_model("gemma3:1b")
    png = tmp_path / "cat.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    assert_one_line_error(
        cli("chat", "--host", server.url, "gemma3:1b", "What?", "--image", str(png)),
        "cannot see images",
        "gemma3:4b",
    )
    assert_one_line_error(
        cli(
            "chat",
            "--host",
            server.url,
            "gemma3:4b",
            "What?",
            "--image",
            str(tmp_path / "missing.png"),
        ),
        "does not exist",
    )
    assert server.calls("POST", "/api/chat") == []


def test_cli_errors_when_the_daemon_is_down(cli) -> None:
    assert_one_line_error(
        cli("chat", "--host", "127.0.0.1:9", "Hi"),
        "cannot reach Ollama",
        "127.0.0.1:9",
        "ollama serve",
    )
    assert_one_line_error(cli("pull", "gemma3:1b", "--host", "127.0.0.1:9"), "ollama serve")


def test_cli_pull(server: LoopbackOllama, cli) -> None:
    result = cli("pull", "gemma3:1b", "--host", server.url, "--json")
    assert (result.code, json.loads(result.stdout)) == (
        0,
        {"model": "gemma3:1b", "status": "success"},
    )
    assert server.calls("POST", "/api/pull")[0].body == {
        "model": "gemma3:1b",
        "insecure": False,
        "stream": True,
    }


def test_cli_create(server: LoopbackOllama, cli, tmp_path: Path) -> None:
    export = make_export(tmp_path / "out")
    result = cli("create", "my-gemma", "--from", str(export), "--host", server.url)
    assert result.code == 0, result.stderr
    assert result.stdout == "created my-gemma: run it with `ollama run my-gemma`\n"
    assert "my-gemma" in server.models
    assert_one_line_error(cli("create", "x", "--host", server.url), "exactly one of --from")
    assert_one_line_error(
        cli("create", "x", "--from", str(tmp_path), "--host", server.url), "export.json"
    )


def test_cli_create_num_ctx_auto_and_tools(server: LoopbackOllama, cli) -> None:
    """``create --variant … --num-ctx auto --gpu … --tools`` sends what the library call sends."""
    from gemma3_pack._chat import OLLAMA_TOOLS_TEMPLATE
    from gemma3_pack._memory._plan_gpu import auto_context

    args = ("create", "t", "--variant", "gemma3-12b-it", "--host", server.url)
    result = cli(*args, "--num-ctx", "auto", "--gpu", "rtx4090", "--tools")
    assert result.code == 0, result.stderr
    body = server.calls("POST", "/api/create")[-1].body
    assert body["template"] == OLLAMA_TOOLS_TEMPLATE
    assert body["parameters"]["num_ctx"] == auto_context("gemma3-12b-it", gpu="rtx4090")
    assert_one_line_error(cli(*args, "--memory", "16GB"), "only go with --num-ctx auto")


def test_cli_help_has_examples(cli) -> None:
    for command in ("chat", "pull", "create"):
        result = cli(command, "--help")
        assert result.code == 0
        assert "Examples:" in result.stdout
        assert f"gemma3-pack {command} " in result.stdout
