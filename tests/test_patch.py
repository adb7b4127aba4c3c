"""`patch_gguf` on the real Gemma 3 270M GGUF: what it adds, what it keeps, and what llama.cpp sees.

The independent readers are gguf-py's ``GGUFReader`` (llama.cpp's own Python reader) and
llama.cpp itself through llama-cpp-python; the files are the real 270M from PyPI and tiny GGUFs
written with ``gguf.GGUFWriter``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _tiny_gguf import make_bad_export, sha256, tiny_gguf, tiny_mmproj

from gemma3_pack import OutputError, UsageError
from gemma3_pack._chat import OFFICIAL_TEMPLATE
from gemma3_pack._gguf import patch_gguf
from gemma3_pack._gguf._patch import encode_kv
from gemma3_pack._gguf._reader import open_gguf

GGUF_SAMPLING_TYPES = {  # key -> (value, GGUFValueType name) the patch must write
    "general.sampling.temp": (1.0, "FLOAT32"),
    "general.sampling.top_k": (64, "INT32"),
    "general.sampling.top_p": (np.float32(0.95), "FLOAT32"),
    "general.sampling.min_p": (0.0, "FLOAT32"),
    "general.sampling.penalty_repeat": (1.0, "FLOAT32"),
}
NEW_KEYS = ["tokenizer.chat_template", *GGUF_SAMPLING_TYPES, "tokenizer.ggml.eot_token_id"]
CONVERSATION = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "What colour is the sky? {{ not a tag }} <b>é</b>"},
]


def official_render(messages: list[dict[str, str]]) -> str:
    """Google's template rendered the way Hugging Face does (sandboxed, trim/lstrip blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(OFFICIAL_TEMPLATE).render(
        messages=messages,
        bos_token="<bos>",
        add_generation_prompt=True,
        raise_exception=raise_exception,
    )


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def patched(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    before = (sha256(gguf_270m), gguf_270m.stat().st_mtime_ns)
    out = tmp_path_factory.mktemp("patched") / "gemma-3-270m.gemma3.gguf"
    result = patch_gguf(gguf_270m, out)
    after = (sha256(gguf_270m), gguf_270m.stat().st_mtime_ns)
    return {"src": gguf_270m, "out": out, "result": result, "before": before, "after": after}


@pytest.fixture(scope="module")
def reference_reader(patched: dict[str, Any]) -> Any:
    """gguf-py's own reader over the patched file (~13 s: it builds 262k token views)."""
    import gguf

    return gguf.GGUFReader(patched["out"])


# --- the real 270M ---------------------------------------------------------------------------


def test_input_is_never_modified(patched: dict[str, Any]) -> None:
    assert patched["before"] == patched["after"]


def test_reports_exactly_the_seven_additions(patched: dict[str, Any]) -> None:
    result = patched["result"]
    assert [(c.key, c.action) for c in result.changes] == [(k, "added") for k in NEW_KEYS]
    assert result.kind == "model"
    assert result.dst == patched["out"]
    assert result.bytes_written == patched["out"].stat().st_size
    assert result.copy_method == "copy_file_range"


@pytest.mark.slow
def test_reference_reader_sees_every_key_kept_in_order_and_the_new_ones_typed(
    patched: dict[str, Any], reference_reader: Any
) -> None:
    import gguf

    fields = {k: f for k, f in reference_reader.fields.items() if not k.startswith("GGUF.")}
    with open_gguf(patched["src"]) as h:
        original_keys = list(h.kvs)
        # every original record is present, in order, with identical bytes
        assert list(fields)[: len(original_keys)] == original_keys
        for key, kv in h.kvs.items():
            f = fields[key]
            assert f.types[0] == kv.vtype, key
            if kv.value is not None and kv.vtype != gguf.GGUFValueType.ARRAY:
                assert f.contents() == pytest.approx(kv.value), key
        tokens = fields["tokenizer.ggml.tokens"]
        assert len(tokens.data) == 262144
        assert [tokens.contents(i) for i in (2, 105, 106, 262143)] == [
            "<bos>",
            "<start_of_turn>",
            "<end_of_turn>",
            h.strings("tokenizer.ggml.tokens", [262143])[262143],
        ]
        np.testing.assert_array_equal(
            fields["tokenizer.ggml.token_type"].contents(), h.array("tokenizer.ggml.token_type")
        )
        np.testing.assert_array_equal(
            fields["tokenizer.ggml.scores"].contents(), h.array("tokenizer.ggml.scores")
        )
    # the new keys, appended, with llama.cpp's types
    assert list(fields)[len(original_keys) :] == NEW_KEYS
    assert fields["tokenizer.chat_template"].contents() == OFFICIAL_TEMPLATE
    assert fields["tokenizer.chat_template"].types == [gguf.GGUFValueType.STRING]
    for key, (value, tname) in GGUF_SAMPLING_TYPES.items():
        assert fields[key].types == [gguf.GGUFValueType[tname]], key
        assert fields[key].parts[-1][0] == value, key
    eot = fields["tokenizer.ggml.eot_token_id"]
    assert (eot.types, eot.contents()) == ([gguf.GGUFValueType.UINT32], 106)


@pytest.mark.slow
def test_tensor_infos_and_every_tensor_byte_identical(
    patched: dict[str, Any], reference_reader: Any
) -> None:
    src, out = patched["src"], patched["out"]
    with open_gguf(src) as h:
        infos = [(t.name, t.type_name, t.nbytes) for t in h.tensors]
        starts = {t.name: h.data_start + t.offset for t in h.tensors}
        data_start = h.data_start
    assert [(t.name, t.tensor_type.name, int(t.n_bytes)) for t in reference_reader.tensors] == infos
    assert len(infos) == 236
    for t in reference_reader.tensors:
        a = sha256(src, starts[t.name], starts[t.name] + int(t.n_bytes))
        b = sha256(out, int(t.data_offset), int(t.data_offset) + int(t.n_bytes))
        assert a == b, t.name
    # and the whole data region, padding included
    assert sha256(src, data_start) == sha256(out, reference_reader.data_offset)


def test_patching_a_patched_file_changes_nothing(patched: dict[str, Any], tmp_path: Path) -> None:
    again = patch_gguf(patched["out"], tmp_path / "again.gguf")
    assert again.changes == [] and not again.changed
    assert sha256(tmp_path / "again.gguf") == sha256(patched["out"])
    mtime = patched["out"].stat().st_mtime_ns
    in_place = patch_gguf(patched["out"], in_place=True)
    assert not in_place.changed and patched["out"].stat().st_mtime_ns == mtime


def test_in_place_replaces_atomically(gguf_270m: Path, tmp_path: Path) -> None:
    work = tmp_path / "model.gguf"
    shutil.copyfile(gguf_270m, work)
    original = sha256(work)
    with open(work, "rb") as old:  # a reader that had the file open keeps the old bytes
        inode = os.fstat(old.fileno()).st_ino
        result = patch_gguf(work, in_place=True)
        old.seek(0)
        assert hashlib.sha256(old.read()).hexdigest() == original
    assert result.in_place and result.dst == work and len(result.changes) == 7
    assert work.stat().st_ino != inode  # renamed over, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]  # no temp left
    with open_gguf(work) as h:
        assert h.get("tokenizer.chat_template") == OFFICIAL_TEMPLATE


@pytest.mark.llama
def test_llama_cpp_picks_the_template_and_evaluates_the_official_render_with_one_bos(
    patched: dict[str, Any],
) -> None:
    from llama_cpp import Llama

    llm = Llama(str(patched["out"]), n_ctx=512, n_threads=1, verbose=False, seed=0)
    assert llm.chat_format == "chat_template.default"
    llm.create_chat_completion(messages=CONVERSATION, max_tokens=1, temperature=0.0, seed=0)
    evaluated = [int(t) for t in llm._input_ids]  # what llama.cpp decoded for the prompt
    expected = llm.tokenize(official_render(CONVERSATION).encode(), add_bos=False, special=True)
    assert evaluated == expected
    assert evaluated[:2] == [2, 105] and evaluated.count(2) == 1
    assert evaluated[-3:] == llm.tokenize(b"<start_of_turn>model\n", add_bos=False, special=True)


@pytest.mark.llama
def test_unpatched_file_falls_back_to_llama2(gguf_270m: Path) -> None:
    from llama_cpp import Llama

    assert Llama(str(gguf_270m), vocab_only=True, verbose=False).chat_format == "llama-2"


@pytest.mark.llama
def test_bad_export_turn_tokens_are_repaired(gguf_270m: Path, tmp_path: Path) -> None:
    from llama_cpp import Llama

    turn = b"<start_of_turn>user\nhi<end_of_turn>"
    bad = make_bad_export(gguf_270m, tmp_path / "bad.gguf")
    # llama.cpp forces <end_of_turn> (an EOG text) to CONTROL itself, but a NORMAL
    # <start_of_turn> is shredded into 8 plain-text pieces and printed: the bug being fixed
    broken = Llama(str(bad), vocab_only=True, verbose=False)
    assert broken.detokenize([105]) == b"<start_of_turn>"
    assert len(broken.tokenize(turn, add_bos=False, special=True)) == 11
    del broken
    result = patch_gguf(bad, tmp_path / "fixed.gguf")
    repaired = [(c.key, c.old, c.new) for c in result.changes if c.action == "repaired"]
    assert repaired == [
        ("tokenizer.ggml.token_type[105] <start_of_turn>", "NORMAL", "CONTROL"),
        ("tokenizer.ggml.token_type[106] <end_of_turn>", "NORMAL", "CONTROL"),
    ]
    with open_gguf(tmp_path / "fixed.gguf") as h, open_gguf(gguf_270m) as orig:
        np.testing.assert_array_equal(
            h.array("tokenizer.ggml.token_type"), orig.array("tokenizer.ggml.token_type")
        )
        assert h.array_item("tokenizer.ggml.token_type", 255999) == 4  # USER_DEFINED: left alone
    fixed = Llama(str(tmp_path / "fixed.gguf"), vocab_only=True, verbose=False)
    assert fixed.detokenize([105, 106]) == b""
    assert fixed.tokenize(turn, add_bos=False, special=True) == [105, 2364, 107, 2202, 106]


# --- tiny files: replacement in place, mmproj, options, copy fallbacks -------------------------


def test_existing_template_and_off_spec_sampling_are_replaced_where_they_were(
    tmp_path: Path,
) -> None:
    import gguf

    src = tiny_gguf(
        tmp_path / "chatml.gguf",
        kv={
            "tokenizer.chat_template": "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}",
            "general.sampling.top_k": (40, gguf.GGUFValueType.UINT32),
            "tokenizer.ggml.eot_token_id": 1,
        },
    )
    with open_gguf(src) as h:
        keys_before = list(h.kvs)
    result = patch_gguf(src, tmp_path / "out.gguf")
    assert {c.key: c.action for c in result.changes} == {
        "tokenizer.chat_template": "replaced",
        "general.sampling.top_k": "replaced",
        "general.sampling.temp": "added",
        "general.sampling.top_p": "added",
        "general.sampling.min_p": "added",
        "general.sampling.penalty_repeat": "added",
    }
    with open_gguf(tmp_path / "out.gguf") as h:
        assert list(h.kvs)[: len(keys_before)] == keys_before  # replaced where they stood
        assert h.get("tokenizer.chat_template") == OFFICIAL_TEMPLATE
        assert (h.kvs["general.sampling.top_k"].vtype.name, h.get("general.sampling.top_k")) == (
            "INT32",
            64,
        )
        assert h.get("tokenizer.ggml.eot_token_id") == 1  # present: not ours to override


def test_name_and_description_are_written(tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "m.gguf", kv={"general.name": "old"})
    result = patch_gguf(src, tmp_path / "o.gguf", name="My Gemma", description="tuned é")
    assert [(c.key, c.action, c.old, c.new) for c in result.changes[:2]] == [
        ("general.name", "replaced", "old", "My Gemma"),
        ("general.description", "added", None, "tuned é"),
    ]
    with open_gguf(tmp_path / "o.gguf") as h:
        assert (h.get("general.name"), h.get("general.description")) == ("My Gemma", "tuned é")


def test_mmproj_gets_only_name_and_description(tmp_path: Path) -> None:
    src = tiny_mmproj(tmp_path / "mmproj-x.gguf")
    assert patch_gguf(src, tmp_path / "same.gguf").changes == []
    assert sha256(tmp_path / "same.gguf") == sha256(src)
    result = patch_gguf(src, tmp_path / "named.gguf", name="Gemma 3 vision")
    assert result.kind == "mmproj"
    assert [c.key for c in result.changes] == ["general.name"]
    with open_gguf(tmp_path / "named.gguf") as h:
        assert "tokenizer.chat_template" not in h.kvs and h.get("general.name") == "Gemma 3 vision"


def test_default_output_is_beside_the_input(tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "model.gguf")
    assert patch_gguf(src).dst == tmp_path / "model.gemma3.gguf"
    assert (tmp_path / "model.gemma3.gguf").is_file()


def test_existing_output_needs_force_and_same_path_needs_in_place(tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "m.gguf")
    (tmp_path / "o.gguf").write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--force"):
        patch_gguf(src, tmp_path / "o.gguf")
    assert (tmp_path / "o.gguf").read_bytes() == b"keep me"
    assert patch_gguf(src, tmp_path / "o.gguf", force=True).changed
    with pytest.raises(UsageError, match="--in-place"):
        patch_gguf(src, src)
    with pytest.raises(UsageError, match="both"):
        patch_gguf(src, tmp_path / "other.gguf", in_place=True)


def test_alignment_is_respected(tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "a.gguf", alignment=256)
    patch_gguf(src, tmp_path / "b.gguf")
    with open_gguf(tmp_path / "b.gguf") as h, open_gguf(src) as s:
        assert h.alignment == 256 and h.data_start % 256 == 0
        assert h.buf[h.data_start :] == s.buf[s.data_start :]


@pytest.mark.parametrize("broken", [["copy_file_range"], ["copy_file_range", "sendfile"]])
def test_copy_fallbacks_write_the_same_bytes(
    broken: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tiny_gguf(tmp_path / "m.gguf", n_vocab=40_000)
    patch_gguf(src, tmp_path / "fast.gguf")

    codes = {"copy_file_range": errno.EXDEV, "sendfile": errno.EINVAL}  # what the kernel says
    for name in broken:

        def unsupported(*args: object, _code: int = codes[name]) -> int:
            raise OSError(_code, os.strerror(_code))

        monkeypatch.setattr(os, name, unsupported)
    result = patch_gguf(src, tmp_path / "slow.gguf")
    assert result.copy_method == ("sendfile" if len(broken) == 1 else "buffered")
    assert sha256(tmp_path / "slow.gguf") == sha256(tmp_path / "fast.gguf")


def test_encoded_records_match_gguf_writer(tmp_path: Path) -> None:
    """Our record encoder and gguf-py's writer agree byte for byte."""
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "w.gguf"), "gemma3")
    w.add_float32("general.sampling.top_p", 0.95)
    w.add_string("tokenizer.chat_template", OFFICIAL_TEMPLATE)
    w.add_uint32("tokenizer.ggml.eot_token_id", 106)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    with open_gguf(tmp_path / "w.gguf") as h:
        for key, value, vtype in [
            ("general.sampling.top_p", 0.95, gguf.GGUFValueType.FLOAT32),
            ("tokenizer.chat_template", OFFICIAL_TEMPLATE, gguf.GGUFValueType.STRING),
            ("tokenizer.ggml.eot_token_id", 106, gguf.GGUFValueType.UINT32),
        ]:
            kv = h.kvs[key]
            assert h.buf[kv.start : kv.end] == encode_kv(key, value, vtype)
    assert struct.pack("<f", 0.95) == encode_kv("k", 0.95, gguf.GGUFValueType.FLOAT32)[-4:]


