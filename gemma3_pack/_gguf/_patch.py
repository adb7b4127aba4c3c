"""Write Gemma 3's chat template and sampling settings into a GGUF without touching its tensors.

A GGUF's metadata sits in front of its tensor data, and tensor offsets are relative to the start
of the data section. So a metadata edit only needs a new header (magic, counts, key/values, the
*unchanged* tensor-info block, alignment padding) followed by the old data region copied as is —
which the kernel can do without the bytes passing through Python (``copy_file_range``, else
``sendfile``, else a 16 MiB buffered copy). Memory stays flat in the file size; the header of a
Gemma 3 GGUF is ~6.5 MB (the 262k-token vocabulary), its data hundreds of MB to tens of GB.

Records we do not change are copied byte for byte, in their original order; changed records are
re-encoded in place; new records are appended after them. The output is written to a temp file
beside the destination, re-parsed, and renamed over it, so a failure never leaves a half file.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import GGUFValueType, Keys, TokenType

from .._chat import OFFICIAL_TEMPLATE, TOOLS_CHAT_TEMPLATE, template_kind
from .._errors import InputError, InsufficientDisk, NotGemma3, NotGGUF, OutputError, UsageError
from .._family import EOT_TOKEN_ID, FUNCTIONGEMMA_TOKENS, GGUF_SAMPLING, TOKENS
from .._files import atomic_path
from .._inputs import printable
from .._progress import progress_bar
from ._encode import encode_header, encode_kv
from ._reader import KV, SCALAR_FORMAT, GGUFHeader, open_gguf

__all__ = [
    "Change",
    "HeaderEdits",
    "PatchResult",
    "default_output",
    "functiongemma_vocab",
    "gemma3_kind",
    "patch_gguf",
    "plan_patch",
    "write_plan",
]

_TYPE_BY_NAME = {
    "f32": GGUFValueType.FLOAT32,
    "i32": GGUFValueType.INT32,
    "u32": GGUFValueType.UINT32,
    "str": GGUFValueType.STRING,
}
TURN_TOKENS = {
    TOKENS["<start_of_turn>"]: "<start_of_turn>",
    TOKENS["<end_of_turn>"]: "<end_of_turn>",
}
COPY_CHUNK = 64 << 20  # bytes per copy_file_range call (progress granularity)
BUFFER = 16 << 20


@dataclass(frozen=True)
class Change:
    """One metadata edit: ``action`` is ``added``, ``replaced`` or ``repaired``."""

    key: str
    action: str
    old: Any
    new: Any

    def describe(self) -> str:
        def short(v: Any) -> str:
            text = repr(v)
            return text if len(text) <= 60 else f"{text[:40]}... ({len(str(v))} chars)"

        if self.action == "added":
            return f"added    {self.key} = {short(self.new)}"
        return f"{self.action:<8} {self.key}: {short(self.old)} -> {short(self.new)}"


@dataclass
class PatchResult:
    """What :func:`patch_gguf` did. ``changed`` is False when the input was already patched."""

    src: Path
    dst: Path
    kind: str  # "model" or "mmproj"
    changes: list[Change] = field(default_factory=list)
    in_place: bool = False
    bytes_written: int = 0
    copy_method: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["src"], d["dst"], d["changed"] = str(self.src), str(self.dst), self.changed
        return d

    def to_text(self) -> str:
        """What ``gemma3-pack patch`` prints: each change and the file written, or why nothing
        changed."""
        if not self.changed:
            where = "left as is" if self.in_place else f"copied unchanged to {self.dst}"
            why = (
                "a projector: only --name/--description apply"
                if self.kind == "mmproj"
                else "already patched"
            )
            return f"{self.src}: {why}, nothing to change ({where})"
        n = len(self.changes)
        lines = [f"  {change.describe()}" for change in self.changes]
        lines.append(
            f"wrote {self.dst} ({self.bytes_written / 1e6:,.1f} MB in {self.seconds:.2f} s, "
            f"{n} change{'s' if n != 1 else ''})"
        )
        return "\n".join(lines)


def default_output(src: Path) -> Path:
    """``model.gguf`` -> ``model.gemma3.gguf`` beside it (mmproj names keep matching apps' regex)."""
    stem = src.name[:-5] if src.name.lower().endswith(".gguf") else src.name
    return src.with_name(f"{stem}.gemma3.gguf")


def gemma3_kind(h: GGUFHeader) -> str:
    """``model`` or ``mmproj``; anything that is not Gemma 3 raises NotGemma3 naming what it is."""
    arch = printable(h.architecture) if h.architecture is not None else None
    if arch == "gemma3":
        return "model"
    if arch == "clip":
        proj = h.get("clip.projector_type")
        proj = printable(proj) if isinstance(proj, str) else proj
        if proj == "gemma3":
            return "mmproj"
        raise NotGemma3(
            f"{h.path} is a {proj or 'unknown'!s} vision projector (clip), not Gemma 3's: "
            "pass a Gemma 3 mmproj (clip.projector_type gemma3)"
        )
    if arch in ("gemma3n", "gemma2", "gemma", "gemma4"):
        raise NotGemma3(
            f"{h.path} is a {arch} model, not Gemma 3: its chat format and settings "
            "differ, so gemma3-pack leaves it alone"
        )
    raise NotGemma3(
        f"{h.path} is a {arch or 'model without general.architecture'} model, not "
        "Gemma 3: pass a Gemma 3 GGUF (general.architecture gemma3)"
    )


# --- planning ---------------------------------------------------------------------------------


def same_value(kv: KV, value: Any, vtype: GGUFValueType) -> bool:
    if kv.vtype != vtype:
        return False
    if vtype == GGUFValueType.FLOAT32:  # compare as stored (f32), not as a Python float
        return struct.pack("<f", kv.value) == struct.pack("<f", value)
    return bool(kv.value == value)


@dataclass
class HeaderEdits:
    """The header edits patch (and doctor --fix) make: new records for keys (replace in place or
    append) and token-type fixes. Not a memory or export plan (docs/layout.md's glossary)."""

    records: dict[str, bytes] = field(default_factory=dict)
    token_types: dict[int, int] = field(default_factory=dict)  # token id -> new type
    changes: list[Change] = field(default_factory=list)


def chat_template_for(h: GGUFHeader, tools: bool | None) -> str:
    """The chat template a patch writes: with tool calling (``tools=True``), Google's
    (``False``), or for ``None`` whichever of the two the file has (so re-patching and
    ``doctor --fix`` keep a ``patch --tools`` template), Google's otherwise."""
    if tools is None:
        kv = h.kvs.get(Keys.Tokenizer.CHAT_TEMPLATE)
        tools = kv is not None and template_kind(_text(kv.value)) == "tools"
    return TOOLS_CHAT_TEMPLATE if tools else OFFICIAL_TEMPLATE


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def functiongemma_vocab(h: GGUFHeader) -> bool:
    """Whether ``h``'s vocabulary is FunctionGemma's: all seven of its control tokens at the ids
    Google's tokenizer gives them (``FUNCTIONGEMMA_TOKENS``). Some of them there but not all is
    refused (:class:`NotGemma3`) rather than guessed at."""
    kv = h.kvs.get(Keys.Tokenizer.LIST)
    if kv is None or kv.sub_type != GGUFValueType.STRING:
        return False
    want = {tid: text for text, tid in FUNCTIONGEMMA_TOKENS.items()}
    texts = h.strings(Keys.Tokenizer.LIST, want)
    wrong = [tid for tid, text in want.items() if texts.get(tid) != text]
    if len(wrong) == len(want):
        return False
    if wrong:
        tid = wrong[0]
        raise NotGemma3(
            f"{h.path}: token {tid} is {texts.get(tid)!r}, not {want[tid]!r}, yet other "
            "FunctionGemma control tokens are at their ids: a damaged FunctionGemma vocabulary; "
            "re-convert it with google/functiongemma-270m-it's tokenizer"
        )
    return True


def plan_patch(
    h: GGUFHeader,
    kind: str,
    *,
    name: str | None = None,
    description: str | None = None,
    tools: bool | None = None,
) -> HeaderEdits:
    """Work out what :func:`patch_gguf` would change, without writing anything (``tools``: see
    :func:`chat_template_for`)."""
    edits = HeaderEdits()
    e = h.endian

    def want(key: str, value: Any, vtype: GGUFValueType, *, only_if_missing: bool = False) -> None:
        kv = h.kvs.get(key)
        if kv is not None and (only_if_missing or same_value(kv, value, vtype)):
            return
        edits.records[key] = encode_kv(key, value, vtype, e)
        if kv is None:
            edits.changes.append(Change(key, "added", None, value))
        else:
            old = kv.value if kv.value is not None else f"<{kv.type_name}>"
            edits.changes.append(Change(key, "replaced", old, value))

    if name is not None:
        want(Keys.General.NAME, name, GGUFValueType.STRING)
    if description is not None:
        want(Keys.General.DESCRIPTION, description, GGUFValueType.STRING)
    if kind == "mmproj":
        return edits

    tokens_key, types_key = Keys.Tokenizer.LIST, Keys.Tokenizer.TOKEN_TYPE
    if tokens_key not in h.kvs:
        raise NotGemma3(
            f"{h.path} has no tokenizer ({tokens_key}): it cannot chat; re-convert "
            "it from a checkpoint that has tokenizer.model"
        )
    texts = h.strings(tokens_key, TURN_TOKENS)
    for tid, text in TURN_TOKENS.items():
        if texts.get(tid) != text:
            raise NotGemma3(
                f"{h.path}: token {tid} is {texts.get(tid)!r}, not {text!r}; this is "
                "not a Gemma 3 vocabulary: re-convert it with the Gemma 3 tokenizer"
            )
    control = dict(TURN_TOKENS)
    if functiongemma_vocab(h):
        # FunctionGemma's own prompt format: its chat template is kept, never Gemma 3's.
        if tools:
            raise UsageError(
                f"{h.path} is FunctionGemma, which has its own tool-call format (its chat "
                "template is kept): patch it without --tools"
            )
        control.update({tid: text for text, tid in FUNCTIONGEMMA_TOKENS.items()})
    else:
        want(Keys.Tokenizer.CHAT_TEMPLATE, chat_template_for(h, tools), GGUFValueType.STRING)
    for key, (value, tname) in GGUF_SAMPLING.items():
        want(key, value, _TYPE_BY_NAME[tname])
    want(Keys.Tokenizer.EOT_ID, EOT_TOKEN_ID, GGUFValueType.UINT32, only_if_missing=True)

    kv = h.kvs.get(types_key)
    if kv is not None and kv.sub_type in (GGUFValueType.INT32, GGUFValueType.UINT32):
        for tid, text in control.items():
            if tid < kv.count:
                old = int(h.array_item(types_key, tid))
                if old != TokenType.CONTROL:
                    edits.token_types[tid] = int(TokenType.CONTROL)
                    edits.changes.append(
                        Change(f"{types_key}[{tid}] {text}", "repaired", _type_name(old), "CONTROL")
                    )
    return edits


def _type_name(value: int) -> str:
    try:
        return TokenType(value).name
    except ValueError:
        return str(value)


# --- writing ----------------------------------------------------------------------------------


def build_header(h: GGUFHeader, edits: HeaderEdits, moved: dict[int, int] | None = None) -> bytes:
    """The new header: counts, records (kept/re-encoded/appended), tensor infos, padding.

    ``moved`` (if given) receives source offset -> output offset for every record kept as is.
    """
    e, buf = h.endian, h.buf
    parts: list[bytes | bytearray] = []
    n_kv = 0
    at = 24
    for key, kv in h.kvs.items():
        n_kv += 1
        if (
            moved is not None
            and key not in edits.records
            and not (key == Keys.Tokenizer.TOKEN_TYPE and edits.token_types)
        ):
            moved[kv.start] = at
        at += len(edits.records.get(key, b"")) or kv.end - kv.start
        if key in edits.records:
            parts.append(edits.records[key])
        elif key == Keys.Tokenizer.TOKEN_TYPE and edits.token_types:
            types = bytearray(buf[kv.start : kv.end])  # only the changed items differ
            fmt = e + SCALAR_FORMAT[kv.sub_type]  # type: ignore[index]
            for tid, value in edits.token_types.items():
                struct.pack_into(fmt, types, h.item_offset(key, tid) - kv.start, value)
            parts.append(types)
        else:
            parts.append(buf[kv.start : kv.end])
    for key, new in edits.records.items():
        if key not in h.kvs:
            parts.append(new)
            n_kv += 1
    return encode_header(
        len(h.tensors),
        n_kv,
        [*parts, buf[h.ti_start : h.ti_end]],
        alignment=h.alignment,
        e=e,
        lead=bytes(buf[0:8]),  # the input's own magic and version
    )


# errors that mean "this kernel/file system cannot do it that way", not "the disk failed"
_UNSUPPORTED = {
    errno.EXDEV,
    errno.ENOSYS,
    errno.EINVAL,
    errno.EOPNOTSUPP,
    errno.EPERM,
    errno.EBADF,
    getattr(errno, "ENOTSOCK", -1),
    getattr(errno, "ENOTSUP", -1),
}


def copy_range(src_fd: int, dst_fd: int, src_off: int, dst_off: int, count: int, bar: Any) -> str:
    """Copy ``count`` bytes between offsets; returns the method that finished the copy.

    ``copy_file_range`` (in-kernel, Linux) first, then ``sendfile`` (Linux; macOS only sends to
    sockets), then 16 MiB buffered reads/writes (everywhere). A method that is unsupported
    hands over to the next one at the byte where it stopped; real I/O errors propagate.
    """
    done = 0

    def cfr(n: int) -> int:
        return os.copy_file_range(src_fd, dst_fd, n, src_off + done, dst_off + done)

    def sendfile(n: int) -> int:
        os.lseek(dst_fd, dst_off + done, os.SEEK_SET)
        return os.sendfile(dst_fd, src_fd, src_off + done, n)

    for method, step in (("copy_file_range", cfr), ("sendfile", sendfile)):
        if not hasattr(os, method):
            continue
        try:
            while done < count:
                n = step(min(COPY_CHUNK, count - done))
                if n == 0:
                    break
                done += n
                bar.update(n)
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                raise
            continue
        if done == count:
            return method
    block = bytearray(BUFFER)
    view = memoryview(block)
    with os.fdopen(os.dup(src_fd), "rb", buffering=0) as fin:
        fin.seek(src_off + done)
        os.lseek(dst_fd, dst_off + done, os.SEEK_SET)
        while done < count:
            n = fin.readinto(view[: min(BUFFER, count - done)]) or 0
            if n == 0:
                break
            _write_all(dst_fd, view[:n])
            done += n
            bar.update(n)
    if done != count:
        raise InputError(
            f"the input shrank while it was copied ({done:,} of {count:,} bytes): "
            "do not modify it during the patch"
        )
    return "buffered"


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def check_output(src: Path, dst: Path, *, in_place: bool, force: bool, need: int) -> None:
    folder = dst.parent
    if not folder.is_dir():
        raise OutputError(
            f"output folder {folder} does not exist: create it first "
            f"(mkdir -p {folder}) or choose another output path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write to {folder} (permission denied): choose another output path"
        )
    if dst.is_dir():
        raise OutputError(f"{dst} is a folder: give a file name such as {dst / src.name}")
    if not in_place and dst.exists() and not force:
        raise OutputError(
            f"{dst} already exists: pass --force to overwrite it, or choose another output path"
        )
    free = shutil.disk_usage(folder).free
    if free < need:
        raise InsufficientDisk(
            f"{folder} has {free / 1e9:.2f} GB free but the output needs "
            f"{need / 1e9:.2f} GB: free some space or write elsewhere"
        )


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


MAX_ALIGNMENT = 1 << 20  # gguf-py and llama.cpp write 32; the header's padding is built in memory


def check_copyable(h: GGUFHeader) -> None:
    """Refuse what would make a broken copy: llama.cpp loader errors, absurd alignment padding."""
    if h.problems:
        more = (
            f" (and {len(h.problems) - 1} more; see `gemma3-pack inspect`)"
            if h.problems[1:]
            else ""
        )
        raise NotGGUF(
            f"{h.path}: {h.problems[0]}{more}: llama.cpp cannot load it, so patching it would "
            "only copy a broken file; re-convert it"
        )
    if h.alignment > MAX_ALIGNMENT:
        raise NotGGUF(
            f"{h.path}: general.alignment is {h.alignment:,}, over the {MAX_ALIGNMENT:,} bytes "
            "patch will pad to (llama.cpp writes 32): re-convert it"
        )


def patch_gguf(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    *,
    in_place: bool = False,
    name: str | None = None,
    description: str | None = None,
    force: bool = False,
    progress: bool = False,
    tools: bool | None = None,
) -> PatchResult:
    """Write Google's chat template and the Gemma team's sampling settings into a Gemma 3 GGUF.

    ``tools=True`` writes gemma3-pack's template with tool calling instead (calls as JSON in
    ``<tool_call>`` tags, which llama-server's and Ollama's own parsers turn into ``tool_calls``;
    without tools it renders Google's text); ``False`` Google's; ``None`` keeps whichever of
    the two the file has.

    Adds or corrects ``tokenizer.chat_template`` (the official template, byte for byte),
    ``general.sampling.{temp,top_k,top_p,min_p,penalty_repeat}`` (llama.cpp's keys and types),
    ``tokenizer.ggml.eot_token_id`` = 106 when missing, and sets ``<start_of_turn>`` /
    ``<end_of_turn>`` back to CONTROL when a bad export typed them otherwise. FunctionGemma
    (its seven control tokens at their ids) keeps its own chat template, and those seven are
    set to CONTROL too. For a Gemma 3 mmproj (``clip``) only ``name``/``description`` apply. Every other record and every tensor
    byte is kept. Patching a patched file changes nothing (``result.changed`` is False).

    ``dst`` defaults to ``<stem>.gemma3.gguf`` beside ``src``; ``in_place=True`` replaces ``src``
    atomically instead. An existing ``dst`` is only overwritten with ``force=True``. A symlinked
    input (a Hugging Face cache snapshot) patched in place becomes a regular file; the blob it
    pointed to is left as it was.
    """
    t0 = time.perf_counter()
    src_path = Path(src)
    if in_place and dst is not None and not same_file(src_path, Path(dst)):
        raise UsageError("--in-place and an output path were both given: use one of them")
    if dst is None:
        dst_path = src_path if in_place else default_output(src_path)
    else:
        dst_path = Path(dst)
        if (
            not in_place
            and src_path.exists()
            and dst_path.exists()
            and same_file(src_path, dst_path)
        ):
            raise UsageError(
                f"the output {dst_path} is the input: pass --in-place to patch it in "
                "place, or choose another output path"
            )
    with open_gguf(src_path) as h:
        check_copyable(h)
        kind = gemma3_kind(h)
        edits = plan_patch(h, kind, name=name, description=description, tools=tools)
        result = PatchResult(src_path, dst_path, kind, edits.changes, in_place)
        if in_place and not edits.changes:
            result.seconds = time.perf_counter() - t0
            return result
        check_output(
            src_path,
            dst_path,
            in_place=in_place,
            force=force,
            need=h.size + 2 * len(TOOLS_CHAT_TEMPLATE),
        )
        result.bytes_written, result.copy_method = write_plan(h, edits, dst_path, progress=progress)
    result.seconds = time.perf_counter() - t0
    return result


def write_plan(
    h: GGUFHeader, edits: HeaderEdits, dst: Path, *, progress: bool = False
) -> tuple[int, str]:
    """Write ``h``'s file with ``edits`` applied to ``dst`` atomically; returns (bytes, copy method).

    The caller has checked ``dst``; ``dst`` may be ``h.path`` itself (in place): the data is read
    from the open input while the temp file is written, and only then renamed over it.
    """
    moved: dict[int, int] = {}
    header = build_header(h, edits, moved)
    data_len = max(0, h.size - h.data_start)
    # like cp: the input's permissions; a symlink dst is replaced, its target left untouched
    with atomic_path(dst, mode=os.stat(h.path).st_mode & 0o777) as tmp:
        with (
            open(tmp, "r+b") as fout,
            progress_bar(data_len, f"patch {dst.name}", progress=progress) as bar,
        ):
            fd = fout.fileno()
            _write_all(fd, header)
            with open(h.path, "rb") as fin:
                method = copy_range(fin.fileno(), fd, h.data_start, len(header), data_len, bar)
        _verify(tmp, h, edits, header, data_len, moved)
    return len(header) + data_len, method


def _verify(
    path: Path,
    src: GGUFHeader,
    edits: HeaderEdits,
    header: bytes,
    data_len: int,
    moved: dict[int, int],
) -> None:
    """Read the written header back: the exact bytes we meant, and it parses to the same
    tensors, the kept keys in order and the new records.

    The big string arrays (the 262k-token vocabulary) were walked when the input was parsed and
    are kept byte for byte, so the re-parse is told where they end instead of walking them again.
    """
    with open(path, "rb") as f:
        on_disk = f.read(len(header))
    known_ends = {
        moved[kv.start] + (kv.items_start - kv.start): moved[kv.start] + (kv.end - kv.start)
        for kv in src.kvs.values()
        if kv.sub_type == GGUFValueType.STRING and kv.value is None and kv.start in moved
    }
    with open_gguf(path, known_ends=known_ends) as out:
        ok = (
            on_disk == header
            and out.size == len(header) + data_len
            and (out.data_start == len(header) or not src.tensors)
            and [(t.name, t.shape, t.ggml_type, t.offset) for t in out.tensors]
            == [(t.name, t.shape, t.ggml_type, t.offset) for t in src.tensors]
            and list(out.kvs)[: len(src.kvs)] == list(src.kvs)
            and all(
                out.buf[out.kvs[k].start : out.kvs[k].end] == rec
                for k, rec in edits.records.items()
            )
            and all(
                out.kvs[k].end - out.kvs[k].start == kv.end - kv.start
                for k, kv in src.kvs.items()
                if k not in edits.records
            )
        )
    if not ok:  # pragma: no cover - a bug, not a user error
        raise OutputError(
            f"the patched file {path} did not verify; nothing was replaced (please report this)"
        )
