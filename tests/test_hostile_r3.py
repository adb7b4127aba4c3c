"""Hostile inputs, round 3 (issue 19): what the red team found after rounds 1 and 2.

The SDK half: compressed replies counted after decoding, the progress deadline (a server that
trickles bytes or sends only keep-alives), httpx's whole exception tree mapped, JSON that ``json``
itself chokes on (4,300-digit integers, 100,000-deep nesting), streams that end before ``done``.
The files half (GGUF header counts, big-endian writers, validation before the first byte, stale
``.part`` files, guarded outputs, one JSON reader) follows below, through the real CLI with the
child's peak RSS and wall time measured (tests/support/_hostile.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import inspect
import json
import os
import shutil
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _fake_ollama import REPLY
from _hostile import run_measured

from gemma3_pack import Gemma3PackError, ServerResponseError, ServerTimeout
from gemma3_pack._sdk._client import AsyncClient, Client
from gemma3_pack._sdk._translate import HTTPX_ERRORS, translate_common
from gemma3_pack._sdk._transport import MAX_LINE
from gemma3_pack.cli import UNEXPECTED

RSS_BOUND_MB = 250
SECONDS_BOUND = 20


class Scripted:
    """A loopback HTTP server whose every connection is handed to ``script(conn)`` after the
    request is read: the script writes whatever bytes, at whatever pace, it likes."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if b"content-length" in line.lower()
            ]
            while length and len(body) < length[0]:
                body += conn.recv(65536)
            self.script(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _answer(body: bytes, *, encoding: str = "", ctype: str = "application/json") -> Callable:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    if encoding:
        head += f"Content-Encoding: {encoding}\r\n"
    data = (head + "Connection: close\r\n\r\n").encode() + body

    def script(conn: socket.socket) -> None:
        conn.sendall(data)

    return script


def _bomb(line_bytes: int, *, newline: bool = False) -> bytes:
    """A reply whose one JSON line inflates to ``line_bytes`` of content (gzip ratio ~1000:1)."""
    z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [z.compress(b'{"model": "m", "message": {"role": "assistant", "content": "')]
    block = b"a" * (1 << 20)
    for _ in range(line_bytes >> 20):
        parts.append(z.compress(block))
    parts.append(z.compress(b'"}, "done": true}' + (b"\n" if newline else b"")))
    parts.append(z.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _bomb(512 << 20)  # 512 MiB of content from ~0.5 MB on the wire


# --------------------------------------------------------------------------- compressed replies


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_a_gzip_bomb_fails_at_the_cap_counted_after_decoding(bomb: bytes, stream: bool) -> None:
    assert len(bomb) < 1 << 20
    ctype = "application/x-ndjson" if stream else "application/json"
    with Scripted(_answer(bomb, encoding="gzip", ctype=ctype)) as srv, Client(srv.url) as client:
        tracemalloc.start()
        start = time.monotonic()
        try:
            with pytest.raises(ServerResponseError, match="sent a reply line over 32 MiB"):
                reply = client.chat("Hi", stream=stream)
                if stream:
                    list(reply)
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert time.monotonic() - start < 20
    assert peak < 3 * MAX_LINE, f"{peak >> 20} MiB buffered"


def test_the_async_client_counts_decoded_bytes_too(bomb: bytes) -> None:
    async def main() -> None:
        async with AsyncClient(srv.url) as client:
            await client.chat("Hi")

    with (
        Scripted(_answer(bomb, encoding="gzip")) as srv,
        pytest.raises(ServerResponseError, match="over 32 MiB"),
    ):
        asyncio.run(main())


def test_the_openai_backend_counts_decoded_bytes_too(bomb: bytes) -> None:
    with (
        Scripted(_answer(bomb, encoding="gzip")) as srv,
        Client(srv.url + "/v1", model="m") as client,
        pytest.raises(ServerResponseError) as info,
    ):
        client.chat("Hi")
    assert "over 32 MiB" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw", "gzip, gzip"])
def test_a_small_compressed_reply_still_decodes(encoding: str) -> None:
    body = json.dumps(REPLY).encode()
    if encoding == "deflate-raw":
        z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body, encoding = z.compress(body) + z.flush(), "deflate"
    elif encoding == "deflate":
        body = zlib.compress(body)
    else:
        for _ in encoding.split(","):
            body = gzip.compress(body)
    with Scripted(_answer(body, encoding=encoding)) as srv, Client(srv.url) as client:
        assert client.chat("Hi").message.content == "Rayleigh scattering."


@pytest.mark.parametrize(
    ("encoding", "body", "text"),
    [
        ("br", b"\x1b\x00", "'br'-compressed reply although none was asked for"),
        ("gzip", b"not gzip at all", "compressed reply that does not decompress"),
        ("gzip, gzip, gzip", b"", "compressed 3 times over"),
    ],
)
def test_an_unbounded_or_broken_encoding_is_refused(encoding: str, body: bytes, text: str) -> None:
    with (
        Scripted(_answer(body, encoding=encoding)) as srv,
        Client(srv.url) as client,
        pytest.raises(ServerResponseError) as info,
    ):
        client.chat("Hi")
    assert text in str(info.value) and "\n" not in str(info.value)


def test_the_guard_asks_for_an_uncompressed_reply() -> None:
    seen: list[bytes] = []

    def script(conn: socket.socket) -> None:
        _answer(json.dumps(REPLY).encode())(conn)

    class Recording(Scripted):
        def _run(self, conn: socket.socket) -> None:
            conn.settimeout(5)
            data = conn.recv(65536)
            seen.append(data)
            script(conn)
            conn.close()

    with Recording(script) as srv, Client(srv.url) as client:
        client.chat("Hi")
    assert b"accept-encoding: identity" in seen[0].lower()


def test_cli_chat_with_a_gzip_bomb_is_one_line_in_bounded_memory(bomb: bytes) -> None:
    with Scripted(_answer(bomb, encoding="gzip")) as srv:
        res = run_measured("chat", "Hi", "--host", srv.url, "--no-stream")
    assert UNEXPECTED not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.code == 2 and len(lines) == 1 and "over 32 MiB" in lines[0], res.stderr[-2000:]
    assert res.max_rss_mb < RSS_BOUND_MB and res.seconds < SECONDS_BOUND, res


# --------------------------------------------------------------------------- progress deadline


def _trickle(conn: socket.socket) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    for _ in range(60):
        conn.sendall(b" ")
        time.sleep(0.2)


def _keepalive(conn: socket.socket) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(60):
        piece = b": keep-alive\n\n"
        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("script", "call"),
    [
        (_trickle, lambda url: Client(url, timeout=1).chat("Hi")),
        (_trickle, lambda url: list(Client(url, timeout=1).chat("Hi", stream=True))),
        (
            _keepalive,
            lambda url: list(Client(url + "/v1", model="m", timeout=1).chat("Hi", stream=True)),
        ),
        (_trickle, lambda url: asyncio.run(_achat(url))),
    ],
    ids=["trickle-chat", "trickle-stream", "sse-keepalive-openai", "trickle-async"],
)
def test_a_server_that_never_completes_a_line_times_out(script, call) -> None:
    start = time.monotonic()
    with Scripted(script) as srv, pytest.raises(ServerTimeout) as info:
        call(srv.url)
    assert time.monotonic() - start < 5  # timeout=1: every read succeeds, the line never comes
    assert "sent no complete reply line within 1 s" in str(info.value)
    assert "\n" not in str(info.value)


async def _achat(url: str) -> None:
    async with AsyncClient(url, timeout=1) as client:
        await client.chat("Hi")


def test_a_slow_but_steady_stream_is_not_cut() -> None:
    """Lines that each arrive within the read timeout pass, however long the whole reply takes."""

    def steady(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for i in range(8):
            done = i == 7
            line = json.dumps(
                {**REPLY, "message": {"role": "assistant", "content": "x"}, "done": done}
            )
            piece = line.encode() + b"\n"
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.25)
        conn.sendall(b"0\r\n\r\n")

    with Scripted(steady) as srv, Client(srv.url, timeout=1) as client:
        chunks = list(client.chat("Hi", stream=True))
    assert "".join(c.message.content for c in chunks) == "x" * 8


# --------------------------------------------------------------------------- foreign errors


def _exception_classes(module_name: str) -> list[type[BaseException]]:
    module = pytest.importorskip(module_name)
    return sorted(
        (
            c
            for c in vars(module).values()
            if inspect.isclass(c)
            and issubclass(c, Exception)
            and c.__module__.startswith(module_name)
        ),
        key=lambda c: c.__name__,
    )


def _instance(cls: type[BaseException]) -> BaseException:
    request = httpx.Request("GET", "http://127.0.0.1:1/api/chat")
    for args, kwargs in (
        (("boom",), {"request": request}),
        (("boom",), {"request": request, "response": httpx.Response(500, request=request)}),
        (("boom",), {}),
        ((), {}),
    ):
        try:
            return cls(*args, **kwargs)
        except TypeError:
            continue
    raise AssertionError(f"cannot build {cls}")


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_every_httpx_exception_is_mapped(module: str) -> None:
    classes = _exception_classes(module)
    assert len(classes) >= 25, classes
    for cls in classes:
        mapped = translate_common(_instance(cls), "http://h:1", "ollama", 3.0)
        assert isinstance(mapped, Gemma3PackError), (cls, mapped)
        assert "\n" not in str(mapped) and str(mapped), (cls, mapped)


def test_the_table_names_only_classes_httpx_has() -> None:
    names = {c.__name__ for c in _exception_classes("httpx")} | {"NetworkError", "ProtocolError"}
    assert set(HTTPX_ERRORS) <= names, set(HTTPX_ERRORS) - names


@pytest.mark.parametrize(
    ("cls", "kind", "text"),
    [
        ("ConnectError", "ServerNotRunning", "cannot reach Ollama"),
        ("ReadTimeout", "ServerTimeout", "did not answer within 3 s"),
        ("DecodingError", "ServerResponseError", "reply body that does not decode"),
        ("TooManyRedirects", "ServerResponseError", "redirected too many times"),
        ("RemoteProtocolError", "ServerResponseError", "failed mid-request"),
        ("UnsupportedProtocol", "UsageError", "cannot be sent"),
    ],
)
def test_httpx_errors_say_what_happened(cls: str, kind: str, text: str) -> None:
    mapped = translate_common(_instance(getattr(httpx, cls)), "http://h:1", "ollama", 3.0)
    assert type(mapped).__name__ == kind and text in str(mapped), mapped


# --------------------------------------------------------------------------- JSON json can't read

_HUGE_INT = (
    b'{"model": "m", "message": {"role": "assistant", "content": "x"}, "done": true, "n": '
    + b"9" * 5000
    + b"}"
)
_DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("body", [_HUGE_INT, _DEEP], ids=["5000-digit-int", "100000-deep"])
@pytest.mark.parametrize(
    "call",
    [
        lambda url: Client(url).chat("Hi"),
        lambda url: list(Client(url).chat("Hi", stream=True)),
        lambda url: Client(url + "/v1", model="m").chat("Hi"),
        lambda url: asyncio.run(_achat(url)),
        lambda url: Client(url).version(),
    ],
    ids=["chat", "stream", "openai", "async", "version"],
)
def test_json_that_json_cannot_parse_is_a_server_error(body: bytes, call) -> None:
    with Scripted(_answer(body + b"\n")) as srv, pytest.raises(ServerResponseError) as info:
        call(srv.url)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content", ["9" * 5000, "[" * 100_000 + "]" * 100_000], ids=["5000-digit-int", "100000-deep"]
)
def test_format_schema_replies_json_cannot_parse(content: str) -> None:
    body = json.dumps({**REPLY, "message": {"role": "assistant", "content": content}}).encode()
    with (
        Scripted(_answer(body)) as srv,
        Client(srv.url) as client,
        pytest.raises(ServerResponseError, match="not JSON of the requested format") as info,
    ):
        client.chat("Hi", format={"type": "object"})
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- streams cut short