@pytest.mark.parametrize("odd", ["tok1234", "", "x" * 300, "\0" * 9])
def test_header_parser_fast_path_and_exact_loop_agree(odd: str, tmp_path: Path) -> None:
    """The numpy shortcut for skipping 262k token strings must land where the loop lands, and
    must hand over to the loop for empty, long (>= 256 bytes) or zero-filled strings."""
    import gguf

    from gemma3_pack._gguf._reader import _Parser

    path = tmp_path / "v.gguf"
    w = gguf.GGUFWriter(str(path), "gemma3")
    tokens = [f"tok{i}" for i in range(5000)]
    tokens[1234] = odd
    w.add_token_list(tokens)
    w.add_token_types([1] * 5000)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    with open_gguf(path) as h:
        kv = h.kvs["tokenizer.ggml.tokens"]
        parser = _Parser(h.buf, h.size, h.path, "<")
        fast = parser.fast_strings(kv.items_start, kv.count)
        assert h.strings("tokenizer.ggml.tokens", [1233, 1234, 4999]) == {
            1233: "tok1233",
            1234: odd,
            4999: "tok4999",
        }
        assert kv.end == h.kvs["tokenizer.ggml.token_type"].start
    starts = [kv.items_start]
    for t in tokens:
        starts.append(starts[-1] + 8 + len(t.encode()))
    if odd == "tok1234":
        assert fast == (5000, kv.end)  # the shortcut proved its whole chain
    else:  # it proved at most the run before the odd string; the exact loop did the rest
        assert fast is None or (fast[0] <= 1235 and fast[1] == starts[fast[0]]), fast


