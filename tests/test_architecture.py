"""The layering rules of shared/ARCHITECTURE.md, checked on every import statement.

ui -> app -> engine; only ui/ imports Qt; only engine/ imports llama_cpp.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QT_MODULES = {"PySide6", "shiboken6", "PyQt5", "PyQt6", "pyqtgraph"}

# package -> top-level modules it must never import
FORBIDDEN = {
    "engine": QT_MODULES | {"app", "ui"},
    "app": QT_MODULES | {"ui", "llama_cpp"},
    "ui": {"llama_cpp"},
    "bench": {"llama_cpp"},  # the UI benchmark drives Qt; the engine's reference lives in engine/
    "tests": {"llama_cpp"},
}


def _dynamic_import_target(node: ast.Call) -> str | None:
    """The module named by `importlib.import_module("x")` or `__import__("x")`."""
    func_name = getattr(node.func, "attr", getattr(node.func, "id", ""))
    if func_name not in {"import_module", "__import__"} or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imported_top_levels(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and (target := _dynamic_import_target(node)):
            names.add(target.split(".")[0])
    return names


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_top_levels(path.read_text(encoding="utf-8")) & FORBIDDEN[package]
        found += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad)]
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_layering(package):
    assert violations(package) == []


def test_checker_sees_every_form_of_import():
    source = (
        "import PySide6.QtWidgets\n"
        "from llama_cpp import Llama\n"
        "def f():\n    import ui.main\n"
        "importlib.import_module('app.cli')\n"
        "from . import sibling\n"
    )
    assert imported_top_levels(source) == {"PySide6", "llama_cpp", "ui", "app"}
