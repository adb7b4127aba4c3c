"""The validating layer for foreign JSON inputs: config.json, tokenizer files, adapter_config.json.

Every file a checkpoint or adapter brings is read here, once, before anything trusts it: a regular
file of bounded size, UTF-8, JSON nested no deeper than Python can parse, an object at the top;
then each field the exporter uses is checked for type and range against what a Gemma 3 can be
(the bounds come from the family table: at most twice the largest released size). A bad value is
one line naming the file, the field, what it holds and what was expected::

    config.json: text_config.vocab_size is -5, expected an integer from 1 to 1048576: fix
    config.json (the released Gemma 3 models have 262144)

Nothing here allocates more than the file's own size: the byte cap is checked on ``stat`` before
reading, and range checks happen before any value sizes an array.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import CheckpointError, InputError, InputNotFound
from ._family import SIZES

__all__ = [
    "JSON_LIMIT",
    "TOKENIZER_JSON_LIMIT",
    "check_config",
    "check_number",
    "loads_json",
    "printable",
    "read_json",
    "read_json_object",
    "regular_input",
]

JSON_LIMIT = 16 << 20  # config.json, tokenizer_config.json, adapter_config.json: a few KB each
TOKENIZER_JSON_LIMIT = 256 << 20  # Gemma 3's tokenizer.json is 31 MB; eight times that is plenty

_MAX = max(SIZES.values(), key=lambda s: s.num_layers)
_WIDEST = max(SIZES.values(), key=lambda s: s.hidden_size)
VOCAB_MAX = 4 * max(s.vocab_size for s in SIZES.values())  # room for added tokens
# field -> (lowest, highest): twice the largest released size (fine-tunes keep the shapes; the
# tiny test models are far below), so a value outside cannot be a Gemma 3.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "num_hidden_layers": (1, 2 * _MAX.num_layers),
    "hidden_size": (1, 2 * _WIDEST.hidden_size),
    "intermediate_size": (1, 2 * max(s.intermediate_size for s in SIZES.values())),
    "num_attention_heads": (1, 2 * max(s.num_heads for s in SIZES.values())),
    "num_key_value_heads": (1, 2 * max(s.num_heads for s in SIZES.values())),
    "head_dim": (1, 4 * max(s.head_dim for s in SIZES.values())),
    "vocab_size": (1, VOCAB_MAX),
    "max_position_embeddings": (1, 8 * max(s.context_length for s in SIZES.values())),
    "sliding_window": (0, 8 * max(s.context_length for s in SIZES.values())),
    "query_pre_attn_scalar": (1, 1 << 16),
    "sliding_window_pattern": (1, 1 << 10),
}
VISION_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "num_hidden_layers": (1, 4 * 27),
    "hidden_size": (1, 4 * 1152),
    "intermediate_size": (1, 4 * 4304),
    "num_attention_heads": (1, 4 * 16),
    "image_size": (14, 8 * 896),
    "patch_size": (1, 896),
}
FLOAT_FIELDS = ("rms_norm_eps", "rope_theta", "rope_local_base_freq", "final_logit_softcapping")


def printable(text: str) -> str:
    """``text`` with every control or non-printable character escaped (``\\n``, ``\\x1b``), so a
    name taken from a hostile file can neither break the one-line error nor reach the terminal
    as an escape sequence."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def regular_input(path: Path, what: str, *, error: type[InputError] = InputError) -> os.stat_result:
    """``stat`` of an input that must be a regular file (not a FIFO, device or folder).

    A FIFO would block and a device never ends, so neither is ever opened. ``error`` is the
    class raised for a folder or special file (the GGUF reader raises :class:`NotGGUF`).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputNotFound(f"{path} does not exist: check the path") from None
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path} is a folder, not a {what}: pass the file itself")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device or special file"
        raise error(f"{path} is {kind}, not a regular file: pass the {what} file itself")
    return st


def read_json(path: Path, *, what: str | None = None, limit: int = JSON_LIMIT) -> Any:
    """Parse a JSON file with its size capped; every failure is one :class:`CheckpointError`."""
    name = what or path.name
    st = regular_input(path, name)
    if st.st_size > limit:
        raise CheckpointError(
            f"{name} is {st.st_size:,} bytes, over the {limit >> 20} MiB a real one can be: "
            "replace it with the file from the original model"
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {name}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(
            f"{name} is not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8 JSON"
        ) from None
    return loads_json(text, name)


def loads_json(
    text: str | bytes, name: str, *, error: type[Exception] = CheckpointError, fix: str = ""
) -> Any:
    """``json.loads`` with every way it fails as one ``error`` line naming ``name``.

    Besides malformed text, ``json`` raises a plain ``ValueError`` for an integer of more than
    4,300 digits and ``RecursionError`` for arrays nested thousands deep; both are a hostile
    file, never a real one. ``fix`` replaces the default advice (re-download it).
    """
    fix = fix or "fix or re-download it"
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{name} is not valid JSON ({err}): {fix}") from None
    except RecursionError:
        raise error(
            f"{name} is nested too deeply (thousands of levels) to be real: {fix}"
        ) from None
    except UnicodeDecodeError as err:
        raise error(f"{name} is not UTF-8 text ({err.reason} at byte {err.start}): {fix}") from None
    except ValueError as err:  # int("9" * 5000): "Exceeds the limit (4300 digits) ..."
        detail = "a number of over 4,300 digits" if "digits" in str(err) else str(err)
        raise error(f"{name} is not valid JSON ({detail}): {fix}") from None


def read_json_object(path: Path, *, what: str | None = None, limit: int = JSON_LIMIT) -> dict:
    data = read_json(path, what=what, limit=limit)
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{what or path.name} holds a JSON {_json_type(data)}, expected an object "
            "({...}): replace it with the file from the original model"
        )
    return data


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(v), "value")


def _shown(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (str, int, float, bool, type(None))) else _json_type(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_number(
    value: Any, file: str, field: str, lo: float, hi: float, *, integer: bool = True
) -> Any:
    """``value`` if it is a number in ``[lo, hi]`` (an integer when ``integer``), else one line."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    finite = number and not (isinstance(value, float) and not math.isfinite(value))
    whole = finite and (isinstance(value, int) or float(value).is_integer())
    if not (finite and (whole or not integer) and lo <= value <= hi):
        kind = "an integer" if integer else "a number"
        raise CheckpointError(
            f"{file}: {field} is {_shown(value)}, expected {kind} from {lo:g} to {hi:g}: "
            f"fix {file.split(':')[0]} (or re-save the checkpoint)"
        )
    return int(value) if integer else float(value)


