"""The bad-input corpus: every hostile file and folder from issue 12, through the real CLI.

Each case asserts what a user is owed: exit 2, one ``error:`` line naming the problem, no
traceback, never the CLI's last-resort "internal error" line (an exception no validating layer
translated), nothing written, every input byte-for-byte unchanged, and the child process's peak
RSS and wall time under the bounds below (measured with ``os.wait4`` on that one child). The huge
inputs are sparse files: a 1 GB tokenizer.json costs 4 KB of disk.

Server replies, timeouts and ``chat --image`` are the SDK's corpus (tests/test_client*.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _hostile import (
    ARR,
    F32,
    STR,
    U32,
    U64,
    gemma3_kvs,
    gstr,
    kv,
    raw_gguf,
    run_measured,
    safetensors_bytes,
    tensor_info,
)
from _refusals import (
    RSS_BOUND_MB,
    SECONDS_BOUND,
    _assert_refused,
    _ckpt,
    _meta_only,
    _state,
    _with_tensors,
)
from safetensors.numpy import save_file

from gemma3_pack.cli import UNEXPECTED

# --- GGUF inputs (patch and inspect) --------------------------------------------------------


def _sparse_tokens(d: Path) -> Path:
    """12.5 M empty token strings: 100 MB of zeros that are a hole in an 8 KB file."""
    n = 12_500_000
    head = [kv("general.architecture", STR, "gemma3")]
    rec = gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARR, STR, n)
    return raw_gguf(d / "m.gguf", [*head, rec], sparse_tail=8 * n)


def _nested(d: Path, depth: int = 5000) -> Path:
    """An array of arrays of arrays ... 5000 deep (each level one item), innermost u32[0]."""
    value = struct.pack("<IQ", ARR, 1) * depth + struct.pack("<IQ", U32, 0)
    return _meta_only(d, gstr("general.deep") + struct.pack("<I", ARR) + value)


def _fifo(d: Path, name: str) -> Path:
    p = d / name
    os.mkfifo(p)
    return p


F32_8 = b"\0" * 32
GGUF_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "12.5M empty tokens in a sparse file": (_sparse_tokens, ("token 105", "not a Gemma 3")),
    "alignment 2^28 in a 5 KB file": (
        lambda d: _meta_only(d, kv("general.alignment", U32, 1 << 28)),
        ("general.alignment", "268,435,456"),
    ),
    "alignment 2^40 stored as u64": (
        lambda d: _meta_only(d, kv("general.alignment", U64, 1 << 40)),
        ("general.alignment", "uint64", "expected u32"),
    ),
    "chat template stored as u32": (
        lambda d: _meta_only(d, kv("tokenizer.chat_template", U32, 7)),
        ("tokenizer.chat_template", "uint32", "expected string"),
    ),
    "sampling temp stored as a string": (
        lambda d: _meta_only(d, kv("general.sampling.temp", STR, "hot")),
        ("general.sampling.temp", "expected number"),
    ),
    "tokens stored as u32": (
        lambda d: raw_gguf(
            d / "m.gguf",
            [
                kv("general.architecture", STR, "gemma3"),
                kv("tokenizer.ggml.tokens", ARR, (U32, [1])),
            ],
        ),
        ("tokenizer.ggml.tokens", "array[uint32]", "expected array[string]"),
    ),
    "arrays nested 5000 deep": (_nested, ("general.deep", "nested more than")),
    "5-D tensor": (
        lambda d: _with_tensors(d, [tensor_info("t", (1, 1, 1, 1, 8))], F32_8),
        ("tensor t", "5 dimensions", "at most 4"),
    ),
    "ggml type 999": (
        lambda d: _with_tensors(d, [tensor_info("t", (8,), 999)], F32_8),
        ("ggml type 999",),
    ),
    "duplicate keys": (
        lambda d: _meta_only(d, kv("general.name", STR, "a"), kv("general.name", STR, "b")),
        ("general.name", "appears twice"),
    ),
    "overlapping tensors": (
        lambda d: _with_tensors(
            d, [tensor_info("a", (8,), 0, 0), tensor_info("b", (8,), 0, 0)], F32_8 * 2
        ),
        ("tensor b", "overlaps"),
    ),
    "duplicate tensor names": (
        lambda d: _with_tensors(
            d, [tensor_info("a", (8,), 0, 0), tensor_info("a", (8,), 0, 32)], F32_8 * 2
        ),
        ("tensor a", "appears twice"),
    ),
    "0-dim tensor of unknown type": (
        lambda d: _with_tensors(d, [tensor_info("s", (), 1234)], F32_8),
        ("ggml type 1234",),
    ),
    "FIFO": (lambda d: _fifo(d, "m.gguf"), ("FIFO", "regular file")),
    "header claims 2^60 keys": (
        lambda d: _meta_only(d, n_kv=1 << 60),
        ("claims",),
    ),
}


# --- checkpoint inputs (export) --------------------------------------------------------------


def _sparse(path: Path, size: int, head: bytes = b"") -> None:
    path.unlink(missing_ok=True)
    path.write_bytes(head)
    with open(path, "r+b") as f:
        f.truncate(size)


def _big_tokenizer_json(d: Path, base: Path) -> Path:
    out = _ckpt(d, base)
    _sparse(out / "tokenizer.json", 1 << 30, b'{"version": "1.0", "added_tokens": [')
    return out


def _safetensors(d: Path, base: Path, header: dict | bytes, data: bytes = b"") -> Path:
    return _ckpt(d, base, model__safetensors=safetensors_bytes(header, data))


def _contradicting_shapes(d: Path, base: Path) -> Path:
    return _ckpt(d, base, config__json={"intermediate_size": 256})


def _config_fifo(d: Path, base: Path) -> Path:
    out = _ckpt(d, base)
    (out / "config.json").unlink()
    os.mkfifo(out / "config.json")
    return out


def _lora(d: Path, base: Path, config: object) -> Path:
    out = d / "adapter"
    out.mkdir()
    (out / "adapter_config.json").write_text(json.dumps(config))
    rng = __import__("numpy").random.default_rng(0)
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": rng.standard_normal(
                (4, 64), dtype="float32"
            ),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": rng.standard_normal(
                (64, 4), dtype="float32"
            ),
        },
        str(out / "adapter_model.safetensors"),
    )
    return out


F32_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
CKPT_CASES: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "vocab_size 1e12": (
        lambda d, b: _ckpt(d, b, config__json={"vocab_size": 1e12}),
        ("config.json", "vocab_size", "1000000000000", "expected an integer from 1 to"),
    ),
    "num_hidden_layers 1e6": (
        lambda d, b: _ckpt(d, b, config__json={"num_hidden_layers": 1000000}),
        ("num_hidden_layers", "1000000"),
    ),
    "vocab_size -5": (
        lambda d, b: _ckpt(d, b, config__json={"vocab_size": -5}),
        ("vocab_size is -5", "expected an integer from 1"),
    ),
    "hidden_size a string": (
        lambda d, b: _ckpt(d, b, config__json={"hidden_size": "64"}),
        ('hidden_size is "64"', "expected an integer"),
    ),
    "text_config a list": (
        lambda d, b: _ckpt(d, b, config__json={"text_config": [1, 2]}),
        ("text_config", "expected an object"),
    ),
    "architectures a dict": (
        lambda d, b: _ckpt(d, b, config__json={"architectures": {"a": []}}),
        ("architectures", "expected a list"),
    ),
    "config.json a list": (
        lambda d, b: _ckpt(d, b, config__json=[1, 2, 3]),
        ("config.json", "JSON list", "expected an object"),
    ),
    "config.json not UTF-8": (
        lambda d, b: _ckpt(d, b, config__json=b'{"a": "\xff\xfe"}'),
        ("config.json", "not UTF-8"),
    ),
    "config.json nested 100000 deep": (
        lambda d, b: _ckpt(d, b, config__json=b"[" * 100_000 + b"]" * 100_000),
        ("config.json", "nested too deeply"),
    ),
    "config.json a FIFO": (_config_fifo, ("config.json", "FIFO")),
    "shapes contradict config.json": (
        _contradicting_shapes,
        ("mlp.", "_proj.weight has shape", "config.json implies", "intermediate_size 256"),
    ),
    "vocab_size contradicts the embedding": (
        lambda d, b: _ckpt(d, b, config__json={"vocab_size": 1000}),
        ("embed_tokens.weight", "[262144, 64]", "implies [1000, 64]"),
    ),
    "tokenizer_config.json a list": (
        lambda d, b: _ckpt(d, b, tokenizer_config__json=["x"]),
        ("tokenizer_config.json", "JSON list"),
    ),
    "tokenizer_config.json not UTF-8": (
        lambda d, b: _ckpt(d, b, tokenizer_config__json=b"\xff\xff{}"),
        ("tokenizer_config.json", "not UTF-8"),
    ),
    "added_tokens_decoder id -1": (
        lambda d, b: _ckpt(
            d, b, tokenizer_config__json={"added_tokens_decoder": {"-1": {"content": "<x>"}}}
        ),
        ("tokenizer_config.json", "token id '-1'"),
    ),
    "added_tokens_decoder entry a string": (
        lambda d, b: _ckpt(d, b, tokenizer_config__json={"added_tokens_decoder": {"5": "x"}}),
        ("added_tokens_decoder['5']", "content"),
    ),
    "added_tokens.json ids are strings": (
        lambda d, b: _ckpt(d, b, added_tokens__json={"<x>": "five"}),
        ("added_tokens.json", "token id 'five'"),
    ),
    "special_tokens_map.json a string": (
        lambda d, b: _ckpt(d, b, special_tokens_map__json="x"),
        ("special_tokens_map.json", "JSON string"),
    ),
    "1 GB tokenizer.json (sparse)": (
        _big_tokenizer_json,
        ("tokenizer.json", "1,073,741,824 bytes", "MiB"),
    ),
    "safetensors shape 2^70": (
        lambda d, b: _safetensors(
            d, b, {"x": {"dtype": "F32", "shape": [1 << 70], "data_offsets": [0, 8]}}, b"\0" * 8
        ),
        ("model.safetensors", "byte range does not match its shape"),
    ),
    "safetensors overlapping ranges": (
        lambda d, b: _safetensors(d, b, {"x": F32_ENTRY, "y": F32_ENTRY}, b"\0" * 8),
        ("model.safetensors", "'x' and 'y' overlap"),
    ),
    "safetensors header claims 2^64-1 bytes": (
        lambda d, b: _ckpt(d, b, model__safetensors=b"\xff" * 8 + b"{}"),
        ("model.safetensors", "header claims 18446744073709551615 bytes"),
    ),
    "safetensors header nested deep": (
        lambda d, b: _safetensors(d, b, b"[" * 100_000 + b"]" * 100_000),
        ("model.safetensors", "nested too deeply"),
    ),
    "safetensors negative offsets": (
        lambda d, b: _safetensors(
            d, b, {"x": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 8
        ),
        ("model.safetensors", "non-negative integers"),
    ),
    "adapter_config.json a list": (
        lambda d, b: _lora(d, b, [1]),
        ("adapter_config.json", "JSON list"),
    ),
    "LoRA r 0": (
        lambda d, b: _lora(d, b, {"r": 0, "lora_alpha": 8, "base_model_name_or_path": str(b)}),
        ("adapter_config.json", "r is 0", "expected an integer from 1"),
    ),
    "LoRA alpha a string": (
        lambda d, b: _lora(d, b, {"r": 4, "lora_alpha": "x", "base_model_name_or_path": str(b)}),
        ("adapter_config.json", "lora_alpha", "expected a number"),
    ),
}


# What inspect makes of the GGUF cases it can read (the rest it refuses like patch): the file is
# reported, with a finding of this code naming the problem ("" = a valid file, no such finding).
INSPECT_FINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "12.5M empty tokens in a sparse file": ("vocab-mismatch", ("token 105 is ''",)),
    "alignment 2^28 in a 5 KB file": ("", ()),  # llama.cpp takes any power-of-two u32
    **{
        case: ("llama-cpp-rejects", GGUF_CASES[case][1])
        for case in (
            "5-D tensor",
            "ggml type 999",
            "duplicate keys",
            "overlapping tensors",
            "duplicate tensor names",
            "0-dim tensor of unknown type",
        )
    },
}


@pytest.mark.parametrize("case", list(GGUF_CASES))
@pytest.mark.parametrize("command", ["patch", "inspect"])
def test_hostile_gguf(case: str, command: str, tmp_path: Path) -> None:
    make, needles = GGUF_CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = make(inputs)
    before = _state(inputs)
    out = tmp_path / "out.gguf"
    if command == "patch":
        _assert_refused(run_measured("patch", str(src), "-o", str(out), "--force"), needles)
    elif case not in INSPECT_FINDS:
        _assert_refused(run_measured("inspect", str(src), "--json"), needles)
    else:  # inspect reads it and reports: a finding (an error for what llama.cpp refuses)
        res = run_measured("inspect", str(src), "--json")
        assert res.code == 0 and not res.stderr, res
        assert res.max_rss_mb < RSS_BOUND_MB and res.seconds < SECONDS_BOUND, res
        code, words = INSPECT_FINDS[case]
        found = [f for f in json.loads(res.stdout)["findings"] if f["code"] == code]
        assert bool(found) == bool(code), found
        text = " ".join(f["message"] for f in found).lower()
        assert all(w.lower() in text for w in words), (words, text)
        if code == "llama-cpp-rejects":
            strict = run_measured("inspect", str(src), "--strict")
            assert strict.code == 1 and "llama-cpp-rejects" in strict.stdout, strict
    assert not out.exists() and not list(tmp_path.glob(".out.gguf*"))
    assert _state(inputs) == before


@pytest.mark.parametrize("case", list(CKPT_CASES))
def test_hostile_checkpoint(case: str, base_ckpt: Path, tmp_path: Path) -> None:
    make, needles = CKPT_CASES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = make(inputs, base_ckpt)
    before, base_before = _state(inputs), _state(base_ckpt)
    out = tmp_path / "out"
    res = run_measured("export", str(src), "-o", str(out), "-q", "F32", "--quiet")
    _assert_refused(res, needles)
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    assert _state(inputs) == before and _state(base_ckpt) == base_before


# --- outputs: nothing the user did not ask to replace ----------------------------------------


@pytest.fixture(scope="module")
def exported(base_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real export of the tiny checkpoint (its folder is what an earlier export leaves)."""
    out = tmp_path_factory.mktemp("exported") / "out"
    res = run_measured("export", str(base_ckpt), "-o", str(out), "-q", "F32", "--quiet")
    assert res.code == 0, res.stderr
    return out


