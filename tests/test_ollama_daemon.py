"""What a real Ollama daemon does with what gemma3-pack makes (issue 8 §1), on two daemons.

The whole suite runs once per daemon (the ``daemon`` fixture is parametrised; test ids carry
``ollama-0.24.0`` or ``ollama-0.34.4``):

* **0.24.0**, built from its Go module by ``tests/support/_engines.py``: the session fixture ``ollama_daemon``
  (or the user's own daemon when ``OLLAMA_HOST`` was set when the session started). It runs GGUFs on
  its vendored llama.cpp runner and logs every prompt at ``OLLAMA_DEBUG=2``.
* **0.34.4**, built by ``tests/support/_engines_ollama_new.py``: the Go binary from its module, its engine
  from Ollama's own ``llama/server`` CMake project (its compat patch applied) on the llama.cpp tree of
  the llama-cpp-python sdist (ggml-org/llama.cpp@0c1e57098; Ollama pins b11081, a few days older).
  From 0.30 on Ollama runs GGUFs through an upstream ``llama-server`` subprocess and logs only the
  prompt's length. ``OLLAMA_HOST`` never redirects it: it is the version under test. A second 0.34.4
  daemon with ``OLLAMA_GO_TEMPLATE=0`` checks the path where llama-server renders the GGUF's template.

Both are built by ``tests/build_engines.py`` before the tests (see tests/README.md). The model is the
real Gemma 3 270M GGUF from PyPI, patched by us; generation is capped with ``num_predict`` so the
whole file runs in a few minutes per daemon on 2 cores.

    pytest -m ollama tests/test_ollama_daemon.py
    pytest -m ollama tests/test_ollama_daemon.py -k ollama-0.34.4
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _engines
import _engines_ollama_new
import httpx
import pytest
from _conversations import CORPUS
from _conversations import reference as _reference
from conftest import run_cli

from gemma3_pack import (
    OLLAMA_TEMPLATE,
    SAMPLING,
    AsyncClient,
    Client,
    ModelNotFound,
    OllamaError,
    OllamaResponseError,
    VisionNotSupported,
    parse_modelfile,
    patch_gguf,
    render_chat,
)

pytestmark = [pytest.mark.ollama, pytest.mark.slow]

OLD = _engines.OLLAMA_VERSION  # 0.24.0: the session daemon (or OLLAMA_HOST)
NEW = _engines_ollama_new.OLLAMA_NEW_VERSION  # 0.34.4: always our own build
SHORT = {"num_predict": 4, "seed": 7}
ROOT = Path(__file__).resolve().parent.parent
# how 0.34.4's chat handler picked the prompt renderer (server/images.go logs it at load)
SELECTION = re.compile(r'msg="template selection" model=\S+ selected=(\S+)')


# --------------------------------------------------------------------------- helpers


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def show(url: str, model: str) -> dict[str, Any]:
    """The daemon's whole /api/show answer (the ollama client drops some fields)."""
    r = httpx.post(f"{url}/api/show", json={"model": model}, timeout=60)
    r.raise_for_status()
    return dict(r.json())


def show_parameters(text: str) -> dict[str, Any]:
    """``/api/show``'s ``parameters`` text (``name   value`` lines) as a dict; stop is a list."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        value = value.strip()
        if key == "stop":
            out.setdefault("stop", []).append(json.loads(value))
        else:
            out[key] = float(value)
    return out


def expected_parameters(spec: Any) -> dict[str, Any]:
    return {**{k: float(v) for k, v in spec.parameters.items()}, "stop": list(spec.stop)}


def wire(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama's /api/chat takes string content: list content becomes its text items, joined."""
    out = []
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            content = "".join(i["text"] for i in content if i["type"] == "text")
        out.append({"role": m["role"], "content": content})
    return out


def render_on_daemon(url: str, model: str, messages: list[dict[str, Any]]) -> str:
    """The prompt the daemon's chat handler builds (``_debug_render_only``, no generation)."""
    r = httpx.post(
        f"{url}/api/chat",
        json={
            "model": model,
            "messages": wire(messages),
            "stream": False,
            "truncate": False,
            "_debug_render_only": True,
        },
        timeout=120,
    )
    r.raise_for_status()
    return str(r.json()["_debug_info"]["rendered_template"])


