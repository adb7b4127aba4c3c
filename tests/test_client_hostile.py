"""The SDK against servers and inputs that misbehave (issue "Hostile and real-world inputs").

Every case ends in one :mod:`gemma3_pack._errors` error of one clean line, in bounded time and
memory: a server that accepts and never answers, replies that are a JSON list, a string or miss
fields, a 40 MiB reply line, an HTML error page with terminal escapes, a redirect to another
origin, ``--host gopher://[::1``, an ``export.json`` whose ``models`` is a number, images that are
``/dev/zero`` or a FIFO.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fake_ollama import HOST, REPLY
from _loopback import LoopbackOllama
from _loopback_openai import LoopbackOpenAI
from conftest import assert_one_line_error

from gemma3_pack import InputError, ServerResponseError, ServerTimeout, UsageError
from gemma3_pack._sdk._client import Client, read_export
from gemma3_pack._sdk._images import encode_image
from gemma3_pack._sdk._transport import MAX_LINE, clean_text


class Silent:
    """Accepts connections and reads requests, then answers with ``answer`` (bytes) or never."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        conns = []
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            if self.answer is not None:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()
        for conn in conns:
            conn.close()

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(self.answer or b"")
        except OSError:
            pass

    def __enter__(self) -> Silent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    with Silent() as srv:
        yield srv


# --------------------------------------------------------------------------- hangs


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.chat("Hi"),
        lambda c: list(c.chat("Hi", stream=True)),
        lambda c: c.pull("gemma3:4b", progress=False),
    ],
    ids=["chat", "stream", "pull"],
)
def test_a_server_that_never_answers_times_out(silent: Silent, call) -> None:
    start = time.monotonic()
    with Client(silent.url, timeout=0.5) as client, pytest.raises(ServerTimeout) as info:
        call(client)
    assert time.monotonic() - start < 5
    assert str(info.value) == (
        f"{silent.url} did not answer within 0.5 s: raise the timeout (timeout= / --timeout) "
        "if the model is still loading"
    )


def test_openai_backend_times_out_too(silent: Silent) -> None:
    with (
        Client(silent.url + "/v1", model="m", timeout=0.5) as client,
        pytest.raises(ServerTimeout, match=r"within 0\.5 s"),
    ):
        client.chat("Hi")


def test_the_default_timeout_is_set_and_timeout_none_is_not_forever() -> None:
    with Client(HOST) as client:
        timeout = client.ollama._client.timeout
    assert (timeout.connect, timeout.read) == (10.0, 300.0)


def test_cli_chat_timeout_is_one_line(silent: Silent, cli) -> None:
    result = cli("chat", "Hi", "--host", silent.url, "--timeout", "0.5")
    assert_one_line_error(result, f"{silent.url} did not answer within 0.5 s", "--timeout")


# --------------------------------------------------------------------------- bad replies


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        ([1, 2, 3], "sent a reply that is not the JSON object the protocol says"),
        ("just a string", "sent a reply that is not the JSON object the protocol says"),
        ({"model": "gemma3:4b", "done": True}, "sent a reply without a valid message"),
    ],
)
def test_replies_of_the_wrong_shape_blame_the_server(httpx_mock, reply, text) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/chat", json=reply)
    with Client(HOST) as client, pytest.raises(ServerResponseError) as info:
        client.chat("Hi")
    assert text in str(info.value)
    assert "is it an Ollama server?" in str(info.value)
    assert not isinstance(info.value, UsageError)


@pytest.mark.parametrize("body", [b'"garbage"', b"garbage", b'{"version": 3}', b"[]"])
def test_a_version_that_is_not_one_is_a_server_error(httpx_mock, body) -> None:
    httpx_mock.add_response(url=f"{HOST}/api/version", content=body)
    with Client(HOST) as client, pytest.raises(ServerResponseError) as info:
        client.version()
    assert HOST in str(info.value) and "\n" not in str(info.value)


def test_a_reply_line_over_the_cap_fails_at_the_cap_not_at_out_of_memory() -> None:
    size = MAX_LINE + (8 << 20)
    header = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n"
    line = b'{"model": "' + b"a" * size + b'"}\n'
    with Silent(header % len(line) + line) as srv, Client(srv.url) as client:
        tracemalloc.start()
        start = time.monotonic()
        try:
            with pytest.raises(ServerResponseError, match="sent a reply line over 32 MiB"):
                list(client.chat("Hi", stream=True))
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert time.monotonic() - start < 20
    assert peak < 3 * MAX_LINE  # what is buffered is bounded by the cap, not by the reply


