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
    from ._export import ExportOptions, ExportResult, export
    from ._export._eval import EvalReport, evaluate
    from ._export._fused import write_fused
    from ._export._litertlm import export_litertlm
    from ._export._manifest import ExportManifest, read_export
    from ._export._mmproj import write_mmproj
    from ._gguf import GGUFReport, PatchResult, inspect_gguf, patch_gguf
    from ._gguf._inspect import is_mmproj_name
    from ._gguf._layout import fuse_pair, split_fused
    from ._lint._doctor import DoctorReport, doctor_gguf
    from ._lint._litertlm_doctor import LiteRTLMReport, doctor_litertlm
    from ._memory._plan import MemoryPlan, fit_memory, plan_memory
    from ._memory._plan_gpu import GpuPlan, fit_gpus, plan_gpu
    from ._memory._plan_rpc import plan_rpc
    from ._memory._plan_vllm import plan_vllm
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
    from ._sdk._client import AsyncClient, ChatReply, Client, Conversation

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
    "EvalReport",
    "ExportManifest",
    "ExportOptions",
    "ExportResult",
    "GGUFReport",
    "Gemma3PackError",
    "GpuPlan",
    "InputError",
    "InputNotFound",
    "InsufficientDisk",
    "LiteRTLMReport",
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
    "doctor_litertlm",
    "evaluate",
    "export",
    "export_litertlm",
    "fit_gpus",
    "fit_memory",
    "fuse_pair",
    "get_variant",
    "inspect_gguf",
    "is_mmproj_name",
    "parse_modelfile",
    "patch_gguf",
    "plan_gpu",
    "plan_memory",
    "plan_rpc",
    "plan_vllm",
    "read_export",
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
    "Client": "._sdk._client",
    "AsyncClient": "._sdk._client",
    "ChatReply": "._sdk._client",
    "Conversation": "._sdk._client",
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
    "ExportOptions": "._export",
    "ExportResult": "._export",
    "export": "._export",
    "write_mmproj": "._export._mmproj",
    "write_fused": "._export._fused",
    "EvalReport": "._export._eval",
    "evaluate": "._export._eval",
    "export_litertlm": "._export._litertlm",
    "ExportManifest": "._export._manifest",
    "read_export": "._export._manifest",
    "is_mmproj_name": "._gguf._inspect",
    "LiteRTLMReport": "._lint._litertlm_doctor",
    "doctor_litertlm": "._lint._litertlm_doctor",
    "MemoryPlan": "._memory._plan",
    "DoctorReport": "._lint._doctor",
    "doctor_gguf": "._lint._doctor",
    "fuse_pair": "._gguf._layout",
    "split_fused": "._gguf._layout",
    "fit_memory": "._memory._plan",
    "plan_memory": "._memory._plan",
    "GpuPlan": "._memory._plan_gpu",
    "fit_gpus": "._memory._plan_gpu",
    "plan_gpu": "._memory._plan_gpu",
    "plan_rpc": "._memory._plan_rpc",
    "plan_vllm": "._memory._plan_vllm",
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
