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
variable is needed. ``tests/build_engines.py`` builds it (``ollama_binary_new(build=True)``); inside
the tests a missing build raises ``_engines.EngineMissing``. The build runs in a work folder beside the
entry (``.ollama-<version>.work``) and is renamed into place under a file lock; ``BUILD.json`` records
versions, commits, options and seconds. An interrupted build resumes: the work folder keeps the Go
binary once installed, the extracted llama.cpp tree and the CMake/Ninja build folder (Ninja recompiles
only what is missing; the compat patch is re-applied idempotently), and Go's build cache keeps what
``go install`` compiled. Run it with ``_engines.OllamaDaemon(ollama_binary_new(), root)``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
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
    # without AMX, as _engines_llama.CMAKE_OPTIONS explains (ggml's AMX matmul faults here)
    "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
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


def is_built(version: str = OLLAMA_NEW_VERSION) -> bool:
    return _complete(_entry(version))


def ollama_binary_new(version: str = OLLAMA_NEW_VERSION, *, build: bool = False) -> Path:
    """``bin/ollama`` of the cached ``version`` build (with its llama-server).

    Missing: ``_engines.EngineMissing``, unless ``build`` (``tests/build_engines.py``) builds it now.
    """
    entry = _entry(version)
    if not _complete(entry):
        if not build:
            raise _engines.EngineMissing(f"Ollama {version}", entry / "BUILD.json")
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


_PATCHED = re.compile(
    r"compat: (applied 001-llama-cpp-hooks\.patch|001-llama-cpp-hooks\.patch already applied)"
)


def _build(version: str, entry: Path) -> None:
    started = time.monotonic()
    # Kept when a build stops or fails, so the next try resumes; removed once the entry is in place.
    work = entry.parent / f".{entry.name}.work"
    work.mkdir(exist_ok=True)
    log = work / "build.log"
    out = work / "out"
    try:
        resumed = (out / "bin" / "ollama").is_file() or (
            work / "build" / "CMakeCache.txt"
        ).is_file()
        _engines._say(
            f"{'resuming' if resumed else 'building'} Ollama {version} + its llama-server from "
            f"llama-cpp-python {LLAMA_CPP_PYTHON}'s llama.cpp (2 jobs, ~25-35 min cold); log: {log}"
        )
        module = _module_dir(version, log)
        pinned = (module / "LLAMA_CPP_VERSION").read_text().strip()
        (out / "bin").mkdir(parents=True, exist_ok=True)
        if not os.access(out / "bin" / "ollama", os.X_OK):
            gobin = work / "gobin"  # moved into out/ only once go install has finished
            env = dict(os.environ, CGO_ENABLED="1", GOBIN=str(gobin))
            ldflags = (
                f"-X=github.com/ollama/ollama/version.Version={version}"
                " -X=github.com/ollama/ollama/server.mode=release"
            )
            _run(
                [str(_engines._go()), "install", "-trimpath", "-ldflags", ldflags,
                 f"github.com/ollama/ollama@v{version}"],
                log, env=env, cwd=work, label="go install",
            )  # fmt: skip
            os.replace(gobin / "ollama", out / "bin" / "ollama")
        src = work / "llama.cpp"
        if (src / ".commit").is_file() and (src / "CMakeLists.txt").is_file():
            commit = (src / ".commit").read_text().strip()
        else:
            shutil.rmtree(src, ignore_errors=True)
            commit = _engines_llama._extract(
                _assets.llama_cpp_sdist(LLAMA_CPP_PYTHON), src, LLAMA_CPP_PYTHON
            )
            # the sdist keeps the submodule's ``.git`` pointer file; git apply would follow it and fail
            if (src / ".git").is_file():
                (src / ".git").unlink()
            (src / ".commit").write_text(commit + "\n")
        ninja = _engines_llama._tool("ninja")
        generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
        options = [*CMAKE_OPTIONS, f"-DFETCHCONTENT_SOURCE_DIR_LLAMA_CPP={src}",
                   f"-DLLAMA_BUILD_COMMIT={commit}"]  # fmt: skip
        cmake, build = _engines_llama._cmake(), work / "build"
        mark = log.stat().st_size if log.is_file() else 0
        _run([cmake, "-S", str(module / "llama" / "server"), "-B", str(build), *generator, *options],
             log, cwd=work, label="configure")  # fmt: skip
        with open(log, errors="replace") as fh:
            fh.seek(mark)
            if not _PATCHED.search(fh.read()):
                raise RuntimeError(f"Ollama's compat patch was not applied to {src}; log {log}")
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
            "resumed": resumed,
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
            _engines._say(f"build stopped; log at {kept}; the next run resumes from {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)


def _run(
    cmd: list[str], log: Path, *, cwd: Path, label: str, env: dict[str, str] | None = None
) -> None:
    """Run ``cmd`` with its output appended to ``log``; a progress line every ~30 s."""
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )  # its own process group: stopped with its compilers
        started = last = time.monotonic()
        try:
            while proc.poll() is None:
                time.sleep(1)
                if time.monotonic() - last >= 30:
                    last = time.monotonic()
                    with open(log, "rb") as rd:
                        rd.seek(max(0, rd.seek(0, os.SEEK_END) - 4096))
                        tail = rd.read().decode(errors="replace").rstrip().rsplit("\n", 1)[-1]
                    _engines._say(f"  {label} {last - started:.0f} s: {tail[:110]}")
        except BaseException:
            _engines_llama.stop_group(proc, grace=5)
            raise
    if proc.returncode != 0:
        raise RuntimeError(f"{label} exited {proc.returncode}; log {log}")


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