def test_cli_patch_prints_what_changed_and_json(cli, tmp_path: Path) -> None:
    src = tiny_gguf(tmp_path / "m.gguf")
    human = cli("patch", str(src), "--name", "Tiny")
    assert human.code == 0, human.stderr
    lines = human.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:8]] == [
        ["added", "general.name"],
        ["added", "tokenizer.chat_template"],
        ["added", "general.sampling.temp"],
        ["added", "general.sampling.top_k"],
        ["added", "general.sampling.top_p"],
        ["added", "general.sampling.min_p"],
        ["added", "general.sampling.penalty_repeat"],
        ["added", "tokenizer.ggml.eot_token_id"],
    ]
    assert lines[8].startswith(f"wrote {tmp_path / 'm.gemma3.gguf'} (") and "8 changes" in lines[8]
    again = cli("patch", str(tmp_path / "m.gemma3.gguf"), "--in-place", "--json")
    data = json.loads(again.stdout)
    assert (data["changed"], data["in_place"], data["changes"], data["kind"]) == (
        False,
        True,
        [],
        "model",
    )
    mmproj = tiny_mmproj(tmp_path / "mmproj-v.gguf")
    quiet = cli("patch", str(mmproj), "-o", str(tmp_path / "mmproj-w.gguf"), "--quiet")
    assert (quiet.code, quiet.stdout) == (0, "")
    told = cli("patch", str(mmproj), "-o", str(tmp_path / "mmproj-w.gguf"), "--force")
    assert "a projector: only --name/--description apply, nothing to change" in told.stdout


