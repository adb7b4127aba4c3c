"""`plan --rpc`: a model split across ``ggml-rpc-server`` hosts, held against real RPC servers.

Unit part: parsing ``HOST:PORT=MEM``, llama.cpp's layer placement (``-ngl``/``-ts`` split points,
float32 as in ``llama_model_base::load_tensors``), the commands and RPC's warning, bad input.

Real part (llama.cpp's own ``ggml-rpc-server`` and RPC-enabled ``llama-server``, built from the
llama-cpp-python sdist by ``tests/support/_engines_llama.py``): two RPC servers run as two separate hosts,
each in its own network namespace joined to the test's namespace by a veth pair (made by the
test as root, removed in a finalizer); where namespaces cannot be made, both run on loopback and
the test says so. Each server is started with exactly the command ``plan`` prints (plus
``GGML_RPC_DEBUG=1``, which makes it log every buffer it allocates, in bytes), and so is
``llama-server``. For the real Gemma 3 270M and a synthetic file at 1B width:

* greedy tokens through the RPC split equal those of a single-process ``llama-server``;
* each RPC host's own log: its model buffer is the plan's weights to the byte, its KV buffers the
  plan's KV cache to the byte, its compute buffer within 2 % of the plan;
* the main host's ``CPU_Mapped`` weights, KV (with partial offload) and logits buffer likewise,
  from llama-server's buffer lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import _assets_shapes
import pytest
from conftest import assert_one_line_error

from gemma3_pack._errors import UsageError
from gemma3_pack._memory._plan_rpc import RPC_WARNING, RpcHost, layer_devices, parse_rpc, plan_rpc

MIB = 2**20

# --------------------------------------------------------------------------------------------
# unit


def test_parse_rpc() -> None:
    hosts = parse_rpc("10.0.0.2:50052=24GB, gpu-b=rtx4090,[fd00::3]:6000=512MB")
    assert hosts == [  # read as --gpu reads a card: GB = 2^30, names as nvidia-smi reports them
        RpcHost("10.0.0.2", 50052, 24 * 2**30),
        RpcHost("gpu-b", 50052, 24564 * 2**20),
        RpcHost("fd00::3", 6000, 512 * 2**20),
    ]
    assert [h.endpoint for h in hosts] == ["10.0.0.2:50052", "gpu-b:50052", "[fd00::3]:6000"]
    assert parse_rpc(("a:1=1GB", "b:2=2GB")) == [RpcHost("a", 1, 2**30), RpcHost("b", 2, 2**31)]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("10.0.0.2:50052", "no memory"),
        ("10.0.0.2:50052=", "no memory"),
        ("10.0.0.2:99999=1GB", "port"),
        ("bad host:1=1GB", "HOST"),
        ("a:1=1GB,a:1=2GB", "twice"),
        ("a:1=lots", "cannot read the memory"),
        ("", "at least one"),
    ],
)
def test_parse_rpc_refuses(spec: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_rpc(spec)


# (n_layer, ngl, tensor split) -> device per layer (last = output layer), worked out from
# llama-model.cpp: i_gpu_start = n_layer + 1 - ngl; layer il goes to the first device whose
# normalised cumulative share exceeds (il - i_gpu_start) / min(ngl, n_layer + 1).
PLACEMENT = [
    # 270M, two equal hosts: 19 "layers"; il/19 < 0.5 for il <= 9
    (18, 19, [1, 1], [0] * 10 + [1] * 9),
    # 3:1 -> split point 0.75: il/19 < 0.75 for il <= 14
    (18, 19, [3, 1], [0] * 15 + [1] * 4),
    # -ngl 10: layers 0..8 stay on the CPU, 9..18 offloaded, 10 of them split 5/5
    (18, 10, [1, 1], [-1] * 9 + [0] * 5 + [1] * 5),
    # -ngl 0: nothing offloaded
    (6, 0, [1, 1], [-1] * 7),
    # a zero share: that device gets nothing
    (6, 7, [0, 1], [1] * 7),
    # three equal: float32 thirds; 7 / 21 == 1/3 exactly -> the next device (upper_bound)
    (20, 21, [1, 1, 1], [0] * 7 + [1] * 7 + [2] * 7),
]


@pytest.mark.parametrize(("n_layer", "ngl", "split", "want"), PLACEMENT)
def test_layer_placement(n_layer: int, ngl: int, split: list[int], want: list[int]) -> None:
    assert layer_devices(n_layer, ngl, [float(s) for s in split]) == want


def test_plan_text_json_commands_and_warning(cli, gguf_270m: Path) -> None:
    spec = "10.0.0.2:50052=2GB,10.0.0.3:50053=1GB"
    p = plan_rpc(gguf_270m, spec, ctx=8192)
    assert p.commands["10.0.0.2:50052"] == "ggml-rpc-server -H 10.0.0.2 -p 50052"
    assert p.commands["10.0.0.3:50053"] == "ggml-rpc-server -H 10.0.0.3 -p 50053"
    main = p.commands["main"]
    assert main.startswith(f"llama-server -m {gguf_270m} --rpc 10.0.0.2:50052,10.0.0.3:50053 ")
    assert "-ngl 19 -ts 2048,1024 -c 8192 -np 1 -fa on" in main
    assert plan_rpc(gguf_270m, spec, rpc_cache=True).commands["10.0.0.2:50052"].endswith(" -c")
    r = cli("plan", str(gguf_270m), "--rpc", spec, "--ctx", "8192", "--json")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["warning"] == RPC_WARNING and "never" in RPC_WARNING and "open network" in RPC_WARNING
    assert set(d["devices"]) == {"RPC0", "RPC1", "host"}
    assert d["commands"]["main"] == main
    assert (
        sum(v["weights"] for k, v in d["devices"].items() if k != "host")
        > d["weights"] - (d["devices"]["host"]["weights"])
    )  # the tied output copy lives on an RPC host as well as the host's embedding
    r = cli("plan", str(gguf_270m), "--rpc", spec, "--ctx", "8192")
    assert r.code == 0, r.stderr
    assert "warning: " + RPC_WARNING in r.stdout
    assert "ggml-rpc-server -H 10.0.0.2 -p 50052" in r.stdout and main in r.stdout


def test_variant_command_uses_the_hf_gguf() -> None:
    p = plan_rpc("gemma3-12b-it", "a:50052=24GB,b:50052=24GB", ctx=16384)
    assert p.commands["main"].startswith(
        "llama-server -hf ggml-org/gemma-3-12b-it-GGUF:Q4_K_M --rpc a:50052,b:50052"
    )
    assert p.devices[0].mmproj > 0  # the projector goes to the first GPU-type device: RPC0


def test_cli_refusals(cli, gguf_270m: Path) -> None:
    assert_one_line_error(cli("plan", str(gguf_270m), "--rpc", "10.0.0.2:50052"), "memory")
    assert_one_line_error(
        cli("plan", str(gguf_270m), "--rpc", "a:1=1GB", "--tensor-split", "1,1"), "one per host"
    )
    assert_one_line_error(
        cli("plan", str(gguf_270m), "--rpc", "a:1=1GB", "--tensor-split", "x"), "tensor-split"
    )


def test_does_not_fit_exits_1(cli, gguf_270m: Path) -> None:
    r = cli("plan", str(gguf_270m), "--rpc", "a:1=100MB,b:1=100MB")
    assert r.code == 1
    assert "DOES NOT FIT" in r.stdout


# --------------------------------------------------------------------------------------------
# real RPC servers


@dataclass
class RpcTestHost:
    address: str  # the address the server binds and llama-server dials
    port: int
    netns: str | None  # None: loopback fallback


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def _namespaces(n: int) -> Iterator[list[RpcTestHost]]:
    """``n`` network namespaces, each joined to ours by a veth pair (10.<net>.<i>.1 <-> .2).

    ``net`` follows the test process, so two runs at once (two checkouts on one machine) never put
    the same subnet on two veth pairs, which would route one run's connections into the other's.
    """
    tag = f"{os.getpid() % 100000}"
    net = 32 + os.getpid() % 200
    made: list[tuple[str, str]] = []
    try:
        hosts = []
        for i in range(1, n + 1):
            ns, veth = f"g3p-rpc-{tag}-{i}", f"g3r{tag}{i}"
            _run("ip", "netns", "add", ns)
            made.append((ns, veth))
            _run("ip", "link", "add", veth + "a", "type", "veth", "peer", "name", veth + "b")
            _run("ip", "link", "set", veth + "b", "netns", ns)
            _run("ip", "addr", "add", f"10.{net}.{i}.1/30", "dev", veth + "a")
            _run("ip", "link", "set", veth + "a", "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.{net}.{i}.2/30", "dev", veth + "b")  # fmt: skip
            _run("ip", "netns", "exec", ns, "ip", "link", "set", veth + "b", "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            hosts.append(RpcTestHost(f"10.{net}.{i}.2", 50052, ns))
        yield hosts
    finally:
        for ns, veth in made:
            subprocess.run(["ip", "link", "del", veth + "a"], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def rpc_test_hosts(pytestconfig: pytest.Config) -> Iterator[list[RpcTestHost]]:
    """Two hosts: network namespaces when we may make them, else loopback (and it says so)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    can_netns = shutil.which("ip") is not None and os.geteuid() == 0
    with contextlib.ExitStack() as stack:
        hosts: list[RpcTestHost] | None = None
        if can_netns:
            try:
                hosts = stack.enter_context(_namespaces(2))
            except (subprocess.CalledProcessError, OSError):
                hosts = None
        if hosts is None:
            import _engines_llama

            hosts = [RpcTestHost("127.0.0.1", _engines_llama.free_port(), None) for _ in range(2)]
        how = (
            f"network namespaces {hosts[0].netns}, {hosts[1].netns} over veth"
            if hosts[0].netns
            else "loopback (network namespaces unavailable)"
        )
        with capture.global_and_fixture_disabled():
            print(f"\n[plan --rpc] RPC test hosts: {how}", flush=True)
        yield hosts


