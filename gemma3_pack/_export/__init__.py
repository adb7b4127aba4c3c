"""Hugging Face checkpoint or LoRA adapter -> verified, quantized Gemma 3 GGUFs (+ vision projector).

The pipeline, one concern per module:

    _source    open + validate the checkpoint (mmap, refusals), download HF repo ids
    _lora      merge a PEFT adapter onto its base on the fly, tensor by tensor
    _config    Gemma 3 text hyper-parameters with the family table's defaults
    _vocab     the SentencePiece vocabulary, exactly as llama.cpp builds it
    _tensors   name map, +1 on norms, storage types, chunked conversion
    _writer    the streaming, atomic GGUF writer (F32/F16/BF16/Q8_0 in Python)
    _quantize  K-quants and Q4_0 etc. through llama.cpp's quantizer, from one BF16 intermediate
    _mmproj    the vision projector (second output, for Gemma3ForConditionalGeneration)
    _manifest  export.json, SHA256SUMS, Modelfile, README.md model card
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._errors import InputNotFound, InsufficientDisk, OutputError, UsageError
from .._files import write_text_atomic
from .._version import __version__

__all__ = ["ExportResult", "ExportedFile", "export"]

OllamaFormat = Literal["auto", "pair", "fused"]
# Bits per weight of the big matrices, for the disk preflight (upper bounds of llama.cpp's mixes).
_BPW = {
    "F32": 32,
    "F16": 16,
    "BF16": 16,
    "Q8_0": 8.5,
    "Q6_K": 8.5,
    "Q5_K_M": 8.5,
    "Q5_K_S": 8.5,
    "Q5_0": 8.5,
    "Q5_1": 8.5,
    "Q4_K_M": 8.5,
    "Q4_K_S": 8.5,
    "Q4_0": 8.5,
    "Q4_1": 8.5,
    "Q3_K_M": 8.5,
    "Q3_K_S": 8.5,
    "Q3_K_L": 8.5,
    "Q2_K": 8.5,
    "IQ4_NL": 8.5,
    "IQ4_XS": 8.5,
}


@dataclass(frozen=True)
class ExportedFile:
    """One file written by :func:`export`."""

    path: Path
    quant: str
    size: int
    sha256: str
    seconds: float


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote; ``to_dict()`` is the ``--json`` output."""

    name: str
    output_dir: Path
    variant: str | None
    models: list[ExportedFile]
    mmproj: ExportedFile | None = None
    fused: ExportedFile | None = None
    modelfile: Path | None = None
    manifest: Path | None = None
    readme: Path | None = None
    sums: Path | None = None
    chosen_quants: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def f(x: ExportedFile | None) -> dict[str, Any] | None:
            if x is None:
                return None
            d = asdict(x)
            d["path"] = str(x.path)
            return d

        return {
            "name": self.name,
            "output_dir": str(self.output_dir),
            "variant": self.variant,
            "models": [f(m) for m in self.models],
            "mmproj": f(self.mmproj),
            "fused": f(self.fused),
            "modelfile": str(self.modelfile) if self.modelfile else None,
            "manifest": str(self.manifest) if self.manifest else None,
        }


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _default_name(source: str) -> str:
    name = Path(source.rstrip("/\\")).name or "gemma3"
    return name.replace(" ", "-")


