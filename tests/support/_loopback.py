"""A loopback Ollama: a real threaded HTTP server on 127.0.0.1 speaking the documented REST API.

No Ollama daemon can be built or run here (see /work/shared/reference/ollama.md §7), so the SDK's
blob/create/pull/chat flows are tested over real sockets against this stand-in. It implements the
endpoints as docs/api.md describes them, including the parts clients get wrong:

* ``HEAD /api/blobs/sha256:<hex>`` → 200 / 404; ``POST`` streams the body through sha256 (never
  kept in memory) and answers 201, or 400 ``digest mismatch`` when the body does not hash to the
  digest in the URL;
* ``POST /api/create`` checks that every ``files`` digest was uploaded, streams NDJSON statuses and
  registers the model (vision capability when a projector file is among the files);
* ``/api/pull`` and ``/api/chat``/``/api/generate`` stream NDJSON; ``drop_after`` makes the server
  cut the connection mid-stream like a crashing daemon;
* every request is recorded (method, path, JSON body or body byte count).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    body: Any  # parsed JSON, or the byte count for blob uploads, or None


@dataclass
class FakeModel:
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    family: str = "gemma3"
    parameter_size: str = "4.3B"
    quant: str = "Q4_K_M"
    size: int = 3_338_801_804
    create_request: dict[str, Any] | None = None


class LoopbackOllama:
    """Start with ``with LoopbackOllama() as server:``; ``server.url`` is the host to use."""

    def __init__(self, version: str = "0.30.1") -> None:
        self.version = version
        self.models: dict[str, FakeModel] = {}
        self.blobs: dict[str, int] = {}  # digest -> size
        self.requests: list[Recorded] = []
        self.reply = "Hello from Gemma."
        self.drop_after: int | None = None  # cut the stream after this many chunks
        self.fail: dict[str, tuple[int, str]] = {}  # path -> (status, error) for one-off failures
        self.stream_error: str | None = None  # send {"error": ...} as a stream line
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, and every test starts and stops a server.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackOllama:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_model(self, name: str, *, vision: bool = False, **kw: Any) -> FakeModel:
        caps = ["completion", "vision"] if vision else ["completion"]
        model = self.models[name] = FakeModel(capabilities=caps, **kw)
        return model

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    def record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up early are normal in these tests; do not print tracebacks for them."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _make_handler(state: LoopbackOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        # -- helpers ---------------------------------------------------------------------
        def _json(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        def _read_json(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else {}

        def _body_chunks(self):  # yields the request body, chunked or not
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return
                    remaining = size
                    while remaining:
                        chunk = self.rfile.read(min(remaining, 1 << 20))
                        remaining -= len(chunk)
                        yield chunk
                    self.rfile.readline()
            else:
                remaining = int(self.headers.get("Content-Length") or 0)
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk

        def _stream(self, parts: list[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i, part in enumerate(parts):
                    if state.drop_after is not None and i == state.drop_after:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)  # the daemon dies mid-stream
                        return
                    line = json.dumps(part).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    if "error" in part:  # Ollama ends the stream after an error line
                        break
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client hung up; nothing to report

        def _maybe_fail(self) -> bool:
            failure = state.fail.pop(self.path, None)
            if failure:
                self._error(*failure)
                return True
            return False

        # -- verbs -----------------------------------------------------------------------
        def do_HEAD(self) -> None:
            state.record(Recorded("HEAD", self.path, None))
            digest = self.path.removeprefix("/api/blobs/")
            status = 200 if digest in state.blobs else 404
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            state.record(Recorded("GET", self.path, None))
            if self._maybe_fail():
                return
            if self.path == "/api/version":
                self._json(200, {"version": state.version})
            elif self.path == "/api/tags":
                self._json(
                    200,
                    {
                        "models": [
                            {
                                "name": n,
                                "model": n,
                                "modified_at": "2026-11-23T10:00:00Z",
                                "size": m.size,
                                "digest": hashlib.sha256(n.encode()).hexdigest(),
                                "details": {
                                    "format": "gguf",
                                    "family": m.family,
                                    "families": [m.family],
                                    "parameter_size": m.parameter_size,
                                    "quantization_level": m.quant,
                                },
                            }
                            for n, m in state.models.items()
                        ]
                    },
                )
            else:
                self._error(404, "404 page not found")

        def do_POST(self) -> None:
            if self.path.startswith("/api/blobs/"):
                return self._blob()
            body = self._read_json()
            state.record(Recorded("POST", self.path, body))
            if self._maybe_fail():
                return
            route = {
                "/api/show": self._show,
                "/api/chat": self._chat,
                "/api/generate": self._generate,
                "/api/pull": self._pull,
                "/api/create": self._create,
            }.get(self.path)
            if route is None:
                return self._error(404, "404 page not found")
            route(body)

        def _blob(self) -> None:
            digest = self.path.removeprefix("/api/blobs/")
            if digest in state.blobs:  # Ollama checks before reading the body
                state.record(Recorded("POST", self.path, 0))
                return self._json(200, {})
            hasher, size = hashlib.sha256(), 0
            for chunk in self._body_chunks():
                hasher.update(chunk)
                size += len(chunk)
            state.record(Recorded("POST", self.path, size))
            if f"sha256:{hasher.hexdigest()}" != digest:
                return self._error(400, "digest mismatch")
            state.blobs[digest] = size
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _model_or_404(self, body: dict[str, Any]) -> FakeModel | None:
            name = body.get("model") or body.get("name")
            model = state.models.get(name)
            if model is None:
                self._error(404, f"model '{name}' not found")
            return model

        def _show(self, body: dict[str, Any]) -> None:
            model = self._model_or_404(body)
            if model is None:
                return
            self._json(
                200,
                {
                    "modelfile": "# Modelfile generated by the loopback server",
                    "template": (model.create_request or {}).get("template", ""),
                    "parameters": "\n".join(
                        f"{k} {json.dumps(v) if isinstance(v, str) else v}"
                        for k, vs in ((model.create_request or {}).get("parameters") or {}).items()
                        for v in (vs if isinstance(vs, list) else [vs])
                    ),
                    "details": {
                        "format": "gguf",
                        "family": model.family,
                        "parameter_size": model.parameter_size,
                        "quantization_level": model.quant,
                    },
                    "model_info": {"general.architecture": "gemma3"},
                    "capabilities": model.capabilities,
                    "modified_at": "2026-11-23T10:00:00Z",
                },
            )

        def _answer_chunks(self, key: str, model: str) -> list[dict[str, Any]]:
            words = state.reply.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            parts: list[dict[str, Any]] = []
            for piece in pieces:
                content = {"role": "assistant", "content": piece} if key == "message" else piece
                parts.append(
                    {
                        "model": model,
                        "created_at": "2026-11-23T10:00:00Z",
                        key: content,
                        "done": False,
                    }
                )
            if state.stream_error:
                parts.append({"error": state.stream_error})
            last = {"role": "assistant", "content": ""} if key == "message" else ""
            parts.append(
                {
                    "model": model,
                    "created_at": "2026-11-23T10:00:00Z",
                    key: last,
                    "done": True,
                    "done_reason": "stop",
                    "eval_count": len(pieces),
                }
            )
            return parts

        def _reply(self, body: dict[str, Any], key: str) -> None:
            if self._model_or_404(body) is None:
                return
            model = body["model"]
            if body.get("stream", True):
                return self._stream(self._answer_chunks(key, model))
            content: Any = (
                {"role": "assistant", "content": state.reply} if key == "message" else state.reply
            )
            self._json(
                200,
                {
                    "model": model,
                    "created_at": "2026-11-23T10:00:00Z",
                    key: content,
                    "done": True,
                    "done_reason": "stop",
                    "eval_count": 4,
                },
            )

        def _chat(self, body: dict[str, Any]) -> None:
            self._reply(body, "message")

        def _generate(self, body: dict[str, Any]) -> None:
            self._reply(body, "response")

        def _pull(self, body: dict[str, Any]) -> None:
            name = body["model"]
            digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
            total = 3_338_801_804
            parts = [{"status": "pulling manifest"}]
            parts += [
                {
                    "status": f"pulling {digest[7:19]}",
                    "digest": digest,
                    "total": total,
                    "completed": total * k // 4,
                }
                for k in range(1, 5)
            ]
            parts += [
                {"status": "verifying sha256 digest"},
                {"status": "writing manifest"},
                {"status": "success"},
            ]
            if state.drop_after is None:
                text_only = any(size in name for size in ("270m", "1b"))
                caps = ["completion"] if text_only else ["completion", "vision"]
                state.models.setdefault(name, FakeModel(capabilities=caps))
            self._stream(parts)

        def _create(self, body: dict[str, Any]) -> None:
            name = body.get("model")
            if not name:
                return self._error(400, "model is required")
            files = body.get("files") or {}
            if body.get("from"):
                if body["from"] not in state.models:
                    return self._error(404, f"model '{body['from']}' not found")
                caps = list(state.models[body["from"]].capabilities)
            elif files:
                missing = [d for d in files.values() if d not in state.blobs]
                if missing:
                    return self._error(400, f"blob {missing[0]} not found: upload it first")
                # Ollama reads the GGUFs; we go by name: a projector beside the model, or a
                # fused file (`gemma3-pack export --ollama-format fused` names it *-ollama.gguf)
                vision = len(files) > 1 or any(
                    "fused" in n or n.endswith("-ollama.gguf") for n in files
                )
                caps = ["completion", "vision"] if vision else ["completion"]
            else:
                return self._error(400, "neither 'from' or 'files' was specified")
            parts = [{"status": "parsing GGUF"}]
            if body.get("quantize"):
                parts.append({"status": f"quantizing F16 model to {body['quantize'].upper()}"})
            parts += [{"status": "using existing layer sha256:" + d[7:]} for d in files.values()]
            parts += [{"status": "writing manifest"}, {"status": "success"}]
            state.models[name] = FakeModel(capabilities=caps, create_request=body)
            self._stream(parts)

    return Handler