def logged_prompts(log: str) -> list[str]:
    """Prompts 0.24.0 logged (``OLLAMA_DEBUG=2``: ``msg="completion request" prompt=...``)."""
    quoted = re.findall(r'msg="completion request" prompt=("(?:[^"\\]|\\.)*")', log)
    return [json.loads(q) for q in quoted]


def logged_prompt_lengths(log: str) -> list[int]:
    """0.34.4 logs the length of the prompt it sends to llama-server, not its text."""
    found = re.findall(r'"llama-server completion request" media=\d+ prompt_len=(\d+)', log)
    return [int(n) for n in found]


def prompt_was_sent(version: str, log: str, prompt: str) -> bool:
    """The runner was given ``prompt``: its text (0.24.0) or its length (0.34.4) is in the log."""
    if version == OLD:
        return prompt in logged_prompts(log)
    return len(prompt) in logged_prompt_lengths(log)


class Recorder:
    """httpx event hook: every request the SDK sends, as ``(method, path)``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url.path))

    async def arecord(self, request: httpx.Request) -> None:
        self(request)


def png_bytes(size: int = 896) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- fixtures


def _own(binary: Path, root: Path, **env: str) -> Iterator[_engines.OllamaDaemon]:
    daemon = _engines.OllamaDaemon(binary, root, env=env).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def binary_of(version: str) -> Path:
    """Our build of ``version`` (``_engines.EngineMissing`` when tests/build_engines.py has not run)."""
    if version == OLD:
        return _engines.ollama_binary()
    return _engines_ollama_new.ollama_binary_new()


@pytest.fixture(scope="module", params=[OLD, NEW], ids=lambda v: f"ollama-{v}")
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The daemon under test: 0.24.0 (the session daemon, or ``OLLAMA_HOST``), then 0.34.4."""
    if request.param == OLD:
        yield request.getfixturevalue("ollama_daemon")
    else:
        yield from _own(binary_of(NEW), tmp_path_factory.mktemp("ollama-new"))


@pytest.fixture
def version(request: pytest.FixtureRequest) -> str:
    """Which of the two daemons this test runs on (``OLD`` also stands for ``OLLAMA_HOST``)."""
    return str(request.node.callspec.params["daemon"])


@pytest.fixture(scope="module")
def url(daemon) -> str:
    return str(daemon.url)


