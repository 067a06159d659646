"""The layers: fashion_lab's import graph has no cycle, and only the record layer imports mlflow."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "fashion_lab"
RECORD_LAYER = "fashion_lab.tracking"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (a lazy import inside a function counts too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # from fashion_lab import tracking
    return names


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imported(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_graph_sees_lazy_imports():
    edges = graph()
    assert "fashion_lab.train" in edges["fashion_lab.campaign"]  # imported inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_fashion_lab_has_no_import_cycle():
    cycle = find_cycle(graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_only_the_record_layer_imports_mlflow():
    users = {module_name(p) for p in PACKAGE.rglob("*.py")
             if any(m == "mlflow" or m.startswith("mlflow.") for m in imported(p))}
    assert users == {RECORD_LAYER}, f"mlflow is imported by {sorted(users - {RECORD_LAYER})}; go through {RECORD_LAYER}"


def test_the_sweeper_plugin_reaches_keras_tuner_only_through_tuner_fixes():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "hydra_plugins").rglob("*.py")]
    users = {module_name(p) for p in files if any(m.startswith("keras_tuner.src") for m in imported(p))}
    assert users <= {"fashion_lab.tuner_fixes"}, sorted(users)