def test_a_stream_that_ends_before_done_is_flagged() -> None:
    lines = b"".join(
        json.dumps(
            {**REPLY, "message": {"role": "assistant", "content": w}, "done": False}
        ).encode()
        + b"\n"
        for w in ("The ", "sky ")
    )
    with Scripted(_answer(lines, ctype="application/x-ndjson")) as srv, Client(srv.url) as client:
        got: list[str] = []
        with pytest.raises(
            ServerResponseError, match=r"ended before its final chunk \(done: true\)"
        ):
            for chunk in client.chat("Hi", stream=True):
                got.append(chunk.message.content)
    assert got == ["The ", "sky "]  # what came is still handed over, then the error


def test_cli_chat_stream_cut_short_exits_2_after_the_text() -> None:
    line = json.dumps(
        {**REPLY, "message": {"role": "assistant", "content": "The sky"}, "done": False}
    )
    with Scripted(_answer(line.encode() + b"\n", ctype="application/x-ndjson")) as srv:
        res = run_measured("chat", "Hi", "--host", srv.url)
    assert res.code == 2 and "The sky" in res.stdout, res
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "done: true" in lines[0], (
        res.stderr
    )


# --------------------------------------------------------------------------- create_from_export


@pytest.mark.parametrize("change", ["size", "bytes"])
def test_create_from_export_rehashes_a_file_that_changed(tmp_path: Path, change: str) -> None:
    """export.json's sha256 names the blob; a file that changed since (size differs, or
    ``verify=True``) is hashed again, so a daemon holding the old digest is not trusted."""
    from _fake_export import make_export
    from _loopback import LoopbackOllama

    export = make_export(tmp_path / "out")
    gguf_path = export / "my-gemma-Q4_K_M.gguf"
    old = "sha256:" + json.loads((export / "export.json").read_text())["models"][0]["sha256"]
    raw = bytearray(gguf_path.read_bytes())
    if change == "size":
        raw += b"\0" * 32
    else:
        raw[-1] ^= 0xFF
    gguf_path.write_bytes(bytes(raw))
    new = "sha256:" + hashlib.sha256(raw).hexdigest()
    with LoopbackOllama() as server, Client(server.url) as client:
        server.blobs[old] = len(raw)  # the daemon has the export-time blob
        client.create_from_export(export, "my-gemma", progress=False, verify=change == "bytes")
        create = next(r for r in server.requests if r.path == "/api/create")
    assert create.body["files"] == {"my-gemma-Q4_K_M.gguf": new}
    assert ("POST", f"/api/blobs/{new}") in [(r.method, r.path) for r in server.requests]


