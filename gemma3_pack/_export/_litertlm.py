"""``export --format litertlm``: a Gemma 3 checkpoint -> a ``.litertlm`` for LiteRT-LM and AI Edge Gallery.

The same inputs as the GGUF export (a checkpoint folder, an HF repo id, a PEFT LoRA merged on read,
``--tokenizer-from``) are read by the same readers and written once more as a plain text-only
``Gemma3ForCausalLM`` folder (weights in their source dtype, LoRA deltas merged as the GGUF export
merges them), in a hidden work folder inside the output folder. litert-torch's Hugging Face
exporter converts that folder in a separate process (:mod:`._litertlm_convert`), so torch,
transformers and litert-torch are never imported here; its ``.litertlm`` is moved into place
atomically as ``<name>-<recipe>.litertlm``, read back (:mod:`gemma3_pack._lint._litertlm_read`) and
checked (start token ``<bos>``, ``<end_of_turn>`` among the stop tokens, a chat template, the
tokenizer) before it is listed in ``export.json``, ``SHA256SUMS`` and the model card.

Recipes (``-q``): ``float`` (no quantization), ``int8`` (litert-torch's default,
``dynamic_wi8_afp32``: int8 weights, float activations) and ``int4`` (``dynamic_wi4_afp32``).
Sizes: 270M, 1B and 4B text (litert-torch 0.10.0's Gemma 3 path is text-only); 12B/27B and a
vision tower (without ``text_only``) are refused before anything is written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._errors import CheckpointError, MissingDependency, OutputError, QuantizeError, UsageError
from .._files import write_text_atomic

__all__ = [
    "LITERT_PINS",
    "RECIPES",
    "LiteRTLMExport",
    "LiteRTLMPlan",
    "export_litertlm",
    "litert_python",
    "plan_litertlm",
    "split_formats",
    "write_litertlm",
]

# -q name -> litert-torch quantization recipe
RECIPES = {"float": "none", "int8": "dynamic_wi8_afp32", "int4": "dynamic_wi4_afp32"}
DEFAULT_RECIPES = ("int8",)
SUPPORTED_SIZES = ("270m", "1b", "4b")
# The stack the converter was verified with (the ``[litert]`` extra pins the same).
LITERT_PINS = {
    "litert-torch": "0.10.0",
    "litert-lm-api": "0.18.1",
    "ai-edge-litert": "2.3.0",
    "ai-edge-quantizer": "0.10.0",
    "litert-converter": "0.5.0",
    "litert-lm-builder": "0.18.1",
    "torch": "2.13.0",
    "transformers": "5.25.0",
}
_EXTRA_MODULES = ("litert_torch", "ai_edge_litert", "litert_lm", "transformers", "torch")
INSTALL_HINT = "pip install 'gemma3-pack[litert]'"
_TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
)
_NESTED = ("text_config", "vision_config", "quantization_config", "auto_map")


@dataclass(frozen=True)
class LiteRTLMFile:
    """One ``.litertlm`` written by :func:`export_litertlm`."""

    path: Path
    recipe: str
    size: int
    sha256: str
    seconds: float
    drift: dict[str, float] | None = None  # vs the float bundle: kl (nats), kl_max, top1, n


@dataclass
class LiteRTLMExport:
    """What :func:`export_litertlm` wrote (``to_dict()`` is part of ``export --json``)."""

    name: str
    output_dir: Path
    files: list[LiteRTLMFile]
    cache_length: int
    prefill_length: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "litertlm": [
                {
                    "path": str(f.path),
                    "recipe": f.recipe,
                    "size": f.size,
                    "sha256": f.sha256,
                    "seconds": f.seconds,
                    "drift": f.drift,
                }
                for f in self.files
            ],
            "cache_length": self.cache_length,
            "prefill_length": self.prefill_length,
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        lines = [f"LiteRT-LM -> {self.output_dir}"]
        for f in self.files:
            lines.append(
                f"{f.path.name}  {f.recipe:<5} {f.size / 1e6:>8,.1f} MB  {f.seconds:>6.1f}s"
            )
        lines += [f"note: {n}" for n in self.notes]
        if self.files:
            lines.append(f"check: gemma3-pack doctor {self.files[0].path}")
        return "\n".join(lines)


def split_formats(
    formats: str, quants: str | None
) -> tuple[list[str], str | None, list[str] | None]:
    """``--format`` and ``-q`` of the CLI -> (formats, GGUF types, LiteRT-LM recipes).

    With both formats, ``-q`` mixes the two kinds (``Q4_0,int8``): the recipe names go to the
    ``.litertlm``, the rest to the GGUFs (each side keeps its default when it gets none)."""
    fmts = [f.strip().lower() for f in formats.split(",") if f.strip()]
    bad = [f for f in fmts if f not in ("gguf", "litertlm")]
    if bad or not fmts:
        raise UsageError(f"unknown --format {formats!r}: choose gguf, litertlm or gguf,litertlm")
    fmts = [f for f in ("gguf", "litertlm") if f in fmts]
    if quants is None:
        return fmts, None, None
    items = [q.strip() for q in quants.split(",") if q.strip()]
    lite = [q for q in items if q.lower() in RECIPES]
    gguf = [q for q in items if q.lower() not in RECIPES]
    if fmts == ["litertlm"]:
        return fmts, None, parse_recipes(items)
    if fmts == ["gguf"]:
        if lite:
            raise UsageError(
                f"-q {lite[0]} is a LiteRT-LM type: add --format litertlm (or gguf,litertlm)"
            )
        return fmts, quants, None
    return fmts, ",".join(gguf) or None, parse_recipes(lite) if lite else None


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def litert_python() -> str:
    """The Python that runs the converter: ``GEMMA3_PACK_LITERT_PYTHON`` or this one, with the
    ``[litert]`` extra installed; :class:`MissingDependency` (before anything is written) if not."""
    other = os.environ.get("GEMMA3_PACK_LITERT_PYTHON")
    if not other:
        missing = [m for m in _EXTRA_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependency(
                f"--format litertlm needs the [litert] extra ({', '.join(missing)} not installed): "
                f"{INSTALL_HINT}"
            )
        return sys.executable
    probe = (
        "import importlib.util as u, sys; "
        f"sys.exit(any(u.find_spec(m) is None for m in {_EXTRA_MODULES!r}))"
    )
    try:
        ok = subprocess.run([other, "-c", probe], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        raise MissingDependency(
            f"GEMMA3_PACK_LITERT_PYTHON={other} is not a Python with the [litert] extra: "
            f"{other} -m {INSTALL_HINT}"
        )
    return other


def parse_recipes(quants: list[str] | tuple[str, ...] | str | None) -> list[str]:
    if quants is None:
        return list(DEFAULT_RECIPES)
    items = quants.split(",") if isinstance(quants, str) else list(quants)
    out: list[str] = []
    for q in (i.strip().lower() for i in items):
        if q not in RECIPES:
            raise UsageError(
                f"unknown LiteRT-LM type {q!r} for --format litertlm: choose "
                f"{', '.join(RECIPES)} (GGUF types such as Q4_K_M go with --format gguf)"
            )
        if q not in out:
            out.append(q)
    if not out:
        raise UsageError("-q is empty: choose float, int8 or int4")
    return out


def _hf_text_name(name: str) -> str | None:
    """``model.*`` name of a text tensor in a Gemma3ForCausalLM folder; None for lm_head (tied)."""
    for prefix in ("model.language_model.", "language_model.model.", "language_model.", "model."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    if name.startswith("lm_head."):
        return None
    return "model." + name


def _write_safetensors(ckpt: Any, names: dict[str, str], dst: Path) -> None:
    """A safetensors file of ``names`` (source -> new name), streamed tensor by tensor.

    Tensors keep their stored dtype and bytes (a LoRA reader hands out its merged weights in the
    base's dtype, as the GGUF export reads them)."""
    dtypes = {"BF16": "BF16", "F16": "F16", "F32": "F32"}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    order = sorted(names, key=lambda n: names[n])
    for src in order:
        n = ckpt.nbytes(src) if not hasattr(ckpt, "merged_names") else ckpt.raw(src).nbytes
        header[names[src]] = {
            "dtype": dtypes[ckpt.dtype(src)],
            "shape": list(ckpt.shape(src)),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(dst, "wb") as fh:
        fh.write(len(blob).to_bytes(8, "little"))
        fh.write(blob)
        for src in order:
            fh.write(memoryview(ckpt.raw(src)).cast("B"))
            ckpt.release(src)


def _text_config(ckpt: Any, hp: Any) -> dict[str, Any]:
    """config.json of the text-only folder: the checkpoint's text settings, every size fact
    written out (Google's 4B config leaves most of them to transformers' defaults)."""
    text = {k: v for k, v in ckpt.text_config.items() if k not in _NESTED}
    size = hp.size
    text.update(
        architectures=["Gemma3ForCausalLM"],
        model_type="gemma3_text",
        hidden_size=hp.hidden_size,
        intermediate_size=hp.intermediate_size,
        num_hidden_layers=hp.num_layers,
        num_attention_heads=hp.num_heads,
        num_key_value_heads=hp.num_kv_heads,
        head_dim=hp.head_dim,
        rms_norm_eps=hp.rms_norm_eps,
        vocab_size=hp.vocab_size,
        max_position_embeddings=hp.context_length,
        tie_word_embeddings=True,
    )
    text.setdefault("query_pre_attn_scalar", size.query_pre_attn_scalar if size else 256)
    if hp.sliding_window is not None:
        text.setdefault("sliding_window", hp.sliding_window)
    if "rope_parameters" not in text:
        text.setdefault("rope_theta", hp.rope_theta)
        text.setdefault("rope_local_base_freq", hp.rope_local_theta)
        if hp.rope_scaling_factor and not text.get("rope_scaling"):
            text["rope_scaling"] = {"factor": hp.rope_scaling_factor, "rope_type": "linear"}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if key in ckpt.config and key not in text:
            text[key] = ckpt.config[key]
    return text


def _stage_checkpoint(ckpt: Any, hp: Any, tok_dir: Path, dst: Path) -> None:
    """The text-only Gemma3ForCausalLM folder litert-torch reads."""
    from ._tensors import is_text_tensor

    names = {}
    for n in ckpt.names():
        if is_text_tensor(n):
            hf = _hf_text_name(n)
            if hf is not None:
                names[n] = hf
    _write_safetensors(ckpt, names, dst / "model.safetensors")
    (dst / "config.json").write_text(json.dumps(_text_config(ckpt, hp), indent=2), "utf-8")
    gen = Path(ckpt.root) / "generation_config.json"
    if gen.is_file():
        shutil.copyfile(gen, dst / "generation_config.json")
    for fname in _TOKENIZER_FILES:
        src = tok_dir / fname
        if not src.is_file() and tok_dir != Path(ckpt.root):
            src = Path(ckpt.root) / fname
        if src.is_file():
            shutil.copyfile(src, dst / fname)


def _convert(
    python: str, spec: dict[str, Any], work: Path, *, progress: bool, timeout: float | None
) -> Path:
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec), "utf-8")
    log_path = work / "convert.log"
    script = Path(__file__).with_name("_litertlm_convert.py")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [python, str(script), str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=work,
        )
        last = stage = ""
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout if timeout else None
        for line in proc.stdout:
            log.write(line)
            stripped = line.strip()
            if stripped:
                last = stripped
            # litert-torch's progress: "(01:35) [START] Export > ..." then the step on the next line
            if stage and stripped and progress:
                print(f"  litert-torch {stage} {stripped[-120:]}", file=sys.stderr, flush=True)
                stage = ""
            if stripped.startswith("(") and ("[START]" in line or "[ DONE]" in line):
                stage = stripped.split(" ", 1)[0]
            if deadline and time.monotonic() > deadline:
                proc.kill()
                break
        rc = proc.wait()
    if rc != 0:
        raise QuantizeError(
            f"litert-torch could not convert the checkpoint (exit {rc}): {last[-300:]}"
        )
    try:
        return Path(json.loads(last)["path"])
    except (ValueError, KeyError, TypeError):
        raise QuantizeError(
            f"litert-torch's converter ended without a result: {last[-300:]}"
        ) from None