# null means "none" for these (no sliding window, no softcap, the default theta); for every other
# number a null is as wrong as a string (transformers would fail on it too)
NULLABLE = {
    "sliding_window",
    "final_logit_softcapping",
    "rope_theta",
    "rope_local_base_freq",
    "query_pre_attn_scalar",
}


def _check_section(
    section: Mapping[str, Any], file: str, prefix: str, bounds: Mapping[str, tuple[int, int]]
) -> None:
    for key, (lo, hi) in bounds.items():
        if key in section and (section[key] is not None or key not in NULLABLE):
            check_number(section[key], file, prefix + key, lo, hi)


def check_config(config: dict[str, Any], file: str = "config.json") -> dict[str, Any]:
    """Check every field of a Gemma 3 config.json the exporter reads; returns the merged text config.

    Types first (``architectures`` a list of names, ``text_config``/``vision_config`` objects),
    then ranges from the family table. Missing fields are fine here (the family defaults fill them).
    """
    archs = config.get("architectures")
    if archs is not None and not (
        isinstance(archs, list) and all(isinstance(a, str) for a in archs)
    ):
        raise CheckpointError(
            f"{file}: architectures is {_shown(archs)}, expected a list of class names such as "
            '["Gemma3ForCausalLM"]: fix config.json'
        )
    for key in ("model_type",):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise CheckpointError(
                f"{file}: {key} is {_shown(config[key])}, expected a string such as "
                '"gemma3": fix config.json'
            )
    for key in ("text_config", "vision_config", "quantization_config", "rope_scaling"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise CheckpointError(
                f"{file}: {key} is {_shown(config[key])}, expected an object: fix config.json"
            )
    text_cfg = config.get("text_config") or {}
    for key in ("rope_scaling", "rope_parameters", "quantization_config"):
        if text_cfg.get(key) is not None and not isinstance(text_cfg[key], dict):
            raise CheckpointError(
                f"{file}: text_config.{key} is {_shown(text_cfg[key])}, expected an object: "
                "fix config.json"
            )
    _check_section(config, file, "", INT_BOUNDS)
    _check_section(text_cfg, file, "text_config.", INT_BOUNDS)
    text = {**config, **text_cfg}
    where = "text_config." if config.get("text_config") else ""
    for key in FLOAT_FIELDS:
        if key in text and (text[key] is not None or key not in NULLABLE):
            check_number(text[key], file, where + key, 0, 1e12, integer=False)
    if config.get("vision_config"):
        _check_section(config["vision_config"], file, "vision_config.", VISION_INT_BOUNDS)
    if config.get("mm_tokens_per_image") is not None:
        check_number(config["mm_tokens_per_image"], file, "mm_tokens_per_image", 1, 4096)
    return text
