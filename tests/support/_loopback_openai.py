"""A loopback OpenAI-compatible server: real sockets, the routes llama-server and vLLM document.

``flavour`` picks whose extra routes and error shapes it imitates:

* ``llama-server`` (llama.cpp tools/server/README.md): ``GET /props`` with ``modalities`` and
  ``build_info``, ``/v1/models`` entries ``owned_by: "llamacpp"``, errors as
  ``{"error": {"code", "message", "type"}}``, context overflow as ``exceed_context_size_error``;
* ``vllm`` (vLLM's OpenAI-compatible server docs): ``GET /version``, ``owned_by: "vllm"``, an
  unknown model as 404 ``{"object": "error", "message": "The model `x` does not exist.", ...}``.

Every request is recorded with its parsed JSON body, so tests assert exactly what went over the
wire. ``reply`` is the assistant text; ``chunks`` streams it as SSE ``data:`` lines. One-off
behaviours: ``fail`` (path -> status, body text, content type), ``hang`` (accept, never answer),
``redirect`` (answer 307 to another URL), ``long_line`` (a reply line of that many bytes).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class LoopbackOpenAI:
    def __init__(self, flavour: str = "llama-server", *, models: tuple[str, ...] = ("gemma3-4b",)):
        self.flavour = flavour
        self.models = list(models)
        self.vision = True
        self.reply = "Rayleigh scattering."
        self.chunks: list[str] | None = None
        self.requests: list[Recorded] = []
        self.fail: dict[str, tuple[int, str, str]] = {}
        self.hang = False
        self.redirect: str | None = None
        self.long_line = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def __enter__(self) -> LoopbackOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hang = False
        self._server.shutdown()
        self._server.server_close()

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.path == path]


def _make_handler(server: LoopbackOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms ACK stalls

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode())

        def _record(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.requests.append(Recorded(self.command, self.path, body, headers))
            return body

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            body = self._record()
            if server.hang:
                while server.hang:
                    time.sleep(0.02)
                return
            if server.redirect:
                self.send_response(307)
                self.send_header("Location", server.redirect + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path in server.fail:
                status, text, ctype = server.fail[self.path]
                self._send(status, text.encode(), ctype)
                return
            if server.long_line:
                self._send(200, b'{"x": "' + b"a" * server.long_line + b'"}')
                return
            route = getattr(self, "_r_" + self.path.strip("/").replace("/", "_"), None)
            if route is None:
                self._json(
                    404,
                    {
                        "error": {
                            "code": 404,
                            "message": "File Not Found",
                            "type": "not_found_error",
                        }
                    },
                )
                return
            route(body)

        # -- routes -------------------------------------------------------------------------

        def _r_v1_models(self, _: Any) -> None:
            owner = "llamacpp" if server.flavour == "llama-server" else "vllm"
            data = [
                {"id": m, "object": "model", "created": 1, "owned_by": owner} for m in server.models
            ]
            self._json(200, {"object": "list", "data": data})

        def _r_props(self, _: Any) -> None:
            if server.flavour != "llama-server":
                self._json(404, {"detail": "Not Found"})
                return
            self._json(
                200,
                {
                    "build_info": "b6500-abcdef0",
                    "model_path": "/models/gemma.gguf",
                    "modalities": {"vision": server.vision, "audio": False},
                },
            )

        def _r_version(self, _: Any) -> None:
            if server.flavour != "vllm":
                self._json(
                    404,
                    {
                        "error": {
                            "code": 404,
                            "message": "File Not Found",
                            "type": "not_found_error",
                        }
                    },
                )
                return
            self._json(200, {"version": "0.11.0"})

        def _unknown_model(self, body: Any) -> bool:
            if server.flavour == "vllm" and body.get("model") not in server.models:
                self._json(
                    404,
                    {
                        "object": "error",
                        "message": f"The model `{body.get('model')}` does not exist.",
                        "type": "NotFoundError",
                        "param": None,
                        "code": 404,
                    },
                )
                return True
            return False

        def _r_v1_chat_completions(self, body: Any) -> None:
            if self._unknown_model(body):
                return
            model = body.get("model")
            if body.get("stream"):
                parts = server.chunks or [server.reply]
                lines = []
                for i, part in enumerate(parts):
                    last = i == len(parts) - 1
                    chunk = {
                        "id": "c1",
                        "object": "chat.completion.chunk",
                        "created": 1764584000,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": part}
                                if i == 0
                                else {"content": part},
                                "finish_reason": "stop" if last else None,
                            }
                        ],
                    }
                    lines.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                lines.append(b"data: [DONE]\n\n")
                self._send(200, b"".join(lines), "text/event-stream")
                return
            self._json(
                200,
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": 1764584000,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": server.reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
                },
            )

        def _r_v1_completions(self, body: Any) -> None:
            if self._unknown_model(body):
                return
            self._json(
                200,
                {
                    "id": "t1",
                    "object": "text_completion",
                    "created": 1764584000,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "text": server.reply, "finish_reason": "stop"}],
                },
            )

    return Handler