def test_an_html_error_page_with_escapes_becomes_its_first_meaningful_line(httpx_mock) -> None:
    page = (
        "<html><head><title>502</title></head><body>\n<h1>Bad \x1b]0;owned\x07Gateway "
        "\x1b[31mnginx</h1>\n" + "<p>upstream trace</p>\n" * 2000 + "</body></html>"
    )
    httpx_mock.add_response(url=f"{HOST}/api/chat", status_code=502, text=page)
    with Client(HOST) as client, pytest.raises(ServerResponseError) as info:
        client.chat("Hi")
    assert str(info.value) == "ollama: Bad Gateway nginx (status code: 502)"


def test_clean_text_drops_controls_and_keeps_one_short_line() -> None:
    assert clean_text("\n\n  first\x07 line \x1b[1mbold\x1b[0m\nsecond") == "first line bold"
    assert clean_text("x" * 1000, 10) == "x" * 9 + "…"
    assert clean_text("&lt;tag&gt; &amp; more") == "<tag> & more"


def test_a_redirect_to_another_origin_is_not_followed_with_the_prompt() -> None:
    with LoopbackOpenAI() as elsewhere, LoopbackOpenAI() as first:
        first.redirect = elsewhere.root
        with Client(first.url, model="m") as client, pytest.raises(ServerResponseError) as info:
            client.chat("my secret prompt")
        assert elsewhere.requests == []
        assert "redirected to another server" in str(info.value)
        with LoopbackOllama() as ollama_elsewhere:
            first.redirect = ollama_elsewhere.url
            with Client(first.root) as client, pytest.raises(ServerResponseError):
                client.chat("my secret prompt")
            assert ollama_elsewhere.requests == []


def test_a_same_origin_redirect_is_still_followed(httpx_mock) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/chat", status_code=307, headers={"Location": f"{HOST}/v2/api/chat"}
    )
    httpx_mock.add_response(url=f"{HOST}/v2/api/chat", json=REPLY)
    with Client(HOST) as client:
        assert client.chat("Hi").message.content == "Rayleigh scattering."


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("host", "text"),
    [
        ("gopher://[::1", "is not a valid address"),
        ("gopher://example.org", "has scheme 'gopher': use http:// or https://"),
        ("127.0.0.1:99999", "is not a valid address"),
    ],
)
def test_a_bad_host_is_a_usage_error(host, text) -> None:
    with pytest.raises(UsageError, match=text):
        Client(host)


def test_cli_bad_host_is_one_line(cli) -> None:
    result = cli("chat", "Hi", "--host", "gopher://[::1")
    assert_one_line_error(result, "host 'gopher://[::1' is not a valid address")


@pytest.mark.parametrize(
    ("manifest", "text"),
    [
        ({"format": 1, "models": 5}, '"models" is int 5, expected a list of files'),
        ({"format": 1, "models": "a.gguf"}, '"models" is str'),
        ({"format": 1, "models": [{"path": "a.gguf", "size": "big"}]}, "size 'big'"),
        ({"format": 1, "models": [{"path": 7}]}, 'model entry has no "path"'),
        ([1, 2], "unsupported format None"),
    ],
)
def test_export_json_of_the_wrong_shape_is_one_line(tmp_path: Path, manifest, text) -> None:
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError) as info:
        read_export(tmp_path)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_images_that_are_devices_or_fifos_fail_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(InputError, match="is a character device, not a regular file"):
        encode_image("/dev/zero")
    with pytest.raises(InputError, match=r"is a FIFO \(named pipe\), not a regular file"):
        encode_image(fifo)  # nobody writes to it: a blocking open would hang here
    assert time.monotonic() - start < 2


def test_a_huge_image_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:
        fh.truncate(65 << 20)  # sparse: nothing is written
    with pytest.raises(InputError, match="over the 64 MiB limit"):
        encode_image(big)


def test_cli_image_from_dev_zero_is_one_line(cli) -> None:
    result = cli("chat", "What is this?", "--image", "/dev/zero", "--host", "127.0.0.1:9")
    assert_one_line_error(result, "image '/dev/zero' is a character device, not a regular file")


def test_an_offline_daemons_pull_says_it_cannot_reach_the_registry(httpx_mock) -> None:
    # What a real Ollama 0.24.0 streams when DNS fails (seen by the real-daemon suite).
    detail = (
        'pull model manifest: Get "https://registry.ollama.ai/v2/library/gemma3/manifests/270m": '
        "dial tcp: lookup registry.ollama.ai on 127.0.0.53:53: no such host"
    )
    httpx_mock.add_response(
        url=f"{HOST}/api/pull",
        content=json.dumps({"status": "pulling manifest"}).encode()
        + b"\n"
        + json.dumps({"error": detail}).encode()
        + b"\n",
    )
    with Client(HOST) as client, pytest.raises(ServerResponseError) as info:
        client.pull("gemma3:270m", progress=False)
    assert str(info.value) == (
        f"ollama: Ollama at {HOST} cannot reach its registry to pull gemma3:270m (offline?): "
        + detail
    )