@contextlib.contextmanager
def _rpc_servers(
    hosts: list[RpcTestHost], commands: dict[str, str], logdir: Path
) -> Iterator[list[Path]]:
    """Start each host's ``ggml-rpc-server`` with the plan's command; yield their log files."""
    from _engines_llama import _die_with_parent, llama_bin, stop_group

    binary = str(llama_bin("ggml-rpc-server"))
    procs, logs = [], []
    try:
        for i, h in enumerate(hosts):
            endpoint = f"{h.address}:{h.port}"
            argv = shlex.split(commands[endpoint])
            assert argv[0] == "ggml-rpc-server"
            argv[0] = binary
            if shutil.which("stdbuf"):  # its stdout is a file: line-buffer it for the log
                argv = ["stdbuf", "-oL", *argv]
            if h.netns:
                argv = ["ip", "netns", "exec", h.netns, *argv]
            log = logdir / f"rpc{i}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, "GGML_RPC_DEBUG": "1"}, preexec_fn=_die_with_parent,
                )  # fmt: skip
                procs.append(proc)
            logs.append(log)
        for h, proc, log in zip(hosts, procs, logs, strict=True):
            deadline = time.monotonic() + 60
            while True:  # reachable from the main host's namespace (the server logs this client)
                try:
                    with socket.create_connection((h.address, h.port), timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"ggml-rpc-server did not start:\n{log.read_text()}"
                        ) from None
                    time.sleep(0.1)
        yield logs
    finally:
        for proc in procs:
            stop_group(proc)


