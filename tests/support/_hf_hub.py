"""A loopback Hugging Face Hub: a real threaded HTTP server on 127.0.0.1 serving one folder as a
model repo, the way the Hub API answers huggingface_hub's ``snapshot_download``.

Point ``HF_ENDPOINT`` at ``server.url`` and the real download code runs end to end: it asks
``GET /api/models/{repo}/revision/{rev}`` (repo info: ``sha`` and ``siblings``), lists
``GET /api/models/{repo}/tree/{commit}`` (``type``/``path``/``size``/``oid``/``lfs``), then for each
file ``HEAD`` and ``GET /{repo}/resolve/{commit}/{file}`` with the headers it requires:
``X-Repo-Commit`` (else "does not seem to be served by a Hugging Face Hub endpoint"), ``ETag``
(the blob name in the cache: the sha256 for LFS files, as on the Hub) and ``Content-Length``.
Anything else answers 404 with the Hub's ``X-Error-Code`` so an unexpected request fails loudly;
every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LoopbackHub:
    """``with LoopbackHub("org/name", folder) as hub:`` then ``HF_ENDPOINT=hub.url``."""

    def __init__(self, repo_id: str, folder: Path) -> None:
        self.repo_id = repo_id
        self.files: dict[str, Path] = {
            str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()
        }
        self.sha256 = {name: _sha256(p) for name, p in self.files.items()}
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def info(self) -> dict[str, Any]:
        return {
            "id": self.repo_id,
            "modelId": self.repo_id,
            "sha": COMMIT,
            "private": False,
            "gated": False,
            "disabled": False,
            "siblings": [{"rfilename": name} for name in self.files],
        }

    def tree(self) -> list[dict[str, Any]]:
        out = []
        for name, p in self.files.items():
            size = p.stat().st_size
            entry: dict[str, Any] = {
                "type": "file",
                "path": name,
                "size": size,
                "oid": hashlib.sha1(f"blob {size}\0".encode() + p.read_bytes()).hexdigest(),
            }
            if name.endswith(".safetensors"):
                entry["lfs"] = {"oid": self.sha256[name], "size": size, "pointerSize": 134}
            out.append(entry)
        return out


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _make_handler(hub: LoopbackHub) -> type[BaseHTTPRequestHandler]:
    api = f"/api/models/{hub.repo_id}/"
    resolve = f"/{hub.repo_id}/resolve/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, data: Any) -> None:
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            self.wfile.write(body)

        def _missing(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _route(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path))
            if not head and path.startswith(api + "revision/"):
                return self._json(hub.info())
            if not head and path.startswith(api + "tree/"):
                return self._json(hub.tree())
            if path.startswith(resolve):
                _rev, _, name = path[len(resolve) :].partition("/")
                file = hub.files.get(name)
                if file is None:
                    return self._missing()
                size = file.stat().st_size
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("ETag", f'"{hub.sha256[name]}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not head:
                    with open(file, "rb") as f:
                        while chunk := f.read(1 << 20):
                            self.wfile.write(chunk)
                return None
            return self._missing()

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    return Handler