@pytest.fixture(scope="module")
def created(url: str) -> Iterator[list[str]]:
    """Names of models this module created; deleted at the end (matters on a user's daemon)."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(httpx.HTTPError):
            httpx.request("DELETE", f"{url}/api/delete", json={"model": name}, timeout=30)


@pytest.fixture(scope="module")
def patched(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("patched") / "gemma-3-270m.gguf"
    patch_gguf(gguf_270m, out)
    return out


@pytest.fixture(scope="module")
def modelfile(patched: Path) -> Path:
    """``gemma3-pack modelfile <patched 270M>`` written beside the GGUF."""
    out = patched.parent / "Modelfile"
    result = run_cli("modelfile", str(patched), "-o", str(out))
    assert result.code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def cli_model(daemon, modelfile: Path, created: list[str]) -> str:
    """The patched 270M created by the real ``ollama create -f Modelfile``."""
    name = _name("g3-cli")
    result = daemon.cli("create", name, "-f", str(modelfile))
    assert result.returncode == 0, result.stderr
    created.append(name)
    return name


@pytest.fixture(scope="module")
def sdk_model(url: str, patched: Path, created: list[str]) -> str:
    """The same GGUF created through ``Client.create_from_gguf``."""
    name = _name("g3-sdk")
    with Client(url) as client:
        assert client.create_from_gguf(patched, name, progress=False).status == "success"
    created.append(name)
    return name


@pytest.fixture
def client(url: str, sdk_model: str) -> Iterator[Client]:
    with Client(url, model=sdk_model, timeout=300) as c:
        yield c


# --------------------------------------------------------------------------- create and show


def test_daemon_is_the_version_we_built(url: str, version: str) -> None:
    with Client(url) as client:
        answered = client.version()
    if version == OLD and _engines.USER_OLLAMA_HOST:
        assert re.fullmatch(r"\d+\.\d+\.\d+.*", answered), answered
    else:
        assert answered == version


def test_0_34_4_runs_ollamas_patched_llama_server_from_the_sdist_tree() -> None:
    info = _engines_ollama_new.build_info()
    assert (info["ollama"], info["llama_cpp_pinned_by_ollama"]) == (NEW, "b11081")
    assert info["llama_cpp_built"] == "0c1e57098"
    server = binary_of(NEW).parent.parent / "lib" / "ollama" / "llama-server"
    out = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=60)
    assert "commit 0c1e57098" in out.stdout + out.stderr
    # the compat patch's hook is compiled in (it is what reads Ollama-format fused vision GGUFs)
    [libllama] = [p for p in server.parent.glob("libllama.so*") if not p.is_symlink()]
    assert b"detected Ollama-format gemma3 GGUF" in libllama.read_bytes()


def test_cli_create_shows_exactly_our_template_stop_and_parameters(
    url: str, cli_model: str, modelfile: Path
) -> None:
    spec = parse_modelfile(modelfile.read_text())
    got = show(url, cli_model)
    assert got["template"] == OLLAMA_TEMPLATE == spec.template
    assert show_parameters(got["parameters"]) == expected_parameters(spec)
    assert show_parameters(got["parameters"]) == {
        **{k: float(v) for k, v in SAMPLING.items()},
        "stop": ["<end_of_turn>"],
    }
    assert got["license"] == spec.license
    assert got["details"]["family"] == "gemma3"
    assert got["capabilities"] == ["completion"]


def test_sdk_create_equals_cli_create(url: str, cli_model: str, sdk_model: str) -> None:
    cli_show, sdk_show = show(url, cli_model), show(url, sdk_model)
    for key in ("template", "license", "details", "capabilities", "system"):
        assert sdk_show.get(key) == cli_show.get(key), key
    assert show_parameters(sdk_show["parameters"]) == show_parameters(cli_show["parameters"])
    # the same weights blob: FROM /.../blobs/sha256-<hex>
    blob = re.compile(r"^FROM (\S+)$", re.M)
    assert blob.findall(sdk_show["modelfile"]) == blob.findall(cli_show["modelfile"])


# --------------------------------------------------------------------------- the real renderer


@pytest.fixture(scope="module")
def daemon_renders(url: str, cli_model: str) -> dict[str, str]:
    return {name: render_on_daemon(url, cli_model, msgs) for name, msgs in CORPUS}


@pytest.mark.parametrize(("name", "messages"), CORPUS, ids=[n for n, _ in CORPUS])
def test_daemon_renders_the_corpus_like_google_jinja(name: str, messages, daemon_renders) -> None:
    assert daemon_renders[name] == _reference(messages)


def test_daemon_conformance_count(daemon, url: str, daemon_renders, version: str) -> None:
    equal = sum(daemon_renders[name] == _reference(m) for name, m in CORPUS)
    with Client(url) as client:
        answered = client.version()
    print(f"\nOllama {answered} chat prompt == Jinja minus <bos>: {equal}/{len(CORPUS)}")
    assert equal == len(CORPUS) >= 55
    if version == NEW:  # our TEMPLATE ran in Ollama's Go renderer, llama-server got the text
        assert set(SELECTION.findall(daemon.log())) == {"go_template"}


def test_a_real_chat_generates_from_the_rendered_prompt(
    daemon, client: Client, sdk_model: str, version: str
) -> None:
    """The prompt the runner is given for a real chat (logged at trace level) is the rendered one."""
    if not daemon.log():
        pytest.skip("the daemon at OLLAMA_HOST is not ours, so its log is not readable")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    reply = client.chat(messages, options={"num_predict": 1, "seed": 1})
    assert reply.done
    expected = render_chat(messages).removeprefix("<bos>")
    assert render_on_daemon(str(daemon.url), sdk_model, messages) == expected
    assert prompt_was_sent(version, daemon.log(), expected)
    if version == NEW:  # llama-server gets the Go-rendered text, never renders itself
        launches = re.findall(r'msg="starting llama-server" cmd="([^"]*)"', daemon.log())
        assert launches and all("--no-jinja" in cmd for cmd in launches)


# --------------------------------------------------------------------------- 0.34.4: llama-server's own renderer


@pytest.fixture(scope="module")
def native_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_engines.OllamaDaemon]:
    """0.34.4 with ``OLLAMA_GO_TEMPLATE=0``: the chat handler leaves the prompt to llama-server's
    Jinja engine and the GGUF's ``tokenizer.chat_template`` (the template our patch embeds)."""
    root = tmp_path_factory.mktemp("ollama-new-native")
    yield from _own(binary_of(NEW), root, OLLAMA_GO_TEMPLATE="0")


