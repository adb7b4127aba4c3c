"""``gemma3-pack variants``: the family table, for people and for scripts."""

from __future__ import annotations

import click

from .._family import VARIANTS, Variant
from ._json import dumps


def variant_row(v: Variant) -> dict[str, object]:
    s = v.size
    return {
        "variant": v.name,
        "hf_repo": v.hf_repo,
        "ollama_tag": v.ollama_tag,
        "params": s.params,
        "layers": s.num_layers,
        "hidden": s.hidden_size,
        "heads": s.num_heads,
        "kv_heads": s.num_kv_heads,
        "head_dim": s.head_dim,
        "ffn": s.intermediate_size,
        "vocab": s.vocab_size,
        "context": s.context_length,
        "sliding_window": s.sliding_window,
        "rope_scaling": s.rope_scaling_factor,
        "vision": s.multimodal,
        "default_quants": list(v.default_quants),
        "quant_by_target": dict(v.quant_by_target),
        "bf16_gb": s.bf16_gb,
        "q4_k_m_gb": s.q4_k_m_gb,
    }


def markdown_table() -> str:
    """The README's variants table (a test keeps README.md equal to this)."""
    lines = [
        "| variant | params | layers | hidden | heads/kv | ctx | window | vision | HF repo "
        "| Ollama tag | default quants | Android / iOS | ~BF16 / Q4_K_M GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS.values():
        s = v.size
        lines.append(
            f"| `{v.name}` | {s.params} | {s.num_layers} | {s.hidden_size} | "
            f"{s.num_heads}/{s.num_kv_heads} | {s.context_length // 1024}K | {s.sliding_window} | "
            f"{'SigLIP 896px, 256 tok' if s.multimodal else '-'} | `{v.hf_repo}` | "
            f"{'`' + v.ollama_tag + '`' if v.ollama_tag else '-'} | {', '.join(v.default_quants)} | "
            f"{v.quant_by_target['android']} / {v.quant_by_target['ios']} | "
            f"{s.bf16_gb:g} / {s.q4_k_m_gb:g} |"
        )
    return "\n".join(lines)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--markdown", is_flag=True, help="Print the README's markdown table.")
def variants(as_json: bool, markdown: bool) -> None:
    """List the Gemma 3 variants gemma3-pack knows.

    \b
    Examples:
      gemma3-pack variants
      gemma3-pack variants --json | jq '.[] | select(.vision) | .variant'
      gemma3-pack variants --markdown
    """
    rows = [variant_row(v) for v in VARIANTS.values()]
    if as_json:
        click.echo(dumps(rows, indent=2))
        return
    if markdown:
        click.echo(markdown_table())
        return
    header = f"{'variant':<20} {'params':>6} {'ctx':>7} {'swa':>5} {'vision':>6}  {'ollama tag':<20} default quants"
    click.echo(header)
    for r in rows:
        click.echo(
            f"{r['variant']:<20} {r['params']:>6} {r['context']:>7} {r['sliding_window']:>5} "
            f"{'yes' if r['vision'] else 'no':>6}  {r['ollama_tag'] or '-':<20} "
            f"{','.join(r['default_quants'])}"  # type: ignore[arg-type]
        )
