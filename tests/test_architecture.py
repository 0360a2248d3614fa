"""The shape of the package, checked: layers import only downward, no cycles, no private names
across modules, nothing loose at the top, and the size budget of files and functions.

docs/architecture.md draws the layers and says why; this test is what keeps them true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chainrule"

# What each layer may import of chainrule (besides itself). The data flow is
# frontends -> ir -> compiler (passes) -> backends; transforms tie them together for the user;
# the training toolkit and the command line are clients of the transforms.
ALLOWED = {
    "errors": set(),
    "ir": {"errors"},
    "frontends": {"errors", "ir"},
    "compiler": {"errors", "ir"},
    "backends": {"errors", "ir"},
    "transforms": {"errors", "ir", "frontends", "compiler", "backends"},
    "nn": {"errors", "ir", "frontends", "transforms"},
    "optim": {"errors", "ir", "frontends", "transforms"},
    "distributed": {"errors", "ir", "frontends", "transforms", "optim"},
    "train": {"errors", "ir", "frontends", "transforms", "nn", "optim", "distributed"},
    "cli": {"errors", "ir", "frontends", "compiler", "backends", "transforms", "nn", "optim", "train", "package"},
    "package": {"errors", "ir", "frontends", "compiler", "backends", "transforms", "nn", "optim", "train", "cli"},
    "tree_util": {"errors", "frontends"},  # the public face of frontends/pytree.py, as jax.tree_util
}
ALLOWED["package"].add("tree_util")
TOP_LEVEL_MODULES = {"__init__.py", "errors.py", "__main__.py", "tree_util.py"}
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60
# Data tables may be longer than a function: (module, function) -> why.
LONG_TABLES: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "package"
    return parts[1]


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import of chainrule the file runs,
    at module level or inside functions (a lazy import is still a dependency)."""
    tree = ast.parse(path.read_text())
    # imports only a type checker runs (under ``if TYPE_CHECKING:``) are no dependency at run time
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names if alias.name.startswith("chainrule")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("chainrule"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in MODULES:
                    found.append((submodule, "", node.lineno))
                else:
                    found.append((node.module, alias.name, node.lineno))
    return found


def _import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module, path in MODULES.items():
        for imported, _, _ in _imports(path):
            if imported != module:
                graph.add_edge(module, imported)
    return graph


def test_nothing_loose_at_the_package_top():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_LEVEL_MODULES)
    assert loose == [], f"modules at the package top belong in a subpackage: {loose}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_import_only_what_they_may(module):
    layer = _layer(module)
    allowed = ALLOWED[layer] | {layer}
    wrong = [
        f"line {line}: {imported}" for imported, _, line in _imports(MODULES[module]) if _layer(imported) not in allowed
    ]
    assert not wrong, f"{module} ({layer}) may import only {sorted(allowed)}, but imports {wrong}"


def test_no_import_cycles():
    cycles = [cycle for cycle in nx.simple_cycles(_import_graph()) if len(cycle) > 1]
    assert not cycles, f"import cycles: {cycles[:5]}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_is_imported_from_another_module(module):
    private = [
        f"line {line}: {imported}.{name}"
        for imported, name, line in _imports(MODULES[module])
        if name.startswith("_") and imported != module
    ]
    assert not private, f"{module} imports private names of other modules: {private}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_and_functions_keep_to_the_size_budget(module):
    path = MODULES[module]
    text = path.read_text()
    assert text.count("\n") <= MAX_FILE_LINES, f"{path.name} has {text.count(chr(10))} lines (budget {MAX_FILE_LINES})"
    long_functions = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and (module, node.name) not in LONG_TABLES:
                long_functions.append(f"{node.name} ({length} lines, line {node.lineno})")
    assert not long_functions, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def test_the_rules_see_real_imports():
    """The checks above read imports correctly: the transforms import the pass pipeline and the
    IR's graph, and the IR imports chainrule.errors."""
    graph = _import_graph()
    assert graph.has_edge("chainrule.transforms.compiled", "chainrule.compiler.pipeline")
    assert any(_layer(b) == "errors" for b in graph.successors("chainrule.ir.graph"))
