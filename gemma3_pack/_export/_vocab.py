"""The Gemma 3 vocabulary, built from SentencePiece exactly as llama.cpp's converter builds it.

``TextModel._create_vocab_sentencepiece``: start with ``vocab_size`` ``[PADn]`` slots (score -10000,
UNUSED), fill them from ``tokenizer.model`` (UNKNOWN / CONTROL / UNUSED / BYTE / NORMAL), then apply
``added_tokens.json`` (USER_DEFINED, -1000) and ``tokenizer_config.json``'s ``added_tokens_decoder``
(CONTROL if special or special-looking, else USER_DEFINED with ``▁`` turned into a space; -1000).
Special ids and add_bos/add_eos come from gguf-py's own ``SpecialVocab``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import CheckpointError, MissingDependency
from .._inputs import TOKENIZER_JSON_LIMIT, read_json_object, regular_input

__all__ = ["Vocab", "load_vocab"]

# gguf.TokenType values (kept as ints so this module imports nothing heavy at top)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class Vocab:
    tokens: list[bytes]
    scores: list[float]
    types: list[int]
    special: Any = None  # gguf.SpecialVocab
    source: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _looks_special(text: str) -> bool:
    """llama.cpp's ``does_token_look_special`` for the token shapes Gemma uses."""
    return (
        text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<｜") and text.endswith("｜>"))
        or (text.startswith("<unused") and text.endswith(">"))
    )


_TOP_KEY = re.compile(rb'"(added_tokens|post_processor)"\s*:\s*')


def _slim_tokenizer_json(data: bytes) -> dict[str, Any] | None:
    """The two top-level entries SpecialVocab reads, without parsing the 262k-entry vocabulary.

    In JSON a quote inside a string is always escaped, so an unescaped ``"added_tokens":`` can
    only be an object key; HF tokenizer.json has these keys only at the top level. Decoding just
    their values (a growing window of the UTF-8 bytes) saves ~350 MB of peak memory on Gemma's
    31 MB tokenizer.json, whose text would take 124 MB as a Python str and more as objects.
    """
    decoder = json.JSONDecoder()
    out: dict[str, Any] = {}
    for m in _TOP_KEY.finditer(data):
        key = m.group(1).decode()
        window = 1 << 20
        while key not in out:
            chunk = data[m.end() : m.end() + window].decode("utf-8", errors="ignore")
            try:
                out[key], _ = decoder.raw_decode(chunk)
            except json.JSONDecodeError:
                if m.end() + window >= len(data):
                    return None
                window *= 4
    return out if "added_tokens" in out else None


@contextlib.contextmanager
def _slim_view(tok_dir: Path) -> Iterator[Path]:
    """``tok_dir`` as gguf's SpecialVocab sees it, with a slimmed tokenizer.json when possible."""
    big = tok_dir / "tokenizer.json"
    slim = None
    if big.is_file():
        try:
            slim = _slim_tokenizer_json(big.read_bytes())
        except ValueError:
            slim = None
    if slim is None:
        yield tok_dir
        return
    with tempfile.TemporaryDirectory(prefix="gemma3-pack-tok-") as tmp:
        view = Path(tmp)
        for entry in tok_dir.iterdir():
            if entry.name != "tokenizer.json" and not entry.name.endswith(".safetensors"):
                (view / entry.name).symlink_to(entry.resolve())
        (view / "tokenizer.json").write_text(json.dumps(slim), encoding="utf-8")
        yield view


