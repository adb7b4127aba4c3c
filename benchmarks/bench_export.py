"""Benchmark: `gemma3-pack export` vs llama.cpp's reference converter, as ratios in one run.

* 270M, bf16 safetensors -> BF16 GGUF: our export and ``convert_hf_to_gguf.py --outtype bf16``
  (llama-cpp-python 0.3.36 sdist, torch CPU), each a fresh subprocess, alternating round by
  round. Wall time around the process, peak RSS of that child from ``os.wait4``.
  Targets (issue 3): time <= 0.5x, peak RSS <= 0.25x.
* Memory vs model size: the same export on the 4B-shaped checkpoint (2 layers at 4B width,
  262208-row embedding, 1.7 GB) — our peak RSS should stay flat while the input triples; the
  reference's figure for it is the one recorded when the test oracle converted it.
* Quantization: each type from the 270M BF16 export (Q8_0 written by gguf-py from the checkpoint;
  the rest by llama.cpp's quantizer from the BF16 file), 2 threads.
* ``--kquants``: the types people ship, ``-q Q4_K_M,Q5_K_M,Q6_K,Q8_0``, on the 4B-shaped checkpoint
  (full 4B widths, 2 layers, sharded) or ``--shape 27b`` (full 27B widths, 1 layer, sharded:
  ``_assets_27b.py``): our one streamed pass against the classic route, convert_hf_to_gguf (bf16,
  and q8_0) + ``llama-quantize`` per K-quant from the BF16 file (2 threads), in the same run. Every
  program starts with its inputs evicted from the page cache (as with a model larger than RAM).
  Per route: wall time and CPU seconds (user + system), peak RSS (the probe's
  ``RUSAGE_CHILDREN``: the program and its children; the route's largest program), disk peak (allocated bytes of the output folder and the TMPDIR
  given to the programs, sampled every 0.1 s) against the outputs' size, and bytes read from
  storage (``/proc/<pid>/io`` ``read_bytes``, mmap page-ins included). Then the floor: ggml's
  quantizer alone over the same float32 rows on every core, no reading or writing; and BF16 alone
  (our export) against ``cp`` of the checkpoint's bytes. ``uptime``'s load is recorded between
  the phases.

    python benchmarks/bench_export.py [--rounds 2] [--skip-reference]
    python benchmarks/bench_export.py --kquants [--shape 4b|27b] [--layers N]

Prints a markdown table and writes benchmarks/results/export.json (``--kquants``:
benchmarks/results/export_kquants.json, one entry per fixture).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _harness import (
    ROOT,
    Child,
    child,
    machine,
)  # also puts tests/support/ on sys.path: the tests' cached assets

# isort: split
import _assets_ckpt
import _oracle

RESULTS = ROOT / "benchmarks" / "results" / "export.json"
EXPORT_SNIPPET = (
    "import sys; from gemma3_pack import export; "
    "export(sys.argv[1], output_dir=sys.argv[2], quants=sys.argv[3], name='bench', progress=False)"
)


def ours(ckpt: Path, quants: str = "BF16") -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one export in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        run = child([sys.executable, "-c", EXPORT_SNIPPET, str(ckpt), tmp, quants])
    return run.wall, run.rss


def checkpoint_bytes(ckpt: Path) -> int:
    return sum(p.stat().st_size for p in ckpt.glob("*.safetensors"))


def quantize_timings(ckpt: Path) -> dict[str, float]:
    from gemma3_pack import export
    from gemma3_pack._export._quantize import native_stderr_captured, quantize

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = export(ckpt, output_dir=tmp, quants="BF16", name="q", progress=False)
        out["BF16 (from checkpoint)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        export(ckpt, output_dir=tmp, quants="Q8_0", name="q", progress=False)
        out["Q8_0 (from checkpoint, Python)"] = time.perf_counter() - t0
        for q in ("Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"):
            t0 = time.perf_counter()
            with native_stderr_captured():  # llama.cpp prints a line per tensor
                quantize(res.models[0].path, Path(tmp) / f"q-{q}.gguf", q, nthread=2)
            out[f"{q} (llama.cpp, from BF16)"] = time.perf_counter() - t0
    return out


class DiskSampler:
    """Peak allocated bytes (st_blocks) of every file under ``folder``, sampled on a thread."""

    def __init__(self, folder: Path, every: float = 0.1) -> None:
        import threading

        self.folder, self.every, self.peak = folder, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _now(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.folder):
            for f in files:
                with contextlib.suppress(OSError):  # renamed or removed meanwhile
                    total += os.stat(os.path.join(root, f)).st_blocks * 512
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._now())
            self._stop.wait(self.every)

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def evict(*paths: Path) -> None:
    """Drop ``paths`` from the page cache (flushed first): the next program reads them from disk.

    Every program of both routes starts cold, as with a model larger than RAM; a reader's
    ``read_bytes`` is then the bytes it fetched from storage.
    """
    for path in paths:
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _step(run: Child) -> dict[str, float]:
    return {
        "wall_s": run.wall,
        "cpu_s": run.cpu,
        "rss": run.rss,
        "read_bytes": run.io.get("read_bytes", 0),
        "rchar": run.io.get("rchar", 0),
        "load": os.getloadavg()[0],
    }


def _folders(tmp: str) -> tuple[Path, dict[str, str]]:
    """An output folder and a TMPDIR, both under the sampled ``tmp``; the env that uses it."""
    out, scratch = Path(tmp) / "out", Path(tmp) / "tmp"
    out.mkdir()
    scratch.mkdir()
    return out, {**os.environ, "TMPDIR": str(scratch)}


def kquant_ours(ckpt: Path, quants: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp, DiskSampler(Path(tmp)) as disk:
        out, env = _folders(tmp)
        evict(ckpt)
        run = child([sys.executable, "-c", EXPORT_SNIPPET, str(ckpt), out, quants], env=env)
        sizes = {p.name: p.stat().st_size for p in out.glob("*.gguf")}
    return {**_step(run), "disk_peak": disk.peak, "outputs": sum(sizes.values()), "files": sizes}


def convert_argv(ckpt: Path, outfile: Path, outtype: str) -> tuple[list[str], dict[str, str]]:
    """llama.cpp's convert_hf_to_gguf.py as the test oracle runs it (its gguf-py, offline)."""
    ref = _oracle.reference_dir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ref / "gguf-py"), str(ref)])
    env.setdefault("HF_HUB_OFFLINE", "1")
    argv = [sys.executable, str(ref / "convert_hf_to_gguf.py"), str(ckpt)]
    return [*argv, "--outtype", outtype, "--outfile", str(outfile)], env