# =========================================================================== files, through the CLI

from _fused_keys import _CLIP, _VISION, _with_tensors  # noqa: E402
from _hostile import (  # noqa: E402
    STR,
    U32,
    gemma3_kvs,
    kv,
    raw_gguf,
    safetensors_bytes,
    tensor_info,
)
from _refusals import _assert_refused, _ckpt, _state  # noqa: E402

from gemma3_pack._gguf._layout import _names  # noqa: E402


def _fused(d: Path, edits: dict | None = None, shapes: dict | None = None) -> Path:
    """A minimal Ollama-layout fused Gemma 3 GGUF (every vision tensor of a 1-layer tower, 8
    floats each); ``edits``: key -> (type, value), or None to drop it."""
    keys = {**_VISION, **(edits or {})}
    records = [*gemma3_kvs(), *(kv(k, *v) for k, v in keys.items() if v is not None)]
    return _with_tensors(d / "fused.gguf", records, ["token_embd.weight", *_names(1)], shapes or {})


def _pair(d: Path, edits: dict | None = None) -> tuple[Path, Path]:
    text = _with_tensors(d / "text.gguf", gemma3_kvs(), ["token_embd.weight"])
    keys = {**_CLIP, **(edits or {})}
    records = [kv(k, *v) for k, v in keys.items() if v is not None]
    return text, _with_tensors(d / "mmproj.gguf", records, list(_names(1).values()))


