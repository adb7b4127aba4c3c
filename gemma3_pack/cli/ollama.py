"""``gemma3-pack chat``, ``pull`` and ``create``: thin shells over :mod:`gemma3_pack._sdk._client`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .._errors import UsageError
from ._json import dumps
from .modelfile import budget_options, num_ctx_arg

_HOST_HELP = (
    "Ollama host [default: $OLLAMA_HOST or 127.0.0.1:11434], or an OpenAI-compatible URL "
    "ending in /v1 (llama-server, vLLM)."
)
_TIMEOUT_HELP = "Seconds to wait for the server between reads [default: 300; connect: 10]."


def _timeout(seconds: float | None) -> dict[str, object]:
    if seconds is None:
        return {}
    if not seconds > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {seconds}")
    import httpx

    return {"timeout": httpx.Timeout(seconds, connect=min(seconds, 10.0))}


@click.command()
@click.argument("words", nargs=-1, required=True, metavar="[MODEL] PROMPT")
@click.option(
    "-i",
    "--image",
    "images",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Attach an image (repeatable); the model must have vision (4B, 12B, 27B).",
)
@click.option("-s", "--system", default=None, help="System prompt.")
@click.option("--no-stream", is_flag=True, help="Print the whole answer at once.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print Ollama's full response as JSON (implies --no-stream).",
)
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a sampling option, e.g. -o temperature=0.2 (repeatable).",
)
@click.option("--host", default=None, help=_HOST_HELP)
@click.option("--timeout", type=float, default=None, help=_TIMEOUT_HELP)
def chat(
    words: tuple[str, ...],
    images: tuple[Path, ...],
    system: str | None,
    no_stream: bool,
    as_json: bool,
    options: tuple[str, ...],
    host: str | None,
    timeout: float | None,
) -> None:
    """Chat with a Gemma 3 model on Ollama, llama-server or vLLM.

    Sends the Gemma team's sampling settings (temperature 1, top_k 64, top_p 0.95, min_p 0,
    repeat_penalty 1) under any -o overrides, in the server's own spelling, and checks the model
    can see images before sending any. MODEL defaults to gemma3:4b on Ollama and to the served
    model on an OpenAI-compatible server (--host ending in /v1).

    \b
    Examples:
      gemma3-pack chat "Why is the sky blue?"
      gemma3-pack chat gemma3:1b "Write a haiku about GGUF" --no-stream
      gemma3-pack chat gemma3:4b "What is in this picture?" --image cat.png
      gemma3-pack chat my-gemma "Summarise" -s "Answer in French" --json | jq .message.content
      gemma3-pack chat "Why is the sky blue?" --host http://127.0.0.1:8080/v1 --timeout 60
    """
    from .._sdk._client import Client
    from .._sdk._transport import strip_controls

    if len(words) > 2:
        raise UsageError(f"expected [MODEL] PROMPT, got {len(words)} arguments: quote the prompt")
    model, prompt = (words[0], words[1]) if len(words) == 2 else (None, words[0])
    # A model's reply reaches a terminal without escape sequences; pipes get it verbatim.
    show = strip_controls if sys.stdout.isatty() else str
    parsed = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--option {item!r} is not KEY=VALUE (e.g. -o temperature=0.2)")
        parsed[key.strip()] = _json_or_text(value)
    client = Client(host, model=model, **_timeout(timeout))  # type: ignore[arg-type]
    if as_json or no_stream:
        reply = client.chat(prompt, images=list(images) or None, system=system, options=parsed)
        if as_json:
            click.echo(reply.model_dump_json(indent=2, exclude_none=True))
        else:
            click.echo(show(reply.message.content or ""))
        return
    for chunk in client.chat(
        prompt, images=list(images) or None, system=system, options=parsed, stream=True
    ):
        sys.stdout.write(show(chunk.message.content or ""))
        sys.stdout.flush()
    sys.stdout.write("\n")


def _json_or_text(value: str) -> object:
    """``0.2`` -> 0.2, ``["a","b"]`` -> a list, ``true`` -> True; anything else stays text."""
    try:
        return json.loads(value)
    except (ValueError, RecursionError):  # not JSON, a 4,300-digit int, nested too deeply
        return value


@click.command()
@click.argument("model")
@click.option("--host", default=None, help=_HOST_HELP)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
@click.option("--timeout", type=float, default=None, help=_TIMEOUT_HELP)
def pull(model: str, host: str | None, quiet: bool, as_json: bool, timeout: float | None) -> None:
    """Pull a Gemma 3 model into Ollama, with a progress bar per layer.

    \b
    Examples:
      gemma3-pack pull gemma3:4b
      gemma3-pack pull gemma3:12b-it-qat --quiet
      gemma3-pack pull hf.co/ggml-org/gemma-3-1b-it-GGUF:Q4_K_M
    """
    from .._sdk._client import Client

    client = Client(host, **_timeout(timeout))  # type: ignore[arg-type]
    result = client.pull(model, progress=not quiet and not as_json)
    if as_json:
        click.echo(dumps({"model": model, "status": result.status}))
    elif not quiet:
        click.echo(f"pulled {model}")


@click.command()
@click.argument("name")
@click.option(
    "--from",
    "export_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="An export folder written by `gemma3-pack export` (has export.json).",
)
@click.option(
    "--variant",
    default=None,
    help="A family variant or Ollama tag to build on, e.g. gemma3-4b-it or gemma3:4b.",
)
@click.option(
    "--quant",
    default=None,
    help="Which exported model to ship, e.g. Q8_0 [default: the export's first].",
)
@click.option(
    "--quantize",
    default=None,
    help="Let Ollama quantize an F16/BF16 export: q4_K_M, q4_K_S or q8_0.",
)
@click.option(
    "--packaging",
    type=click.Choice(["auto", "pair", "fused"]),
    default="auto",
    show_default=True,
    help="Vision packaging: pair = GGUF + mmproj (Ollama >= 0.30), fused = one GGUF.",
)
@click.option("-s", "--system", default=None, help="System prompt baked into the model.")
@click.option(
    "--num-ctx",
    default=None,
    help="Context length baked into the model, or `auto`: the largest that fits --memory/--gpu.",
)
@budget_options
@click.option(
    "--tools/--no-tools",
    default=None,
    help="The TEMPLATE with tool calling (Ollama returns tool_calls) [default: --from: as "
    "exported (export --tools); --variant: no].",
)
@click.option(
    "--verify",
    is_flag=True,
    help="--from: hash the files again instead of trusting export.json's sha256.",
)
@click.option("--host", default=None, help=_HOST_HELP)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def create(
    name: str,
    export_dir: Path | None,
    variant: str | None,
    quant: str | None,
    quantize: str | None,
    packaging: str,
    system: str | None,
    num_ctx: str | None,
    memory: str | None,
    gpu: tuple[str, ...],
    tools: bool | None,
    verify: bool,
    host: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Create an Ollama model from an export folder or a family variant.

    With --from, each GGUF is uploaded once (blobs the daemon already has are skipped) and the
    model gets Gemma 3's template, stop token, sampling settings and license - the same spec
    `gemma3-pack modelfile` writes. Vision exports ship as GGUF + mmproj on Ollama 0.30+ and
    as one fused GGUF before that (chosen from the daemon's version).

    \b
    Examples:
      gemma3-pack create my-gemma --from ./export/my-gemma
      gemma3-pack create my-gemma-q8 --from ./export/my-gemma --quant Q8_0
      gemma3-pack create my-gemma --from ./export/my-gemma --verify   # re-hash the files
      gemma3-pack create pirate --variant gemma3:4b -s "Talk like a pirate" --num-ctx 8192
      gemma3-pack create g12 --variant gemma3:12b --num-ctx auto --gpu rtx4090 --tools
      ollama run my-gemma
    """
    from .._sdk._client import Client

    if (export_dir is None) == (variant is None):
        raise UsageError("give exactly one of --from EXPORT_DIR or --variant VARIANT")
    client = Client(host)
    progress = not quiet and not as_json
    ctx, gpus = num_ctx_arg(num_ctx), list(gpu) or None
    if export_dir is not None:
        result = client.create_from_export(
            export_dir,
            name,
            quantize=quantize,
            progress=progress,
            packaging=packaging,  # type: ignore[arg-type]
            quant=quant,
            system=system,
            num_ctx=ctx,
            memory=memory,
            gpu=gpus,
            verify=verify,
            tools=tools,
        )
    else:
        if quant or quantize or packaging != "auto" or verify:
            raise UsageError("--quant, --quantize, --packaging and --verify apply to --from only")
        assert variant is not None
        result = client.create_from_variant(
            variant,
            name,
            system=system,
            num_ctx=ctx,
            memory=memory,
            gpu=gpus,
            progress=progress,
            tools=bool(tools),
        )
    if as_json:
        click.echo(dumps({"model": name, "status": result.status}))
    elif not quiet:
        click.echo(f"created {name}: run it with `ollama run {name}`")
