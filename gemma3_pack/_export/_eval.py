"""How much each quantized GGUF loses: KL divergence and top-1 agreement against a reference.

The protocol is ``llama-perplexity --kl-divergence``'s, so the numbers compare with llama.cpp's own:
a fixed built-in text (``data/eval.txt``: prose, code, a chat, JSON, four languages) is tokenized
by the reference model with BOS, cut into ``chunks`` windows of ``n_ctx`` tokens (each window's
first token replaced by BOS), every window is decoded from an empty cache, and the next-token
distributions of its second half (positions ``n_ctx/2 .. n_ctx-2``) are compared with the
reference's: mean KL(reference || candidate), top-1 agreement (argmax equal), and each file's
perplexity on the same tokens. The reference's log-probabilities are kept in a temporary file (one
float32 row per position), so memory stays at one model and one window of logits.

Models run on the CPU through llama-cpp-python (the ``[quantize]`` extra) with weight repacking
off (``use_extra_bufts``): results do not depend on the CPU's extra kernels.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .._errors import InputNotFound, MissingDependency, NotGGUF, UsageError
from .._inputs import regular_input
from .._quants import QUANTS

__all__ = ["EvalReport", "EvalResult", "builtin_text", "evaluate", "markdown_table"]

N_CTX = 512
CHUNKS = 2
TEXT_NAME = "eval.txt"
_ROWS = 32  # positions converted to log-probabilities at once


@dataclass(frozen=True)
class EvalResult:
    """One file's numbers (the reference's own row has kld 0 and top1 1)."""

    path: Path
    quant: str
    size: int
    bpw: float  # file bits per model weight
    kld: float  # mean KL(reference || this) over the positions, nats
    kld_max: float
    top1: float  # fraction of positions whose most likely token is the reference's
    ppl: float  # perplexity of the built-in text
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass(frozen=True)
class EvalReport:
    """What :func:`evaluate` measured; ``to_dict()`` is the ``--json`` output."""

    reference: EvalResult
    results: list[EvalResult]
    n_ctx: int
    chunks: int
    positions: int
    text: str  # "built-in" or the text file's path
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference.to_dict(),
            "results": [r.to_dict() for r in self.results],
            "n_ctx": self.n_ctx,
            "chunks": self.chunks,
            "positions": self.positions,
            "text": self.text,
        }

    def to_text(self) -> str:
        """What ``gemma3-pack eval`` prints: the windows compared, then the table, lowest KLD
        first."""
        return (
            f"{self.positions} positions ({self.chunks} x {self.n_ctx} tokens, "
            f"{self.text} text) against {self.reference.path.name}:\n"
            + markdown_table(self).removesuffix("\n")
        )


def builtin_text() -> str:
    return resources.files("gemma3_pack").joinpath("data").joinpath(TEXT_NAME).read_text("utf-8")


def _file_info(path: Path) -> tuple[str, int]:
    """(quant name from general.file_type, number of weights) from the GGUF header."""
    from .._gguf._reader import open_gguf

    with open_gguf(path) as h:
        ftype = h.get("general.file_type")
        n = 0
        for t in h.tensors:
            k = 1
            for d in t.shape:
                k *= d
            n += k
    names = {q.ftype: q.name for q in QUANTS.values()}
    quant = names.get(ftype, f"file type {ftype}") if isinstance(ftype, int) else "unknown"
    return quant, n


class _Model:
    """A GGUF loaded by llama.cpp for windows of ``n_ctx`` tokens (CPU, no repacking)."""

    def __init__(self, path: Path, n_ctx: int, threads: int) -> None:
        import llama_cpp as lc

        from ._quantize import native_stderr_captured

        self.lc = lc
        mp = lc.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_extra_bufts = False
        with native_stderr_captured():
            self.model = lc.llama_model_load_from_file(str(path).encode(), mp)
            if not self.model:
                raise UsageError(f"llama.cpp could not load {path}: is it a Gemma 3 text GGUF?")
            cp = lc.llama_context_default_params()
            cp.n_ctx = n_ctx
            cp.n_batch = n_ctx
            cp.n_ubatch = min(512, n_ctx)
            cp.n_seq_max = 1
            cp.n_threads = cp.n_threads_batch = threads
            self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise UsageError(f"llama.cpp could not create a context for {path}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.n_ctx = n_ctx
        self.batch = lc.llama_batch_init(n_ctx, 0, 1)

    def tokenize(self, text: str) -> list[int]:
        lc = self.lc
        raw = text.encode("utf-8")
        buf = (lc.llama_token * (len(raw) + 8))()
        n = lc.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), True, False)
        if n < 0:
            raise UsageError("the evaluation text does not tokenize")
        return list(buf[:n])

    def bos(self) -> int | None:
        lc = self.lc
        return (
            int(lc.llama_vocab_bos(self.vocab)) if lc.llama_vocab_get_add_bos(self.vocab) else None
        )

    def window_logits(self, tokens: list[int], first: int) -> Any:
        """Logits of positions ``first .. n_ctx-1`` (float32, one row per position)."""
        import numpy as np

        lc, b = self.lc, self.batch
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = i >= first
        b.n_tokens = len(tokens)
        if lc.llama_decode(self.ctx, b) != 0:
            raise UsageError("llama.cpp failed to decode the evaluation text")
        n_out = len(tokens) - first
        ptr = lc.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab))

    def close(self) -> None:
        from ._quantize import native_stderr_captured

        lc = self.lc
        with native_stderr_captured():
            lc.llama_batch_free(self.batch)
            lc.llama_free(self.ctx)
            lc.llama_model_free(self.model)


def _log_softmax(x: Any) -> Any:
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def _windows(tokens: list[int], n_ctx: int, chunks: int, bos: int | None) -> list[list[int]]:
    out = []
    for c in range(chunks):
        w = list(tokens[c * n_ctx : (c + 1) * n_ctx])
        if bos is not None:
            w[0] = bos
        out.append(w)
    return out


def evaluate(
    files: list[str | os.PathLike[str]],
    *,
    reference: str | os.PathLike[str] | None = None,
    n_ctx: int = N_CTX,
    chunks: int = CHUNKS,
    text: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> EvalReport:
    """KL divergence, top-1 agreement, perplexity, size and bits per weight of each GGUF in
    ``files`` against ``reference`` (default: the file with the most bits per weight, i.e. the
    BF16/F16/F32 one). ``text`` replaces the built-in text (a UTF-8 file)."""
    import numpy as np

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "evaluating GGUFs runs them with llama.cpp: pip install 'gemma3-pack[quantize]'"
        ) from None
    if n_ctx < 16 or n_ctx % 2:
        raise UsageError(f"--ctx {n_ctx}: give an even window of at least 16 tokens")
    if chunks < 1:
        raise UsageError(f"--chunks {chunks}: give at least 1")
    paths = [Path(f) for f in files]
    if reference is not None:
        paths = [Path(reference), *[p for p in paths if p != Path(reference)]]
    if not paths:
        raise UsageError("no GGUF to evaluate: give the files (the reference among them)")
    for p in paths:
        if not p.exists():
            raise InputNotFound(f"{p} not found: give the path of a GGUF file")
        regular_input(p, "GGUF", error=NotGGUF)  # a FIFO would block, a device never ends
    info = {p: _file_info(p) for p in paths}
    if reference is None:  # the most bits per weight: the float file
        paths.sort(key=lambda p: -p.stat().st_size / max(1, info[p][1]))
    if text is not None:
        tp = Path(text)
        if not tp.exists():
            raise InputNotFound(f"{tp} not found: give a UTF-8 text file for --text")
        regular_input(tp, "--text")
        body = tp.read_text("utf-8", "replace")
    else:
        body = builtin_text()
    threads = threads or max(1, len(os.sched_getaffinity(0)))
    first = n_ctx // 2
    per = n_ctx - 1 - first  # positions compared per window (llama-perplexity's count)

    def log(msg: str) -> None:
        if progress:
            import sys

            print(msg, file=sys.stderr, flush=True)

    results: list[EvalResult] = []
    with tempfile.TemporaryDirectory(prefix="gemma3-pack-eval-") as tmp:
        ref_lp: Any = None
        windows: list[list[int]] = []
        for k, path in enumerate(paths):
            t0 = time.perf_counter()
            model = _Model(path, n_ctx, threads)
            try:
                if k == 0:
                    tokens = model.tokenize(body)
                    n_chunks = min(chunks, len(tokens) // n_ctx)
                    if n_chunks < 1:
                        raise UsageError(
                            f"the text has {len(tokens)} tokens, fewer than one window of "
                            f"{n_ctx}: use a longer --text or a smaller --ctx"
                        )
                    windows = _windows(tokens, n_ctx, n_chunks, model.bos())
                    ref_lp = np.lib.format.open_memmap(
                        Path(tmp) / "ref.npy",
                        mode="w+",
                        dtype=np.float32,
                        shape=(n_chunks * per, model.n_vocab),
                    )
                elif model.n_vocab != ref_lp.shape[1]:
                    raise UsageError(
                        f"{path.name} has {model.n_vocab} tokens, the reference "
                        f"{ref_lp.shape[1]}: not the same model"
                    )
                kld_sum = kld_max = nll = 0.0
                same = 0
                for c, w in enumerate(windows):
                    logits = model.window_logits(w, first)[:per]
                    targets = np.asarray(w[first + 1 : first + 1 + per])
                    for r in range(0, per, _ROWS):
                        lq = _log_softmax(logits[r : r + _ROWS])
                        rows = slice(c * per + r, c * per + r + lq.shape[0])
                        nll -= float(lq[np.arange(lq.shape[0]), targets[r : r + _ROWS]].sum())
                        if k == 0:
                            ref_lp[rows] = lq
                            same += lq.shape[0]
                            continue
                        lp = np.asarray(ref_lp[rows], dtype=np.float64)
                        kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
                        kld_sum += float(kl.sum())
                        kld_max = max(kld_max, float(kl.max()))
                        same += int((lp.argmax(axis=1) == lq.argmax(axis=1)).sum())
            finally:
                model.close()
            n = len(windows) * per
            quant, n_weights = info[path]
            size = path.stat().st_size
            res = EvalResult(
                path=path,
                quant=quant,
                size=size,
                bpw=round(size * 8 / max(1, n_weights), 4),
                kld=kld_sum / n,
                kld_max=kld_max,
                top1=same / n,
                ppl=math.exp(nll / n),
                seconds=round(time.perf_counter() - t0, 3),
            )
            log(
                f"{path.name}: KLD {res.kld:.6f}, top-1 {res.top1:.1%}, PPL {res.ppl:.3f}"
                f" ({res.seconds:.1f} s)"
            )
            results.append(res)
        del ref_lp
    return EvalReport(
        reference=results[0],
        results=results[1:],
        n_ctx=n_ctx,
        chunks=len(windows),
        positions=len(windows) * per,
        text="built-in" if text is None else str(text),
    )


def markdown_table(report: EvalReport, *, names: bool = True) -> str:
    """The report as a Markdown table, lowest KLD first (the model card's quality section)."""
    head = "| file | type | size | bits/weight | KLD vs reference | top-1 agreement | PPL |\n"
    head += "|---|---|---:|---:|---:|---:|---:|\n"
    rows = []
    for r in [report.reference, *sorted(report.results, key=lambda r: r.kld)]:
        ref = r is report.reference
        name = f"`{r.path.name}`" if names else ""
        rows.append(
            f"| {name} | {r.quant} | {r.size / 1e6:,.0f} MB | {r.bpw:.2f} | "
            f"{'reference' if ref else f'{r.kld:.5f}'} | {'-' if ref else f'{r.top1:.1%}'} | "
            f"{r.ppl:.3f} |"
        )
    return head + "\n".join(rows) + "\n"


def write_chart(report: EvalReport, path: Path) -> Path | None:
    """KLD against file size as a PNG, when matplotlib is installed; else None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from .._files import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r.size / 1e6 for r in report.results]
    ys = [r.kld for r in report.results]
    ax.scatter(xs, ys)
    for r, x, y in zip(report.results, xs, ys, strict=True):
        ax.annotate(r.quant, (x, y), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("file size (MB)")
    ax.set_ylabel(f"mean KLD vs {report.reference.quant} (nats)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