def _big_endian(d: Path) -> Path:
    """The fused file written big-endian by gguf-py (as for s390x)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(d / "fused.gguf"), "gemma3", endianess=gguf.GGUFEndian.BIG)
    w.add_uint32("gemma3.context_length", 32768)
    w.add_uint32("gemma3.block_count", 18)
    w.add_uint32("gemma3.embedding_length", 8)
    for key, (vtype, value) in _VISION.items():
        (w.add_uint32 if vtype == U32 else w.add_float32)(key, value)
    for name in ["token_embd.weight", *_names(1)]:
        w.add_tensor(name, np.zeros(8, dtype=np.float32))  # gguf-py byte-swaps on write
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return d / "fused.gguf"


def _claims_tensors(d: Path) -> Path:
    """An 81 MB sparse GGUF whose header claims 2.8 M tensors (each a 29-byte zero record)."""
    path = d / "m.gguf"
    head = (
        b"GGUF" + struct.pack("<IQQ", 3, 2_800_000, 1) + kv("general.architecture", STR, "gemma3")
    )
    path.write_bytes(head)
    with open(path, "r+b") as f:
        f.truncate(81 << 20)
    return path


SPLIT_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "vision block_count 2^31": (
        lambda d: _fused(d, {"gemma3.vision.block_count": (U32, 1 << 31)}),
        ("gemma3.vision.block_count is 2147483648", "expected an integer from 1 to"),
    ),
    "vision block_count a string": (
        lambda d: _fused(d, {"gemma3.vision.block_count": (STR, "many")}),
        ("gemma3.vision.block_count",),
    ),
    "patch_size 0 (a divisor)": (
        lambda d: _fused(d, {"gemma3.vision.patch_size": (U32, 0)}),
        ("gemma3.vision.patch_size is 0",),
    ),
    "image_size missing": (
        lambda d: _fused(d, {"gemma3.vision.image_size": None}),
        ("gemma3.vision.image_size is missing",),
    ),
    "layer_norm_epsilon missing (the projector's key, after the text part)": (
        lambda d: _fused(d, {"gemma3.vision.attention.layer_norm_epsilon": None}),
        ("layer_norm_epsilon is missing",),
    ),
    "0-D projector tensor": (
        lambda d: _fused(d, shapes={"mm.mm_input_projection.weight": ()}),
        ("mm.mm_input_projection.weight", "shape []"),
    ),
    "big-endian": (_big_endian, ("big-endian", "gguf-convert-endian")),
    "header claims 2.8M tensors in 81 MB": (_claims_tensors, ("claims", "2,800,000 tensors")),
}


@pytest.mark.parametrize("case", list(SPLIT_CASES))
def test_hostile_split(case: str, tmp_path: Path) -> None:
    make, needles = SPLIT_CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = make(inputs)
    before = _state(inputs)
    out = tmp_path / "out"
    out.mkdir()
    res = run_measured("doctor", str(src), "--split", "-o", str(out / "text.gguf"))
    _assert_refused(res, needles)
    assert list(out.iterdir()) == []  # neither output, no .part
    assert _state(inputs) == before


def test_a_valid_fused_file_splits_and_fuses_back(tmp_path: Path) -> None:
    """The corpus's base files are valid: each case above differs from success by its edit."""
    src = _fused(tmp_path)
    text, mm = tmp_path / "t.gguf", tmp_path / "mmproj-t.gguf"
    res = run_measured("doctor", str(src), "--split", "-o", str(text))
    assert res.code in (0, 1) and text.is_file() and mm.is_file(), res.stderr
    assert "error: " not in res.stderr
    t2, m2 = _pair(tmp_path / "p" if (tmp_path / "p").mkdir() is None else tmp_path)
    res = run_measured("doctor", str(t2), str(m2), "--fuse", "-o", str(tmp_path / "f.gguf"))
    assert res.code in (0, 1) and (tmp_path / "f.gguf").is_file(), res.stderr