@pytest.fixture(scope="module")
def native_renders(native_daemon: _engines.OllamaDaemon, modelfile: Path) -> dict[str, str]:
    name = _name("g3-native")
    result = native_daemon.cli("create", name, "-f", str(modelfile))
    assert result.returncode == 0, result.stderr
    return {n: render_on_daemon(native_daemon.url, name, msgs) for n, msgs in CORPUS}


@pytest.mark.parametrize(("name", "messages"), CORPUS, ids=[n for n, _ in CORPUS])
def test_0_34_4_llama_server_jinja_path_renders_the_corpus_like_google_jinja(
    name: str, messages: list[dict[str, Any]], native_renders: dict[str, str]
) -> None:
    assert native_renders[name] == _reference(messages)


def test_0_34_4_llama_server_jinja_path_count_and_renderer(
    native_daemon: _engines.OllamaDaemon, native_renders: dict[str, str]
) -> None:
    equal = sum(native_renders[n] == _reference(m) for n, m in CORPUS)
    print(f"\nOllama {NEW}, llama-server Jinja path == Jinja minus <bos>: {equal}/{len(CORPUS)}")
    assert equal == len(CORPUS) >= 55
    assert set(SELECTION.findall(native_daemon.log())) == {"gguf_chat_template"}


# --------------------------------------------------------------------------- committed Modelfiles


MODELFILES = sorted((ROOT / "modelfiles").glob("*.Modelfile"))


@pytest.mark.parametrize("path", MODELFILES, ids=[p.stem for p in MODELFILES])
def test_committed_modelfile_creates_on_the_real_daemon(
    path: Path, daemon, url: str, patched: Path, created: list[str], tmp_path: Path
) -> None:
    """FROM <library tag> cannot be pulled offline: FROM the local 270M, everything else as written."""
    text = path.read_text()
    from_lines = re.findall(r"^FROM .*$", text, flags=re.M)
    assert len(from_lines) == 1
    local = tmp_path / "Modelfile"
    local.write_text(text.replace(from_lines[0], f"FROM {patched}"))
    name = _name(path.stem.replace(".", "-"))
    result = daemon.cli("create", name, "-f", str(local))
    assert result.returncode == 0, result.stderr
    created.append(name)
    # what the file says, read with plain regexes (not our Modelfile parser)
    templates = re.findall(r'^TEMPLATE """(.*?)"""$', text, flags=re.M | re.S)
    renderer = re.findall(r"^RENDERER (\S+)$", text, flags=re.M)
    # Gemma 3 chat: our TEMPLATE; FunctionGemma: Ollama's built-in renderer and parser instead
    assert (len(templates), len(renderer)) in ((1, 0), (0, 1)), path.name
    written: dict[str, Any] = {}
    for key, value in re.findall(r"^PARAMETER (\S+) (.+)$", text, flags=re.M):
        if key == "stop":
            written.setdefault("stop", []).append(json.loads(value))
        else:
            written[key] = float(value)
    [license_] = re.findall(r'^LICENSE """(.*?)"""$', text, flags=re.M | re.S)
    got = show(url, name)
    if templates:
        assert got["template"] == templates[0] == OLLAMA_TEMPLATE
    else:
        assert renderer == ["functiongemma"] and got.get("template", "") != OLLAMA_TEMPLATE
    assert show_parameters(got["parameters"]) == written
    assert got["license"] == license_
    assert got.get("system", "") == (parse_modelfile(text).system or "")


