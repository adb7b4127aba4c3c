"""The converter process of ``export --format litertlm``: runs litert-torch's HF exporter.

Run as a script by :mod:`._litertlm` (``python _litertlm_convert.py SPEC.json``), in its own process,
so that torch, transformers and litert-torch are never imported into the caller's process. It
needs only the ``[litert]`` extra (not gemma3_pack itself): stdlib here, litert-torch below.

Two defects of litert-torch 0.10.0 are worked around before it is imported:

* it imports ``tensorflow.lite.python.schema_py_generated`` (the TFLite flatbuffer schema) without
  declaring tensorflow; the same generated module ships in ai-edge-litert, which it does declare,
  so a namespace stub serves that one module;
* its transformers patch swaps ``use_kernel_forward_from_hub`` for a plain decorator, after which
  transformers 5.x's ``@use_kernelized_func(apply_rotary_pos_emb)`` on Gemma 3's attention raises
  (the function no longer carries the hub marker): ``use_kernelized_func`` becomes the identity,
  which is what it is without hub kernels.

The spec (JSON) holds ``model`` (a text-only Gemma3ForCausalLM folder), ``output_dir``, ``recipe``
(a quantization recipe name or ``"none"``), ``cache_length`` and ``prefill_length``. The last line
on stdout is a JSON object with ``path`` (the .litertlm written inside ``output_dir``).
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path


def _patch_imports() -> None:
    from ai_edge_litert import schema_py_generated

    for name in ("tensorflow", "tensorflow.lite", "tensorflow.lite.python"):
        if name in sys.modules:
            continue
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []
        sys.modules[name] = mod
    sys.modules["tensorflow.lite.python"].schema_py_generated = schema_py_generated  # type: ignore[attr-defined]
    sys.modules["tensorflow.lite.python.schema_py_generated"] = schema_py_generated

    import transformers.integrations as integrations

    integrations.use_kernelized_func = lambda *args, **kwargs: lambda obj: obj


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text("utf-8"))
    _patch_imports()
    from litert_torch.generative.export_hf import export as export_hf

    out = Path(spec["output_dir"])
    export_hf.export(
        model=spec["model"],
        output_dir=str(out),
        quantization_recipe=spec["recipe"],
        cache_length=int(spec["cache_length"]),
        prefill_lengths=[int(spec["prefill_length"])],
        export_vision_encoder=False,
        export_audio_encoder=False,
    )
    found = sorted(out.glob("*.litertlm"))
    if len(found) != 1:
        print(f"litert-torch wrote {len(found)} .litertlm files, not one", file=sys.stderr)
        return 3
    print(json.dumps({"path": str(found[0])}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
