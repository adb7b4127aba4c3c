"""Open a Hugging Face checkpoint folder read-only, validate it, and read tensors from mmaps.

Every refusal the exporter makes about its *input* happens here, before anything is written:
not Gemma 3, pre-quantized weights (bitsandbytes / GPTQ / AWQ), pickle-only ``.bin`` files (never
unpickled), corrupt or truncated safetensors, index entries that escape the folder, an attention
softcap llama.cpp cannot run, dtypes we do not read. Tensors are never loaded whole unless asked:
``raw`` is a zero-copy read-only memmap, ``read_rows`` converts only the rows requested.

The safetensors header is parsed here rather than with ``gguf.utility.SafetensorsLocal`` because
that helper trusts the header: it checks neither that each tensor's byte range lies inside the
file nor that the range matches its shape and dtype, so a truncated download would only fail (or
read garbage) halfway through an export.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..._errors import CheckpointError, InputNotFound, MissingDependency, NotGemma3
from ..._family import SIZES
from ..._inputs import loads_json, read_json_object

__all__ = ["Checkpoint", "TensorInfo", "fetch"]

# safetensors dtype -> (numpy dtype of the raw bytes, bytes per element)
_DTYPES: dict[str, tuple[str, int]] = {"BF16": ("<u2", 2), "F16": ("<f2", 2), "F32": ("<f4", 4)}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors spec's own limit
GEMMA3_ARCHS = ("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration")
GEMMA3_TYPES = ("gemma3", "gemma3_text")
INT4_METHODS = ("awq", "compressed-tensors")  # read by _int4 (lossless Q4_0 repack)
# Files a snapshot download needs (weights, configs, tokenizer, LoRA adapter, vision preprocessor).
ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "tokenizer.model",
    "*.jinja",
    "*.txt",
    "*.md",
]


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, byte offset and length, dtype and shape."""

    file: Path
    offset: int
    nbytes: int
    dtype: str
    shape: tuple[int, ...]