# --------------------------------------------------------------------------- the SDK, sync


def test_chat(client: Client) -> None:
    reply = client.chat("Say hi.", options=SHORT)
    assert reply.done and reply.message.role == "assistant"
    assert 0 < (reply.eval_count or 0) <= 4 and (reply.prompt_eval_count or 0) > 0
    assert isinstance(reply.message.content, str)


def test_streamed_chat(client: Client) -> None:
    chunks = list(client.chat("Count to three.", stream=True, options=SHORT))
    assert len(chunks) >= 2 and chunks[-1].done and not any(c.done for c in chunks[:-1])
    assert 0 < (chunks[-1].eval_count or 0) <= 4


def test_conversation_keeps_history(daemon, client: Client, sdk_model: str, version: str) -> None:
    chat = client.conversation(system="Be terse.", options=SHORT)
    first = chat.send("Name a colour.")
    second = chat.send("Another one?")
    assert [m["role"] for m in chat.messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert chat.messages[2]["content"] == first.message.content
    assert chat.messages[4]["content"] == second.message.content
    if daemon.log():
        prompt = render_on_daemon(str(daemon.url), sdk_model, chat.messages[:4])
        assert prompt.startswith("<start_of_turn>user\nBe terse.\n\nName a colour.<end_of_turn>\n")
        assert f"<start_of_turn>model\n{first.message.content}<end_of_turn>\n" in prompt
        assert prompt.endswith(
            "<start_of_turn>user\nAnother one?<end_of_turn>\n<start_of_turn>model\n"
        )
        assert prompt_was_sent(version, daemon.log(), prompt)  # what the second turn ran on


def test_generate(client: Client) -> None:
    out = client.generate("The sea is", options=SHORT)
    assert out.done and isinstance(out.response, str) and 0 < (out.eval_count or 0) <= 4
    streamed = list(client.generate("The sky is", stream=True, options=SHORT))
    assert streamed[-1].done


def test_list_and_show(client: Client, sdk_model: str, patched: Path) -> None:
    models = {m.name: m for m in client.list_gemma()}
    assert f"{sdk_model}:latest" in models
    entry = models[f"{sdk_model}:latest"]
    assert entry.size >= patched.stat().st_size  # the weights plus template/params layers
    assert entry.quant == "Q4_K_M" and not entry.vision
    s = client.show()
    assert s.template == OLLAMA_TEMPLATE and s.capabilities == ["completion"]


@pytest.mark.parametrize("call", ["pull", "ensure"])
def test_pull_offline_is_a_fast_one_line_error(url: str, call: str) -> None:
    with Client(url, timeout=60) as client:
        t0 = time.monotonic()
        with pytest.raises(OllamaError) as info:
            getattr(client, call)("gemma3:270m", progress=False)
        elapsed = time.monotonic() - t0
    message = str(info.value)
    assert elapsed < 30 and "\n" not in message
    assert "gemma3:270m" in message or "registry.ollama.ai" in message, message


def test_missing_model(client: Client) -> None:
    missing = _name("gemma3-pack-missing")
    with pytest.raises(ModelNotFound, match=missing):
        client.chat("Hi", model=missing)
    with pytest.raises(ModelNotFound, match=missing):
        client.show(missing)


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
}


def test_format_json_schema_gives_parseable_json(client: Client) -> None:
    reply = client.chat(
        "Is the sea wet? Answer in JSON.", format=SCHEMA, options={"num_predict": 48, "seed": 3}
    )
    assert reply.done_reason == "stop", reply
    assert json.loads(reply.message.content)["answer"] in ("yes", "no")


def test_image_to_a_text_model_is_refused_before_the_chat_request(url: str, sdk_model: str) -> None:
    seen = Recorder()
    with (
        Client(url, model=sdk_model, event_hooks={"request": [seen]}) as client,
        pytest.raises(VisionNotSupported, match=sdk_model),
    ):
        client.chat("What is this?", images=[png_bytes(32)])
    assert seen.requests == [("POST", "/api/show")]


