"""Imports read ``api → model ← training``: inference never depends on training or the service.

The code installs as ``zhenping.model``, ``zhenping.api`` and ``zhenping.training``; the
``zhenping`` package itself is the facade and the command line (``zhenping.cli``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "api", "training")

# package -> layers its modules must not import (not even inside a function); "zhenping" is the
# facade and the command line (zhenping/__init__.py, zhenping/cli.py)
FORBIDDEN = {
    "model": {"api", "training", "zhenping"},
    "api": {"training", "zhenping"},
}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, module)`` for every absolute import, ``importlib.import_module`` and ``__import__`` of a literal.

    ``from zhenping import model`` counts as an import of ``zhenping.model``.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "zhenping":
                found += [(node.lineno, f"zhenping.{a.name}" if a.name in PACKAGES else "zhenping")
                          for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return sorted(found, key=lambda item: item[0])


def layer(module: str) -> str | None:
    """``zhenping.model.x`` -> ``model``; ``zhenping``, ``zhenping.cli`` -> ``zhenping``; others -> None."""
    parts = module.split(".")
    if parts[0] != "zhenping":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "zhenping"


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def violations(package: str) -> list[str]:
    bad = []
    for path in python_files(package):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in imported_modules(tree):
            if layer(module) in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upwards(package):
    assert violations(package) == []


@pytest.mark.parametrize("folder", ["model", "api", "training", "zhenping", "tests", "benchmarks", "examples"])
def test_nothing_imports_the_generic_top_level_names(folder):
    """``model``, ``api`` and ``training`` are not installed under those names: import ``zhenping.…``."""
    bad = []
    for path in python_files(folder):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bad += [f"{path.relative_to(ROOT)}:{line} imports {module}" for line, module in imported_modules(tree)
                if module.split(".")[0] in PACKAGES]
    assert bad == []


def test_the_check_sees_lazy_imports(tmp_path):
    source = ("def f():\n    from zhenping.training.store import promote\n    import importlib\n"
              "    importlib.import_module('zhenping.api.main')\n    from zhenping import training, Scorer\n")
    assert imported_modules(ast.parse(source)) == [
        (2, "zhenping.training.store"), (3, "importlib"), (4, "zhenping.api.main"),
        (5, "zhenping.training"), (5, "zhenping")]
    assert [layer(m) for _, m in imported_modules(ast.parse(source))] == [
        "training", None, "api", "training", "zhenping"]


def test_the_check_sees_an_upward_import():
    assert layer("zhenping.training.store") in FORBIDDEN["model"]
    assert layer("zhenping.cli") in FORBIDDEN["api"] and layer("zhenping") in FORBIDDEN["model"]
    assert layer("zhenping.model.scorer") not in FORBIDDEN["api"]