def bf16_to_f32(u16: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: widening is a 16-bit shift, exact.

    One ufunc pass into one new array (``astype`` then ``<<`` makes two, and costs 2-8x more).
    """
    return np.left_shift(np.asarray(u16), 16, dtype=np.uint32).view(np.float32)


def _row_bytes(t: TensorInfo, start: int, stop: int | None) -> tuple[int, int]:
    """File offsets [begin, end) of rows ``start:stop`` of ``t`` (``stop`` None or past the end:
    to the last row)."""
    rows = t.shape[0] if t.shape else 1
    row_bytes = t.nbytes // max(1, rows)
    stop = rows if stop is None else min(stop, rows)
    return t.offset + start * row_bytes, t.offset + stop * row_bytes


def _parse_safetensors(
    file: Path, root: Path, dtypes: dict[str, tuple[str, int]] = _DTYPES
) -> dict[str, TensorInfo]:
    """Read and check one safetensors header; raise CheckpointError on anything inconsistent.

    ``dtypes`` are the dtypes accepted (the int4 reader adds the integer ones it unpacks).
    """
    rel = file.relative_to(root) if file.is_relative_to(root) else file
    size = file.stat().st_size
    bad = f"{rel} is corrupt or truncated"
    fix = "re-download or re-save the checkpoint"
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{bad} ({size} bytes, no safetensors header): {fix}")
        n = int.from_bytes(head, "little")
        if n > _MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{bad} (header claims {n} bytes, file has {size}): {fix}")
        header = loads_json(fh.read(n), f"the header of {rel}", fix=fix)
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad} (header is not a JSON object): {fix}")
    data_start = 8 + n
    out: dict[str, TensorInfo] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = str(meta["dtype"])
            shape = tuple(meta["shape"])
            begin, end = meta["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{bad} (malformed entry for {name!r}): {fix}") from None
        if not all(type(x) is int and x >= 0 for x in (*shape, begin, end)):
            raise CheckpointError(
                f"{bad} ({name!r}: shape and data_offsets must be non-negative integers, got "
                f"{list(shape)} and {[begin, end]}): {fix}"
            )
        if dtype not in dtypes:
            raise CheckpointError(
                f"{rel}: tensor {name!r} is {dtype}; only BF16, F16 and F32 weights can be exported "
                "(merge or de-quantize to 16-bit first)"
            )
        count = math.prod(shape)  # Python ints: a 2**70 dimension cannot overflow
        if end - begin != count * dtypes[dtype][1]:
            raise CheckpointError(f"{bad} ({name!r}: byte range does not match its shape): {fix}")
        if data_start + end > size:
            raise CheckpointError(
                f"{bad} ({name!r} ends at byte {data_start + end}, file has {size}): {fix}"
            )
        out[name] = TensorInfo(file, data_start + begin, end - begin, dtype, shape)
    # Ranges may not share bytes: safetensors writes them back to back, and overlapping ones would
    # make one tensor's bytes another's (and sizes and disk estimates meaningless).
    spans = sorted((t.offset, t.offset + t.nbytes, n) for n, t in out.items() if t.nbytes)
    for (_, end_a, a), (begin_b, _, b) in itertools.pairwise(spans):
        if begin_b < end_a:
            raise CheckpointError(f"{bad} (tensors {a!r} and {b!r} overlap): {fix}")
    return out


def _load_json(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file, through the validating reader (size cap, UTF-8, an object)."""
    return read_json_object(path)


def _check_config(config: dict[str, Any], text: dict[str, Any]) -> None:
    archs = config.get("architectures") or []
    model_type = config.get("model_type")
    if not (set(archs) & set(GEMMA3_ARCHS) or model_type in GEMMA3_TYPES):
        what = ", ".join(archs) or (f"model_type {model_type!r}" if model_type else "unknown")
        raise NotGemma3(
            f"this checkpoint is {what}, not Gemma 3 (expected {' or '.join(GEMMA3_ARCHS)}); "
            "gemma3-pack exports only Gemma 3 models"
        )
    qc = config.get("quantization_config") or text.get("quantization_config")
    if isinstance(qc, dict) and str(qc.get("quant_method", "")).lower() in INT4_METHODS:
        pass  # QAT int4 (AWQ / compressed-tensors): _int4 repacks it to Q4_0 or refuses it
    elif qc:
        method = qc.get("quant_method", "quantized") if isinstance(qc, dict) else "quantized"
        order = " with act-order (desc_act)" if isinstance(qc, dict) and qc.get("desc_act") else ""
        raise CheckpointError(
            f"the weights are already {method}-quantized{order} (config.json has "
            "quantization_config): "
            "merge to 16-bit first (e.g. PEFT merge_and_unload on a bf16 base, then save_pretrained)"
        )
    if text.get("attn_logit_softcapping") is not None:
        raise CheckpointError(
            f"config sets attn_logit_softcapping={text['attn_logit_softcapping']}, which llama.cpp's "
            "Gemma 3 cannot run (it has no attention softcap): set it to null in config.json if the "
            "model was trained without it"
        )


class Checkpoint:
    """An opened, validated HF checkpoint folder. Read-only: nothing in it is ever modified.

    ``names()`` are the tensor names exactly as stored (prefixes such as ``language_model.`` are
    kept; the text and vision mappers strip what they need).
    """

    def __init__(self, root: Path, config: dict[str, Any], tensors: dict[str, TensorInfo]) -> None:
        self.root = root
        self.config = config
        self.text_config: dict[str, Any] = {**config, **(config.get("text_config") or {})}
        self._tensors = tensors
        self._maps: dict[Path, np.memmap] = {}

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.root)!r}, {len(self._tensors)} tensors)"

    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or []
        return str(archs[0]) if archs else "Gemma3ForCausalLM"

    def names(self) -> list[str]:
        return list(self._tensors)

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def info(self, name: str) -> TensorInfo:
        try:
            return self._tensors[name]
        except KeyError:
            raise CheckpointError(
                f"tensor {name!r} is not in the checkpoint at {self.root}"
            ) from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info(name).shape

    def dtype(self, name: str) -> str:
        """``"BF16"``, ``"F16"`` or ``"F32"`` (the only dtypes a checkpoint may hold)."""
        return self.info(name).dtype

    def nbytes(self, name: str) -> int:
        return self.info(name).nbytes

    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self._tensors.values())

    def release(self, name: str, start: int = 0, stop: int | None = None) -> None:
        """Drop the pages of rows ``start:stop`` from this process (they stay in the page cache).

        Touched pages of a file mmap count towards RSS; releasing them as soon as they are
        written keeps peak memory flat in model size instead of growing to the checkpoint's.
        """
        t = self.info(name)
        mm = self._maps.get(t.file)
        raw_map = getattr(mm, "_mmap", None)
        if raw_map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        begin, end = _row_bytes(t, start, stop)
        page = mmap.PAGESIZE
        lo = (begin // page) * page
        hi = min(len(raw_map), -(-end // page) * page)
        if hi > lo:
            with contextlib.suppress(OSError, ValueError):
                raw_map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def file_span(self, name: str, start: int, stop: int) -> tuple[Path, int, int] | None:
        """Rows ``start:stop`` of ``name`` as they lie in its file: (path, offset, bytes)."""
        t = self.info(name)
        begin, end = _row_bytes(t, start, stop)
        return t.file, begin, end - begin

    def _map(self, file: Path) -> np.memmap:
        mm = self._maps.get(file)
        if mm is None:
            mm = self._maps[file] = np.memmap(file, dtype=np.uint8, mode="r")
        return mm

    def raw(self, name: str) -> np.ndarray:
        """The stored array, zero-copy and read-only (``uint16`` bits for BF16)."""
        t = self.info(name)
        buf = self._map(t.file)[t.offset : t.offset + t.nbytes]
        return buf.view(_DTYPES[t.dtype][0]).reshape(t.shape)

    @staticmethod
    def _to_f32(raw: np.ndarray, dtype: str) -> np.ndarray:
        if dtype == "BF16":
            return bf16_to_f32(raw)
        return (
            np.asarray(raw, dtype=np.float32).copy() if dtype == "F32" else raw.astype(np.float32)
        )

    def read(self, name: str) -> np.ndarray:
        """The whole tensor as a new float32 array (exact for all three source dtypes)."""
        return self._to_f32(self.raw(name), self.dtype(name))

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a tensor as float32: touches only those pages of the file."""
        return self._to_f32(self.raw(name)[start:stop], self.dtype(name))

    def read_f32(self, name: str) -> np.ndarray:
        """One tensor as a new float32 array, read with ``pread`` rather than through the mmap.

        Pages of a mapped file count towards the process's RSS until unmapped; reading a tensor
        into its own buffer keeps peak memory at about one tensor (the mmproj writers read the
        vision tower this way). Readers that compute tensors (LoRA merge, int4) override it.
        """
        info = self.info(name)
        with open(info.file, "rb") as fh:
            buf = os.pread(fh.fileno(), info.nbytes, info.offset)
        if len(buf) != info.nbytes:
            raise CheckpointError(f"{info.file.name} is truncated at tensor {name}: re-download it")
        if info.dtype == "BF16":
            return bf16_to_f32(np.frombuffer(buf, dtype="<u2"))
        return np.frombuffer(buf, dtype="<f2" if info.dtype == "F16" else "<f4").astype(np.float32)

    def typed_rows(self, name: str, qtype: str, start: int, stop: int) -> np.ndarray | None:
        """Rows already encoded as ``qtype`` by the reader (int4 -> Q4_0 repack), else None."""
        del name, qtype, start, stop
        return None

    def file(self, name: str) -> Path | None:
        """A non-weight file of the checkpoint (tokenizer.model, ...) if present."""
        p = self.root / name
        return p if p.is_file() else None

    def close(self) -> None:
        self._maps.clear()


_LAYER_TENSOR = re.compile(
    r"layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.weight$"
)


def _check_shapes(text: dict[str, Any], tensors: dict[str, TensorInfo]) -> None:
    """The text tensors' shapes against config.json (with Gemma3TextConfig's defaults, as exported).

    A config that does not belong to the weights would export a GGUF llama.cpp loads and runs as
    noise (or refuses), so every projection, the embedding and the layer count are checked here.
    """
    d = SIZES["4b"]
    hidden = int(text.get("hidden_size", d.hidden_size))
    heads = int(text.get("num_attention_heads", d.num_heads))
    kv_heads = int(text.get("num_key_value_heads", d.num_kv_heads))
    head_dim = int(text.get("head_dim", d.head_dim))
    inter = int(text.get("intermediate_size", d.intermediate_size))
    layers = int(text.get("num_hidden_layers", d.num_layers))
    vocab = text.get("vocab_size")
    q, kv = heads * head_dim, kv_heads * head_dim
    expected = {
        "self_attn.q_proj": (q, hidden),
        "self_attn.k_proj": (kv, hidden),
        "self_attn.v_proj": (kv, hidden),
        "self_attn.o_proj": (hidden, q),
        "mlp.gate_proj": (inter, hidden),
        "mlp.up_proj": (inter, hidden),
        "mlp.down_proj": (hidden, inter),
    }
    fix = "the config.json does not belong to these weights: use the checkpoint's own config.json"
    for name, info in tensors.items():
        if "vision" in name or "multi_modal" in name:
            continue
        m = _LAYER_TENSOR.search(name)
        if m:
            if int(m.group(1)) >= layers:
                raise CheckpointError(
                    f"{name} is past num_hidden_layers ({layers}) in config.json: {fix}"
                )
            want: tuple[int, ...] = expected[m.group(2)]
        elif name.endswith("embed_tokens.weight"):
            want = (int(vocab) if vocab is not None else info.shape[0], hidden)
        else:
            continue
        if info.shape != want:
            raise CheckpointError(
                f"{name} has shape {list(info.shape)} but config.json implies {list(want)} "
                f"(hidden_size {hidden}, heads {heads}x{head_dim}, kv heads {kv_heads}, "
                f"intermediate_size {inter}, vocab_size {vocab}): {fix}"
            )


def _weight_files(root: Path) -> list[Path]:
    """The safetensors files to read: from the index if there is one, else every *.safetensors."""
    index = root / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _load_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index.name} has no weight_map: re-save the checkpoint")
        files: list[Path] = []
        for entry in dict.fromkeys(weight_map.values()):
            # The check is on the name the index gives, not on where the file resolves: the
            # Hugging Face cache (snapshot_download) stores every shard as a symlink into
            # ../../blobs, and that layout is the normal one for a repo id.
            name = str(entry)
            parts = Path(name).parts
            if not parts or os.path.isabs(name) or ".." in parts or "\\" in name:
                raise CheckpointError(
                    f"{index.name} points outside the checkpoint folder ({entry!r}); refusing to "
                    "read it: fix the index so every shard is a file inside the folder"
                )
            p = root / name
            if not p.is_file():
                raise CheckpointError(
                    f"{index.name} lists {entry!r} but the file is missing: finish the download"
                )
            files.append(p)
        return files
    return sorted(p for p in root.glob("*.safetensors") if not p.name.startswith("adapter_"))


def fetch(
    source: str,
    *,
    what: str = "checkpoint",
    allow_patterns: list[str] | None = None,
    quiet: bool = False,
) -> Path:
    """A local folder as is, or a Hugging Face repo id downloaded (only the files needed).

    HF_TOKEN and HF_HOME are honoured by huggingface_hub itself. Hub errors are translated to one
    actionable line (gated repos: accept the licence, then log in).
    """
    local = Path(source).expanduser()
    if local.exists():
        return local
    looks_like_repo = source.count("/") == 1 and not source.startswith((".", "/", "~"))
    if not looks_like_repo:
        raise InputNotFound(f"{what} not found: {source} (neither a folder nor an HF repo id)")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as err:  # pragma: no cover - a core dependency
        raise MissingDependency(
            f"huggingface_hub is needed to download {source}: pip install huggingface_hub"
        ) from err
    try:
        return Path(snapshot_download(source, allow_patterns=allow_patterns or ALLOW_PATTERNS))
    except GatedRepoError:
        raise CheckpointError(
            f"{source} is gated: accept the Gemma licence on https://huggingface.co/{source}, "
            "then `hf auth login` (or set HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise InputNotFound(
            f"{what} not found: {source} is neither a local folder nor a Hugging Face repo you can "
            "access (check the name; private repos need `hf auth login`)"
        ) from None
    except LocalEntryNotFoundError:
        raise InputNotFound(
            f"cannot download {source}: offline (HF_HUB_OFFLINE) or no network, and it is not in "
            "the Hugging Face cache"
        ) from None
    except HfHubHTTPError as err:
        raise CheckpointError(f"downloading {source} failed: {str(err).splitlines()[0]}") from None