# --------------------------------------------------------------------------- the SDK, async


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_client_against_the_daemon(url: str, sdk_model: str) -> None:
    async with AsyncClient(url, model=sdk_model, timeout=300) as client:
        reply = await client.chat("Say hi.", options=SHORT)
        assert reply.done and 0 < (reply.eval_count or 0) <= 4
        chunks = [c async for c in await client.chat("Count.", stream=True, options=SHORT)]
        assert chunks[-1].done and len(chunks) >= 2
        chat = client.conversation(system="Be terse.", options=SHORT)
        await chat.send("Name a colour.")
        await chat.send("Another?")
        roles = [m["role"] for m in chat.messages]
        assert roles == ["system", "user", "assistant", "user", "assistant"]
        out = await client.generate("The sea is", options=SHORT)
        assert out.done
        assert f"{sdk_model}:latest" in {m.name for m in await client.list_gemma()}
        assert (await client.show()).template == OLLAMA_TEMPLATE
        structured = await client.chat(
            "Is the sea wet?", format=SCHEMA, options={"num_predict": 48, "seed": 3}
        )
        assert json.loads(structured.message.content)["answer"] in ("yes", "no")
        with pytest.raises(ModelNotFound):
            await client.chat("Hi", model=_name("gemma3-pack-missing"))
        with pytest.raises(OllamaError):
            await client.pull("gemma3:270m", progress=False)


@pytest.mark.anyio
async def test_async_image_to_a_text_model_is_refused_first(url: str, sdk_model: str) -> None:
    seen = Recorder()
    async with AsyncClient(url, model=sdk_model, event_hooks={"request": [seen.arecord]}) as client:
        with pytest.raises(VisionNotSupported):
            await client.chat("What is this?", images=[png_bytes(32)])
    assert seen.requests == [("POST", "/api/show")]


# --------------------------------------------------------------------------- a daemon that dies


@pytest.fixture
def own_daemon(daemon, version: str, tmp_path: Path) -> Iterator[_engines.OllamaDaemon]:
    if version == OLD and _engines.USER_OLLAMA_HOST:
        pytest.skip("stopping a daemon needs one of our own; OLLAMA_HOST points at yours")
    yield from _own(binary_of(version), tmp_path / "own")


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


def _group_gone(pgid: int, timeout: float = 20) -> bool:
    """Wait (signals are delivered asynchronously) until process group ``pgid`` has no live process."""
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_daemon_stopped_mid_stream(own_daemon: _engines.OllamaDaemon, patched: Path) -> None:
    with Client(own_daemon.url, timeout=120) as client:
        client.create_from_gguf(patched, "g3", progress=False)
        stream = client.chat(
            "Tell me a long story.", model="g3", stream=True, options={"num_predict": 400}
        )
        first = next(stream)
        assert not first.done
        assert own_daemon.proc is not None
        pgid = own_daemon.proc.pid
        own_daemon.stop(signal.SIGKILL)
        with pytest.raises(OllamaResponseError) as info:
            for _ in stream:
                pass
    message = str(info.value)
    assert own_daemon.url in message and "\n" not in message
    assert re.search(r"dropped|mid-request", message), message
    assert _group_gone(pgid)  # neither serve nor its runner survived