FUSE_CASES: dict[str, tuple[dict, tuple[str, ...]]] = {
    "clip block_count 2^31": (
        {"clip.vision.block_count": (U32, 1 << 31)},
        ("clip.vision.block_count is 2147483648",),
    ),
    "clip block_count missing": ({"clip.vision.block_count": None}, ("block_count is missing",)),
    "clip patch_size 0": ({"clip.vision.patch_size": (U32, 0)}, ("clip.vision.patch_size is 0",)),
    "scale_factor 0": (
        {"clip.vision.projector.scale_factor": (U32, 0)},
        ("scale_factor is 0", "positive integer"),
    ),
    "layer_norm_epsilon a string": (
        {"clip.vision.attention.layer_norm_epsilon": (STR, "small")},
        ("layer_norm_epsilon",),
    ),
}


@pytest.mark.parametrize("case", list(FUSE_CASES))
def test_hostile_fuse(case: str, tmp_path: Path) -> None:
    edits, needles = FUSE_CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    text, mm = _pair(inputs, edits)
    before = _state(inputs)
    out = tmp_path / "out"
    out.mkdir()
    res = run_measured("doctor", str(text), str(mm), "--fuse", "-o", str(out / "fused.gguf"))
    _assert_refused(res, needles)
    assert list(out.iterdir()) == []
    assert _state(inputs) == before


@pytest.mark.parametrize("command", ["inspect", "patch", "doctor"])
def test_a_claimed_tensor_count_is_refused_before_the_loop(command: str, tmp_path: Path) -> None:
    src = _claims_tensors(tmp_path)
    args = {"patch": ["-o", str(tmp_path / "o.gguf")], "inspect": ["--json"], "doctor": []}
    res = run_measured(command, str(src), *args[command])
    _assert_refused(res, ("claims",))
    assert res.seconds < 5, res.seconds  # measured before the cap: 110 s and 2 GB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def test_split_widens_the_embedding_in_bounded_memory(tmp_path: Path) -> None:
    """A 64 MB F16 position embedding widened to F32: peak RSS stays far below the 320 MB the
    whole-tensor conversion took (input + float32 copy + bytes copy)."""
    n = 32 << 20  # F16 values
    names = ["token_embd.weight", *_names(1)]
    shapes = {"v.position_embedding.weight": (n,)}
    infos, at = [], 0
    for name in names:
        shape = shapes.get(name, (8,))
        ggml_type = 1 if name in shapes else 0
        infos.append(tensor_info(name, shape, ggml_type, at))
        at += (2 * n if name in shapes else 32) + (-(2 * n if name in shapes else 32) % 32)
    records = [*gemma3_kvs(), *(kv(k, *v) for k, v in _VISION.items())]
    src = raw_gguf(tmp_path / "fused.gguf", records, infos, b"", sparse_tail=at)
    res = run_measured("doctor", str(src), "--split", "-o", str(tmp_path / "t.gguf"))
    assert res.code in (0, 1), res.stderr
    assert (tmp_path / "mmproj-t.gguf").stat().st_size > 4 * n
    assert res.max_rss_mb < 200, f"peak RSS {res.max_rss_mb:.0f} MB"


# --- export: names, LoRA merges and JSON that json cannot read --------------------------------


def _adapter(d: Path, base: Path, *, b_value: float = 0.01, b_shape=(64, 4)) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    out = d / "adapter"
    out.mkdir()
    config = {"r": 4, "lora_alpha": 8, "base_model_name_or_path": str(base)}
    (out / "adapter_config.json").write_text(json.dumps(config))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    b = np.full(b_shape, b_value, dtype=np.float32)
    save_file(
        {
            f"{prefix}.lora_A.weight": np.full((4, 64), 0.01, dtype=np.float32),
            f"{prefix}.lora_B.weight": b,
        },
        str(out / "adapter_model.safetensors"),
    )
    return out


