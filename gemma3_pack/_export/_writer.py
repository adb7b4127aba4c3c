"""Stream a checkpoint into text GGUFs: header, metadata, tensor infos, then data tensor by tensor.

Memory stays flat in model size: tensors are read from the mmap and converted in row chunks by
:class:`~._tensors.ChunkedTensor`, and every requested type is written from the same read (one
pass, several files side by side, no intermediate file). Files are written under temporary names
beside the outputs and renamed into place only when complete, so a killed export never leaves a
final-named file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._chat import OFFICIAL_TEMPLATE
from .._family import EOT_TOKEN_ID, GGUF_SAMPLING
from .._files import HashingWriter, atomic_path
from .._progress import progress_bar
from .._quants import QUANTS
from ._config import TextHParams
from ._readers._reader import CheckpointReader
from ._tensors import FLOAT_TYPES, ChunkedTensor, PlannedTensor, Sink, nbytes
from ._vocab import Vocab

__all__ = ["GeneralInfo", "Output", "write_text_gguf", "write_text_ggufs"]


@dataclass(frozen=True)
class GeneralInfo:
    """``general.*`` identity of the export (what model cards and hubs show)."""

    name: str
    basename: str = "gemma-3"
    size_label: str | None = None
    finetune: str | None = None
    base_repo: str | None = None  # e.g. google/gemma-3-270m-it
    license: str = "gemma"
    chat_template: str | None = None  # instead of the tokenizer's (export --tools)


def _add_metadata(w: Any, hp: TextHParams, vocab: Vocab, info: GeneralInfo, outtype: str) -> None:
    import gguf

    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(info.name)
    if info.finetune:
        w.add_finetune(info.finetune)
    w.add_basename(info.basename)
    if info.size_label:
        w.add_size_label(info.size_label)
    w.add_license(info.license)
    w.add_quantized_by("gemma3-pack")
    if info.base_repo:
        w.add_base_model_count(1)
        w.add_base_model_name(0, info.base_repo.split("/")[-1])
        w.add_base_model_organization(0, "Google")
        w.add_base_model_repo_url(0, f"https://huggingface.co/{info.base_repo}")
    w.add_tags(["gemma3", "gemma", "google", "gemma3-pack"])
    for key, (value, kind) in GGUF_SAMPLING.items():
        (w.add_int32 if kind == "i32" else w.add_float32)(key, value)
    # gemma3.* hyper-parameters (TextModel + Gemma3Model.set_gguf_parameters)
    w.add_context_length(hp.context_length)
    w.add_embedding_length(hp.hidden_size)
    w.add_block_count(hp.num_layers)
    w.add_feed_forward_length(hp.intermediate_size)
    w.add_head_count(hp.num_heads)
    w.add_layer_norm_rms_eps(hp.rms_norm_eps)
    w.add_key_length(hp.head_dim)
    w.add_value_length(hp.head_dim)
    w.add_file_type(QUANTS[outtype].ftype)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_rope_freq_base_swa(hp.rope_local_theta)
    if hp.sliding_window:
        w.add_sliding_window(hp.sliding_window)
    w.add_head_count_kv(hp.num_kv_heads)
    if hp.rope_scaling_factor:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(hp.rope_scaling_factor)
    if hp.final_logit_softcapping:
        w.add_final_logit_softcapping(hp.final_logit_softcapping)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # tokenizer
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(vocab.tokens)
    w.add_token_scores(vocab.scores)
    w.add_token_types(vocab.types)
    special = vocab.special
    template = special.chat_template if special is not None else None
    if special is not None:  # the template is written below, once, whatever the vocab says
        special.chat_template = None
        try:
            special.add_to_gguf(w, quiet=True)
        finally:
            special.chat_template = template
    w.add_add_space_prefix(False)
    w.add_chat_template(info.chat_template or template or OFFICIAL_TEMPLATE)
    w.add_eot_token_id(EOT_TOKEN_ID)


@dataclass(frozen=True)
class Output:
    """One GGUF of a multi-output pass: its path, file type (``-q`` name) and planned tensors."""

    path: Path
    quant: str
    plan: list[PlannedTensor]
    imatrix: dict[str, Any] | None = None  # GGUF tensor name -> float32 weights (llama types)


def write_text_ggufs(
    ckpt: CheckpointReader,
    outputs: list[Output],
    *,
    hp: TextHParams,
    vocab: Vocab,
    info: GeneralInfo,
    progress: bool = False,
) -> list[tuple[int, str]]:
    """Write every output in one pass over the checkpoint; returns their (size, sha256).

    The plans hold the same tensors in the same order (only types differ): each source tensor is
    read once, chunk by chunk, and each chunk is encoded into every output. Quantized types go
    through ggml on a small thread pool; bf16 tensors stored as BF16 are copied by the kernel. Each
    file is hashed while it is written (no second read), written under a temporary name and
    renamed into place only when all are complete.
    """
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    import gguf
    import numpy as np

    from .._gguf._encode import gguf_writer, write_through
    from ._ggml import threads

    first = outputs[0].plan
    for o in outputs[1:]:
        if [t.name for t in o.plan] != [t.name for t in first]:
            raise ValueError("the outputs of one pass must plan the same tensors")
    total = sum(nbytes(t) for t in first)  # the first output's bytes (the bar's unit)
    quantized = any(t.qtype not in FLOAT_TYPES for o in outputs for t in o.plan)
    with contextlib.ExitStack() as stack:
        writers, hashers = [], []
        for o in outputs:
            o.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(atomic_path(o.path))
            hashers.append(HashingWriter(tmp))
            stack.callback(hashers[-1].abort)  # runs first: the file is closed before its removal
            w = gguf_writer(tmp, arch="gemma3")
            _add_metadata(w, hp, vocab, info, o.quant)
            for t in o.plan:
                w.add_tensor_info(
                    t.name,
                    t.shape,
                    np.dtype(np.float32),
                    nbytes(t),
                    raw_dtype=gguf.GGMLQuantizationType[t.qtype],
                )
            write_through(w, hashers[-1])
            w.write_header_to_file(tmp)
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            writers.append(w)
        pool = (
            stack.enter_context(ThreadPoolExecutor(threads(), thread_name_prefix="ggml"))
            if quantized and threads() > 1
            else None
        )
        names = " ".join(o.quant for o in outputs)
        desc = names if len(outputs) > 1 else outputs[0].path.name
        bar = stack.enter_context(progress_bar(total, desc, progress=progress))
        for i, t in enumerate(first):
            sinks = [
                Sink(
                    o.plan[i],
                    fh=None if k == 0 else writers[k].fout[0],
                    imatrix=(o.imatrix or {}).get(t.name),
                )
                for k, o in enumerate(outputs)
            ]
            for w, sink in zip(writers[1:], sinks[1:], strict=True):
                _begin_tensor(w, sink.t)
            bar.set_postfix_str(t.name, refresh=False)
            writers[0].write_tensor_data(
                ChunkedTensor(ckpt, t, on_bytes=bar.update, sinks=sinks, pool=pool)
            )
            for w, sink in zip(writers[1:], sinks[1:], strict=True):
                w.write_padding(w.fout[0], sink.written)
        for w in writers:
            w.close()
    return [(o.path.stat().st_size, h.hexdigest()) for o, h in zip(outputs, hashers, strict=True)]


def _begin_tensor(w: Any, t: PlannedTensor) -> None:
    """What ``GGUFWriter.write_tensor_data`` does before the bytes: take the info, align."""
    fout = w.fout[0]
    ti = w.tensors[0].pop(next(iter(w.tensors[0])))
    if ti.nbytes != nbytes(t):
        raise ValueError(f"{t.name}: planned {nbytes(t)} bytes, the header says {ti.nbytes}")
    w.write_padding(fout, fout.tell())
    w.state = type(w.state).WEIGHTS


def write_text_gguf(
    ckpt: CheckpointReader,
    plan: list[PlannedTensor],
    out: Path,
    *,
    hp: TextHParams,
    vocab: Vocab,
    info: GeneralInfo,
    outtype: str,
    progress: bool = False,
) -> int:
    """Write one GGUF atomically to ``out``; returns its size in bytes."""
    return write_text_ggufs(
        ckpt, [Output(out, outtype, plan)], hp=hp, vocab=vocab, info=info, progress=progress
    )[0][0]