_ALLOC = re.compile(r"\[alloc_buffer\] device: \d+, size: (\d+) -> remote_ptr: ([0-9a-f]+)")
_FREE = re.compile(r"\[free_buffer\] remote_ptr: ([0-9a-f]+)")


def _live_buffers(log: str) -> list[int]:
    """Sizes (bytes, in allocation order) of the buffers the current client holds on this host."""
    session = log.rsplit("Accepted client connection", 1)[-1]
    live: dict[str, int] = {}
    for line in session.splitlines():
        if m := _ALLOC.search(line):
            live[m.group(2)] = int(m.group(1))
        elif m := _FREE.search(line):
            live.pop(m.group(1), None)
    return list(live.values())


def _server_buffers(log: str, name: str) -> dict[str, float]:
    """llama-server's own buffer lines for one buffer type (bytes, from its 0.01 MiB print)."""
    out: dict[str, float] = {"model": 0.0, "KV": 0.0, "compute": 0.0, "output": 0.0}
    pat = re.compile(rf"\s{re.escape(name)}\s+(model|KV|compute|output) buffer size =\s+([0-9.]+) MiB")  # fmt: skip
    for m in pat.finditer(log):
        out[m.group(1)] += float(m.group(2)) * MIB
    return out


def _greedy(server, prompt: str, n: int = 24) -> list[int]:
    r = server.post(
        "/completion",
        {"prompt": prompt, "n_predict": n, "temperature": 0, "top_k": 1, "seed": 1,
         "cache_prompt": False, "return_tokens": True},
    )  # fmt: skip
    r.raise_for_status()
    return list(r.json()["tokens"])


PROMPT = "The three primary colours of light are"

# (model, ctx, tensor split, ngl (None: all), host memory)
RPC_CASES = [
    ("270m", 4096, None, None),
    ("270m", 8192, [1.0, 1.0], 12),  # partial offload: the main host keeps layers 0..6
    ("1b", 8192, None, None),
]


