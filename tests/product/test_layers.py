"""The layers: one folder per layer, imports only along the table below, no cycle, and the heavy
libraries (mlflow, keras_tuner, optuna, keras, tensorflow) each behind their own layer."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "fashion_lab"
PLUGINS = REPO / "hydra_plugins"

# layer -> the layers it may import (docs/architecture.md draws it). Anything else fails.
ALLOWED = {
    "config": set(),                                    # the schema and its keys
    "runtime": {"config"},                              # processes and workers; no TF, no MLflow
    "data": {"config"},
    "model": {"config"},                                # everything that knows the network
    "record": {"config", "runtime"},                    # the only mlflow importer
    "analysis": {"config"},                             # pure pandas and scipy (config.keys only)
    "preflight": {"config", "data", "model"},           # validate(cfg) before any work
    "run": {"config", "data", "model", "record", "runtime", "preflight"},           # one run
    "report": {"config", "analysis", "record", "run"},  # run: the figures a run draws, redrawn
    "sweeps": {"config", "analysis", "preflight", "record", "run", "runtime"},
    "search": {"config", "analysis", "preflight", "record", "run", "sweeps"},
    "cli": {"config", "data", "model", "preflight", "record", "report", "run", "runtime", "search", "sweeps",
            "analysis"},
    "hydra_plugins": {"config", "analysis", "record", "search", "sweeps"},
}


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


def layer(module: str) -> str:
    """fashion_lab.record.tracking -> record; hydra_plugins.* -> hydra_plugins; fashion_lab -> ''."""
    parts = module.split(".")
    return "hydra_plugins" if parts[0] == "hydra_plugins" else (parts[1] if len(parts) > 1 else "")


def every_file() -> list[Path]:
    return [*PACKAGE.rglob("*.py"), *PLUGINS.rglob("*.py")]


def users_of(*libraries: str) -> set[str]:
    """The modules (fashion_lab and the plugins) that import any of ``libraries``, at any depth."""
    return {module_name(p) for p in every_file()
            if any(m.split(".")[0] in libraries for m in imported(p))}


def layer_edges() -> dict[str, set[str]]:
    """layer -> the other fashion_lab layers its modules import."""
    edges: dict[str, set[str]] = {}
    for path in every_file():
        source = layer(module_name(path))
        targets = {layer(m) for m in imported(path) if m.startswith("fashion_lab.")}
        edges.setdefault(source, set()).update(targets - {source})
    return edges


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
    assert "fashion_lab.run.train" in edges["fashion_lab.sweeps.job"]  # imported inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_fashion_lab_has_no_import_cycle():
    cycle = find_cycle(graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_every_module_lives_in_a_layer_folder():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "preflight"))
    assert not loose, f"modules outside a layer folder: {loose}"
    assert set(layer_edges()) - {""} <= set(ALLOWED), sorted(set(layer_edges()) - set(ALLOWED))


def test_layers_import_only_what_the_table_allows():
    broken = {f"{source} -> {target}" for source, targets in layer_edges().items() if source
              for target in targets - ALLOWED[source]}
    assert not broken, f"imports the layer table does not allow: {sorted(broken)}"


def test_the_table_checks_what_it_says():
    assert layer("fashion_lab.record.tracking") == "record" and layer("hydra_plugins.x.y") == "hydra_plugins"
    assert "run" in layer_edges()["sweeps"]  # sweeps.job imports run.train inside a function


def test_record_never_imports_run_or_model():
    assert not layer_edges()["record"] & {"run", "model"}


def test_analysis_imports_no_other_layer_but_the_config_keys():
    imports = {m for p in (PACKAGE / "analysis").rglob("*.py") for m in imported(p)
               if m.startswith("fashion_lab.") and layer(m) != "analysis"}
    assert imports <= {"fashion_lab.config.keys", "fashion_lab.config.keys.typed"}, sorted(imports)


def test_the_sweepers_never_import_the_report():
    assert "report" not in layer_edges()["hydra_plugins"]


def test_a_run_knows_nothing_of_sweeps():
    assert "sweeps" not in layer_edges()["run"]


def test_only_the_record_layer_imports_mlflow():
    users = users_of("mlflow")
    assert users and {layer(u) for u in users} == {"record"}, f"mlflow is imported by {sorted(users)}"


def test_only_the_keras_tuner_adapter_imports_keras_tuner():
    users = users_of("keras_tuner")
    assert users == {"fashion_lab.search.keras_tuner", "fashion_lab.search.keras_tuner_fixes"}, sorted(users)
    internals = {module_name(p) for p in every_file() if any(m.startswith("keras_tuner.src") for m in imported(p))}
    assert internals <= {"fashion_lab.search.keras_tuner_fixes"}, sorted(internals)


def test_only_the_optuna_backend_imports_optuna():
    users = users_of("optuna")
    assert users == {"fashion_lab.search.optuna_backend"}, sorted(users)


def test_only_model_and_run_import_keras_or_tensorflow():
    users = users_of("keras", "tensorflow")
    assert users and {layer(u) for u in users} <= {"model", "run"}, sorted(users)
    assert "fashion_lab.model.geometry" not in users  # the shape walk needs no TensorFlow


def exits(path: Path) -> bool:
    """True where a file raises SystemExit or calls sys.exit/exit."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(raised, ast.Name) and raised.id == "SystemExit":
                return True
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "exit" and getattr(f.value, "id", "") == "sys") or (
                    isinstance(f, ast.Name) and f.id == "exit"):
                return True
    return False


