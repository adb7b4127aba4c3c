"""gemma3-pack: run and ship Google's Gemma 3 on Ollama and llama.cpp.

The front door. Names resolve lazily so ``import gemma3_pack`` stays fast: numpy, gguf, ollama and
llama_cpp are imported only when the name that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    CheckpointError,
    ContextOverflow,
    Gemma3PackError,
    InputError,
    InputNotFound,
    InsufficientDisk,
    MissingDependency,
    ModelfileError,
    ModelNotFound,
    NotGemma3,
    NotGGUF,
    NotSupportedByServer,
    OllamaError,
    OllamaNotRunning,
    OllamaResponseError,
    OutputError,
    QuantizeError,
    ServerError,
    ServerNotRunning,
    ServerResponseError,
    ServerTimeout,
    UsageError,
    VisionNotSupported,
)
from ._family import SAMPLING, SIZES, VARIANTS, Size, Variant, get_variant
from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from ._chat import OFFICIAL_TEMPLATE, OLLAMA_TEMPLATE, render_chat, render_ollama
    from ._client import AsyncClient, ChatReply, Client, Conversation
    from ._doctor import DoctorReport, doctor_gguf
    from ._export import ExportResult, export
    from ._export._fused import write_fused
    from ._export._mmproj import write_mmproj
    from ._gguf import GGUFReport, PatchResult, inspect_gguf, patch_gguf
    from ._gguf._layout import fuse_pair, split_fused
    from ._modelfile import (
        ModelfileSpec,
        check_modelfile,
        create_kwargs,
        parse_modelfile,
        render_modelfile,
        spec_for_gguf,
        spec_for_variant,
        write_modelfile,
    )
    from ._plan import MemoryPlan, fit_memory, plan_memory
    from ._plan_gpu import GpuPlan, fit_gpus, plan_gpu
    from ._plan_rpc import plan_rpc
    from ._plan_vllm import plan_vllm

__all__ = [
    "OFFICIAL_TEMPLATE",
    "OLLAMA_TEMPLATE",
    "SAMPLING",
    "SIZES",
    "VARIANTS",
    "AsyncClient",
    "ChatReply",
    "CheckpointError",
    "Client",
    "ContextOverflow",
    "Conversation",
    "DoctorReport",
    "ExportResult",
    "GGUFReport",
    "Gemma3PackError",
    "GpuPlan",
    "InputError",
    "InputNotFound",
    "InsufficientDisk",
    "MemoryPlan",
    "MissingDependency",
    "ModelNotFound",
    "ModelfileError",
    "ModelfileSpec",
    "NotGGUF",
    "NotGemma3",
    "NotSupportedByServer",
    "OllamaError",
    "OllamaNotRunning",
    "OllamaResponseError",
    "OutputError",
    "PatchResult",
    "QuantizeError",
    "ServerError",
    "ServerNotRunning",
    "ServerResponseError",
    "ServerTimeout",
    "Size",
    "UsageError",
    "Variant",
    "VisionNotSupported",
    "__version__",
    "check_modelfile",
    "create_kwargs",
    "doctor_gguf",
    "export",
    "fit_gpus",
    "fit_memory",
    "fuse_pair",
    "get_variant",
    "inspect_gguf",
    "parse_modelfile",
    "patch_gguf",
    "plan_gpu",
    "plan_memory",
    "plan_rpc",
    "plan_vllm",
    "render_chat",
    "render_modelfile",
    "render_ollama",
    "spec_for_gguf",
    "spec_for_variant",
    "split_fused",
    "write_fused",
    "write_mmproj",
    "write_modelfile",
]

_LAZY = {
    "OFFICIAL_TEMPLATE": "._chat",
    "OLLAMA_TEMPLATE": "._chat",
    "render_chat": "._chat",
    "Client": "._client",
    "AsyncClient": "._client",
    "ChatReply": "._client",
    "Conversation": "._client",
    "GGUFReport": "._gguf",
    "PatchResult": "._gguf",
    "inspect_gguf": "._gguf",
    "patch_gguf": "._gguf",
    "ModelfileSpec": "._modelfile",
    "check_modelfile": "._modelfile",
    "parse_modelfile": "._modelfile",
    "render_modelfile": "._modelfile",
    "render_ollama": "._chat",
    "create_kwargs": "._modelfile",
    "spec_for_gguf": "._modelfile",
    "spec_for_variant": "._modelfile",
    "write_modelfile": "._modelfile",
    "ExportResult": "._export",
    "export": "._export",
    "write_mmproj": "._export._mmproj",
    "write_fused": "._export._fused",
    "MemoryPlan": "._plan",
    "DoctorReport": "._doctor",
    "doctor_gguf": "._doctor",
    "fuse_pair": "._gguf._layout",
    "split_fused": "._gguf._layout",
    "fit_memory": "._plan",
    "plan_memory": "._plan",
    "GpuPlan": "._plan_gpu",
    "fit_gpus": "._plan_gpu",
    "plan_gpu": "._plan_gpu",
    "plan_rpc": "._plan_rpc",
    "plan_vllm": "._plan_vllm",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gemma3_pack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
