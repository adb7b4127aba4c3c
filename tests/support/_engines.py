"""Real engines for the test suite: an Ollama binary built from its Go module, and its daemon.

``ollama_binary()`` returns ``CACHE/engines/ollama-<version>/ollama``; when it is missing it raises
:class:`EngineMissing` (one line: the command that builds it) instead of building under a test's
timeout. ``tests/build_engines.py`` builds it, the way the release notes of issue 8 describe: ``go
install github.com/ollama/ollama@v0.24.0`` with cgo, which compiles the ggml/llama.cpp sources
vendored in that module. The module zip lacks three third-party headers the C++ sources include; they come
from registry packages, never from anywhere else:

* ``<nlohmann/json.hpp>``   Debian ``nlohmann-json3-dev`` (``apt-get download`` + ``dpkg -x``,
  no root; skipped when ``/usr/include`` already has it);
* ``"stb/stb_image.h"``     Debian ``libstb-dev``;
* ``"miniaudio/miniaudio.h"`` the PyPI sdist of ``miniaudio`` (``pip download --no-binary``).

The build takes ~15-20 minutes on 2 cores when Go's build cache is cold, prints progress to stderr,
installs into a temporary folder and renames it into place, so a concurrent or interrupted build
never leaves a half-written binary behind. An interrupted build resumes: Go's build cache (``go env
GOCACHE``) keeps every package compiled so far, and the headers and log stay in
``engines/ollama-<version>-build/``; only the package being compiled when it stopped is redone.

``OllamaDaemon`` runs ``ollama serve`` on a free loopback port with its own ``OLLAMA_MODELS``,
``HOME`` and ``OLLAMA_NO_CLOUD=1``, logs to a file (``OLLAMA_DEBUG=2`` logs every prompt) and is
stopped as a process group: by the fixture, at interpreter exit, and by the kernel when the test
process dies (``PR_SET_PDEATHSIG``).

``USER_OLLAMA_HOST`` is ``OLLAMA_HOST`` as it was when the test session started (conftest's
autouse fixture removes it from every test's environment): when set, the suite uses that daemon.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import _assets

OLLAMA_VERSION = "0.24.0"
BUILD_COMMAND = ".venv/bin/python tests/build_engines.py"
MINIAUDIO_SDIST = "miniaudio==1.71"  # ships miniaudio.h 0.11.25
DEBIAN_HEADERS = {"nlohmann-json3-dev": "nlohmann/json.hpp", "libstb-dev": "stb/stb_image.h"}
SYSTEM_INCLUDE = Path("/usr/include")  # headers already installed there are used as they are
USER_OLLAMA_HOST = os.environ.get("OLLAMA_HOST") or None
# On CPUs with AMX (Sapphire Rapids and later) -march=native defines __AMX_INT8__, so ggml-cpu.cpp
# calls ggml_backend_amx_buffer_type(); the Go module's cgo build never compiles ggml-cpu/amx/, and
# the link fails with an undefined reference. Ollama's release builds do not use AMX either.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def _say(message: str) -> None:
    print(f"[gemma3-pack tests] {message}", file=sys.stderr, flush=True)


class EngineMissing(RuntimeError):
    """An engine the test needs is not built; the message is one line naming the build command.

    The tests never build an engine themselves (a cold build takes longer than any per-test
    timeout); ``tests/build_engines.py`` does, as its own step before pytest.
    """

    def __init__(self, engine: str, missing: Path) -> None:
        super().__init__(
            f"{engine}: not built ({missing} is missing); run `{BUILD_COMMAND}` first "
            "(builds every engine once, resumable; see tests/README.md)"
        )
        self.engine = engine


# --------------------------------------------------------------------------- building Ollama


def _go() -> Path:
    found = shutil.which("go")
    return Path(found) if found else _assets.go_binary()


def _debian_headers(root: Path) -> Path | None:
    """An include dir holding nlohmann/ and stb/ from Debian's packages (None: /usr/include has them)."""
    missing = [
        pkg for pkg, header in DEBIAN_HEADERS.items() if not (SYSTEM_INCLUDE / header).is_file()
    ]
    if not missing:
        return None
    include = root / "usr" / "include"
    if all((include / DEBIAN_HEADERS[pkg]).is_file() for pkg in missing):
        return include
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    _say(f"fetching headers from Debian: {', '.join(missing)}")
    try:
        subprocess.run(
            ["apt-get", "download", *missing], cwd=debs, check=True, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        raise RuntimeError(
            f"apt-get download {' '.join(missing)} failed ({detail.strip()[:300]}); "
            "run `apt-get update`, or install them (apt-get install " + " ".join(missing) + ")"
        ) from None
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    for pkg in missing:
        if not (include / DEBIAN_HEADERS[pkg]).is_file():
            raise RuntimeError(f"{pkg} did not provide {DEBIAN_HEADERS[pkg]}")
    return include


def _miniaudio_headers(root: Path) -> Path:
    """An include dir holding miniaudio/miniaudio.h from the PyPI sdist."""
    include = root / "include"
    if (include / "miniaudio" / "miniaudio.h").is_file():
        return include
    sdists = root / "sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    _say(f"fetching miniaudio.h from the PyPI sdist {MINIAUDIO_SDIST}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-binary",
            ":all:",
            "--no-deps",
            "-d",
            str(sdists),
            MINIAUDIO_SDIST,
        ],
        check=True,
    )
    tgz = next(sdists.glob("miniaudio-*.tar.gz"))
    staging = Path(tempfile.mkdtemp(prefix=".miniaudio.", dir=root))
    with tarfile.open(tgz) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.name.endswith(("miniaudio/miniaudio.h", "miniaudio/stb_vorbis.c"))
        ]
        tar.extractall(staging, members=members, filter="data")
    header = next(staging.rglob("miniaudio/miniaudio.h"))
    (staging / "include").mkdir()
    header.parent.rename(staging / "include" / "miniaudio")
    os.replace(staging / "include", include)
    shutil.rmtree(staging, ignore_errors=True)
    return include