def kquant_route(ckpt: Path, quants: list[str]) -> dict:
    """convert_hf_to_gguf bf16 (+ q8_0) then llama-quantize per other type, as people do."""
    import _engines_llama

    exe = str(_engines_llama.llama_bin("llama-quantize"))
    steps: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, DiskSampler(Path(tmp)) as disk:
        out, env = _folders(tmp)
        bf16 = out / "route-BF16.gguf"
        argv, cenv = convert_argv(ckpt, bf16, "bf16")
        evict(ckpt)
        steps["convert bf16"] = _step(child(argv, env={**cenv, "TMPDIR": env["TMPDIR"]}))
        outs = []
        for q in quants:
            dst = out / f"route-{q}.gguf"
            if q == "Q8_0":
                argv, cenv = convert_argv(ckpt, dst, "q8_0")
                evict(ckpt)
                run = child(argv, env={**cenv, "TMPDIR": env["TMPDIR"]})
                steps["convert q8_0"] = _step(run)
            else:
                evict(bf16)
                steps[f"llama-quantize {q}"] = _step(child([exe, bf16, dst, q, "2"], env=env))
            outs.append(dst)
        bf16.unlink()  # the intermediate people delete afterwards
        sizes = {p.name: p.stat().st_size for p in outs}
    return {
        "wall_s": sum(s["wall_s"] for s in steps.values()),
        "cpu_s": sum(s["cpu_s"] for s in steps.values()),
        "rss": max(s["rss"] for s in steps.values()),
        "read_bytes": sum(s["read_bytes"] for s in steps.values()),
        "rchar": sum(s["rchar"] for s in steps.values()),
        "disk_peak": disk.peak,
        "outputs": sum(sizes.values()),
        "files": sizes,
        "steps": steps,
    }