# The drift text: a chat turn and its answer, as the GGUF quants are measured on real text.
_EVAL_TURNS = (
    ("user", "Explain in a few sentences why the sky is blue, and why sunsets are red."),
    (
        "model",
        "The sky looks blue because sunlight is scattered by the molecules of the air. Blue "
        "light has a shorter wavelength than red light, so it is scattered much more strongly "
        "and reaches our eyes from every direction of the sky. At sunset the light crosses far "
        "more air on its way to us: most of the blue is scattered away before it arrives, and "
        "the reds and oranges that are left colour the sky.",
    ),
)


def eval_tokens(tok_dir: Path, limit: int) -> list[int]:
    """``<bos>`` + the drift text in Gemma's chat format (turn markers as their ids)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    ids = [2]
    for role, text in _EVAL_TURNS:
        ids += [105, *sp.encode(f"{role}\n{text}"), 106, *sp.encode("\n")]
    return ids[:limit]


def _measure_drift(
    python: str, files: list[LiteRTLMFile], tokens: list[int], work: Path
) -> dict[str, dict[str, float]]:
    """KL and top-1 of every quantized bundle against the float one (:mod:`._litertlm_eval`)."""
    from .._lint._litertlm_read import TFLITE_MODEL, read_litertlm

    models = {}
    for f in files:
        section = read_litertlm(f.path).of_type(TFLITE_MODEL)[0]
        models[f.recipe] = [str(f.path), section.begin, section.size]
    spec = work / "eval.json"
    spec.write_text(json.dumps({"reference": "float", "models": models, "tokens": tokens}), "utf-8")
    script = Path(__file__).with_name("_litertlm_eval.py")
    proc = subprocess.run(
        [python, str(script), str(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise QuantizeError(f"measuring the quantized bundles against float failed: {tail[-300:]}")
    result: dict[str, dict[str, float]] = json.loads(lines[-1])
    return result


def _check_written(path: Path) -> list[str]:
    """Errors in the written bundle's metadata (empty when LiteRT-LM and the Gallery will load it)."""
    from .._lint._litertlm_doctor import doctor_litertlm

    report = doctor_litertlm(path)
    return [f"{f.code}: {f.message}" for f in report.findings if f.level == "error"]