_BIG_INT = b"9" * 5000
EXPORT_CASES: dict[str, tuple[Callable[[Path, Path], Path], list[str], tuple[str, ...]]] = {
    "--name with an escape sequence": (
        lambda d, b: b,
        ["--name", "\x1b[31mred"],
        ("--name", "\\x1b[31mred", "printable"),
    ),
    "--name with a quote": (lambda d, b: b, ["--name", 'a"b'], ("--name", "quotes")),
    "LoRA with NaN in lora_B": (
        lambda d, b: _adapter(d, b, b_value=float("nan")),
        [],
        ("lora_B", "NaN or infinite"),
    ),
    "LoRA with Inf in lora_B": (
        lambda d, b: _adapter(d, b, b_value=float("inf")),
        [],
        ("lora_B", "NaN or infinite"),
    ),
    "LoRA whose product does not fit the base": (
        lambda d, b: _adapter(d, b, b_shape=(32, 4)),
        [],
        ("q_proj", "does not fit the base weight [64, 64]"),
    ),
    "config.json with a 5000-digit integer": (
        lambda d, b: _ckpt(d, b, config__json=b'{"vocab_size": ' + _BIG_INT + b"}"),
        [],
        ("config.json", "over 4,300 digits"),
    ),
    "safetensors header with a 5000-digit integer": (
        lambda d, b: _ckpt(
            d, b, model__safetensors=safetensors_bytes(b'{"x": ' + _BIG_INT + b"}", b"")
        ),
        [],
        ("model.safetensors", "over 4,300 digits"),
    ),
    "compressed-tensors group that is a list": (
        lambda d, b: _ckpt(
            d,
            b,
            config__json={
                "quantization_config": {
                    "quant_method": "compressed-tensors",
                    "config_groups": {"group_0": [1, 2]},
                }
            },
        ),
        [],
        ("group_0", "not an object"),
    ),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_hostile_export(case: str, base_ckpt: Path, tmp_path: Path) -> None:
    make, extra, needles = EXPORT_CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = make(inputs, base_ckpt)
    before, base_before = _state(inputs), _state(base_ckpt)
    out = tmp_path / "out"
    res = run_measured("export", str(src), "-o", str(out), "-q", "F32", "--quiet", *extra)
    _assert_refused(res, needles)
    assert not out.exists()  # not even the folder the disk check makes
    assert _state(inputs) == before and _state(base_ckpt) == base_before


def test_create_from_an_export_json_with_a_5000_digit_integer(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_bytes(b'{"format": ' + _BIG_INT + b"}")
    res = run_measured("create", "m", "--from", str(tmp_path), "--host", "127.0.0.1:9")
    _assert_refused(res, ("export.json", "over 4,300 digits", "re-export"))


# --- the CLI's own grammar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["plan", "--bogus"], ("No such option '--bogus'", "gemma3-pack plan --help")),
        (["export"], ("Missing argument 'SOURCE'", "gemma3-pack export --help")),
        (["nosuch"], ("No such command 'nosuch'", "gemma3-pack --help")),
        (["chat", "Hi", "--timeout", "soon"], ("'--timeout'", "gemma3-pack chat --help")),
    ],
    ids=["unknown-option", "missing-argument", "unknown-command", "bad-value"],
)
def test_usage_errors_are_one_line(args: list[str], needles: tuple[str, ...]) -> None:
    _assert_refused(run_measured(*args), needles)


# --- outputs: never a device behind a link, never a hand-edited Modelfile ----------------------


def test_modelfile_all_keeps_a_hand_edited_modelfile(tmp_path: Path) -> None:
    out = tmp_path / "mf"
    out.mkdir()
    mine = out / "gemma3-4b-it.Modelfile"
    mine.write_text("FROM gemma3:4b\nPARAMETER temperature 0.1\n")
    before = _state(out)
    _assert_refused(
        run_measured("modelfile", "--all", str(out)), ("gemma3-4b-it.Modelfile", "--force")
    )
    assert _state(out) == before  # nothing written, not even the other variants
    res = run_measured("modelfile", "--all", str(out), "--force")
    assert res.code == 0 and "Generated by gemma3-pack" in mine.read_text(), res.stderr
    again = _state(out)
    assert run_measured("modelfile", "--all", str(out)).code == 0  # ours: regenerated freely
    assert _state(out) == again


@pytest.mark.parametrize("target", ["fifo", "device", "folder"])
def test_o_link_to_a_special_file_is_never_replaced(target: str, tmp_path: Path) -> None:
    behind = {"fifo": tmp_path / "pipe", "device": Path("/dev/null"), "folder": tmp_path / "dir"}[
        target
    ]
    if target == "fifo":
        os.mkfifo(behind)
    elif target == "folder":
        behind.mkdir()
    link = tmp_path / "Modelfile"
    link.symlink_to(behind)
    res = run_measured("modelfile", "gemma3-4b-it", "-o", str(link), "--force")
    _assert_refused(res, (str(link), "a symlink to"))
    assert link.is_symlink() and os.readlink(link) == str(behind)
    assert not list(tmp_path.glob(".Modelfile*"))


# --- kill -9 leftovers -------------------------------------------------------------------------