def test_export_keeps_user_files_in_an_existing_folder(base_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes\n")
    (out / "keep.txt").write_text("unrelated\n")
    before = _state(out)
    res = run_measured("export", str(base_ckpt), "-o", str(out), "-q", "F32", "--quiet")
    _assert_refused(res, ("README.md", "not written by gemma3-pack", "--force"))
    assert _state(out) == before
    forced = run_measured("export", str(base_ckpt), "-o", str(out), "-q", "F32", "--force")
    assert forced.code == 0, forced.stderr
    assert (out / "keep.txt").read_text() == "unrelated\n"  # only its own names are written
    assert (out / "README.md").read_text() != "my notes\n"


def test_export_replaces_what_an_earlier_export_wrote(
    base_ckpt: Path, exported: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again"
    shutil.copytree(exported, out)
    res = run_measured("export", str(base_ckpt), "-o", str(out), "-q", "F32", "--quiet")
    assert res.code == 0, res.stderr  # every clashing file is listed in its export.json


def test_export_into_the_checkpoint_folder_is_refused_even_with_force(
    base_ckpt: Path, tmp_path: Path
) -> None:
    src = _ckpt(tmp_path, base_ckpt)
    (src / "README.md").write_text("the model card\n")
    before = _state(src)
    for extra in ((), ("--force",)):
        res = run_measured("export", str(src), "-o", str(src), "-q", "F32", *extra)
        _assert_refused(res, ("is the checkpoint folder itself", "choose another -o"))
    assert _state(src) == before


def test_modelfile_output_is_kept_without_force(tmp_path: Path) -> None:
    out = tmp_path / "Modelfile"
    out.write_text("FROM mine\n")
    res = run_measured("modelfile", "gemma3-1b-it", "-o", str(out))
    _assert_refused(res, ("already exists", "--force"))
    assert out.read_text() == "FROM mine\n"
    forced = run_measured("modelfile", "gemma3-1b-it", "-o", str(out), "--force")
    assert forced.code == 0 and out.read_text().startswith("FROM gemma3:1b\n"), forced.stderr


@pytest.mark.parametrize("command", ["patch", "modelfile"])
def test_device_outputs_are_refused_even_with_force(command: str, tmp_path: Path) -> None:
    from _tiny_gguf import tiny_gguf

    src = tiny_gguf(tmp_path / "m.gguf")
    before = os.stat("/dev/null")
    args = (
        ["patch", str(src), "-o", "/dev/null", "--force"]
        if command == "patch"
        else ["modelfile", "gemma3-1b-it", "-o", "/dev/null", "--force"]
    )
    _assert_refused(run_measured(*args), ("/dev/null", "device", "never replaces"))
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_rdev, after.st_mode) == (
        before.st_ino,
        before.st_rdev,
        before.st_mode,
    )


def test_an_unwritable_output_does_not_suggest_free_space(monkeypatch, tmp_path: Path) -> None:
    """An immutable (chattr +i) target fails the rename with EPERM: not a disk-space problem."""
    import errno

    from gemma3_pack import OutputError
    from gemma3_pack._files import write_text_atomic

    def eperm(src: object, dst: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "replace", eperm)
    with pytest.raises(OutputError) as err:
        write_text_atomic(tmp_path / "x.txt", "x")
    assert "free space" not in str(err.value) and "immutable" in str(err.value)
    assert list(tmp_path.iterdir()) == []


# --- Modelfiles: encodings and size ----------------------------------------------------------


def test_odd_length_utf16_modelfile(tmp_path: Path) -> None:
    p = tmp_path / "Modelfile"
    p.write_bytes("FROM gemma3:4b\n".encode("utf-16") + b"\x00")
    _assert_refused(run_measured("modelfile", "--check", str(p)), ("UTF-16", "save it as UTF-8"))


def test_ten_megabyte_modelfile_is_linear(tmp_path: Path) -> None:
    """Ollama's parser re-joins its buffer at every space: 15.7 s for 200 KB, hours for 10 MB."""
    p = tmp_path / "Modelfile"
    line = "word " * 2000 + "\n"
    p.write_text('FROM gemma3:4b\nSYSTEM """' + line * 1000 + '"""\n')
    assert p.stat().st_size > 10_000_000
    res = run_measured("modelfile", "--check", str(p), "--json")
    assert res.code in (0, 1) and json.loads(res.stdout)["path"] == str(p), res.stderr
    assert res.seconds < SECONDS_BOUND and res.max_rss_mb < RSS_BOUND_MB, res


def test_json_never_prints_bare_nan(tmp_path: Path) -> None:
    src = _meta_only(tmp_path, kv("general.sampling.temp", F32, float("nan")))
    res = run_measured("inspect", str(src), "--json")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"bare {c} in --json"))
    assert report["sampling"]["general.sampling.temp"] == "NaN"
    res = run_measured("doctor", str(src), "--json")  # doctor reads the same values
    assert res.code in (0, 1), res.stderr
    json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"bare {c} in doctor --json"))


