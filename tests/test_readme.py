"""README.md and docs/ stay true: their tables are generated from the code, the test command is CI's,
and every link between them lands on a file and a heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

from gemma3_pack.cli.variants import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _block(path: Path, name: str) -> str:
    block = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", path.read_text(), re.S)
    assert block, f"{path.relative_to(ROOT)} lost its {name} markers"
    return block.group(1)


def test_variants_table_is_generated_from_the_family_table() -> None:
    assert _block(README, "variants-table").strip() == markdown_table(), (
        "README variants table drifted: regenerate with `gemma3-pack variants --markdown`"
    )


def test_ci_runs_the_readme_test_command() -> None:
    text = README.read_text()
    cmd = re.search(r"<!-- test-command -->\n```bash\n(.+)\n```", text)
    assert cmd and "pytest" in cmd.group(1)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci


def test_demo_command_uses_the_demo_extra() -> None:
    cmd = re.search(r"<!-- demo-command -->\n```bash\n(.+)\n```", README.read_text())
    assert cmd and "gemma3-pack demo" in cmd.group(1) and "demo" in cmd.group(1)


def test_doctor_rules_table_is_the_rule_table() -> None:
    from gemma3_pack import _rules

    assert _block(DOCS / "doctor.md", "rules-table") == _rules.rules_markdown(), (
        "docs/doctor.md rule list drifted: paste `gemma3-pack doctor --rules` between the rules-table markers"
    )


def test_plan_table_is_generated_by_the_planner() -> None:
    from gemma3_pack._memory import _plan

    assert _block(DOCS / "plan.md", "plan-table") == _plan.markdown_table(), (
        "docs/plan.md plan table drifted: paste `gemma3-pack plan --markdown` between the plan-table markers"
    )


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 300, (
        f"README.md has {lines} lines; move details into docs/ (the front page keeps ≤ 300)"
    )


def _anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    # a '# comment' inside a code block is no heading
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_anchor_spelling() -> None:
    assert (
        _anchor("Vision: the projector and Ollama packaging")
        == "vision-the-projector-and-ollama-packaging"
    )
    assert _anchor("Measured against llama.cpp") == "measured-against-llamacpp"
    assert _anchor("Ollama's engine: `--engine ollama`") == "ollamas-engine---engine-ollama"


def test_links_between_readme_and_docs_resolve() -> None:
    pages = [README, *sorted(DOCS.glob("*.md"))]
    checked = 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # http(s)://, mailto: — not ours to check offline
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if dest.parent not in (DOCS, ROOT):  # e.g. tests/README.md: not a page of these docs
                continue
            where = f"{page.relative_to(ROOT)} links to {target}"
            assert dest.is_file(), f"{where}, which does not exist"
            if anchor:
                assert anchor in _anchors(dest), f"{where}, but {dest.name} has no such heading"
            checked += 1
    assert checked >= 20, f"only {checked} links found: is the link pattern still right?"