def plan_litertlm(
    source: str | os.PathLike[str],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    quants: list[str] | tuple[str, ...] | str | None = None,
    name: str | None = None,
    base: str | None = None,
    tokenizer_from: str | None = None,
    text_only: bool = False,
    cache_length: int = 4096,
    prefill_length: int = 256,
    force: bool = False,
    progress: bool = True,
    timeout: float | None = None,
) -> LiteRTLMPlan:
    """Every check of :func:`export_litertlm` (options, extra, size, vision, output folder, disk),
    before anything is written; the plan :func:`write_litertlm` carries out."""
    from .._family import SIZES
    from ._config import match_variant, text_hparams
    from ._guard import check_output_folder
    from ._readers._lora import is_lora, lora_base, open_lora
    from ._readers._open import open_checkpoint
    from ._readers._source import fetch
    from ._tensors import is_text_tensor
    from ._vocab import load_vocab

    recipes = parse_recipes(quants)
    if not 16 <= cache_length <= 131072:
        raise UsageError(f"--litert-cache {cache_length} is out of range: choose 16 to 131072")
    if not 1 <= prefill_length <= cache_length:
        raise UsageError(
            f"--litert-prefill {prefill_length} must be between 1 and the cache ({cache_length})"
        )
    python = litert_python()
    src = str(source)
    root = fetch(src, what="checkpoint")
    if is_lora(root):
        base_ref = lora_base(root, base)
        ckpt: Any = open_lora(root, fetch(base_ref, what="LoRA base model"))
        _log(progress, f"merging LoRA {root.name} onto {base_ref}")
    else:
        if base:
            raise UsageError("--base is for LoRA adapters; this is a full checkpoint")
        ckpt = open_checkpoint(root)
    if getattr(ckpt, "format", None) is not None and hasattr(ckpt, "repacked"):
        raise CheckpointError(
            "--format litertlm reads float checkpoints; this one is int4 (QAT): export the "
            "unquantized QAT checkpoint, or use --format gguf (its Q4_0 keeps the int4 weights)"
        )
    tok_dir = fetch(tokenizer_from, what="tokenizer") if tokenizer_from else Path(ckpt.root)
    text = ckpt.text_config
    vocab = load_vocab(tok_dir, int(text.get("vocab_size") or SIZES["4b"].vocab_size))
    hp = text_hparams(text, len(vocab.tokens))
    if any(not is_text_tensor(n) for n in ckpt.names()) and not text_only:
        raise UsageError(
            "this checkpoint has a vision tower, which litert-torch 0.10.0 cannot export for "
            "Gemma 3: pass --text-only to export the language model alone (or --format gguf "
            "for vision)"
        )
    if hp.size is None or hp.size.name not in SUPPORTED_SIZES:
        what = f"Gemma 3 {hp.size.params}" if hp.size else f"a {hp.num_layers}-layer model"
        raise UsageError(
            f"--format litertlm supports Gemma 3 270M, 1B and 4B (text); this is {what}: "
            "export it with --format gguf (llama.cpp runs every size on phones that fit it)"
        )
    variant = match_variant(hp, qat=False, instruct=True)
    name = name or Path(src.rstrip("/\\")).name.replace(" ", "-") or "gemma3"
    if "/" in name or "\\" in name or name.startswith("."):
        raise UsageError(
            f"--name {name!r} must be a plain file-name stem (no slashes, no leading dot)"
        )
    out_dir = Path(output_dir) if output_dir is not None else Path.cwd() / f"{name}-gguf"
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder: choose another -o")
    for src_dir in {root, Path(ckpt.root)}:
        check_output_folder(out_dir, name=name, source=src_dir, force=force)
    targets = {r: out_dir / f"{name}-{r}.litertlm" for r in recipes}
    listed = _listed_before(out_dir)
    for target in targets.values():
        if target.exists() and target.name not in listed and not force:
            raise OutputError(
                f"{target} already exists and was not written by gemma3-pack: pass --force to "
                "replace it, or choose an empty -o folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    need = ckpt_bytes = sum(ckpt.nbytes(n) for n in ckpt.names() if is_text_tensor(n))
    need += ckpt_bytes * (4 if "float" in recipes else 2)  # float32 graph + bundle
    free = shutil.disk_usage(out_dir).free
    if need > free:
        from .._errors import InsufficientDisk

        raise InsufficientDisk(
            f"not enough disk space in {out_dir}: the LiteRT-LM export needs about "
            f"{need / 1e9:.1f} GB, {free / 1e9:.1f} GB are free: free space or choose another -o"
        )
    notes: list[str] = []
    if text_only and any(not is_text_tensor(n) for n in ckpt.names()):
        notes.append("--text-only: the vision tower is not in the .litertlm (text chat only)")

    return LiteRTLMPlan(
        source=src,
        ckpt=ckpt,
        hp=hp,
        tok_dir=tok_dir,
        python=python,
        name=name,
        out_dir=out_dir,
        targets=targets,
        variant=variant.name if variant else None,
        cache_length=cache_length,
        prefill_length=prefill_length,
        notes=notes,
        timeout=timeout,
    )


@dataclass
class LiteRTLMPlan:
    """What :func:`plan_litertlm` decided; :func:`write_litertlm` writes it."""

    source: str
    ckpt: Any
    hp: Any
    tok_dir: Path
    python: str
    name: str
    out_dir: Path
    targets: dict[str, Path]  # recipe -> final path
    variant: str | None
    cache_length: int
    prefill_length: int
    notes: list[str]
    timeout: float | None


def export_litertlm(
    source: str | os.PathLike[str], *, progress: bool = True, **options: Any
) -> LiteRTLMExport:
    """Export a Gemma 3 checkpoint, HF repo id or PEFT LoRA adapter to ``.litertlm`` files.

    One ``<name>-<recipe>.litertlm`` per recipe (``quants``: ``float``, ``int8``, ``int4``;
    default int8) in ``output_dir`` (default ``./<name>-gguf``, beside the GGUFs), added to its
    ``export.json``, ``SHA256SUMS`` and ``README.md``. ``cache_length`` is the KV cache (the most
    tokens a conversation holds), ``prefill_length`` the prompt chunk compiled into the model;
    ``name``, ``base``, ``tokenizer_from``, ``force`` as for :func:`gemma3_pack.export`,
    ``text_only`` leaves a 4B's vision tower out. Needs the ``[litert]`` extra (or
    ``GEMMA3_PACK_LITERT_PYTHON`` naming a Python that has it). ``plan_litertlm`` takes the same
    options and checks everything before anything is written.
    """
    return write_litertlm(plan_litertlm(source, progress=progress, **options), progress=progress)


def write_litertlm(plan: LiteRTLMPlan, *, progress: bool = True) -> LiteRTLMExport:
    """Convert, move into place, check and record every bundle of ``plan``."""
    from . import _manifest
    from ._guard import OWN_FILES

    ckpt, hp, tok_dir, python, name, out_dir = (
        plan.ckpt,
        plan.hp,
        plan.tok_dir,
        plan.python,
        plan.name,
        plan.out_dir,
    )
    targets, src = plan.targets, plan.source
    cache_length, prefill_length, timeout = plan.cache_length, plan.prefill_length, plan.timeout
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[LiteRTLMFile] = []
    work = Path(tempfile.mkdtemp(prefix=f".{name}-litertlm.", dir=out_dir))
    try:
        staged = work / "checkpoint"
        staged.mkdir()
        _log(progress, f"staging the text model of {Path(src).name} for litert-torch")
        _stage_checkpoint(ckpt, hp, tok_dir, staged)
        for recipe in targets:
            _log(
                progress,
                f"converting to {targets[recipe].name} ({recipe}, cache {cache_length}, prefill "
                f"{prefill_length}) with litert-torch {LITERT_PINS['litert-torch']}: minutes",
            )
            t0 = time.perf_counter()
            out = work / recipe
            made = _convert(
                python,
                {
                    "model": str(staged),
                    "output_dir": str(out),
                    "recipe": RECIPES[recipe],
                    "cache_length": cache_length,
                    "prefill_length": prefill_length,
                },
                work,
                progress=progress,
                timeout=timeout,
            )
            problems = _check_written(made)
            if problems:
                raise QuantizeError(
                    f"litert-torch wrote a .litertlm that LiteRT-LM would misuse: {problems[0]}"
                )
            os.replace(made, targets[recipe])
            secs = time.perf_counter() - t0
            files.append(
                LiteRTLMFile(
                    targets[recipe],
                    recipe,
                    targets[recipe].stat().st_size,
                    _manifest.sha256(targets[recipe]),
                    round(secs, 3),
                )
            )
            _log(progress, f"wrote {targets[recipe].name} in {secs:.0f} s")
        if "float" in targets and len(files) > 1:
            n = min(cache_length, 160)
            _log(progress, f"measuring {', '.join(targets)} against float ({n} tokens)")
            drift = _measure_drift(python, files, eval_tokens(tok_dir, n), work)
            files = [replace(f, drift=drift.get(f.recipe)) for f in files]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = LiteRTLMExport(name, out_dir, files, cache_length, prefill_length, list(plan.notes))
    _record(result, source=src, variant=plan.variant, own=OWN_FILES)
    return result


def _listed_before(out_dir: Path) -> set[str]:
    """``.litertlm`` names an earlier gemma3-pack export listed in ``out_dir/export.json``."""
    doc = _read_manifest(out_dir)
    return {str(e.get("path")) for e in doc.get("litertlm") or [] if isinstance(e, dict)}


def _read_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "export.json"
    try:
        if path.is_file() and path.stat().st_size < 16 << 20:
            doc = json.loads(path.read_text("utf-8"))
            if isinstance(doc, dict) and "gemma3_pack" in doc:
                return doc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        pass
    return {}


CARD_BEGIN = "<!-- litertlm -->"
CARD_END = "<!-- /litertlm -->"


def card_section(result: LiteRTLMExport) -> str:
    def drift(f: LiteRTLMFile) -> str:
        if f.recipe == "float":
            return "reference | 100 %"
        if not f.drift:
            return "not measured (export -q float too) | "
        return f"{f.drift['kl']:.4f} | {100 * f.drift['top1']:.1f} %"

    rows = "\n".join(
        f"| `{f.path.name}` | {f.recipe} | {f.size / 1e6:,.0f} MB | {drift(f)} |"
        for f in result.files
    )
    first = result.files[0].path.name if result.files else "model.litertlm"
    return (
        f"{CARD_BEGIN}\n## LiteRT-LM (AI Edge Gallery, Android/iOS)\n\n"
        "| file | weights | size | KL vs float (nats) | top-1 = float |\n|---|---|---|---|---|\n"
        f"{rows}\n\n"
        "KL and top-1: the quantized bundle against the float one, token by token over a chat "
        "turn, both run by LiteRT's interpreter (as the GGUF quants are measured).\n\n"
        f"KV cache {result.cache_length} tokens, prefill chunk {result.prefill_length}. Chat "
        "template, `<bos>` and the `<end_of_turn>` stop token are in the file's metadata "
        "(checked after writing). Load it in AI Edge Gallery (add a local model) or with "
        "LiteRT-LM's Python API:\n\n"
        "```\npip install litert-lm-api==0.18.1\n"
        f"python -c \"import litert_lm; e = litert_lm.Engine('{first}'); "
        "print(e.create_conversation().send_message('Hi'))\"\n"
        f"```\n{CARD_END}\n"
    )


def _record(
    result: LiteRTLMExport, *, source: str, variant: str | None, own: tuple[str, ...]
) -> None:
    """Add the bundles to export.json, SHA256SUMS and README.md (kept: what a GGUF export wrote)."""
    from .._version import __version__
    from . import _manifest

    del own
    out_dir = result.output_dir
    doc = _read_manifest(out_dir)
    entries = [
        {
            "path": f.path.name,
            "recipe": f.recipe,
            "size": f.size,
            "sha256": f.sha256,
            **({"drift_vs_float": f.drift} if f.drift else {}),
        }
        for f in result.files
    ]
    kept = [
        e
        for e in doc.get("litertlm") or []
        if isinstance(e, dict) and e.get("path") not in {x["path"] for x in entries}
    ]
    if doc:
        doc.pop("format", None)
        doc.pop("created", None)
        doc["litertlm"] = kept + entries
        doc["litertlm_settings"] = {
            "cache_length": result.cache_length,
            "prefill_length": result.prefill_length,
            "litert_torch": LITERT_PINS["litert-torch"],
        }
    else:
        doc = {
            "name": result.name,
            "source": source if not Path(source).exists() else str(Path(source).resolve()),
            "variant": variant,
            "models": [],
            "litertlm": entries,
            "litertlm_settings": {
                "cache_length": result.cache_length,
                "prefill_length": result.prefill_length,
                "litert_torch": LITERT_PINS["litert-torch"],
            },
            "gemma3_pack": __version__,
        }
    _manifest.write_manifest(out_dir, doc)
    sums_path = out_dir / "SHA256SUMS"
    lines: list[str] = []
    if sums_path.is_file():
        names = {e["path"] for e in entries}
        lines = [
            ln
            for ln in sums_path.read_text("utf-8").splitlines()
            if ln.strip() and ln.split("  ", 1)[-1] not in names
        ]
    lines += [f"{e['sha256']}  {e['path']}" for e in entries]
    write_text_atomic(sums_path, "\n".join(lines) + "\n")
    readme = out_dir / "README.md"
    section = card_section(
        LiteRTLMExport(
            result.name,
            out_dir,
            [*_kept_files(out_dir, kept), *result.files],
            result.cache_length,
            result.prefill_length,
        )
    )
    if readme.is_file() and (doc.get("models") or CARD_BEGIN in readme.read_text("utf-8")):
        text = readme.read_text("utf-8")
        if CARD_BEGIN in text and CARD_END in text:
            head, rest = text.split(CARD_BEGIN, 1)
            text = head + section + rest.split(CARD_END, 1)[1].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        text = f"# {result.name}\n\nGemma 3 exported by gemma3-pack from `{source}`.\n\n" + section
    write_text_atomic(readme, text)


def _kept_files(out_dir: Path, kept: list[dict[str, Any]]) -> list[LiteRTLMFile]:
    return [
        LiteRTLMFile(
            out_dir / str(e["path"]),
            str(e.get("recipe")),
            int(e.get("size") or 0),
            str(e.get("sha256")),
            0,
            e.get("drift_vs_float"),
        )
        for e in kept
        if (out_dir / str(e["path"])).is_file()
    ]