# --- LoRA base relative to the adapter -------------------------------------------------------


def test_relative_lora_base_resolves_against_the_adapter(base_ckpt: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(base_ckpt, models / "base", symlinks=True)
    _lora(models, base_ckpt, {"r": 4, "lora_alpha": 8, "base_model_name_or_path": "../base"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    res = run_measured(
        "export", str(models / "adapter"), "-o", str(out), "-q", "F32", "--quiet", cwd=elsewhere
    )
    assert res.code == 0, res.stderr
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["architecture"] == "Gemma3ForCausalLM" and list(out.glob("*.gguf"))


# --- interrupted work ------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_patch_leaves_nothing(sig: int, gguf_270m: Path, tmp_path: Path) -> None:
    """SIGTERM unwinds like Ctrl-C: the hidden .part file is removed, no output appears."""
    out = tmp_path / "out.gguf"
    for _attempt in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-m", "gemma3_pack", "patch", str(gguf_270m), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".out.gguf.*.part")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.0005)
        if proc.poll() is None:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert not list(tmp_path.glob(".out.gguf.*")), list(tmp_path.iterdir())  # never a .part
        if proc.returncode != 0 and not out.exists():
            break
        out.unlink()  # finished (renamed) before the signal landed: try again
    else:
        pytest.fail("patch always finished before the signal arrived")
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert err.decode().strip() in ("terminated", "aborted", "interrupted"), err
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


_TRUNCATE_WHILE_MAPPED = """
import os, sys
import gemma3_pack._gguf._patch as patch
from gemma3_pack.cli import _sigbus
if sys.argv[3] == "unguarded":
    _sigbus.install = lambda: False
verify = patch._verify
def cut_then_verify(path, src, *args):
    os.truncate(src.path, 4096)  # another program truncates the input we still map
    bytes(src.buf[src.size - 1 : src.size])  # touch a page past the new end
    return verify(path, src, *args)
patch._verify = cut_then_verify
from gemma3_pack.cli import main
main(["patch", sys.argv[1], "-o", sys.argv[2]])
"""


@pytest.mark.parametrize("guard", ["guarded", "unguarded"])
def test_input_truncated_while_mapped(guard: str, tmp_path: Path) -> None:
    """Without the CLI's handler the process dies of SIGBUS mid-write; with it, one line, exit 2,
    and the temp file being written is removed."""
    from _tiny_gguf import tiny_gguf

    src = tiny_gguf(tmp_path / "m.gguf", n_vocab=300_000)
    res = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_WHILE_MAPPED, str(src), str(tmp_path / "o.gguf"), guard],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if guard == "unguarded":
        assert res.returncode == -signal.SIGBUS, (res.returncode, res.stderr)
        return
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.splitlines() == [
        "error: an input file shrank while it was being read (truncated or replaced by another "
        "program?): nothing was written; re-run when the file is complete"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]  # no .part, no output


# --- inspect: files llama.cpp loads but that are broken as Gemma 3 ----------------------------


def _empty_vocab(d: Path) -> Path:
    records = [r for r in gemma3_kvs() if b"tokenizer.ggml.t" not in r[:40]]
    records.append(kv("tokenizer.ggml.tokens", ARR, (STR, [])))
    return raw_gguf(d / "m.gguf", records, [tensor_info("token_embd.weight", (8, 0))], b"")


INSPECT_ONLY: dict[str, tuple[Callable[[Path], Path], str, tuple[str, ...]]] = {
    "0-D token_embd": (
        lambda d: _with_tensors(d, [tensor_info("token_embd.weight", ())], F32_8),
        "vocab-size-mismatch",
        ("token_embd has 0 rows",),
    ),
    "empty vocabulary, 0-row embedding": (_empty_vocab, "vocab-mismatch", ("0 tokens",)),
}


@pytest.mark.parametrize("case", list(INSPECT_ONLY))
def test_inspect_strict_never_calls_broken_files_ready(case: str, tmp_path: Path) -> None:
    make, code, words = INSPECT_ONLY[case]
    src = make(tmp_path)
    res = run_measured("inspect", str(src), "--json")
    assert res.code == 0 and UNEXPECTED not in res.stderr, res
    found = [f for f in json.loads(res.stdout)["findings"] if f["code"] == code]
    assert found and all(w in found[0]["message"] for w in words), found
    strict = run_measured("inspect", str(src), "--strict")
    assert strict.code == 1 and "ready for llama.cpp" not in strict.stdout, strict


def test_export_json_with_models_not_a_list(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "export.json").write_text(json.dumps({"format": 1, "models": 5}))
    res = run_measured(
        "create", "x", "--from", str(folder), env={"OLLAMA_HOST": "http://127.0.0.1:9"}
    )
    _assert_refused(res, ("export.json", '"models" is int 5', "expected a list"))


_UNTRANSLATED = """
import sys
import gemma3_pack._gguf as g
def boom(*a, **k):
    raise KeyError("x\\x1b]0;title\\x07")
g.inspect_gguf = boom
from gemma3_pack.cli import main
main(["inspect", sys.argv[1]])
"""


@pytest.mark.parametrize("debug", [False, True])
def test_the_last_resort_line_is_marked_and_debug_shows_the_traceback(
    debug: bool, tmp_path: Path
) -> None:
    """What the corpus asserts absent: the line an untranslated exception gets (one line, no
    escape sequences, the marker); ``GEMMA3_PACK_DEBUG=1`` re-raises it with the traceback."""
    env = {**os.environ, **({"GEMMA3_PACK_DEBUG": "1"} if debug else {})}
    if not debug:
        env.pop("GEMMA3_PACK_DEBUG", None)
    res = subprocess.run(
        [sys.executable, "-c", _UNTRANSLATED, str(tmp_path / "m.gguf")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if debug:
        assert res.returncode == 1 and "Traceback" in res.stderr and "KeyError" in res.stderr
        return
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"error: {UNEXPECTED}: KeyError: 'x\\x1b]0;title\\x07'; GEMMA3_PACK_DEBUG=1 shows the "
        "traceback"
    ], res.stderr
