"""``gemma3-pack variants``: the family table, for people and for scripts."""

from __future__ import annotations

import click

from .._family import VARIANTS, variants_text
from .._family import variants_markdown as markdown_table  # the name tests/test_readme.py reads
from ._json import dumps


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
    if as_json:
        click.echo(dumps([v.to_dict() for v in VARIANTS.values()], indent=2))
    elif markdown:
        click.echo(markdown_table())
    else:
        click.echo(variants_text())