def test_big_endian_gguf_is_patched_in_its_own_byte_order(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "be.gguf"
    w = gguf.GGUFWriter(str(path), "gemma3", endianess=gguf.GGUFEndian.BIG)
    tokens = [f"t{i}" for i in range(2000)]
    tokens[105:107] = ["<start_of_turn>", "<end_of_turn>"]
    w.add_token_list(tokens)
    w.add_token_types([1] * 2000)
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    result = patch_gguf(path, tmp_path / "out.gguf")
    assert [c.action for c in result.changes].count("repaired") == 2
    reader = gguf.GGUFReader(tmp_path / "out.gguf")  # gguf-py detects the byte order itself
    assert reader.endianess == gguf.GGUFEndian.BIG
    assert reader.fields["tokenizer.chat_template"].contents() == OFFICIAL_TEMPLATE
    assert reader.fields["general.sampling.top_k"].contents() == 64
    assert list(reader.fields["tokenizer.ggml.token_type"].contents()[104:108]) == [1, 3, 3, 1]
    with open_gguf(path) as src:
        assert src.endian == ">"
        assert sha256(path, src.data_start) == sha256(tmp_path / "out.gguf", reader.data_offset)


def test_disk_full_mid_copy_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tiny_gguf(tmp_path / "m.gguf")
    before = sorted(p.name for p in tmp_path.iterdir())

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "copy_file_range", full)
    with pytest.raises(OutputError, match="No space left on device: free space"):
        patch_gguf(src, tmp_path / "out.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