def test_stale_part_files_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = raw_gguf(tmp_path / "m.gguf", gemma3_kvs())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.gguf.{dead.pid}.abc123xy.part"
    stale.write_bytes(b"\0" * 4096)  # what kill -9 during a write leaves
    live = tmp_path / f".out.gguf.{os.getpid()}.def456xy.part"  # a writer still running
    live.write_bytes(b"\0" * 10)
    # another output's, left by a killed run with other -q types: ours too, its writer is dead
    other = tmp_path / f".out-Q8_0.gguf.{dead.pid}.k2_9zzzq.part"
    other.write_bytes(b"\0" * 4096)
    theirs = [  # not our naming (no PID and 8-character tail): never touched
        tmp_path / ".notes.txt.part",
        tmp_path / f".out.gguf.{dead.pid}.abc.part",
        tmp_path / f".out.gguf.x{dead.pid}.abcdefgh.part",
    ]
    for path in theirs:
        path.write_bytes(b"keep")
    res = run_measured("patch", str(src), "-o", str(tmp_path / "out.gguf"))
    assert res.code == 0, res.stderr
    assert not stale.exists() and not other.exists() and live.exists()
    assert all(path.read_bytes() == b"keep" for path in theirs)


def test_modelfile_check_on_a_huge_system_is_bounded_by_its_size(tmp_path: Path) -> None:
    """A 16 MB SYSTEM: the parser's buffer holds text, not one 8-byte list slot per character
    (42 MB: 232 MB peak RSS here; the red team measured 1.32 GB before)."""
    path = tmp_path / "Modelfile"
    path.write_text('FROM gemma3:4b\nSYSTEM """' + "a" * (16 << 20) + '"""\n')
    before = _state(tmp_path)
    res = run_measured("modelfile", "--check", str(path))
    assert res.code == 1 and "no-template" in res.stdout and not res.stderr, res  # lint findings
    assert res.max_rss_mb < 150, f"peak RSS {res.max_rss_mb:.0f} MB"  # measured 103 (was 215)
    assert _state(tmp_path) == before


# --- a FIFO, device or folder where a file is expected ------------------------------------------

_NOT_A_FILE: dict[str, tuple[str, ...]] = {
    "fifo": ("is a FIFO (named pipe), not a regular file",),
    "device": ("/dev/null is a device or special file, not a regular file",),
    "folder": ("is a folder",),
}


@pytest.mark.parametrize("kind", list(_NOT_A_FILE))
@pytest.mark.parametrize(
    "command",
    [
        ("plan", "{x}"),
        ("plan", "{text}", "--mmproj", "{x}"),
        ("inspect", "{x}"),
        ("doctor", "{x}"),
        ("doctor", "--split", "{x}", "-o", "{out}"),
        ("doctor", "--fuse", "{text}", "{x}", "-o", "{out}"),
        ("patch", "{x}", "-o", "{out}"),
        ("modelfile", "{x}"),
        ("modelfile", "--check", "{x}"),
        ("modelfile", "{text}", "{x}"),
        ("eval", "{x}", "{text}"),
        ("eval", "{text}", "{text}", "--text", "{x}"),
        ("create", "m", "--from", "{x}"),
    ],
    ids=lambda c: " ".join(c) if isinstance(c, tuple) else c,
)
def test_a_fifo_device_or_folder_as_input_is_one_line(
    command: tuple[str, ...], kind: str, tmp_path: Path
) -> None:
    """Every command that reads a file names what it got instead, never blocks on a FIFO or
    reads a device forever, and never says "no such file" about a path that exists."""
    from _plan_gguf import _hostile_gguf

    text = _hostile_gguf(tmp_path / "text.gguf", block_count=1)  # a valid Gemma 3 text GGUF
    x = {"fifo": tmp_path / "pipe.gguf", "device": Path("/dev/null"), "folder": tmp_path / "d"}[
        kind
    ]
    if kind == "fifo":
        os.mkfifo(x)
    elif kind == "folder":
        x.mkdir()
    if command[0] == "create" and kind == "folder":
        os.mkfifo(x / "export.json")  # the folder is right, its manifest is a FIFO
    before = _state(tmp_path)
    fields = {"x": str(x), "text": str(text), "out": str(tmp_path / "out.gguf")}
    args = [a.format(**fields) for a in command]
    res = run_measured(*args, timeout=60)
    needles = _NOT_A_FILE[kind]
    if command[0] == "create":  # --from takes a folder: its export.json must be a file
        needles = {
            "fifo": ("is not a folder",),
            "device": ("/dev/null", "not a folder"),
            "folder": ("export.json", *_NOT_A_FILE["fifo"]),
        }[kind]
    _assert_refused(res, needles)
    assert "no such" not in res.stderr.lower() and "not found" not in res.stderr.lower()
    assert _state(tmp_path) == before  # nothing written, inputs unchanged