def bf16_vs_cp(ckpt: Path, repeats: int = 3) -> dict:
    """BF16 alone (our export) against ``cp`` of the checkpoint's bytes, both from a cold cache,
    interleaved ``repeats`` times; the run with the median wall time of each."""
    ours_runs, cp_runs = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out, env = _folders(tmp)
            evict(ckpt)
            run = child([sys.executable, "-c", EXPORT_SNIPPET, str(ckpt), out, "BF16"], env=env)
            ours_runs.append(
                {**_step(run), "outputs": sum(p.stat().st_size for p in out.glob("*.gguf"))}
            )
        with tempfile.TemporaryDirectory() as tmp:
            evict(ckpt)
            cp = child(["cp", *sorted(map(str, ckpt.glob("*.safetensors"))), tmp])
            cp_runs.append({**_step(cp), "bytes": checkpoint_bytes(ckpt)})
    ours = sorted(ours_runs, key=lambda r: r["wall_s"])[len(ours_runs) // 2]
    cp_med = sorted(cp_runs, key=lambda r: r["wall_s"])[len(cp_runs) // 2]
    return {
        "ours": ours,
        "cp": cp_med,
        "ratio": ours["wall_s"] / cp_med["wall_s"],
        "cpu_ratio": ours["cpu_s"] / max(cp_med["cpu_s"], 1e-9),
        "walls": {"ours": [r["wall_s"] for r in ours_runs], "cp": [r["wall_s"] for r in cp_runs]},
    }


def quantize_floor(ckpt: Path, quants: str) -> tuple[float, float]:
    """(wall, CPU) seconds ggml's quantizer alone takes over the export's float32 rows, every core."""
    from concurrent.futures import ThreadPoolExecutor

    from gemma3_pack._export import plan_export
    from gemma3_pack._export._ggml import submit_rows, threads
    from gemma3_pack._export._tensors import FLOAT_TYPES, Rows

    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_export(ckpt, output_dir=tmp, quants=quants, name="f", progress=False)
    total = cpu = 0.0
    step = 16384
    with ThreadPoolExecutor(threads()) as pool:
        for i, t in enumerate(plan.tensors[plan.outputs[0]]):
            outs = [plan.tensors[q][i] for q in plan.outputs]
            todo = [o for o in outs if o.qtype not in FLOAT_TYPES]
            if not todo:
                continue
            for start in range(0, t.rows, step):
                rows = Rows(plan.ckpt, t, start, min(t.rows, start + step))
                data = {o.via: rows.through(o.via) if o.via else rows.f32() for o in todo}
                c0, t0 = time.process_time(), time.perf_counter()
                waits = [  # every output's tasks at once: no core waits for another output
                    submit_rows(o.qtype, data[o.via].reshape(-1, o.shape[-1]), pool=pool)
                    for o in todo
                ]
                for wait in waits:
                    wait()
                total += time.perf_counter() - t0
                cpu += time.process_time() - c0  # the pool's threads included
    return total, cpu


def uptime() -> str:
    return Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else ""


def kquants(shape: str, layers: int, quants: str, save: Callable[[dict], None]) -> dict:
    """Every phase on one fixture; ``save`` gets the figures so far after each phase."""
    if shape == "27b":
        import _assets_27b

        ckpt = _assets_27b.hf_checkpoint_27b_shaped(layers=layers)
    else:
        ckpt = _assets_ckpt.hf_checkpoint_4b_shaped(layers=layers)
    k: dict = {
        "checkpoint": f"{shape.upper()}-shaped, {layers} layer{'s' if layers > 1 else ''}",
        "machine": machine(),
        "input_bytes": checkpoint_bytes(ckpt),
        "quants": quants,
        "cache": "every program starts with its inputs evicted from the page cache",
        "load": {"before": uptime()},
    }
    k["ours"] = kquant_ours(ckpt, quants)
    k["load"]["after ours"] = uptime()
    save(k)
    k["route"] = route = kquant_route(ckpt, quants.split(","))
    k["load"]["after route"] = uptime()
    ours_r = k["ours"]
    k.update(
        time_ratio=ours_r["wall_s"] / route["wall_s"],
        cpu_ratio=ours_r["cpu_s"] / route["cpu_s"],
        rss_ratio=ours_r["rss"] / route["rss"],
        read_ratio=ours_r["read_bytes"] / route["read_bytes"],
        disk_peak_over_outputs=ours_r["disk_peak"] / ours_r["outputs"],
        route_disk_peak_over_outputs=route["disk_peak"] / route["outputs"],
    )
    save(k)
    floor, floor_cpu = quantize_floor(ckpt, quants)
    k["load"]["after floor"] = uptime()
    k.update(
        floor_s=floor,
        floor_cpu_s=floor_cpu,
        ours_over_floor=ours_r["wall_s"] / floor,
        floor_over_route=floor / route["wall_s"],
        cpu_ours_over_floor=ours_r["cpu_s"] / floor_cpu,
    )
    save(k)
    k["bf16_vs_cp"] = bf16_vs_cp(ckpt)
    k["load"]["after"] = uptime()
    save(k)
    return k


def print_kquants(k: dict) -> None:
    mb = 1e6
    o, r, b = k["ours"], k["route"], k["bf16_vs_cp"]
    print(f"\n{k['checkpoint']} ({k['input_bytes'] / mb:,.0f} MB), -q {k['quants']}; loadavg:")
    for when, line in k["load"].items():
        print(f"  {when}: {line}")
    print("\n| | gemma3-pack (one pass) | convert + llama-quantize | ratio |")
    print("|---|---|---|---|")
    print(f"| wall time | {o['wall_s']:.0f} s | {r['wall_s']:.0f} s | **{k['time_ratio']:.2f}x** |")
    if "cpu_ratio" in k:
        print(f"| CPU time | {o['cpu_s']:.0f} s | {r['cpu_s']:.0f} s | {k['cpu_ratio']:.2f}x |")
    print(
        f"| peak RSS | {o['rss'] / mb:,.0f} MB | {r['rss'] / mb:,.0f} MB | {k['rss_ratio']:.2f}x |"
    )
    print(
        f"| disk peak / outputs | {o['disk_peak'] / mb:,.0f} / {o['outputs'] / mb:,.0f} MB = "
        f"**{k['disk_peak_over_outputs']:.2f}x** | {r['disk_peak'] / mb:,.0f} / "
        f"{r['outputs'] / mb:,.0f} MB = {k['route_disk_peak_over_outputs']:.2f}x | |"
    )
    print(
        f"| bytes read from disk | {o['read_bytes'] / mb:,.0f} MB | {r['read_bytes'] / mb:,.0f} MB"
        f" | {k['read_ratio']:.2f}x |"
    )
    print(
        f"| floor: ggml's quantizer alone | {k['floor_s']:.0f} s "
        f"(export = {k['ours_over_floor']:.2f}x the floor) | "
        f"(floor = {k['floor_over_route']:.2f}x the route) | |"
    )
    for step, st in r["steps"].items():
        print(
            f"| route step: {step} | | {st['wall_s']:.0f} s, {st['rss'] / mb:,.0f} MB, "
            f"{st['read_bytes'] / mb:,.0f} MB read | |"
        )
    print(
        f"| BF16 alone vs cp of its bytes | {b['ours']['wall_s']:.1f} s | cp {b['cp']['wall_s']:.1f} s"
        f" | {b['ratio']:.2f}x |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--kquants", action="store_true", help="only the K-quant route comparison")
    ap.add_argument("--shape", choices=("4b", "27b"), default="4b", help="--kquants fixture")
    ap.add_argument("--layers", type=int, default=None, help="--kquants: 2 (4B), 1 (27B)")
    ap.add_argument("--quants", default="Q4_K_M,Q5_K_M,Q6_K,Q8_0")
    args = ap.parse_args()
    if args.kquants:
        layers = args.layers or (1 if args.shape == "27b" else 2)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        path = RESULTS.with_name("export_kquants.json")

        def save(k: dict) -> None:
            done = json.loads(path.read_text()) if path.is_file() else {}
            done[f"{args.shape}-shaped-l{layers}"] = k
            path.write_text(json.dumps(done, indent=2) + "\n")

        k = kquants(args.shape, layers, args.quants, save)
        print_kquants(k)
        return

    ck270 = _assets_ckpt.hf_checkpoint_270m()
    ck4b = _assets_ckpt.hf_checkpoint_4b_shaped()
    ours_270, ref_270 = [], []
    for _ in range(args.rounds):
        ours_270.append(ours(ck270))
        if not args.skip_reference:
            ref_270.append(_oracle.reference_peak(ck270, "bf16"))
    ours_4b = ours(ck4b)
    # the reference's 4B-shaped figure is the one recorded when the test oracle built its cached
    # output (a fresh 4B reference run costs ~1 min and 5.8 GB); its time ratio is indicative only
    ref_4b = _oracle.reference_stats(ck4b, outtype="bf16")

    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    o_t, o_m = med(ours_270, 0), med(ours_270, 1)
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "270m_bf16": {"input_bytes": checkpoint_bytes(ck270), "ours_s": o_t, "ours_rss": o_m},
        "4b_shaped_bf16": {
            "input_bytes": checkpoint_bytes(ck4b),
            "ours_s": ours_4b[0],
            "ours_rss": ours_4b[1],
            "reference_s": ref_4b.get("wall_s"),
            "reference_rss": ref_4b.get("peak_rss_bytes"),
        },
    }
    if ref_270:
        r_t, r_m = med(ref_270, 0), med(ref_270, 1)
        result["270m_bf16"].update(
            reference_s=r_t, reference_rss=r_m, time_ratio=o_t / r_t, rss_ratio=o_m / r_m
        )
    result["quantize_s"] = quantize_timings(ck270)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    mb = 1e6
    a, b = result["270m_bf16"], result["4b_shaped_bf16"]
    print("| checkpoint (bf16 -> BF16 GGUF) | input | gemma3-pack | reference | ratio |")
    print("|---|---|---|---|---|")
    if ref_270:
        print(
            f"| 270M wall time | {a['input_bytes'] / mb:,.0f} MB | {a['ours_s']:.1f} s | "
            f"{a['reference_s']:.1f} s | **{a['time_ratio']:.2f}x** |"
        )
        print(
            f"| 270M peak RSS | | {a['ours_rss'] / mb:,.0f} MB | {a['reference_rss'] / mb:,.0f} MB"
            f" | **{a['rss_ratio']:.2f}x** |"
        )
    if b["reference_s"]:
        print(
            f"| 4B-shaped wall time | {b['input_bytes'] / mb:,.0f} MB | {b['ours_s']:.1f} s | "
            f"{b['reference_s']:.1f} s | {b['ours_s'] / b['reference_s']:.2f}x |"
        )
        print(
            f"| 4B-shaped peak RSS | | {b['ours_rss'] / mb:,.0f} MB | "
            f"{b['reference_rss'] / mb:,.0f} MB | {b['ours_rss'] / b['reference_rss']:.2f}x |"
        )
    print(
        f"\nOur peak RSS, 4B-shaped vs 270M: {b['ours_rss'] / a['ours_rss']:.2f}x for "
        f"{b['input_bytes'] / a['input_bytes']:.2f}x the input.\n"
    )
    print("| type (270M) | seconds |")
    print("|---|---|")
    for k, v in result["quantize_s"].items():
        print(f"| {k} | {v:.1f} |")


if __name__ == "__main__":
    main()
