"""Run a .litertlm with Google's LiteRT-LM runtime (``litert-lm-api``) and print what it did, as JSON.

Run by tests/test_litertlm.py with the Python of the ``[litert]`` stack (its own process: the
runtime is a native library). For each prompt it opens a conversation (so the chat template,
start and stop tokens in the file's own metadata are what LiteRT-LM uses, as AI Edge Gallery
does), decodes greedily (top_k 1) and reports the reply, its tokens, and the runtime's view of
the start and stop tokens. With ``score`` it also asks the runtime for the log-likelihood of
given replies (``run_text_scoring``) after the same rendered prompt.

    python _litertlm_runner.py SPEC.json    # {"model", "prompts", "max_tokens", "score"?}
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    import litert_lm

    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    engine = litert_lm.Engine(spec["model"], backend=litert_lm.Backend.CPU(thread_count=2))
    out: dict = {
        "bos": engine.bos_token_id,
        "stop": engine.eos_token_ids,
        "replies": [],
        "scores": [],
    }
    greedy = litert_lm.SamplerConfig(top_k=1, top_p=1.0, temperature=0.0)
    for prompt in spec["prompts"]:
        conv = engine.create_conversation(sampler_config=greedy)
        msg = conv.send_message(prompt, max_output_tokens=int(spec["max_tokens"]))
        content = msg["content"] if isinstance(msg, dict) else msg.content
        text = "".join(
            c["text"] if isinstance(c, dict) else getattr(c, "text", "")
            for c in (content if isinstance(content, list) else [content])
        )
        out["replies"].append({"text": text, "tokens": engine.tokenize(text)})
        conv.close()
    for prompt, reply in spec.get("score") or []:
        session = engine.create_session(apply_prompt_template=False)
        session.run_prefill([prompt])
        res = session.run_text_scoring([reply], store_token_lengths=True)
        out["scores"].append({"score": res.scores[0], "tokens": (res.token_lengths or [None])[0]})
        session.close()
    engine.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
