"""A current Ollama (0.34.4) for the tests, built offline: its Go binary plus its llama-server engine.

From 0.30 on, Ollama runs GGUF models through an upstream ``llama-server`` subprocess
(``llm/llama_server.go``) that its release build compiles by CMake-cloning ggml-org/llama.cpp at the
tag in ``LLAMA_CPP_VERSION`` (``b11081`` for 0.34.4). GitHub is out of reach here, so the engine is
built from Ollama's own ``llama/server`` CMake project with ``FETCHCONTENT_SOURCE_DIR_LLAMA_CPP``
pointing at the llama.cpp tree vendored in the llama-cpp-python sdist the tests already use
(ggml-org/llama.cpp@0c1e57098, a few days newer than b11081). That option is Ollama's documented
local-source path: its compat patch (``llama/compat/001-llama-cpp-hooks.patch``) is applied to the
tree at configure time and its compat sources are linked in, so the engine is Ollama's patched
``llama-server`` on a newer llama.cpp commit. The one deviation from Ollama's ``cpu`` preset:
``GGML_NATIVE=ON`` with ``GGML_BACKEND_DL=OFF`` (one CPU backend for this machine instead of ten
dlopen'ed variants, which ggml only builds with ``GGML_NATIVE=OFF``).

The Go binary is ``go install github.com/ollama/ollama@v0.34.4`` with cgo and the release ldflags
of ``cmake/local.cmake``. The cache entry ``<test cache>/engines/ollama-<version>/`` holds
``bin/ollama`` and ``lib/ollama/`` (``llama-server``, ``llama-quantize``, their shared libraries):
the layout ``llm/llama_binary.go`` searches (``<dir of ollama>/../lib/ollama``), so no environment
variable is needed. It is built in a temporary folder beside the entry and renamed into place under
a file lock; ``BUILD.json`` records versions, commits, options and seconds. Run it with
``_engines.OllamaDaemon(ollama_binary_new(), root)``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import _assets
import _engines
import _engines_llama

OLLAMA_NEW_VERSION = "0.34.4"
LLAMA_CPP_PYTHON = "0.3.36"  # its sdist's vendor/llama.cpp is the engine's source

CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",  # as Ollama ships it: llama-server + libllama/libggml*.so in lib/ollama
    "-DGGML_BACKEND_DL=OFF",
    "-DGGML_NATIVE=ON",
    "-DGGML_CPU_ALL_VARIANTS=OFF",
    "-DGGML_OPENMP=OFF",
    "-DOLLAMA_RUNNER_DIR=",
    "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",  # never reach for GitHub
)
TARGETS = ("llama-server", "llama-quantize")


def _entry(version: str) -> Path:
    return _assets.cache_dir("engines") / f"ollama-{version}"


def _complete(entry: Path) -> bool:
    try:
        info = json.loads((entry / "BUILD.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("cmake_options", [])[: len(CMAKE_OPTIONS)] == list(CMAKE_OPTIONS) and all(
        os.access(p, os.X_OK)
        for p in (entry / "bin" / "ollama", entry / "lib" / "ollama" / "llama-server")
    )


def ollama_binary_new(version: str = OLLAMA_NEW_VERSION) -> Path:
    """``bin/ollama`` of the cached ``version`` build (with its llama-server), built when missing."""
    entry = _entry(version)
    if not _complete(entry):
        with open(entry.parent / f".ollama-{version}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent session builds once; the other waits
            if not _complete(entry):
                _build(version, entry)
    return entry / "bin" / "ollama"


def build_info(version: str = OLLAMA_NEW_VERSION) -> dict[str, object]:
    ollama_binary_new(version)
    return dict(json.loads((_entry(version) / "BUILD.json").read_text()))


def _module_dir(version: str, log: Path) -> Path:
    """The module's source folder in Go's module cache (``go mod download``; read-only)."""
    out = subprocess.run(
        [str(_engines._go()), "mod", "download", "-json", f"github.com/ollama/ollama@v{version}"],
        capture_output=True,
        text=True,
        cwd=log.parent,
        env=dict(os.environ, GOFLAGS="-mod=mod"),
    )
    with open(log, "a") as fh:
        fh.write(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"go mod download ollama@v{version} failed:\n{out.stderr[-2000:]}")
    return Path(json.loads(out.stdout)["Dir"])


def _build(version: str, entry: Path) -> None:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    log = work / "build.log"
    try:
        _engines._say(
            f"building Ollama {version} + its llama-server from llama-cpp-python "
            f"{LLAMA_CPP_PYTHON}'s llama.cpp (2 jobs, ~15-25 min once); log: {log}"
        )
        module = _module_dir(version, log)
        pinned = (module / "LLAMA_CPP_VERSION").read_text().strip()
        out = work / "out"
        (out / "bin").mkdir(parents=True)
        env = dict(os.environ, CGO_ENABLED="1", GOBIN=str(out / "bin"))
        ldflags = (
            f"-X=github.com/ollama/ollama/version.Version={version}"
            " -X=github.com/ollama/ollama/server.mode=release"
        )
        _run(
            [str(_engines._go()), "install", "-trimpath", "-ldflags", ldflags,
             f"github.com/ollama/ollama@v{version}"],
            log, env=env, cwd=work, label="go install",
        )  # fmt: skip
        src = work / "llama.cpp"
        commit = _engines_llama._extract(
            _assets.llama_cpp_sdist(LLAMA_CPP_PYTHON), src, LLAMA_CPP_PYTHON
        )
        # the sdist keeps the submodule's ``.git`` pointer file; git apply would follow it and fail
        if (src / ".git").is_file():
            (src / ".git").unlink()
        ninja = _engines_llama._tool("ninja")
        generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
        options = [*CMAKE_OPTIONS, f"-DFETCHCONTENT_SOURCE_DIR_LLAMA_CPP={src}",
                   f"-DLLAMA_BUILD_COMMIT={commit}"]  # fmt: skip
        cmake, build = _engines_llama._cmake(), work / "build"
        _run([cmake, "-S", str(module / "llama" / "server"), "-B", str(build), *generator, *options],
             log, cwd=work, label="configure")  # fmt: skip
        if "compat: applied 001-llama-cpp-hooks.patch" not in log.read_text(errors="replace"):
            raise RuntimeError(f"Ollama's compat patch was not applied to {src} (log {log})")
        _run([cmake, "--build", str(build), "-j", "2", "--target", *TARGETS], log, cwd=work,
             label="build")  # fmt: skip
        _run([cmake, "--install", str(build), "--prefix", str(out), "--component", "llama-server"],
             log, cwd=work, label="install")  # fmt: skip
        _check(out, version)
        info = {
            "ollama": version,
            "llama_cpp_pinned_by_ollama": pinned,
            "llama_cpp_built": commit,
            "llama_cpp_python_sdist": LLAMA_CPP_PYTHON,
            "cmake_options": [*CMAKE_OPTIONS, f"-DLLAMA_BUILD_COMMIT={commit}"],
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (out / "BUILD.json").write_text(json.dumps(info, indent=2) + "\n")
        shutil.copy2(log, out / "build.log")
        if entry.exists():
            shutil.rmtree(entry)  # an incomplete leftover (the lock is held)
        os.rename(out, entry)
        _engines._say(f"built Ollama {version} in {info['build_seconds']:.0f} s: {entry}")
    except BaseException:
        if log.is_file():
            kept = _assets.cache_dir("engines", "logs") / f"{entry.name}-failed-build.log"
            shutil.copy2(log, kept)
            _engines._say(f"build failed; log kept at {kept}")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(
    cmd: list[str], log: Path, *, cwd: Path, label: str, env: dict[str, str] | None = None
) -> None:
    """Run ``cmd`` with its output appended to ``log``; a progress line every ~30 s."""
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        started = time.monotonic()
        try:
            while proc.poll() is None:
                time.sleep(1)
                if int(time.monotonic() - started) % 30 == 0:
                    tail = log.read_text(errors="replace").rstrip().rsplit("\n", 1)[-1]
                    _engines._say(f"  {label}: {tail[:110]}")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{label} failed (exit {proc.returncode}); log {log}:\n{tail}")


def _check(out: Path, version: str) -> None:
    """Both programs start from the staged folder alone (libraries found through their RPATH)."""
    checks = (
        (out / "bin" / "ollama", "--version", f"version is {version}"),
        (out / "lib" / "ollama" / "llama-server", "--version", "version:"),
    )
    for binary, arg, expect in checks:
        proc = subprocess.run([str(binary), arg], capture_output=True, text=True, timeout=60)
        text = proc.stdout + proc.stderr
        if expect not in text or "error while loading shared libraries" in text:
            raise RuntimeError(f"{binary} {arg} failed (exit {proc.returncode}):\n{text[-2000:]}")