STARTER = """
import sys, time, pathlib
sys.path.insert(0, {tests!r})
import _engines
d = _engines.OllamaDaemon(pathlib.Path({binary!r}), pathlib.Path({root!r})).start()
print(d.proc.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_no_daemon_outlives_the_test_process(
    daemon, version: str, tmp_path: Path, how: int
) -> None:
    """Ctrl-C runs the atexit stop; a SIGKILLed test process takes serve down via PDEATHSIG."""
    if version == OLD and _engines.USER_OLLAMA_HOST:
        pytest.skip("uses our own build; OLLAMA_HOST points at yours")
    script = STARTER.format(
        tests=str(ROOT / "tests" / "support"), binary=str(binary_of(version)), root=str(tmp_path)
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert _group_alive(pid)
        proc.send_signal(how)
        proc.wait(timeout=30)
    assert _group_gone(pid)


# --------------------------------------------------------------------------- export folders


def _blob_uploads(seen: Recorder) -> list[str]:
    return [
        p.removeprefix("/api/blobs/") for m, p in seen.requests if m == "POST" and "/blobs/" in p
    ]


@pytest.fixture(scope="module")
def text_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export folder: the 270M checkpoint (real weights) as Q8_0."""
    from _assets_ckpt import hf_checkpoint_270m

    from gemma3_pack import export

    out = tmp_path_factory.mktemp("export") / "g3-export"
    export(hf_checkpoint_270m(), output_dir=out, quants="Q8_0", name="g3-export", progress=False)
    return out


def test_create_from_export_uploads_once_and_chats(
    url: str, text_export: Path, created: list[str]
) -> None:
    manifest = json.loads((text_export / "export.json").read_text())
    [model] = manifest["models"]
    name = _name("g3-export")
    seen = Recorder()
    with Client(url, model=name, timeout=300, event_hooks={"request": [seen]}) as client:
        assert client.create_from_export(text_export, name, progress=False).status == "success"
        created.append(name)
        fresh = _blob_uploads(seen)
        reply = client.chat("Say hi.", options=SHORT)
        assert reply.done and 0 < (reply.eval_count or 0) <= 4
        # the blob the daemon stores is the file export.json describes
        assert f"sha256-{model['sha256']}" in show(url, name)["modelfile"]
        assert client.has_blob(f"sha256:{model['sha256']}")
        assert show(url, name)["details"]["quantization_level"] == "Q8_0"
        seen.requests.clear()
        client.create_from_export(text_export, name, progress=False)
    if fresh:  # a user's daemon may already hold this blob
        assert fresh == [f"sha256:{model['sha256']}"]
    assert _blob_uploads(seen) == []  # re-running uploads nothing: HEAD answered 200
    assert ("HEAD", f"/api/blobs/sha256:{model['sha256']}") in seen.requests


def test_export_modelfile_through_the_cli_equals_create_from_export(
    daemon, url: str, text_export: Path, created: list[str]
) -> None:
    cli_name, sdk_name = _name("g3-export-cli"), _name("g3-export-sdk")
    result = daemon.cli("create", cli_name, "-f", str(text_export / "Modelfile"))
    assert result.returncode == 0, result.stderr
    created.append(cli_name)
    with Client(url) as client:
        client.create_from_export(text_export, sdk_name, progress=False)
    created.append(sdk_name)
    a, b = show(url, cli_name), show(url, sdk_name)
    for key in ("template", "license", "details", "capabilities"):
        assert a.get(key) == b.get(key), key
    assert show_parameters(a["parameters"]) == show_parameters(b["parameters"])
    blob = re.compile(r"^FROM (\S+)$", re.M)
    assert blob.findall(a["modelfile"]) == blob.findall(b["modelfile"])


# --------------------------------------------------------------------------- vision