def _is_instruct(source: str, tok_dir: Path) -> bool:
    import json

    low = source.lower()
    if "-it" in low or "instruct" in low or (tok_dir / "chat_template.jinja").is_file():
        return True
    cfg = tok_dir / "tokenizer_config.json"
    try:
        return bool(cfg.is_file() and json.loads(cfg.read_text("utf-8")).get("chat_template"))
    except ValueError:
        return False


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _available_ram() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def export(
    source: str | os.PathLike[str],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    quants: list[str] | tuple[str, ...] | str | None = None,
    name: str | None = None,
    base: str | None = None,
    qat: bool | None = None,
    tokenizer_from: str | None = None,
    imatrix: str | os.PathLike[str] | None = None,
    keep_bf16: bool = False,
    mmproj_type: str = "f16",
    ollama_format: OllamaFormat = "auto",
    progress: bool = True,
) -> ExportResult:
    """Export a Gemma 3 checkpoint folder, HF repo id or PEFT LoRA adapter to GGUFs.

    Writes ``<name>-<QUANT>.gguf`` per type, the vision projector for multimodal checkpoints, a
    Modelfile, ``export.json``, ``SHA256SUMS`` and ``README.md`` into ``output_dir`` (default
    ``./<name>-gguf``). Every input check happens before anything is written.
    """
    from . import _manifest
    from ._config import match_variant, text_hparams
    from ._lora import is_lora, lora_base, open_lora
    from ._quantize import (
        LLAMA_TYPES,
        PYTHON_TYPES,
        _llama,
        check_quants,
        load_imatrix,
        native_stderr_captured,
        quantize,
    )
    from ._source import Checkpoint, fetch, open_checkpoint
    from ._tensors import is_text_tensor, nbytes, plan_tensors
    from ._vocab import load_vocab
    from ._writer import GeneralInfo, write_text_gguf

    if ollama_format not in ("auto", "pair", "fused"):
        raise UsageError(f"unknown Ollama format {ollama_format!r}: choose auto, pair or fused")
    chosen_early = (
        check_quants(quants.split(",") if isinstance(quants, str) else list(quants))
        if quants is not None
        else None
    )
    src = str(source)
    root = fetch(src, what="checkpoint")
    if is_lora(root):
        base_ref = lora_base(root, base)
        try:
            base_dir = fetch(base_ref, what="LoRA base model")
        except InputNotFound:
            raise InputNotFound(
                f"the LoRA's base model {base_ref!r} was not found (neither a folder nor a "
                "downloadable repo): pass --base PATH|REPO"
            ) from None
        lora = open_lora(root, base_dir)
        _log(
            progress, f"merging LoRA {root.name} onto {base_ref} ({len(lora.merged_names)} tensors)"
        )
        ckpt: Checkpoint = lora
    else:
        if base:
            raise UsageError("--base is for LoRA adapters; this is a full checkpoint")
        ckpt = open_checkpoint(root)
    tok_dir = (
        fetch(
            tokenizer_from,
            what="tokenizer",
            allow_patterns=[
                "tokenizer*",
                "*.jinja",
                "special_tokens_map.json",
                "added_tokens.json",
            ],
        )
        if tokenizer_from
        else ckpt.root
    )
    text = ckpt.text_config
    from .._family import SIZES

    vocab_size = int(text.get("vocab_size") or SIZES["4b"].vocab_size)
    vocab = load_vocab(tok_dir, vocab_size)
    n_vocab = len(vocab.tokens)
    hp = text_hparams(text, n_vocab)
    low = (src + " " + str(ckpt.config.get("_name_or_path", ""))).lower()
    is_qat = bool(qat) if qat is not None else "qat" in low
    variant = match_variant(hp, qat=is_qat, instruct=_is_instruct(src, tok_dir))
    name = name or _default_name(src)
    if "/" in name or "\\" in name or name.startswith("."):
        raise UsageError(
            f"--name {name!r} must be a plain file-name stem (no slashes, no leading dot)"
        )
    if quants is None:
        chosen = list(variant.default_quants) if variant else (["Q4_0"] if is_qat else ["Q4_K_M"])
        _log(
            progress,
            f"quant types: {', '.join(chosen)} (default for "
            f"{variant.name if variant else 'this model'}; choose with -q)",
        )
    else:
        chosen = chosen_early or []
    llama_types = [q for q in chosen if q in LLAMA_TYPES]
    if llama_types:
        _llama()  # fail before writing anything when the extra is missing
    imatrix_data = load_imatrix(Path(imatrix)) if imatrix else None
    python_types = [q for q in chosen if q in PYTHON_TYPES]
    need_bf16 = bool(llama_types) and "BF16" not in python_types
    out_dir = Path(output_dir) if output_dir is not None else Path.cwd() / f"{name}-gguf"
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder: choose another -o")
    multimodal = any(not is_text_tensor(n) for n in ckpt.names())
    if multimodal:  # vision refusals (missing tensors, projector width, mmproj type) come first too
        from ._mmproj import mmproj_filename, vision_plan

        vision_plan(ckpt)
        mmproj_filename(name, mmproj_type)  # type: ignore[arg-type]

    # Disk preflight: every output plus the intermediate, before anything is written.
    plans = {
        q: plan_tensors(ckpt, q, n_layers=hp.num_layers, n_vocab=n_vocab)
        for q in {*python_types, *(["BF16"] if need_bf16 else [])}
    }
    bf16_bytes = sum(
        nbytes(t)
        for t in plans.get("BF16")
        or plan_tensors(ckpt, "BF16", n_layers=hp.num_layers, n_vocab=n_vocab)
    )
    vocab_bytes = sum(len(t) + 16 for t in vocab.tokens)
    needed = sum(sum(nbytes(t) for t in p) for p in plans.values()) + vocab_bytes * len(plans)
    needed += sum(int(bf16_bytes * _BPW[q] / 16) + vocab_bytes for q in llama_types)
    if multimodal:
        needed += sum(ckpt.nbytes(n) for n in ckpt.names() if not is_text_tensor(n)) * 2
    out_dir.mkdir(parents=True, exist_ok=True)
    free = _free_bytes(out_dir)
    if needed > free:
        raise InsufficientDisk(
            f"not enough disk space in {out_dir}: the export needs about {needed / 1e9:.2f} GB "
            f"({needed} bytes), {free / 1e9:.2f} GB are free: free space or choose another -o"
        )

    size_label = hp.size.params if hp.size else None
    info = GeneralInfo(
        name=name,
        size_label=size_label,
        finetune=name if variant is None or name != variant.name else None,
        base_repo=variant.hf_repo if variant else None,
    )
    written: dict[str, tuple[Path, float]] = {}
    intermediate: Path | None = None
    try:
        for q in python_types + (["BF16"] if need_bf16 else []):
            t0 = time.perf_counter()
            is_tmp = q == "BF16" and need_bf16 and not keep_bf16
            path = out_dir / (f".{name}-BF16.intermediate.gguf" if is_tmp else f"{name}-{q}.gguf")
            write_text_gguf(
                ckpt, plans[q], path, hp=hp, vocab=vocab, info=info, outtype=q, progress=progress
            )
            if is_tmp:
                intermediate = path
            else:
                written[q] = (path, time.perf_counter() - t0)
            _log(progress, f"wrote {path.name} in {time.perf_counter() - t0:.1f} s")
        if llama_types:
            bf16 = intermediate or written["BF16"][0]
            ram = _available_ram()
            cpus = os.cpu_count() or 1
            workers = max(
                1, min(len(llama_types), cpus, (ram // max(1, 2 * bf16_bytes)) if ram else 1)
            )
            threads = max(1, cpus // workers)

            def run(q: str) -> tuple[str, Path, float]:
                t0 = time.perf_counter()
                path = out_dir / f"{name}-{q}.gguf"
                quantize(bf16, path, q, qat=is_qat, imatrix=imatrix_data, nthread=threads, log=log)
                return q, path, time.perf_counter() - t0

            _log(
                progress,
                f"quantizing {', '.join(llama_types)} with llama.cpp "
                f"({workers} at a time, {threads} threads each)",
            )
            with native_stderr_captured() as log, ThreadPoolExecutor(max_workers=workers) as pool:
                done = list(pool.map(run, llama_types))
            for q, path, secs in done:
                written[q] = (path, secs)
                _log(progress, f"wrote {path.name} in {secs:.1f} s")
    finally:
        if intermediate is not None:
            intermediate.unlink(missing_ok=True)

    order = [q for q in chosen] + (["BF16"] if keep_bf16 and "BF16" not in chosen else [])
    models = [
        ExportedFile(
            written[q][0],
            q,
            written[q][0].stat().st_size,
            _manifest.sha256(written[q][0]),
            round(written[q][1], 3),
        )
        for q in order
        if q in written
    ]

    mm_file = fused_file = None
    if multimodal:
        from ._mmproj import mmproj_filename, write_mmproj

        t0 = time.perf_counter()
        mm_path = write_mmproj(
            ckpt,
            out_dir / mmproj_filename(name, mmproj_type),  # type: ignore[arg-type]
            dtype=mmproj_type,  # type: ignore[arg-type]
            name=name,
            basename=info.basename,
            progress=progress,
        )
        mm_file = ExportedFile(
            mm_path,
            mmproj_type.upper(),
            mm_path.stat().st_size,
            _manifest.sha256(mm_path),
            round(time.perf_counter() - t0, 3),
        )
        if ollama_format == "fused":
            from ._fused import write_fused

            t0 = time.perf_counter()
            fpath = write_fused(
                models[0].path,
                ckpt,
                out_dir / f"{name}-{models[0].quant}-ollama.gguf",
                progress=progress,
            )
            fused_file = ExportedFile(
                fpath,
                models[0].quant,
                fpath.stat().st_size,
                _manifest.sha256(fpath),
                round(time.perf_counter() - t0, 3),
            )

    if fused_file is not None:
        modelfile = _manifest.write_modelfile_for(out_dir, fused_file.path)
    else:
        modelfile = _manifest.write_modelfile_for(
            out_dir, models[0].path, mm_file.path if mm_file else None
        )

    def rel(x: ExportedFile | None) -> dict[str, Any] | None:
        if x is None:
            return None
        return {"path": x.path.name, "quant": x.quant, "size": x.size, "sha256": x.sha256}

    model_entries = [rel(m) for m in models]
    manifest = _manifest.write_manifest(
        out_dir,
        {
            "name": name,
            "source": src if not Path(src).exists() else str(Path(src).resolve()),
            "base": base if base else None,
            "variant": variant.name if variant else None,
            "architecture": ckpt.architecture,
            "models": model_entries,
            "mmproj": rel(mm_file),
            "fused": rel(fused_file),
            "modelfile": modelfile.name,
            "gemma3_pack": __version__,
        },
    )
    sums = _manifest.write_sums(
        out_dir,
        [
            (m.path.name, m.sha256)
            for m in [
                *models,
                *([mm_file] if mm_file else []),
                *([fused_file] if fused_file else []),
            ]
        ],
    )
    readme = out_dir / "README.md"
    write_text_atomic(
        readme,
        _manifest.render_card(
            name=name,
            source=src,
            variant=variant.name if variant else None,
            models=[m for m in model_entries if m],
            mmproj=rel(mm_file),
        ),
    )
    return ExportResult(
        name=name,
        output_dir=out_dir,
        variant=variant.name if variant else None,
        models=models,
        mmproj=mm_file,
        fused=fused_file,
        modelfile=modelfile,
        manifest=manifest,
        readme=readme,
        sums=sums,
        chosen_quants=chosen,
    )