@pytest.mark.llama_server
@pytest.mark.slow
@pytest.mark.parametrize(("model", "ctx", "split", "ngl"), RPC_CASES)
def test_rpc_split_matches_single_process_and_plan(
    model: str,
    ctx: int,
    split: list[float] | None,
    ngl: int | None,
    rpc_test_hosts: list[RpcTestHost],
    gguf_270m: Path,
    llama_server_bin: Path,
    tmp_path: Path,
) -> None:
    from _engines_llama import llama_server

    path = gguf_270m if model == "270m" else _assets_shapes.synthetic_gguf(model)
    spec = ",".join(f"{h.address}:{h.port}=4GB" for h in rpc_test_hosts)
    plan = plan_rpc(path, spec, ctx=ctx, tensor_split=split, ngl=ngl)
    assert plan.fits
    main = shlex.split(plan.commands["main"])
    assert main[:3] == ["llama-server", "-m", str(path)]
    # A ggml-rpc-server allocates plain CPU buffers (never repacked), so the runs whose main
    # host computes layers use --no-repack (-nr) to compute with the same kernels (and the
    # reference too); -lv 4 makes llama-server print its buffer lines.
    common = ["-c", str(ctx), "-np", "1", "-fa", "on", "-nr"]
    with llama_server(path, *common) as single:
        want = _greedy(single, PROMPT)
    extra = ["-lv", "4", *(["-nr"] if plan.devices[-1].layers else [])]
    with (
        _rpc_servers(rpc_test_hosts, plan.commands, tmp_path) as rpc_logs,
        llama_server(path, *main[3:], *extra) as split_server,
    ):
        got = _greedy(split_server, PROMPT)
        server_log = split_server.log_text()
        host_logs = [log.read_text(errors="replace") for log in rpc_logs]
    assert got == want, "greedy tokens through RPC differ from the single-process run"

    for dev, log in zip(plan.devices[:-1], host_logs, strict=True):
        live = _live_buffers(log)
        # llama.cpp names an RPC buffer after the server's own device index: RPC0[endpoint]
        lines = _server_buffers(server_log, f"RPC0[{dev.endpoint}]")
        if not dev.layers and not dev.output_layer:
            assert live == [], (dev.name, live)
            continue
        # allocation order: the model buffer, one KV buffer per cache (sliding, global) with
        # layers here, then the compute buffer
        n_kv = any(il % 6 != 5 for il in dev.layers) + any(il % 6 == 5 for il in dev.layers)
        assert live[0] == dev.weights, (dev.name, live, dev.weights)
        assert sum(live[1 : 1 + n_kv]) == dev.kv, (dev.name, live, dev.kv)
        compute = sum(live[1 + n_kv :])
        assert abs(compute - dev.compute) <= 0.02 * compute, (dev.name, compute, dev.compute)
        assert abs(lines["model"] - dev.weights) <= 0.006 * MIB
        assert abs(lines["KV"] - dev.kv) <= 0.006 * MIB * n_kv
    host = plan.devices[-1]
    mapped = _server_buffers(server_log, "CPU_Mapped")["model"]
    cpu = _server_buffers(server_log, "CPU")
    assert abs(mapped - host.weights) <= 0.006 * MIB, (mapped, host.weights)
    assert abs(cpu["KV"] - host.kv) <= 0.012 * MIB, (cpu["KV"], host.kv)
    assert abs(cpu["output"] - host.output) <= 0.006 * MIB
    assert abs(cpu["compute"] - host.compute) <= 0.02 * cpu["compute"], (
        cpu["compute"],
        host.compute,
    )


# What llama.cpp 0c1e57098 allocated in the real runs above (ggml-rpc-server logs, bytes; the
# main host's CPU compute buffer from llama-server's log, MiB), kept so that the compute model
# is checked without the engines too: (file, ctx, split, ngl, parallel, hosts, RPC compute
# buffers, host compute MiB)
RECORDED = [
    ("270m", 4096, None, None, 1, 2, [43589632, 43589760], 26.33),
    ("270m", 32768, None, None, 1, 2, [161030144, 161030272], 138.33),
    ("270m", 8192, None, None, 2, 2, [43589632, 43589760], 26.33),
    ("270m", 8192, [1.0, 1.0], 12, 1, 2, [24659968, 24660000], 26.77),
    ("270m", 4096, None, None, 1, 1, [22562848], 7.52),
    ("1b", 8192, None, None, 1, 2, [62955520, 96542848], 47.33),
    ("1b", 32768, None, None, 1, 2, [62955520, 197206144], 143.33),
]


@pytest.mark.parametrize(
    ("model", "ctx", "split", "ngl", "parallel", "hosts", "rpc", "host_mib"), RECORDED
)
def test_compute_matches_recorded_allocations(
    model: str,
    ctx: int,
    split: list[float] | None,
    ngl: int | None,
    parallel: int,
    hosts: int,
    rpc: list[int],
    host_mib: float,
    gguf_270m: Path,
) -> None:
    path = gguf_270m if model == "270m" else _assets_shapes.synthetic_gguf(model)
    spec = ",".join(f"10.217.{i}.2:50052=4GB" for i in range(1, hosts + 1))
    plan = plan_rpc(path, spec, ctx=ctx, tensor_split=split, ngl=ngl, parallel=parallel)
    assert [d.compute for d in plan.devices[:-1]] == rpc
    assert abs(plan.devices[-1].compute / MIB - host_mib) <= 0.006