@pytest.mark.parametrize("name", ["gemma3-4b-it", "google/gemma-3-4b-it"])
@pytest.mark.parametrize("command", ["plan", "modelfile"])
def test_a_folder_named_like_a_variant_means_the_variant(
    command: str, name: str, tmp_path: Path
) -> None:
    """An HF checkout (``google/gemma-3-4b-it``) or an export's ``-o`` in the working folder does
    not turn the variant's name into a path; a folder that names nothing is no GGUF."""
    (tmp_path / name).mkdir(parents=True)
    (tmp_path / "mine").mkdir()
    before = _state(tmp_path)
    res = run_measured(command, name, cwd=tmp_path)
    assert res.code == 0 and "gemma3" in res.stdout.lower() and not res.stderr, res
    _assert_refused(run_measured(command, "mine", cwd=tmp_path), ("mine is a folder", "GGUF"))
    assert _state(tmp_path) == before


# --- a disk that fills up while writing ----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real filesystem of a few MB: a tmpfs mounted for this test (root only), unmounted after."""
    import subprocess

    def mount(size: str) -> Path:
        where = tmp_path / f"disk-{size}"
        where.mkdir()
        try:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as err:
            pytest.skip(f"mounting a tmpfs is not permitted for this user ({err})")
        mounted.append(where)
        return where

    mounted: list[Path] = []
    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)


def test_a_disk_that_fills_during_export_is_one_line_and_leaves_nothing(
    base_ckpt: Path, small_disk
) -> None:
    """The disk check passes, then another writer takes the rest of the disk while the GGUF is
    being quantized and written: one line saying so, exit 2, no ``.part`` and no folder left."""
    import subprocess
    import sys

    disk = small_disk("100m")
    out = disk / "out"
    before = _state(base_ckpt)
    for _attempt in range(3):  # the filler must win the race against a 24 MB write
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gemma3_pack", "export", str(base_ckpt), "-q", "Q4_K_M"),
                *("-o", str(out), "--quiet"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        filled = False
        while proc.poll() is None and not filled:
            if out.is_dir() and any(p.name.endswith(".part") for p in out.iterdir()):
                fd = os.open(disk / "filler", os.O_CREAT | os.O_WRONLY)
                with contextlib.suppress(OSError):  # the writer may take a page meanwhile
                    os.posix_fallocate(fd, 0, shutil.disk_usage(disk).free)
                os.close(fd)
                filled = True
            time.sleep(0.002)
        _, err = proc.communicate(timeout=300)
        (disk / "filler").unlink(missing_ok=True)
        if filled and proc.returncode != 0:
            break
        shutil.rmtree(out, ignore_errors=True)  # the export won the race: try again
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, err
    assert "No space left on device" in lines[0] and "Traceback" not in err, lines[0]
    assert "free space or choose another" in lines[0]
    assert list(disk.iterdir()) == []  # neither the GGUF, its .part nor the -o folder
    assert _state(base_ckpt) == before


def test_llama_cpp_quantizer_on_a_full_disk_says_no_space(
    base_ckpt: Path, small_disk, tmp_path: Path
) -> None:
    """The reference route (llama.cpp's ``llama_model_quantize``) reports ENOSPC as
    "basic_ios::clear: iostream error"; the error names the full disk instead."""
    pytest.importorskip("llama_cpp")
    from gemma3_pack import QuantizeError
    from gemma3_pack._export._quantize import quantize

    res = run_measured("export", str(base_ckpt), "-q", "BF16", "-o", str(tmp_path / "bf16"))
    assert res.code == 0, res.stderr
    (src,) = (tmp_path / "bf16").glob("*.gguf")
    disk = small_disk("2m")  # the 40 MB BF16 file quantizes to 24 MB
    with pytest.raises(QuantizeError) as caught:
        quantize(src, disk / "q.gguf", "Q4_K_M")
    text = str(caught.value)
    assert "\n" not in text and "iostream" not in text, text
    assert text.startswith(f"cannot write {disk / 'q.gguf'} (Q4_K_M") and "No space left" in text
    assert list(disk.iterdir()) == []


def test_a_120_mb_imatrix_is_read_as_arrays_not_lists(base_ckpt: Path, tmp_path: Path) -> None:
    """``--imatrix`` with 120 MB of sums: float32 arrays (one copy), not Python floats (the red
    team measured 1.66 GB); the vectors do not fit this model, which is one line, nothing written."""
    import gguf
    import numpy as np

    imx = tmp_path / "imatrix.gguf"
    w = gguf.GGUFWriter(str(imx), arch="imatrix")
    w.add_string("general.type", "imatrix")
    for i in range(4):  # 4 x 30 MB
        w.add_tensor(f"blk.{i}.attn_q.weight.in_sum2", np.ones(7_500_000, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight.counts", np.ones(1, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = tmp_path / "out"
    res = run_measured(
        "export", str(base_ckpt), "-q", "Q4_K_M", "--imatrix", str(imx), "-o", str(out)
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.code == 2 and len(lines) == 1, res.stderr[-2000:]
    assert "7500000 values for blk.0.attn_q.weight" in lines[0], lines[0]
    assert "computed for another model" in lines[0]
    assert res.max_rss_mb < 600, f"peak RSS {res.max_rss_mb:.0f} MB"  # measured 369
    assert not out.exists()
