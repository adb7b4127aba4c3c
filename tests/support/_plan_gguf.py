"""A Gemma 3 GGUF header with any key overridden (block counts, head counts, strings, arrays): the input of\nplan's hostile-header cases."""

from __future__ import annotations

from pathlib import Path


def _hostile_gguf(path: Path, **overrides: object) -> Path:
    import gguf
    import numpy as np

    keys: dict[str, object] = {
        "block_count": 26,
        "embedding_length": 1152,
        "feed_forward_length": 6912,
        "attention.head_count": 4,
        "attention.head_count_kv": 1,
        "attention.key_length": 256,
        "context_length": 32768,
        "attention.sliding_window": 512,
    }
    keys.update({k.replace("__", "."): v for k, v in overrides.items()})
    w = gguf.GGUFWriter(str(path), "gemma3")
    for k, v in keys.items():
        name = f"gemma3.{k}"
        if isinstance(v, bool):
            w.add_bool(name, v)
        elif isinstance(v, int):
            (w.add_uint64 if v >= 2**32 else w.add_uint32)(name, v)
        elif isinstance(v, float):
            w.add_float32(name, v)
        elif isinstance(v, str):
            w.add_string(name, v)
        else:
            w.add_array(name, v)
    w.add_tensor("token_embd.weight", np.zeros((8, 1152), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
