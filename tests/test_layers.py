"""The folders by interpreter (docs/conventions.md), checked where they matter.

``lint-imports`` (pyproject.toml, run by .ci/run) checks the static layers between
packages. These tests check what a fresh interpreter actually loads, which is what
a profile environment without pydantic or boto3 cares about, and what no static
tool sees: the registry reads runner modules with importlib, and runner modules
import their helpers inside setup()/run().
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]

# Loaded by runner processes, whose profile environments have none of the worker's
# dependencies (and never need the worker's own packages).
RUNNER_SIDE = ("runtime", "runners", "media")
WORKER_ONLY = frozenset(
    {"pydantic", "pydantic_core", "boto3", "botocore", "huggingface_hub", "runpod"}
    | {"models", "bootstrap", "storage", "handler"}
)
PACKAGES = ("bootstrap", "media", "models", "runners", "runtime", "storage")
GROUND = ("config.py", "errors.py")  # imported by everything, so they import nothing of ours


def modules_of(*packages: str, root: Path = ROOT) -> list[str]:
    """Every module of ``packages`` under ``root``, ``__main__`` modules left out
    (running them is what they do)."""
    found = []
    for package in packages:
        found.append(package)
        for info in pkgutil.walk_packages([str(root / package)], prefix=f"{package}."):
            if not info.name.endswith("__main__"):
                found.append(info.name)
    return found


def loaded_by(modules: list[str], *, then: str = "", path: Path = ROOT) -> set[str]:
    """The top-level names in ``sys.modules`` of a fresh interpreter that imported
    ``modules`` (from ``path``) and ran ``then``."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"{then}\n"
        "print(json.dumps(sorted({n.partition('.')[0] for n in sys.modules})))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(path)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_runner_side_modules_load_nothing_of_the_worker():
    modules = modules_of(*RUNNER_SIDE)
    assert "runners.whisper" in modules and "media.video._pipeline" in modules
    assert not loaded_by(modules) & WORKER_ONLY


def test_the_fence_catches_a_runner_module_that_imports_pydantic_at_the_top(tmp_path):
    # The same check, over a copy of the runner side with one runner gone wrong.
    for package in RUNNER_SIDE:
        subprocess.run(["cp", "-r", str(ROOT / package), str(tmp_path)], check=True)
    for name in GROUND:
        (tmp_path / name).write_text((ROOT / name).read_text())
    piper = tmp_path / "runners" / "piper.py"
    future = "from __future__ import annotations\n"
    piper.write_text(piper.read_text().replace(future, future + "import pydantic\n", 1))
    loaded = loaded_by(modules_of(*RUNNER_SIDE, root=tmp_path), path=tmp_path)
    assert loaded & WORKER_ONLY == {"pydantic", "pydantic_core"}


def test_the_worker_loads_no_media_module():
    """The handler, every worker module, and every runner module the registry reads
    (it imports them all to collect their specs): no media module comes along."""
    modules = ["handler", *modules_of("models", "bootstrap", "storage")]
    loaded = loaded_by(modules, then="from models import registry; assert registry.RUNNERS")
    assert "runners" in loaded
    assert "media" not in loaded


def test_the_ground_modules_import_nothing_of_ours():
    ours = {*PACKAGES, "config", "errors", "handler"}
    for name in GROUND:
        tree = ast.parse((ROOT / name).read_text())
        imported = {
            alias.name.partition(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").partition(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert not imported & ours, f"{name} imports {sorted(imported & ours)}"


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of ``graph`` with more than one member (import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_strongly_connected_finds_a_ring_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_round_a_circle():
    """Late imports inside functions count: they only hide a cycle from import time."""
    graph = grimp.build_graph(*PACKAGES)
    edges = {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported.partition(".")[0] in PACKAGES
        }
        for module in graph.modules
    }
    # A package's __init__ that re-exports its own modules is not a cycle of design.
    for module, imported in edges.items():
        imported -= {m for m in imported if m.startswith(f"{module}.")}
    assert strongly_connected(edges) == []


def test_the_conventions_table_and_the_contracts_name_every_folder():
    """docs/conventions.md's folder table and pyproject's import-linter packages list
    the top-level packages there are, no more and no fewer."""
    import re
    import tomllib

    there = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} - {"tests"}
    assert there == set(PACKAGES)
    text = (ROOT / "docs" / "conventions.md").read_text()
    table = text.split("## Folders by interpreter", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (`[^|]+`) \|", table, re.M)
    named = {name for row in rows for name in re.findall(r"`([\w.]+)/?`", row)}
    assert named == {*PACKAGES, "config.py", "errors.py", "handler.py"}
    linted = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert set(linted["root_packages"]) == set(PACKAGES)
