"""Stream a checkpoint into a text GGUF: header, metadata, tensor infos, then data tensor by tensor.

Memory stays flat in model size: tensors are read from the mmap and converted in row chunks by
:class:`~._tensors.ChunkedTensor`. The file is written under a temporary name beside the output
and renamed into place only when complete, so a killed export never leaves a final-named file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._chat import OFFICIAL_TEMPLATE
from .._family import EOT_TOKEN_ID, GGUF_SAMPLING
from .._files import atomic_path
from ._config import TextHParams
from ._reader import CheckpointReader
from ._tensors import ChunkedTensor, PlannedTensor, nbytes
from ._vocab import Vocab

__all__ = ["FILE_TYPES", "GeneralInfo", "write_text_gguf"]

# LlamaFileType for the types written in Python
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "BF16": 32}


@dataclass(frozen=True)
class GeneralInfo:
    """``general.*`` identity of the export (what model cards and hubs show)."""

    name: str
    basename: str = "gemma-3"
    size_label: str | None = None
    finetune: str | None = None
    base_repo: str | None = None  # e.g. google/gemma-3-270m-it
    license: str = "gemma"


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
    w.add_file_type(FILE_TYPES[outtype])
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
    if special is not None:
        special.chat_template = None
        special.add_to_gguf(w, quiet=True)
    w.add_add_space_prefix(False)
    w.add_chat_template(template if template else OFFICIAL_TEMPLATE)
    w.add_eot_token_id(EOT_TOKEN_ID)


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
    """Write the GGUF atomically to ``out``; returns its size in bytes."""
    import gguf
    from tqdm import tqdm

    from .._gguf._encode import gguf_writer

    out.parent.mkdir(parents=True, exist_ok=True)
    total = sum(nbytes(t) for t in plan)
    with atomic_path(out) as tmp:
        w = gguf_writer(tmp, arch="gemma3")
        _add_metadata(w, hp, vocab, info, outtype)
        for t in plan:
            import numpy as np

            w.add_tensor_info(
                t.name,
                t.shape,
                np.dtype(np.float32),
                nbytes(t),
                raw_dtype=gguf.GGMLQuantizationType[t.qtype],
            )
        w.write_header_to_file(tmp)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=out.name, disable=not progress, leave=False
        ) as bar:
            for t in plan:
                bar.set_postfix_str(t.name, refresh=False)
                w.write_tensor_data(ChunkedTensor(ckpt, t, on_bytes=bar.update))
        w.close()
    return out.stat().st_size
