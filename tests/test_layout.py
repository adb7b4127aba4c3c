"""The floor plan, enforced: one folder per subsystem, imports only downward, private names stay home.

docs/layout.md draws the same plan; this test is what keeps the drawing true.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "gemma3_pack"

# The rooms, lowest first: a module may import from its own room and from rooms listed before it.
# "foundation" is the package root's small modules (errors, files, inputs, the family/settings/quant/
# rule tables); "front" is what users call (the package's __init__, the CLI, the demo).
ROOMS = [
    "foundation",
    "_chat",
    "_gguf",
    "_memory",
    "_lint",
    "_modelfile",
    "_export",
    "_sdk",
    "front",
]
FOUNDATION = {
    "_errors",
    "_files",
    "_inputs",
    "_family",
    "_settings",
    "_quants",
    "_progress",
    "_rules",
    "_version",
}
FRONT = {"__init__", "__main__", "_demo", "cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "front"  # the package itself
    top = parts[1]
    if top in FOUNDATION:
        return "foundation"
    if top in FRONT:
        return "front"
    if top in ROOMS:
        return top
    raise AssertionError(
        f"{module}: not in any room of the floor plan (tests/test_layout.py ROOMS)"
    )


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every package-internal import in one file."""
    package = (
        _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    )
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "gemma3_pack" or module.startswith("gemma3_pack."):
                out.append((module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [
                (a.name, [], node.lineno) for a in node.names if a.name.startswith("gemma3_pack.")
            ]
    return out


FILES = sorted(PKG.rglob("*.py"))
MODULES = {_module_name(p) for p in FILES}


def _target(module: str, name: str) -> str:
    """`from gemma3_pack._export import _manifest` imports the module gemma3_pack._export._manifest."""
    return f"{module}.{name}" if f"{module}.{name}" in MODULES else module


def test_every_module_has_a_room() -> None:
    rooms = {_room(_module_name(p)) for p in FILES}
    assert rooms == set(ROOMS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_only_go_down(path: Path) -> None:
    me = _room(_module_name(path))
    wrong = []
    for module, names, line in _imports(path):
        for target in {_target(module, n) for n in names} or {module}:
            room = _room(target)
            if ROOMS.index(room) > ROOMS.index(me):
                wrong.append(f"line {line}: {me} imports {target} ({room} is above it)")
    assert not wrong, wrong


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_private_names_stay_in_their_room(path: Path) -> None:
    """A name with a leading underscore is imported only inside its own room (modules excepted)."""
    me = _room(_module_name(path))
    wrong = [
        f"line {line}: {name} from {module}"
        for module, names, line in _imports(path)
        for name in names
        if name.startswith("_")
        and not name.startswith("__")
        and f"{module}.{name}" not in MODULES
        and _room(module) != me
    ]
    assert not wrong, wrong


def test_recipes_use_only_the_public_api() -> None:
    wrong = []
    for recipe in sorted((ROOT / "converters").glob("*.py")):
        text = recipe.read_text(encoding="utf-8")
        wrong += [f"{recipe.name}: {m}" for m in re.findall(r"gemma3_pack\.\w+", text)]
        if "sys.path" in text:
            wrong.append(f"{recipe.name}: edits sys.path")
    assert not wrong, wrong


def test_the_drawing_names_every_room() -> None:
    drawing = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    for room in ROOMS[1:-1]:
        assert f"{room}/" in drawing, room
    for module in sorted(FOUNDATION):
        assert module in drawing, module