def test_only_the_cli_turns_errors_into_exit_codes():
    users = {module_name(p) for p in every_file() if exits(p)}
    assert users and {layer(u) for u in users} == {"cli"}, sorted(users)


def reads_mlflow_entities(path: Path) -> bool:
    """Whether a file reads an MLflow Run's ``.info`` or ``.data`` (``run.info.run_id``, ``run.data.tags``)."""
    return any(isinstance(node, ast.Attribute) and node.attr in {"run_id", "experiment_id", "status", "run_name",
                                                                 "start_time", "end_time", "tags", "metrics", "params"}
               and isinstance(node.value, ast.Attribute) and node.value.attr in {"info", "data"}
               for node in ast.walk(ast.parse(path.read_text())))


def test_only_the_record_layer_reads_mlflow_runs():
    """Above record, a run is a RunRecord (record/run_record.py): plain data, never an MLflow entity."""
    readers = {module_name(p) for p in every_file() if reads_mlflow_entities(p)}
    assert readers and {layer(r) for r in readers} == {"record"}, sorted(readers)



def test_small_modules_and_short_functions():
    """No module over 300 lines (analysis/stats.py up to 400) and no function over 50, sweepers included."""
    files = every_file()
    long_modules = {str(p.relative_to(REPO)): n for p in files
                    if (n := len(p.read_text().splitlines())) > (400 if p.name == "stats.py" else 300)}
    long_functions = {f"{p.relative_to(REPO)}:{f.name}": f.end_lineno - f.lineno + 1 for p in files
                      for f in ast.walk(ast.parse(p.read_text()))
                      if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno >= 50}
    assert not long_modules and not long_functions, (long_modules, long_functions)


# --- the tests mirror the package ---------------------------------------------------------------

TESTS = REPO / "tests"


def misplaced_tests(tests: Path, layers: set[str]) -> list[str]:
    """Test modules not in tests/<layer>/ or tests/product/, and stray modules at the tests/ root."""
    folders = layers | {"product"}
    stray = [p for p in tests.rglob("test_*.py") if p.parent.parent != tests or p.parent.name not in folders]
    stray += [p for p in tests.glob("*.py") if p.name != "conftest.py"]  # helpers belong in tests/helpers/
    return sorted({str(p.relative_to(tests)) for p in stray})


def test_the_layout_check_finds_a_misplaced_test(tmp_path):
    for path in ("test_root.py", "servers.py", "nolayer/test_a.py", "record/deeper/test_b.py", "record/test_c.py",
                 "product/test_d.py", "conftest.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    assert misplaced_tests(tmp_path, {"record"}) == ["nolayer/test_a.py", "record/deeper/test_b.py", "servers.py",
                                                     "test_root.py"]


def test_every_test_module_sits_in_its_layers_folder():
    """tests/ mirrors fashion_lab/: one folder per layer (no __init__.py, so basenames stay unique), product/
    for whole-product tests, helpers/ (a package) for what several modules share."""
    layers = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert not misplaced_tests(TESTS, layers), misplaced_tests(TESTS, layers)
    assert layers <= {p.name for p in TESTS.iterdir() if p.is_dir()}, sorted(layers)  # every layer has its tests
    modules = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(modules) == len(set(modules)), sorted(n for n in modules if modules.count(n) > 1)
    packages = {p.parent.name for p in TESTS.rglob("__init__.py")}
    assert packages == {"helpers"}, sorted(packages)
