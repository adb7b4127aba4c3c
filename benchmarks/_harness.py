"""What every benchmark measures with: interleaved A/B medians, and one child process's wall and peak RSS.

* :func:`interleaved` times two callables that do the same job (the raw library and ours) call by call,
  ABAB with the order swapped every round, after a warm-up; it reports both medians, the median of
  paired ratios (each call of ours against the raw call next to it: robust to load drift on a shared
  machine) and the client CPU per call (a daemon's time is in another process).
* :func:`child` runs one program in a fresh process and returns its wall time and peak RSS. It goes
  through a small probe interpreter: Linux carries ``ru_maxrss`` across fork + exec, so a child started
  straight from a big parent (a benchmark that has loaded torch) would report the parent's peak; the
  probe's ``RUSAGE_CHILDREN`` sees only the program it ran.
* :func:`summary` folds repeated :func:`child` runs into median wall and max peak RSS.

Importing this module also puts ``tests/support/`` on ``sys.path``: the benchmarks measure the same cached
files the tests use (``tests/support/_assets*.py``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT / "tests" / "support") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "support"))


def interleaved(
    a: Callable[[], object], b: Callable[[], object], calls: int, *, warmup: int = 3
) -> dict[str, float]:
    """Time ``a`` (raw) against ``b`` (ours), ``calls`` times each, interleaved; milliseconds and %."""
    for _ in range(warmup):  # connections, imports, caches
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    ca: list[float] = []
    cb: list[float] = []
    for i in range(calls):
        pair = ((a, ta, ca), (b, tb, cb)) if i % 2 == 0 else ((b, tb, cb), (a, ta, ca))
        for fn, wall, cpu in pair:
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    ra, rb = statistics.median(ta), statistics.median(tb)
    return {
        "raw_ms": ra * 1e3,
        "ours_ms": rb * 1e3,
        "overhead_pct": (rb / ra - 1) * 100,
        "paired_overhead_pct": (statistics.median(y / x for x, y in zip(ta, tb, strict=True)) - 1)
        * 100,
        "raw_cpu_ms": statistics.mean(ca) * 1e3,
        "ours_cpu_ms": statistics.mean(cb) * 1e3,
        "cpu_delta_ms": (statistics.mean(cb) - statistics.mean(ca)) * 1e3,
        "cpu_overhead_pct": (sum(cb) / sum(ca) - 1) * 100 if sum(ca) else float("nan"),
    }


_PROBE = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, errors='replace')\n"
    "wall = time.perf_counter() - t\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "rss, cpu = ru.ru_maxrss * 1024, ru.ru_utime + ru.ru_stime\n"
    "try:\n"
    "    io = dict(l.split(': ') for l in open('/proc/self/io').read().split('\\n') if l)\n"
    "except OSError:\n"
    "    io = {}\n"
    "print(json.dumps({'code': p.returncode, 'wall': wall, 'rss': rss, 'cpu': cpu, 'io': io,\n"
    "                  'out': p.stdout[-100000:], 'err': p.stderr[-4000:]}))\n"
)


@dataclass(frozen=True)
class Child:
    """One program run: wall seconds, peak RSS bytes, exit code, stdout, stderr (tail).

    ``io``: the probe's ``/proc/self/io`` once the program was reaped (Linux adds a reaped child's
    counters to its parent's): ``rchar`` = bytes asked of read() (page-cache hits included, mmap
    page-ins not), ``read_bytes`` = bytes fetched from storage (mmap page-ins included). Empty
    where there is no ``/proc``. ``cpu``: user + system seconds (less sensitive than wall time to
    other jobs on a shared machine).
    """

    wall: float
    rss: int
    code: int
    stdout: str
    stderr: str
    io: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0  # user + system seconds of the program and its children

    @property
    def rss_mib(self) -> float:
        return self.rss / 2**20


def child(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> Child:
    """Run ``argv`` alone and measure it; ``check``: a non-zero exit raises with its stderr's tail."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"the measuring probe failed: {proc.stderr[-2000:]}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    io = {k: int(v) for k, v in stats.get("io", {}).items()}
    run = Child(
        stats["wall"],
        int(stats["rss"]),
        stats["code"],
        stats["out"],
        stats["err"],
        io,
        stats.get("cpu", 0.0),
    )
    if check and run.code != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv[:3]))} exited {run.code}: {run.stderr[-2000:]}"
        )
    return run


def python(code: str, *args: str | os.PathLike[str], check: bool = True) -> Child:
    """:func:`child` of ``python -c code args`` (this interpreter)."""
    return child([sys.executable, "-c", code, *map(str, args)], check=check)


def summary(runs: Iterable[Child]) -> dict[str, float | int]:
    """Median wall seconds and max peak RSS (MiB) of repeated runs."""
    runs = list(runs)
    return {
        "runs": len(runs),
        "wall_s": statistics.median(r.wall for r in runs),
        "peak_rss_mib": round(max(r.rss for r in runs) / 2**20),
    }


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
