"""The mutation checks (.ci/mutants.py): the riskiest glue, broken on purpose, fails the suite.

The fast tests keep the mutant list applicable (each search text occurs once, each
named test exists) and the marks honest; the slow one runs every mutant.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mutants():
    spec = importlib.util.spec_from_file_location("mutants", ROOT / ".ci" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = module
    spec.loader.exec_module(module)
    return module.MUTANTS


def test_every_mutant_applies_once_and_names_tests_that_exist():
    mutants = _mutants()
    assert len({m.name for m in mutants}) == len(mutants)
    for m in mutants:
        assert (ROOT / m.path).read_text().count(m.search) == 1, m.name
        for node in m.tests:
            path, _, name = node.partition("::")
            assert (ROOT / path).is_file(), node
            if name:
                tree = ast.parse((ROOT / path).read_text())
                assert any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body), (
                    node
                )


def test_slow_marks_sit_on_tests():
    # A mark on a helper does nothing: the helper is not collected.
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("test_"):
                marks = [ast.unparse(d) for d in node.decorator_list]
                assert not [m for m in marks if m.startswith("pytest.mark.")], (
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {marks}"
                )


@pytest.mark.slow
def test_every_mutant_is_killed_by_the_suite():
    done = subprocess.run(
        [sys.executable, ".ci/mutants.py"], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"all {len(_mutants())} mutant(s) killed" in done.stdout