@pytest.fixture(scope="module")
def vision_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vision fixture (real 270M text weights + a small SigLIP tower) exported as Q8_0 with
    ``--ollama-format fused``: the folder holds the pair (text GGUF + mmproj) *and* the fused file."""
    from _assets_vision import hf_checkpoint_vision

    from gemma3_pack import export

    out = tmp_path_factory.mktemp("vexport") / "g3-vision"
    export(
        hf_checkpoint_vision("release"),
        output_dir=out,
        quants="Q8_0",
        ollama_format="fused",
        progress=False,
    )
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["mmproj"] and manifest["fused"]
    return out


@pytest.fixture(scope="module")
def vision_models(url: str, vision_export: Path, created: list[str]) -> dict[str, str]:
    names = {}
    with Client(url) as client:
        for how in ("pair", "fused"):
            name = names[how] = _name(f"g3-vision-{how}")
            assert (
                client.create_from_export(vision_export, name, packaging=how, progress=False).status
                == "success"
            )
            created.append(name)
    return names


@pytest.mark.parametrize("how", ["pair", "fused"])
def test_vision_image_tokens_reach_the_model(
    daemon, url: str, vision_models: dict[str, str], vision_export: Path, how: str, version: str
) -> None:
    """Both packagings answer an image, and the image adds 256 tokens (plus its
    <start_of_image>/<end_of_image> markers) to the prompt the model evaluates. On 0.24.0 the pair
    runs on Ollama's llama.cpp engine ("split vision models aren't supported" by its own engine),
    the fused file on Ollama's own Go engine. On 0.34.4 both run on llama-server: the pair as
    ``--model text --mmproj mmproj``, the fused file as ``--model F --mmproj F``, read through
    Ollama's compat layer ("detected Ollama-format gemma3 GGUF")."""
    name = vision_models[how]
    manifest = json.loads((vision_export / "export.json").read_text())
    files = show(url, name)
    sent = re.findall(r"^FROM \S+sha256-([0-9a-f]{64})$", files["modelfile"], re.M)
    expected = (
        [manifest["fused"]["sha256"]]
        if how == "fused"
        else [manifest["models"][0]["sha256"], manifest["mmproj"]["sha256"]]
    )
    assert sent == expected
    with Client(url, model=name, timeout=600) as client:
        assert client.has_vision()
        with_image = client.chat("Describe the picture.", images=[png_bytes()], options=SHORT)
        text_only = client.chat("Describe the picture.", options=SHORT)
    extra = (with_image.prompt_eval_count or 0) - (text_only.prompt_eval_count or 0)
    print(
        f"\n{how}: prompt_eval_count {with_image.prompt_eval_count} with the image, "
        f"{text_only.prompt_eval_count} without (+{extra})"
    )
    assert with_image.done and 0 < (with_image.eval_count or 0) <= 4
    assert 256 <= extra <= 256 + 8
    if version == OLD and daemon.log() and how == "pair":
        assert "split vision models aren't supported" in daemon.log()
    if version == NEW:
        assert show(url, name)["capabilities"] == ["completion", "vision"]
        launch = rf"--model \S+sha256-{sent[0]} .*--mmproj \S+sha256-{sent[-1]} "
        assert re.search(launch, daemon.log()), f"no llama-server launch matching {launch}"
        if how == "fused":
            assert "detected Ollama-format gemma3 GGUF" in daemon.log()


def test_auto_packaging_on_this_daemon(url: str, vision_export: Path, created: list[str]) -> None:
    """``auto`` follows what this daemon was seen to run: fused on 0.11.11-0.29 when the export
    has one (pair-only exports ship as the pair there), pair on >= 0.30."""
    name = _name("g3-vision-auto")
    with Client(url) as client:
        client.create_from_export(vision_export, name, progress=False)
        created.append(name)
        version = client.version()
    manifest = json.loads((vision_export / "export.json").read_text())
    sent = re.findall(r"sha256-([0-9a-f]{64})$", show(url, name)["modelfile"], re.M)
    if tuple(int(n) for n in version.split(".")[:2]) < (0, 30):
        assert sent == [manifest["fused"]["sha256"]]
    else:
        assert sent == [manifest["models"][0]["sha256"], manifest["mmproj"]["sha256"]]


# --------------------------------------------------------------------------- the demo


def test_demo_creates_its_model_and_chats_through_the_daemon(
    url: str, tmp_path: Path, created: list[str]
) -> None:
    result = run_cli(
        "demo", "--out", str(tmp_path / "demo"), "--no-chat", "--json", env={"OLLAMA_HOST": url}
    )
    assert result.code == 0, result.stderr
    created.append("gemma3-270m-demo")
    ollama = json.loads(result.stdout)["ollama"]
    assert ollama["created"] is True and "error" not in ollama, ollama
    assert ollama["version"] and isinstance(ollama["reply"], str) and 0 < ollama["tokens"] <= 32
    got = show(url, "gemma3-270m-demo")
    assert got["template"] == OLLAMA_TEMPLATE
    assert "ollama    created gemma3-270m-demo" in result.stderr
