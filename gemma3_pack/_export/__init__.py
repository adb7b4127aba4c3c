"""Hugging Face checkpoint or LoRA adapter -> verified, quantized Gemma 3 GGUFs (+ vision projector).

The pipeline, one concern per module:

    _source    open + validate the checkpoint (mmap, refusals), download HF repo ids
    _lora      merge a PEFT adapter onto its base on the fly, tensor by tensor
    _config    Gemma 3 text hyper-parameters with the family table's defaults
    _vocab     the SentencePiece vocabulary, exactly as llama.cpp builds it
    _tensors   name map, +1 on norms, storage types, chunked conversion
    _writer    the streaming, atomic GGUF writer: every requested type from one read, no intermediate
    _quantize  quant names, the imatrix reader, llama.cpp's whole-file quantizer (tests, benchmarks)
    (../_quants: one row per quant type and llama.cpp's type per tensor; ../_ggml: ggml's kernels)
    _mmproj    the vision projector (second output, for Gemma3ForConditionalGeneration)
    _manifest  export.json, SHA256SUMS, Modelfile, README.md model card
    _options   ExportOptions: every export option once (the CLI builds its flags from it)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import InputNotFound, InsufficientDisk, MissingDependency, OutputError, UsageError
from .._files import write_text_atomic
from .._version import __version__
from ._options import ExportOptions, OllamaFormat

# Annotations only: these modules import numpy, and `import gemma3_pack` stays light.
if TYPE_CHECKING:
    import numpy as np

    from .._family import Variant
    from ._config import TextHParams
    from ._mmproj import VisionPlan
    from ._readers._int4 import Int4Checkpoint
    from ._readers._reader import CheckpointReader
    from ._tensors import PlannedTensor
    from ._vocab import Vocab
    from ._writer import GeneralInfo

#: ``--eval``'s result: the export.json entry and the model card's section.
_Quality = tuple[dict[str, Any], str]

__all__ = [
    "ExportOptions",
    "ExportPlan",
    "ExportResult",
    "ExportedFile",
    "OllamaFormat",
    "export",
    "plan_export",
    "write_outputs",
]


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
    notes: list[str] = field(default_factory=list)  # e.g. what an int4 source became

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
            "notes": list(self.notes),
        }


@dataclass
class ExportPlan:
    """Everything :func:`plan_export` decided, computed once, before anything is written.

    :func:`write_outputs` only writes what is here: the text tensors per output type (name, source,
    storage type per tensor as llama.cpp chooses it, in GGUF order), the vision plan, the disk space
    checked, and the notes to report. ``outputs`` lists the files of the one streamed pass.
    """

    source: str
    root: Path
    base: str | None
    ckpt: CheckpointReader
    int4: Int4Checkpoint | None  # the same reader when it is an int4 one
    vocab: Vocab
    hp: TextHParams
    variant: Variant | None  # the family table's row, when the checkpoint is one
    name: str
    chosen: list[str]
    python_types: list[str]  # one type for every tensor (F32/F16/BF16/Q8_0, int4 repacks' Q4_0)
    llama_types: list[str]  # llama.cpp's mixes (Q4_K_M...), as llama-quantize makes them
    repack: list[str]  # ["Q4_0"] when the int4 weights are repacked
    retype_embd: bool  # int4 repack with a Q6_K token_embd (from its F16 values, as llama.cpp)
    embedding_type: str | None
    intermediate_type: str  # the float file llama.cpp's route would quantize (BF16; F16 for int4)
    need_intermediate: bool  # always False: the mixes are quantized while streaming
    intermediate_bytes: int  # what that float file would have taken (not written)
    needed_bytes: int  # the disk preflight: every output, exactly
    is_qat: bool
    imatrix: dict[str, list[float]] | None
    keep_intermediate: bool
    out_dir: Path
    vision: VisionPlan | None  # None: text-only
    mmproj_type: str
    ollama_format: OllamaFormat
    tensors: dict[str, list[PlannedTensor]]  # output type -> its tensors, in GGUF order
    info: GeneralInfo
    notes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # file types written, in order
    imatrix_by_tensor: dict[str, np.ndarray] | None = None  # GGUF name -> float32 weights
    evaluate: bool = False
    eval_reference: str | None = None  # a float type written only as the eval's reference
    tools: bool = False  # the tool-calling chat template in the GGUFs and the Modelfile


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _default_name(source: str) -> str:
    name = Path(source.rstrip("/\\")).name or "gemma3"
    return name.replace(" ", "-")


def _check_name(name: str) -> None:
    """The output name becomes file names, GGUF metadata and a Modelfile's FROM line: refused
    here, before anything is written, if any of them could not take it."""
    bad = (
        "/" in name
        or "\\" in name
        or '"' in name
        or name.startswith(".")
        or name != name.strip()
        or not name.isprintable()
        or len(name.encode("utf-8", "surrogatepass")) > 128
    )
    if bad:
        from .._inputs import printable

        raise UsageError(
            f"--name '{printable(name)[:80]}' must be a plain file-name stem: printable "
            "characters only, no slashes, quotes, leading dot or surrounding spaces, at most 128 "
            "bytes (pass --name when the source folder's name is not one)"
        )


def _is_instruct(source: str, tok_dir: Path) -> bool:
    low = source.lower()
    if "-it" in low or "instruct" in low or (tok_dir / "chat_template.jinja").is_file():
        return True
    cfg = tok_dir / "tokenizer_config.json"
    if not cfg.exists():
        return False
    from .._inputs import read_json_object  # the validating reader: one line for a bad file

    return bool(read_json_object(cfg).get("chat_template"))


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
    options: ExportOptions | None = None,
    *,
    progress: bool = True,
    **overrides: Any,
) -> ExportResult:
    """Export a Gemma 3 checkpoint folder, HF repo id or PEFT LoRA adapter to GGUFs.

    The options are an :class:`ExportOptions` and/or its fields as keywords, which win
    (``export(src, quants="Q4_K_M,Q8_0", name="g")`` or ``export(src, opts, force=True)``).
    Writes ``<name>-<QUANT>.gguf`` per type, the vision projector for multimodal checkpoints, a
    Modelfile, ``export.json``, ``SHA256SUMS`` and ``README.md`` into ``output_dir`` (default
    ``./<name>-gguf``). Every input check happens before anything is written:
    ``write_outputs(plan_export(...))``.

    QAT int4 checkpoints (AWQ or compressed-tensors ``pack-quantized``, 4 bits, group 32,
    symmetric) export to Q4_0 by repacking their integers and scales, bit for bit; their token
    embedding is ``embedding_type`` (F16 by default, like Google's own QAT GGUFs).

    ``evaluate`` measures every quantized output against the float one (KL divergence, top-1
    agreement, perplexity on a built-in text, via llama.cpp; see ``gemma3_pack._export._eval``) into
    ``export.json`` and the model card; without a float output a temporary BF16 is the reference.
    """
    opts = ExportOptions.build(options, overrides)
    # An output folder this call creates is removed again when the export fails before anything
    # was committed into it (plan_export makes it for the disk check; a LoRA merge may fail later).
    target = (
        Path(opts.output_dir)
        if opts.output_dir is not None
        else Path.cwd() / f"{opts.name or _default_name(str(source))}-gguf"
    )
    existed = os.path.lexists(target)
    try:
        return write_outputs(plan_export(source, opts, progress=progress), progress=progress)
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                target.rmdir()  # only an empty folder: files already committed stay
        raise


def plan_export(
    source: str | os.PathLike[str],
    options: ExportOptions | None = None,
    *,
    progress: bool = True,
    **overrides: Any,
) -> ExportPlan:
    """Decide everything an export will do, before a byte is written: the :class:`ExportPlan`.

    Every refusal (input, options, vision tower, output folder, disk space) is raised here; the
    only side effect is creating an empty output folder for the disk check. ``progress`` prints
    the choices made (default quant types, int4 notes). Options as for :func:`export`.
    """
    opts = ExportOptions.build(options, overrides)
    from .._family import SIZES
    from ._config import match_variant, text_hparams
    from ._quantize import check_quants, load_imatrix
    from ._readers._int4 import Int4Checkpoint
    from ._tensors import nbytes, plan_tensors
    from ._vocab import load_vocab

    if opts.ollama_format not in ("auto", "pair", "fused"):
        raise UsageError(
            f"unknown Ollama format {opts.ollama_format!r}: choose auto, pair or fused"
        )
    quants = opts.quants
    chosen_early = (
        check_quants(quants.split(",") if isinstance(quants, str) else list(quants))
        if quants is not None
        else None
    )
    src = str(source)
    root, ckpt = _open_source(src, opts.base, progress=progress)
    i4 = ckpt if isinstance(ckpt, Int4Checkpoint) else None
    int4 = i4 is not None
    embedding_type = _embedding_type(opts.embedding_type, int4=int4)
    tok_dir = _tokenizer_dir(opts.tokenizer_from, ckpt)
    text = ckpt.text_config
    vocab = load_vocab(tok_dir, int(text.get("vocab_size") or SIZES["4b"].vocab_size))
    n_vocab = len(vocab.tokens)
    hp = text_hparams(text, n_vocab)
    low = (src + " " + str(ckpt.config.get("_name_or_path", ""))).lower()
    is_qat = int4 or (bool(opts.qat) if opts.qat is not None else "qat" in low)
    variant = match_variant(hp, qat=is_qat, instruct=_is_instruct(src, tok_dir))
    name = opts.name or _default_name(src)
    _check_name(name)
    chosen = (
        _default_quants(variant, int4=int4, is_qat=is_qat, progress=progress)
        if quants is None
        else chosen_early or []
    )
    # int4 checkpoints: Q4_0 is a repack written here; the other types read the exactly
    # dequantized weights, as from an F16 file (exact for them; BF16 would round).
    repack = ["Q4_0"] if int4 and "Q4_0" in chosen else []
    emb_type = (embedding_type or "F16") if int4 else None
    python_types = [q for q in chosen if q in ("F32", "F16", "BF16", "Q8_0") or q in repack]
    llama_types = [q for q in chosen if q not in python_types]
    # a Q6_K token_embd is quantized from its F16 values, as llama.cpp re-typing the F16-embedding
    # repack would (the Q4_0 blocks are the repack's, untouched).
    retype_embd = emb_type == "Q6_K" and bool(repack)
    if retype_embd and hp.hidden_size % 256:
        # llama.cpp applies no shape fallback to an explicit token_embedding_type and aborts
        # (GGML_ASSERT "tensor row size not divisible by block size of new type").
        raise UsageError(
            f"--embedding-type Q6_K needs an embedding width divisible by 256; this model's is "
            f"{hp.hidden_size} (Gemma 3 270M and 1B): choose F16, Q8_0 or Q4_0"
        )
    if llama_types or retype_embd or (emb_type in ("Q8_0", "Q4_0") and bool(repack)):
        from ._ggml import library_path

        library_path()  # fail before writing anything when the extra is missing
    imatrix_data = load_imatrix(Path(opts.imatrix)) if opts.imatrix else None
    inter = "F16" if int4 else "BF16"
    notes = _int4_notes(i4, chosen, repack=repack, emb_type=emb_type) if i4 is not None else []
    for note in notes:
        _log(progress, "note: " + note)
    out_dir = _output_folder(opts, name, sources={root, Path(ckpt.root)})
    vplan = _vision_plan(ckpt, name, opts.mmproj_type)

    # Every output's tensors, types chosen as llama.cpp chooses them; the disk preflight is exact.
    outputs = chosen + ([inter] if opts.keep_bf16 and inter not in chosen else [])
    eval_reference = _eval_reference(outputs, inter) if opts.evaluate else None
    if eval_reference is not None:
        outputs.append(eval_reference)
    base_plan = plan_tensors(ckpt, inter, n_layers=hp.num_layers, n_vocab=n_vocab)
    plans = {}
    for q in outputs:
        if q in llama_types:
            plans[q] = _mixed_plan(base_plan, q, hp, qat=is_qat, imatrix=imatrix_data is not None)
        elif q in repack:
            plans[q] = plan_tensors(
                ckpt, q, n_layers=hp.num_layers, n_vocab=n_vocab, embedding_type=emb_type
            )
            if retype_embd:
                plans[q] = [replace(t, via="F16") if t.qtype == "Q6_K" else t for t in plans[q]]
        elif q == inter:
            plans[q] = base_plan
        else:
            plans[q] = plan_tensors(ckpt, q, n_layers=hp.num_layers, n_vocab=n_vocab)
    imatrix_by_tensor = _imatrix_for(imatrix_data, base_plan) if imatrix_data else None
    needed = _check_disk(out_dir, plans, vocab, ckpt, vision=vplan is not None)
    return ExportPlan(
        source=src,
        root=root,
        base=opts.base,
        ckpt=ckpt,
        int4=i4,
        vocab=vocab,
        hp=hp,
        variant=variant,
        name=name,
        chosen=chosen,
        python_types=python_types,
        llama_types=llama_types,
        repack=repack,
        retype_embd=retype_embd,
        embedding_type=emb_type,
        intermediate_type=inter,
        need_intermediate=False,
        intermediate_bytes=sum(nbytes(t) for t in base_plan),
        needed_bytes=needed,
        is_qat=is_qat,
        imatrix=imatrix_data,
        keep_intermediate=opts.keep_bf16,
        out_dir=out_dir,
        vision=vplan,
        mmproj_type=opts.mmproj_type,
        ollama_format=opts.ollama_format,
        tensors=plans,
        info=_general_info(name, hp, variant, tools=opts.tools),
        notes=notes,
        outputs=outputs,
        imatrix_by_tensor=imatrix_by_tensor,
        evaluate=opts.evaluate,
        eval_reference=eval_reference,
        tools=opts.tools,
    )


def _open_source(src: str, base: str | None, *, progress: bool) -> tuple[Path, CheckpointReader]:
    """The checkpoint's folder (downloaded for a repo id) and its reader; a LoRA adapter is
    merged onto its base model (``base``, default the adapter's own) on read."""
    from ._readers._lora import is_lora, lora_base, open_lora
    from ._readers._open import open_checkpoint
    from ._readers._source import fetch

    root = fetch(src, what="checkpoint")
    if not is_lora(root):
        if base:
            raise UsageError("--base is for LoRA adapters; this is a full checkpoint")
        return root, open_checkpoint(root)
    base_ref = lora_base(root, base)
    try:
        base_dir = fetch(base_ref, what="LoRA base model")
    except InputNotFound:
        raise InputNotFound(
            f"the LoRA's base model {base_ref!r} was not found (neither a folder nor a "
            "downloadable repo): pass --base PATH|REPO"
        ) from None
    lora = open_lora(root, base_dir)
    _log(progress, f"merging LoRA {root.name} onto {base_ref} ({len(lora.merged_names)} tensors)")
    return root, lora


def _embedding_type(value: str | None, *, int4: bool) -> str | None:
    """``--embedding-type``, upper-cased; refused unless known and the checkpoint is int4."""
    from ._readers._int4 import EMBEDDING_TYPES

    if value is None:
        return None
    value = value.strip().upper()
    if value not in EMBEDDING_TYPES:
        raise UsageError(f"unknown embedding type {value!r}: choose {', '.join(EMBEDDING_TYPES)}")
    if not int4:
        raise UsageError(
            "--embedding-type applies to QAT int4 checkpoints (AWQ / compressed-tensors) "
            "exported to Q4_0; this checkpoint is not quantized"
        )
    return value


def _tokenizer_dir(tokenizer_from: str | None, ckpt: CheckpointReader) -> Path:
    """Where the tokenizer files are: ``--tokenizer-from`` (downloaded for a repo id, tokenizer
    files only), else the checkpoint's own folder."""
    if not tokenizer_from:
        return ckpt.root
    from ._readers._source import fetch

    return fetch(
        tokenizer_from,
        what="tokenizer",
        allow_patterns=["tokenizer*", "*.jinja", "special_tokens_map.json", "added_tokens.json"],
    )


def _default_quants(
    variant: Variant | None, *, int4: bool, is_qat: bool, progress: bool
) -> list[str]:
    """The types written without ``-q``: the repack for int4, else the family table's."""
    if int4:
        _log(progress, "quant types: Q4_0 (the int4 weights repacked losslessly; choose with -q)")
        return ["Q4_0"]
    chosen = list(variant.default_quants) if variant else (["Q4_0"] if is_qat else ["Q4_K_M"])
    _log(
        progress,
        f"quant types: {', '.join(chosen)} (default for "
        f"{variant.name if variant else 'this model'}; choose with -q)",
    )
    return chosen


def _int4_notes(
    i4: Int4Checkpoint, chosen: list[str], *, repack: list[str], emb_type: str | None
) -> list[str]:
    """What each type becomes from an int4 checkpoint (reported and kept in the result)."""
    fmt = i4.format
    notes: list[str] = []
    if repack:
        notes.append(
            f"{fmt} int4 checkpoint: {len(i4.repacked)} linear weights repacked into Q4_0 "
            f"bit for bit (no re-quantization); token_embd is {emb_type}"
        )
    for q in (q for q in chosen if q not in repack):
        how = "exactly" if q in ("F32", "F16") else "then rounded to " + q
        notes.append(
            f"-q {q} on a {fmt} int4 checkpoint: its weights are dequantized exactly "
            f"((q - 8) * scale) and stored {how}; -q Q4_0 keeps them lossless in 4 bits"
        )
    return notes


def _output_folder(opts: ExportOptions, name: str, *, sources: set[Path]) -> Path:
    """``-o`` (default ``./<name>-gguf``), refused when it is a file, holds files an earlier
    export did not write (unless ``force``) or overlaps one of the ``sources``."""
    from ._guard import check_output_folder

    out_dir = Path(opts.output_dir) if opts.output_dir is not None else Path.cwd() / f"{name}-gguf"
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder: choose another -o")
    for src_dir in sources:  # the adapter and, for a LoRA, its base
        check_output_folder(out_dir, name=name, source=src_dir, force=opts.force)
    return out_dir


def _vision_plan(ckpt: CheckpointReader, name: str, mmproj_type: str) -> VisionPlan | None:
    """The vision tower's plan (None for a text-only checkpoint), computed once for the mmproj
    and fused writers; its refusals (missing tensors, projector width, mmproj type) come first."""
    from ._tensors import is_text_tensor

    if all(is_text_tensor(n) for n in ckpt.names()):
        return None
    from ._mmproj import mmproj_filename, vision_plan

    vplan = vision_plan(ckpt)
    mmproj_filename(name, mmproj_type)  # type: ignore[arg-type]
    return vplan


def _eval_reference(outputs: list[str], inter: str) -> str | None:
    """``--eval``: the float type written only as the reference (None when an output is one);
    refused without llama.cpp's Python binding."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "--eval runs the GGUFs with llama.cpp: pip install 'gemma3-pack[quantize]'"
        ) from None
    return None if any(q in ("F32", "F16", "BF16") for q in outputs) else inter


def _check_disk(
    out_dir: Path,
    plans: dict[str, list[PlannedTensor]],
    vocab: Vocab,
    ckpt: CheckpointReader,
    *,
    vision: bool,
) -> int:
    """The disk preflight: the bytes every output takes, exactly; the output folder is created
    to measure its free space, and a shortfall is refused. Returns the bytes needed."""
    from ._tensors import is_text_tensor, nbytes

    vocab_bytes = sum(len(t) + 16 for t in vocab.tokens)
    needed = sum(sum(nbytes(t) for t in p) + vocab_bytes for p in plans.values())
    if vision:
        needed += sum(ckpt.nbytes(n) for n in ckpt.names() if not is_text_tensor(n)) * 2
    out_dir.mkdir(parents=True, exist_ok=True)
    free = _free_bytes(out_dir)
    if needed > free:
        raise InsufficientDisk(
            f"not enough disk space in {out_dir}: the export needs about {needed / 1e9:.2f} GB "
            f"({needed} bytes), {free / 1e9:.2f} GB are free: free space or choose another -o"
        )
    return needed


def _general_info(
    name: str, hp: TextHParams, variant: Variant | None, *, tools: bool
) -> GeneralInfo:
    """The GGUFs' ``general.*`` identity (and the tool-calling template for ``--tools``)."""
    from .._chat import TOOLS_CHAT_TEMPLATE
    from ._writer import GeneralInfo

    return GeneralInfo(
        name=name,
        size_label=hp.size.params if hp.size else None,
        finetune=name if variant is None or name != variant.name else None,
        base_repo=variant.hf_repo if variant else None,
        chat_template=TOOLS_CHAT_TEMPLATE if tools else None,
    )


def _mixed_plan(
    base: list[PlannedTensor], quant: str, hp: TextHParams, *, qat: bool, imatrix: bool
) -> list[PlannedTensor]:
    """``base`` (the float file llama.cpp would read) with llama.cpp's type per tensor for ``quant``;
    each quantized tensor is encoded from that float file's values (``via``)."""
    from .._quants import TensorSpec, tensor_types

    types = tensor_types(
        [TensorSpec(t.name, t.shape, t.qtype) for t in base],
        quant,
        n_layers=hp.num_layers,
        n_head=hp.num_heads,
        n_head_kv=hp.num_kv_heads,
        qat=qat,
        imatrix=imatrix,
    )
    return [
        t if ty == t.qtype else replace(t, qtype=ty, via=t.qtype)
        for t, ty in zip(base, types, strict=True)
    ]


def _imatrix_for(data: dict[str, list[float]], base: list[PlannedTensor]) -> dict[str, np.ndarray]:
    """Per GGUF tensor, the imatrix weights llama-quantize would use (a wrong size is refused,
    except for token_embd, which llama.cpp ignores then)."""
    import numpy as np

    out: dict[str, np.ndarray] = {}
    for t in base:
        vals = data.get(t.name)
        if vals is None or len(t.shape) < 2:
            continue
        if len(vals) != t.shape[-1]:
            if t.name == "token_embd.weight":
                continue
            raise UsageError(
                f"the imatrix has {len(vals)} values for {t.name}, whose rows are {t.shape[-1]} "
                "wide: it was computed for another model"
            )
        out[t.name] = np.asarray(vals, dtype=np.float32)
    return out


def write_outputs(plan: ExportPlan, *, progress: bool = True) -> ExportResult:
    """Write everything ``plan`` decided: the GGUFs, the projector, the Modelfile, the manifest,
    SHA256SUMS and the model card (each file atomically); returns what was written."""
    models = _write_ggufs(plan, progress=progress)
    quality = _measure(plan, progress=progress)
    mmproj = _write_projector(plan, progress=progress) if plan.vision is not None else None
    fused = (
        _write_fused(plan, models[0], progress=progress)
        if plan.vision is not None and plan.ollama_format == "fused"
        else None
    )
    files = ExportResult(
        name=plan.name,
        output_dir=plan.out_dir,
        variant=plan.variant.name if plan.variant else None,
        models=models,
        mmproj=mmproj,
        fused=fused,
        chosen_quants=plan.chosen,
        notes=plan.notes,
    )
    return _write_records(plan, files, quality)


def _gguf_path(plan: ExportPlan, quant: str) -> Path:
    """``<name>-<QUANT>.gguf``; the eval's temporary reference is a hidden ``.eval.gguf``."""
    if quant == plan.eval_reference:
        return plan.out_dir / f".{plan.name}-{quant}.eval.gguf"
    return plan.out_dir / f"{plan.name}-{quant}.gguf"


def _write_ggufs(plan: ExportPlan, *, progress: bool) -> list[ExportedFile]:
    """Every text GGUF in one pass over the checkpoint; the files kept (not the eval's
    temporary reference), hashed."""
    from ._writer import Output, write_text_ggufs

    outputs = [
        Output(
            _gguf_path(plan, q),
            q,
            plan.tensors[q],
            plan.imatrix_by_tensor if q in plan.llama_types else None,
        )
        for q in plan.outputs
    ]
    _log(progress, f"writing {', '.join(plan.outputs)} in one pass over {Path(plan.source).name}")
    t0 = time.perf_counter()
    written = write_text_ggufs(
        plan.ckpt, outputs, hp=plan.hp, vocab=plan.vocab, info=plan.info, progress=progress
    )
    secs = time.perf_counter() - t0
    _log(progress, f"wrote {', '.join(o.path.name for o in outputs)} in {secs:.1f} s")
    return [
        ExportedFile(o.path, o.quant, size, digest, round(secs, 3))
        for o, (size, digest) in zip(outputs, written, strict=True)
        if o.quant != plan.eval_reference
    ]


def _measure(plan: ExportPlan, *, progress: bool) -> _Quality | None:
    """``--eval`` over the GGUFs just written (None without it); the temporary reference is
    removed afterwards, whatever happens."""
    if not plan.evaluate:
        return None
    try:
        return _evaluate(plan, [_gguf_path(plan, q) for q in plan.outputs], progress=progress)
    finally:
        if plan.eval_reference is not None:
            _gguf_path(plan, plan.eval_reference).unlink(missing_ok=True)


def _hashed(path: Path, quant: str, t0: float) -> ExportedFile:
    """``path`` as written since ``t0`` (the seconds include hashing it)."""
    from ._manifest import sha256

    return ExportedFile(
        path, quant, path.stat().st_size, sha256(path), round(time.perf_counter() - t0, 3)
    )


def _write_projector(plan: ExportPlan, *, progress: bool) -> ExportedFile:
    """The vision projector, ``mmproj-<name>-<TYPE>.gguf``, paired with the text GGUFs."""
    from ._mmproj import mmproj_filename, write_mmproj

    t0 = time.perf_counter()
    path = write_mmproj(
        plan.ckpt,
        plan.out_dir / mmproj_filename(plan.name, plan.mmproj_type),  # type: ignore[arg-type]
        dtype=plan.mmproj_type,  # type: ignore[arg-type]
        name=plan.name,
        basename=plan.info.basename,
        progress=progress,
        plan=plan.vision,
    )
    return _hashed(path, plan.mmproj_type.upper(), t0)


def _write_fused(plan: ExportPlan, model: ExportedFile, *, progress: bool) -> ExportedFile:
    """``--ollama-format fused``: ``model`` with the vision tower in one Ollama GGUF."""
    from ._fused import write_fused

    t0 = time.perf_counter()
    path = write_fused(
        model.path,
        plan.ckpt,
        plan.out_dir / f"{plan.name}-{model.quant}-ollama.gguf",
        progress=progress,
        plan=plan.vision,
    )
    return _hashed(path, model.quant, t0)


def _entry(x: ExportedFile) -> dict[str, Any]:
    """A written file as export.json and the model card list it (path relative to the folder)."""
    return {"path": x.path.name, "quant": x.quant, "size": x.size, "sha256": x.sha256}


def _int4_entry(plan: ExportPlan) -> dict[str, Any] | None:
    """export.json's ``int4``: what an int4 checkpoint became (None for a float one)."""
    i4 = plan.int4
    if i4 is None:
        return None
    from ._tensors import text_name

    written = "Q4_0" in plan.outputs
    gguf_names = {t.source: t.name for t in plan.tensors.get("Q4_0", [])}
    return {
        "format": i4.format,
        "repacked_losslessly": [gguf_names[n] for n in i4.repacked if written and n in gguf_names],
        "int4_tensors": len(i4.repacked),
        "text_int4_tensors": sum(1 for n in i4.repacked if text_name(n) is not None),
        "embedding_type": plan.embedding_type if written else None,
        "dequantized_exactly_for": [q for q in plan.chosen if q != "Q4_0"],
    }


def _write_records(plan: ExportPlan, files: ExportResult, quality: _Quality | None) -> ExportResult:
    """The Modelfile, export.json, SHA256SUMS and README.md (the model card) for ``files``;
    returns ``files`` with their paths."""
    from . import _manifest

    out_dir, models, mm, fused = plan.out_dir, files.models, files.mmproj, files.fused
    source = Path(plan.source)
    if fused is not None:
        modelfile = _manifest.write_modelfile_for(out_dir, fused.path, tools=plan.tools)
    else:
        modelfile = _manifest.write_modelfile_for(
            out_dir, models[0].path, mm.path if mm else None, tools=plan.tools
        )
    model_entries = [_entry(m) for m in models]
    int4_entry = _int4_entry(plan)
    manifest = _manifest.write_manifest(
        out_dir,
        {
            "name": plan.name,
            "source": str(source.resolve()) if source.exists() else plan.source,
            "base": plan.base if plan.base else None,
            "variant": files.variant,
            "architecture": plan.ckpt.architecture,
            "models": model_entries,
            "mmproj": _entry(mm) if mm else None,
            "fused": _entry(fused) if fused else None,
            "modelfile": modelfile.name,
            "tools": plan.tools,
            "int4": int4_entry,
            "eval": quality[0] if quality else None,
            "gemma3_pack": __version__,
        },
    )
    sums = _manifest.write_sums(
        out_dir,
        [
            (f.path.name, f.sha256)
            for f in [*models, *([mm] if mm else []), *([fused] if fused else [])]
        ],
    )
    readme = out_dir / "README.md"
    write_text_atomic(
        readme,
        _manifest.render_card(
            name=plan.name,
            source=plan.source,
            variant=files.variant,
            models=model_entries,
            mmproj=_entry(mm) if mm else None,
            int4=int4_entry,
            quality=quality[1] if quality else None,
            tools=plan.tools,
            fits_on=_manifest.fits_on_section(
                [m.path for m in models],
                mm.path if mm else None,
                context_length=plan.hp.context_length,
            ),
        ),
    )
    return replace(files, modelfile=modelfile, manifest=manifest, readme=readme, sums=sums)


def _evaluate(plan: ExportPlan, paths: list[Path], *, progress: bool) -> _Quality:
    """``export --eval``: each output against the float one; (export.json entry, card section)."""
    from ._eval import evaluate, markdown_table, write_chart

    floats = [p for p, q in zip(paths, plan.outputs, strict=True) if q in ("F32", "BF16", "F16")]
    ref = next((p for p, q in zip(paths, plan.outputs, strict=True) if q == "BF16"), floats[0])
    _log(progress, f"measuring quality against {ref.name} (KL divergence, top-1, perplexity)")
    report = evaluate(
        [ref, *[p for p in paths if p not in floats]], reference=ref, progress=progress
    )
    entry = report.to_dict()
    temporary = plan.eval_reference is not None
    for r in (entry["reference"], *entry["results"]):
        r["path"] = None if temporary and r is entry["reference"] else Path(r["path"]).name
    chart = write_chart(report, plan.out_dir / "quality.png")
    entry["chart"] = chart.name if chart else None
    section = (
        f"## Quality\n\nNext-token distributions on gemma3-pack's built-in text ({report.positions} "
        f"positions, {report.chunks} windows of {report.n_ctx} tokens, llama.cpp on CPU) against "
        f"{'a temporary ' + ref_quant(plan) if temporary else '`' + ref.name + '`'}: mean KL "
        "divergence (lower is closer), how often the most likely token is the same, and "
        "perplexity. Measured by `gemma3-pack export --eval`.\n\n"
        + markdown_table(report, names=True)
        + (f"\n![KLD against size]({chart.name})\n" if chart else "")
    )
    return entry, section


def ref_quant(plan: ExportPlan) -> str:
    return str(plan.eval_reference or plan.intermediate_type)
