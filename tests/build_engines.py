"""Build the real engines the test suite runs, once, before the tests: ``python tests/build_engines.py``.

The tests never compile an engine themselves (a cold build takes longer than any per-test timeout,
and how fast a machine compiles must not decide whether the suite passes): a test whose engine is
missing fails at once with one line naming this command. This step builds, in order,

* ``llama.cpp``      llama.cpp's own programs (llama-server, llama-mtmd-cli, llama-quantize,
                     llama-perplexity, ggml-rpc-server) — ``tests/support/_engines_llama.py``, CMake/Ninja;
* ``ollama-0.24.0``  Ollama 0.24.0 from its Go module (cgo) — ``tests/support/_engines.py``;
* ``ollama-0.34.4``  Ollama 0.34.4 and its llama-server engine — ``tests/support/_engines_ollama_new.py``;
* ``ollama-render``  the small Go program that renders prompts as Ollama does — ``tests/support/_ollama_render.py``;
* ``litert-venv``    the ``[litert]`` extra (litert-torch, Google's LiteRT-LM runtime) in a venv of its
                     own, ``pip install`` of its exact pins (3.1 GB of wheels, 6.3 GB installed) —
                     ``tests/support/_litert_env.py``

into the test cache (``$GEMMA3_PACK_TEST_CACHE``, default ``~/.cache/gemma3-pack-tests``). Built
engines are found and skipped at once. A build that stops (Ctrl-C, a timeout, a crash) resumes on the
next run: CMake/Ninja keep their build folder, Go keeps its build cache, pip keeps the packages it
installed. A build that fails is reported as one line with its log's path, the other engines are still
built, and the exit status is 1.

Examples::

    .venv/bin/python tests/build_engines.py                  # everything (~70-80 min cold on 2 cores)
    .venv/bin/python tests/build_engines.py --check          # what is built; exit 1 if anything is not
    .venv/bin/python tests/build_engines.py --only llama.cpp --only ollama-0.24.0
    .venv/bin/python tests/build_engines.py --timeout-min 240 # a slower machine
"""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

import _assets
import _engines
import _engines_llama
import _engines_ollama_new
import _litert_env
import _ollama_render


@dataclass(frozen=True)
class Engine:
    name: str
    marker: str  # the pytest marker of the tests that need it
    cold: str  # cold build time on 2 cores, as measured (tests/README.md)
    built: Callable[[], bool]
    build: Callable[[], object]
    log: Callable[[], Path]  # where its build log is while it builds


def _render_built() -> bool:
    exe = (
        _assets.CACHE
        / "ollama-render"
        / f"{_ollama_render.ollama_version()}-{_ollama_render._digest()}"
    )
    return (exe / "ollama_render").is_file()


ENGINES = (
    Engine(
        "llama.cpp",
        "llama_server",
        "~17 min",
        lambda: _engines_llama.is_built(),
        lambda: _engines_llama.ensure_programs(build=True),
        lambda: (
            _assets.CACHE
            / "engines"
            / f".llama.cpp-{_engines_llama.llama_cpp_version()}.work"
            / "build.log"
        ),
    ),
    Engine(
        f"ollama-{_engines.OLLAMA_VERSION}",
        "ollama",
        "~15-20 min",
        lambda: _engines.is_built(),
        lambda: _engines.ollama_binary(build=True),
        lambda: _assets.CACHE / "engines" / f"ollama-{_engines.OLLAMA_VERSION}-build" / "build.log",
    ),
    Engine(
        f"ollama-{_engines_ollama_new.OLLAMA_NEW_VERSION}",
        "ollama",
        "~25-35 min",
        lambda: _engines_ollama_new.is_built(),
        lambda: _engines_ollama_new.ollama_binary_new(build=True),
        lambda: (
            _assets.CACHE
            / "engines"
            / f".ollama-{_engines_ollama_new.OLLAMA_NEW_VERSION}.work"
            / "build.log"
        ),
    ),
    Engine(
        "ollama-render",
        "go",
        "~2-5 min",
        _render_built,
        lambda: _ollama_render.binary(),
        lambda: _assets.CACHE / "ollama-render",
    ),
    Engine(
        "litert-venv",
        "litert",
        "~7 min",
        _litert_env.is_built,
        lambda: _litert_env.python(build=True),
        _litert_env.log_path,
    ),
)
NAMES = tuple(e.name for e in ENGINES)


class BuildTimeout(BaseException):  # not swallowed by an `except Exception` inside a build
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise BuildTimeout


def _one_line(err: BaseException, engine: Engine) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    if "log" not in first:
        first += f"; log {engine.log()}"
    return first


def _build_one(engine: Engine, step: str, timeout_min: float, failed: list[str]) -> bool:
    """Build ``engine`` if missing, within ``timeout_min``; a failure is appended to ``failed`` as
    one line. False when the user interrupted (the build resumes next time)."""
    say = _engines._say
    if engine.built():
        say(f"{step} {engine.name}: built")
        return True
    say(f"{step} {engine.name}: building (cold {engine.cold} on 2 cores) ...")
    t0 = time.monotonic()
    signal.alarm(max(1, round(timeout_min * 60)))
    try:
        engine.build()
    except BuildTimeout:
        failed.append(
            f"{engine.name}: not finished after {timeout_min:g} min (stopped; rerun to "
            f"resume, or raise --timeout-min); log {engine.log()}"
        )
    except KeyboardInterrupt:
        print(f"build_engines: {engine.name}: interrupted; rerun to resume", file=sys.stderr)
        return False
    except Exception as err:  # one line per failed engine; the log has the rest
        failed.append(f"{engine.name}: {_one_line(err, engine)}")
    else:
        if engine.built():
            say(f"{step} {engine.name}: built in {time.monotonic() - t0:.0f} s")
        else:
            failed.append(f"{engine.name}: the build ended but its check fails; log {engine.log()}")
    finally:
        signal.alarm(0)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n" + textwrap.dedent(__doc__.split("Examples::\n\n")[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--only", action="append", choices=NAMES, help="build only this engine (repeatable)"
    )
    ap.add_argument(
        "--check", action="store_true", help="only report what is built (exit 1 if not all)"
    )
    ap.add_argument(
        "--timeout-min",
        type=float,
        default=120,
        help="stop one engine's build after this many minutes (it resumes next time; default 120)",
    )
    args = ap.parse_args(argv)
    chosen = [e for e in ENGINES if not args.only or e.name in args.only]
    say = _engines._say
    if args.check:
        missing = [e.name for e in chosen if not e.built()]
        for e in chosen:
            say(
                f"{e.name:15} {'built' if e.name not in missing else 'NOT BUILT'} (marker {e.marker})"
            )
        return 1 if missing else 0

    say(f"engines in {_assets.CACHE / 'engines'}: {', '.join(e.name for e in chosen)}")
    failed: list[str] = []
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for i, engine in enumerate(chosen, 1):
            if not _build_one(engine, f"[{i}/{len(chosen)}]", args.timeout_min, failed):
                return 130
    finally:
        signal.signal(signal.SIGALRM, previous)
    total = time.monotonic() - started
    for line in failed:
        print(f"build_engines: FAILED {line}", file=sys.stderr, flush=True)
    if failed:
        return 1
    say(f"all engines built ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
