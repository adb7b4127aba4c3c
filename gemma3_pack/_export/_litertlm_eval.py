"""The drift measurement of ``export --format litertlm``: KL divergence and top-1 against float.

Run as a script by :mod:`._litertlm`, with the ``[litert]`` Python (stdlib, numpy and
ai-edge-litert only), like :mod:`._litertlm_convert`. It runs each bundle's prefill/decode TFLite
model (the ``TFLiteModel`` section, given by byte range) with LiteRT's interpreter, teacher-forced:
the same tokens one at a time through the ``decode`` signature, the KV cache carried from step to
step, a causal additive mask. At every position it keeps the next-token distribution, and compares
each quantized bundle with the float one as the GGUF quants are compared with their float file:
mean KL(float || quant) in nats and how often the top-1 token is the same.

Spec (JSON): ``{"reference": "float", "models": {recipe: [path, begin, size]}, "tokens": [...]}``.
The last stdout line is ``{recipe: {"kl": mean, "kl_max": max, "top1": fraction, "n": positions}}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _log_softmax(x: Any) -> Any:
    import numpy as np

    x = x.astype(np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def _logits(path: str, begin: int, size: int, tokens: list[int]) -> list[Any]:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    with open(path, "rb") as fh:
        fh.seek(begin)
        model = fh.read(size)
    runner = Interpreter(model_content=model, num_threads=2).get_signature_runner("decode")
    inputs = runner.get_input_details()
    cache = {
        k: np.zeros(v["shape"], dtype=v["dtype"]) for k, v in inputs.items() if k.startswith("kv_")
    }
    cache_len = int(inputs["mask"]["shape"][-1])
    if len(tokens) > cache_len:
        tokens = tokens[:cache_len]
    neg = np.float32(np.finfo(np.float32).min / 2)
    out = []
    for i, tok in enumerate(tokens):
        mask = np.full(inputs["mask"]["shape"], neg, dtype=inputs["mask"]["dtype"])
        mask[..., : i + 1] = 0
        res = runner(
            tokens=np.array([[tok]], dtype=np.int32),
            input_pos=np.array([i], dtype=np.int32),
            mask=mask,
            **cache,
        )
        for k in cache:
            cache[k] = res[k]
        out.append(_log_softmax(res["logits"].reshape(-1)))
    return out


def main(argv: list[str]) -> int:
    import numpy as np

    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    ref_name = spec["reference"]
    tokens = spec["tokens"]
    path, begin, size = spec["models"][ref_name]
    ref = _logits(path, begin, size, tokens)
    result: dict[str, Any] = {}
    for name, where in spec["models"].items():
        if name == ref_name:
            continue
        got = _logits(where[0], where[1], where[2], tokens)
        kls = [float(np.sum(np.exp(p) * (p - q))) for p, q in zip(ref, got, strict=True)]
        top1 = [int(np.argmax(p) == np.argmax(q)) for p, q in zip(ref, got, strict=True)]
        result[name] = {
            "kl": round(sum(kls) / len(kls), 6),
            "kl_max": round(max(kls), 6),
            "top1": round(sum(top1) / len(top1), 4),
            "n": len(kls),
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
