"""Static checks that catch whole classes of bug before a run does.

A module that defines one top-level name twice silently keeps the second: in the alignment module a
formatting helper ``_iv(v, lo, hi)`` shadowed the interval helper ``_iv(values)`` and broke every stage
table at run time. Pyflakes (ruff's ``F`` rules) misses that case when the first definition is used before
the second, so it is checked here with :mod:`ast` too.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "judgelab").rglob("*.py"))


def top_level_redefinitions(source: str) -> list[tuple[str, int, int]]:
    """``(name, first line, second line)`` for every function or class defined twice at module level.

    Definitions under ``if``/``try`` (alternatives such as a fallback import) are not top level and are
    ignored; so are ``typing.overload`` stubs.
    """
    seen: dict[str, int] = {}
    found = []
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if any(getattr(d, "id", getattr(d, "attr", None)) == "overload" for d in node.decorator_list):
            continue
        if node.name in seen:
            found.append((node.name, seen[node.name], node.lineno))
        seen[node.name] = node.lineno
    return found


def test_the_check_finds_a_shadowed_helper():
    src = "def _iv(values):\n    return 1\n\ndef f():\n    return _iv([1])\n\ndef _iv(v, lo, hi):\n    return ''\n"
    assert top_level_redefinitions(src) == [("_iv", 1, 7)]
    assert top_level_redefinitions("def a():\n    pass\n\ndef b():\n    pass\n") == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT / "src")))
def test_no_module_defines_a_top_level_name_twice(path):
    assert top_level_redefinitions(path.read_text()) == [], path


def test_pyflakes_rules_pass():
    """Undefined names, unused imports and variables, redefinitions (ruff ``F``), on the package and tests."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    out = subprocess.run([ruff, "check", "--select", "F", "--no-cache", "src", "tests"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
