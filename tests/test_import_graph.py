"""The house has no import circles and no import from below up into training.

The graph is read from the source with ``ast``, so it counts every import that can run: at
module level, inside functions and methods, and ``importlib.import_module("npp_plugin...")``
with a literal name. Imports under ``if TYPE_CHECKING:`` are left out: they never run, they
only name types for annotations. An import of ``npp_plugin.a.b`` is an edge to the module
``npp_plugin.a.b`` (not to the packages above it, whose ``__init__`` modules are kept cheap
and lazy for that reason).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "npp_plugin"

#: Modules outside ``npp_plugin/training`` that may import it, and why: none. (The command
#: line reaches ``npp train``, ``npp search`` and ``npp check-surrogate`` through a table of
#: module names, ``cli._MODULES``, imported by name when the command runs; it is the top of
#: the house and nothing imports it, so that is no upward import.)
MAY_IMPORT_TRAINING: dict[str, str] = {}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node except those inside an ``if TYPE_CHECKING:`` body."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module → the ``npp_plugin`` modules it imports (at any level, at run time)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, (path, is_pkg) in mods.items():
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        targets: set[str | None] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(resolve(a.name) for a in node.names if a.name.startswith("npp_plugin"))
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]) if node.level else node.module
                base = (base or "").strip(".")
                if base.startswith("npp_plugin"):
                    # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
                    targets.update(resolve(f"{base}.{a.name}") if f"{base}.{a.name}" in mods else resolve(base)
                                   for a in node.names)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                  and node.args[0].value.startswith("npp_plugin")):
                targets.add(resolve(node.args[0].value))
        graph[mod] = {t for t in targets if t is not None and t != mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    """Assert the reader sees known edges, a function-level one included, and skips
    TYPE_CHECKING imports (so a broken reader cannot pass the tests below)."""
    graph = import_graph()
    assert "npp_plugin._registry" in graph["npp_plugin.plugins"]
    assert "npp_plugin.surrogates" in graph["npp_plugin.preprocessors.refine"]  # inside a method
    assert "npp_plugin.plugins" in graph["npp_plugin.registry"]
    assert "npp_plugin.codec" not in graph["npp_plugin.preprocessors.base"]  # type-only


def test_no_import_circles():
    """Assert no set of modules imports itself round, counting imports inside functions."""
    cycles = _cycles(import_graph())
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_nothing_below_imports_training():
    """Assert no module outside ``npp_plugin/training`` imports training code (codec-side
    pieces that training uses, like the surrogates, live below it), except the CLI's
    dispatch."""
    offenders = sorted(
        f"{mod} -> {t}"
        for mod, targets in import_graph().items()
        if not mod.startswith("npp_plugin.training") and mod not in MAY_IMPORT_TRAINING
        for t in targets if t == "npp_plugin.training" or t.startswith("npp_plugin.training.")
    )
    assert offenders == []