def build_ollama(version: str, dest: Path) -> Path:
    """``go install github.com/ollama/ollama@v<version>`` (cgo, -march=native) into ``dest``."""
    work = _assets.cache_dir("engines", f"ollama-{version}-build")
    includes = [_miniaudio_headers(work)]
    debian = _debian_headers(work)
    if debian is not None:
        includes.append(debian)
    tmp_bin = Path(tempfile.mkdtemp(prefix=".bin.", dir=work))
    env = dict(
        os.environ,
        CGO_ENABLED="1",
        GOBIN=str(tmp_bin),
        CGO_CPPFLAGS=" ".join(f"-I{p}" for p in includes),
        CGO_CFLAGS=f"-O3 -march=native {NO_AMX}",
        CGO_CXXFLAGS=f"-O3 -march=native {NO_AMX}",
    )
    log = work / "build.log"
    cmd = [
        str(_go()),
        "install",
        "-x",
        "-ldflags",
        f"-X github.com/ollama/ollama/version.Version={version}",
        f"github.com/ollama/ollama@v{version}",
    ]
    _say(
        f"building Ollama {version} from its Go module (~15-20 min cold on 2 cores; what Go "
        f"already compiled is reused); log: {log}"
    )
    started = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=work, start_new_session=True
        )  # its own process group: an interrupted build stops go and its compilers together
        try:
            compiled = 0
            while proc.poll() is None:
                time.sleep(30)
                # `go install -x` logs one compiler line per C/C++ file
                with open(log, errors="replace") as rd:
                    now = sum(
                        1 for line in rd if " -c " in line and ("gcc" in line or "g++" in line)
                    )
                if now != compiled:
                    compiled = now
                    _say(
                        f"  ollama build: {compiled} C/C++ files compiled, {time.monotonic() - started:.0f} s"
                    )
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            shutil.rmtree(tmp_bin, ignore_errors=True)
            raise
    if proc.returncode != 0:
        shutil.rmtree(tmp_bin, ignore_errors=True)
        raise RuntimeError(
            f"go install ollama@v{version} exited {proc.returncode}; log {log} "
            "(Go's build cache keeps what compiled: the next run resumes)"
        )
    dest.parent.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".ollama.", dir=dest.parent.parent))
    shutil.move(tmp_bin / "ollama", staged / "ollama")
    info = {
        "ollama": version,
        "go": subprocess.run(
            [str(_go()), "version"], capture_output=True, text=True
        ).stdout.strip(),
        "cgo_cflags": env["CGO_CFLAGS"],
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (staged / "BUILD.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.copy2(log, staged / "build.log")
    shutil.rmtree(tmp_bin, ignore_errors=True)
    try:
        os.rename(staged, dest.parent)
    except OSError:  # someone else finished first
        shutil.rmtree(staged, ignore_errors=True)
    _say(f"built Ollama {version} in {time.monotonic() - started:.0f} s: {dest}")
    return dest


def _binary_path(version: str) -> Path:
    return _assets.CACHE / "engines" / f"ollama-{version}" / "ollama"


def is_built(version: str = OLLAMA_VERSION) -> bool:
    binary = _binary_path(version)
    return binary.is_file() and os.access(binary, os.X_OK)


def ollama_binary(version: str = OLLAMA_VERSION, *, build: bool = False) -> Path:
    """The cached ``ollama`` binary of ``version``.

    Missing: :class:`EngineMissing`, unless ``build`` (``tests/build_engines.py``) builds it now.
    """
    binary = _binary_path(version)
    if is_built(version):
        return binary
    if not build:
        raise EngineMissing(f"Ollama {version}", binary)
    root = _assets.cache_dir("engines")
    with open(root / f".ollama-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build runs once; the other waits
        if is_built(version):
            return binary
        if binary.parent.exists():  # a folder without a binary: never ours to trust
            shutil.rmtree(binary.parent)
        return build_ollama(version, binary)


# --------------------------------------------------------------------------- the daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child before exec
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class OllamaDaemon:
    """``ollama serve`` on a free 127.0.0.1 port, isolated in ``root``; ``url`` once started."""

    def __init__(self, binary: Path, root: Path, *, env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.models = root / "models"
        self.home = root / "home"
        self.log_path = root / "ollama.log"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            HOME=str(self.home),
            OLLAMA_HOST=f"127.0.0.1:{self.port}",
            OLLAMA_MODELS=str(self.models),
            OLLAMA_NO_CLOUD="1",
            OLLAMA_DEBUG="2",  # trace: the rendered prompt of every completion is logged
            OLLAMA_KEEP_ALIVE="10m",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> OllamaDaemon:
        import httpx

        self.models.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "serve"],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: runners die with it
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ollama serve exited with {self.proc.returncode}:\n{self.log()[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/version", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"ollama serve did not answer /api/version within {timeout} s:\n{self.log()[-2000:]}"
        )

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the ``ollama`` CLI against this daemon."""
        return subprocess.run(
            [str(self.binary), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # runners that outlived serve (they share its process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> OllamaDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ExternalDaemon:
    """The user's own daemon (``OLLAMA_HOST``): no log, not ours to stop."""

    def __init__(self, host: str) -> None:
        from ollama._client import _parse_host

        self.url = _parse_host(host)
        found = shutil.which("ollama")
        self.binary = Path(found) if found else None
        self.log_path = None

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        if self.binary is None:
            raise RuntimeError("no `ollama` CLI on PATH to drive the daemon at OLLAMA_HOST")
        env = dict(os.environ, OLLAMA_HOST=self.url)
        return subprocess.run(
            [str(self.binary), *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def log(self) -> str:
        return ""

    def stop(self) -> None:
        pass


def session_daemon(root: Path) -> OllamaDaemon | ExternalDaemon:
    """The daemon the ``-m ollama`` suite runs against: the user's, or our own build's."""
    if USER_OLLAMA_HOST:
        return ExternalDaemon(USER_OLLAMA_HOST)
    return OllamaDaemon(ollama_binary(), root).start()
