"""README.md stays true: its variants table is the family table, its test command is CI's."""

from __future__ import annotations

import re
from pathlib import Path

from gemma3_pack.cli.variants import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_variants_table_is_generated_from_the_family_table() -> None:
    text = README.read_text()
    block = re.search(r"<!-- variants-table -->\n(.*?)\n<!-- /variants-table -->", text, re.S)
    assert block, "README.md lost its variants-table markers"
    assert block.group(1).strip() == markdown_table(), (
        "README variants table drifted: regenerate with `gemma3-pack variants --markdown`"
    )


def test_ci_runs_the_readme_test_command() -> None:
    text = README.read_text()
    cmd = re.search(r"<!-- test-command -->\n```bash\n(.+)\n```", text)
    assert cmd and "pytest" in cmd.group(1)
    ci = (README.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci


def test_demo_command_uses_the_demo_extra() -> None:
    cmd = re.search(r"<!-- demo-command -->\n```bash\n(.+)\n```", README.read_text())
    assert cmd and "gemma3-pack demo" in cmd.group(1) and "demo" in cmd.group(1)


def _block(name: str) -> str:
    block = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", README.read_text(), re.S)
    assert block, f"README.md lost its {name} markers"
    return block.group(1)


def test_doctor_rules_table_is_the_rule_table() -> None:
    from gemma3_pack import _rules

    assert _block("rules-table") == _rules.rules_markdown(), (
        "README rule list drifted: paste `gemma3-pack doctor --rules` between the rules-table markers"
    )


def test_plan_table_is_generated_by_the_planner() -> None:
    from gemma3_pack import _plan

    assert _block("plan-table") == _plan.markdown_table(), (
        "README plan table drifted: paste `gemma3-pack plan --markdown` between the plan-table markers"
    )