def _token_id(value: Any, file: str, field: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 31:
        raise CheckpointError(
            f"{file}: {field} has token id {value!r}, expected an integer from 0 to 2147483647: "
            f"fix {file} (or copy it from the base model)"
        )
    return value


def _added_tokens(tok_dir: Path) -> tuple[dict[str, int], dict[int, dict[str, Any]]]:
    """added_tokens.json and tokenizer_config.json's added_tokens_decoder, each entry checked.

    Also checks the files gguf's SpecialVocab will read (tokenizer.json by size, without parsing
    its 262k entries; special_tokens_map.json), so it never meets a list, a non-UTF-8 file or a
    1 GB JSON.
    """
    big = tok_dir / "tokenizer.json"
    if big.exists():
        size = regular_input(big, "tokenizer.json").st_size
        if size > TOKENIZER_JSON_LIMIT:
            raise CheckpointError(
                f"tokenizer.json is {size:,} bytes, over the {TOKENIZER_JSON_LIMIT >> 20} MiB a "
                "real one can be (Gemma 3's is 33 MB): copy it from the base model"
            )
    if (tok_dir / "special_tokens_map.json").exists():
        read_json_object(tok_dir / "special_tokens_map.json")
    added: dict[str, int] = {}
    if (tok_dir / "added_tokens.json").exists():
        for text, tid in read_json_object(tok_dir / "added_tokens.json").items():
            added[text] = _token_id(tid, "added_tokens.json", repr(text)[:40])
    decoder: dict[int, dict[str, Any]] = {}
    if (tok_dir / "tokenizer_config.json").exists():
        cfg = read_json_object(tok_dir / "tokenizer_config.json")
        raw = cfg.get("added_tokens_decoder") or {}
        if not isinstance(raw, dict):
            raise CheckpointError(
                "tokenizer_config.json: added_tokens_decoder is not an object of "
                '{"id": {"content": ...}}: copy tokenizer_config.json from the base model'
            )
        for key, data in raw.items():
            tid = _token_id(key, "tokenizer_config.json", "added_tokens_decoder")
            if not isinstance(data, dict) or not isinstance(data.get("content"), str):
                raise CheckpointError(
                    f"tokenizer_config.json: added_tokens_decoder[{key!r}] has no string "
                    '"content": copy tokenizer_config.json from the base model'
                )
            decoder[tid] = data
        template = cfg.get("chat_template")
        if template is not None and not isinstance(template, (str, list)):
            raise CheckpointError(
                "tokenizer_config.json: chat_template is not a string: fix it or remove the key"
            )
    return added, decoder


def _pieces(model: Path) -> list[tuple[str, float, int]]:
    """(piece, score, gguf token type) of every SentencePiece id, as llama.cpp's converter reads
    them with ``IdToPiece``/``GetScore``/``IsUnknown``.. (USER_DEFINED pieces count as NORMAL).

    The model is a protobuf: read through sentencepiece's own ``ModelProto`` it takes ~0.2 s for
    Gemma's 262k pieces, against ~1.2 s for six calls per id into the processor, which remains the
    fallback where that module cannot load (an older protobuf runtime).
    """
    try:
        from sentencepiece import SentencePieceProcessor
    except ImportError as err:  # pragma: no cover - a core dependency
        raise MissingDependency(
            "sentencepiece is needed to read tokenizer.model: pip install sentencepiece"
        ) from err
    sp = SentencePieceProcessor()
    try:
        data = model.read_bytes()  # read once: the processor validates it, the proto lists it
        sp.LoadFromSerializedProto(data)  # validates the model as the runtime would
    except (OSError, RuntimeError) as err:
        raise CheckpointError(f"{model} is not a SentencePiece model: {err}") from None
    try:
        from sentencepiece import sentencepiece_model_pb2

        model_proto = sentencepiece_model_pb2.ModelProto  # type: ignore[attr-defined]
        proto = model_proto.FromString(data)
    except Exception:  # any import or runtime mismatch: the slow, sure way below
        proto = None
    if proto is not None and len(proto.pieces) == sp.vocab_size():
        kinds = {UNKNOWN: UNKNOWN, CONTROL: CONTROL, UNUSED: UNUSED, BYTE: BYTE}
        return [(p.piece, p.score, kinds.get(p.type, NORMAL)) for p in proto.pieces]
    out = []
    for i in range(sp.vocab_size()):
        if sp.IsUnknown(i):
            kind = UNKNOWN
        elif sp.IsControl(i):
            kind = CONTROL
        elif sp.IsUnused(i):
            kind = UNUSED
        elif sp.IsByte(i):
            kind = BYTE
        else:
            kind = NORMAL
        out.append((sp.IdToPiece(i), sp.GetScore(i), kind))
    return out


def load_vocab(tok_dir: Path, vocab_size: int | None) -> Vocab:
    """Build the token list from ``tok_dir`` (a checkpoint or --tokenizer-from folder)."""
    model = tok_dir / "tokenizer.model"
    if not model.is_file():
        raise CheckpointError(
            f"{tok_dir} has no tokenizer.model (SentencePiece), which the GGUF vocabulary is built "
            "from: copy it from the base model, or pass --tokenizer-from google/gemma-3-270m "
            "(a repo id or folder holding it)"
        )
    import gguf

    pieces = _pieces(model)
    n = int(vocab_size or len(pieces))
    m = min(n, len(pieces))  # ids past the model's are [PADn] slots, as in the reference
    tokens = [p[0].encode("utf-8") for p in pieces[:m]] + [
        f"[PAD{i}]".encode() for i in range(m, n)
    ]
    scores = [p[1] for p in pieces[:m]] + [-10000.0] * (n - m)
    types = [p[2] for p in pieces[:m]] + [UNUSED] * (n - m)
    added, decoder = _added_tokens(tok_dir)
    for text, tid in added.items():
        if tid < n:
            tokens[tid], scores[tid], types[tid] = (text.encode(), -1000.0, USER_DEFINED)
    if decoder:
        for tid, data in decoder.items():
            if tid >= n:
                continue
            text = data["content"]
            if data.get("special") or _looks_special(text):
                types[tid] = CONTROL
                tokens[tid] = text.encode("utf-8")
            else:
                types[tid] = USER_DEFINED
                tokens[tid] = text.encode("utf-8").replace(b"\xe2\x96\x81", b" ")
            scores[tid] = -1000.0
    # gguf-py logs a harmless warning about Gemma's TemplateProcessing; keep stderr to our output.
    log = logging.getLogger("gguf.vocab")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with _slim_view(tok_dir) as view:
            special = gguf.SpecialVocab(view, load_merges=False, n_vocab=n)
    finally:
        log.setLevel(level)
    return Vocab(tokens, scores, types, special, tok_dir)
