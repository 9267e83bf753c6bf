"""The import graph of ``volunteer/`` and ``tui/``: no circles, and the core never imports the front end.

Every import counts, at the top of a module or inside a function (a function-level import is still a
dependency, only a later one), read from the source with :mod:`ast` rather than by importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("volunteer", "tui")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name ``path`` imports (``from a import b`` gives ``a.b``: ``b`` may be a module, else the
    owner of ``a.b`` is ``a``). Parent packages, which Python runs before any submodule, are not counted."""
    names: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``volunteer/`` and ``tui/`` it imports."""
    sources = _sources()

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in sources:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        targets = {owner(imported) for imported in _imported_names(name, path)}
        graph[name] = {target for target in targets if target is not None and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_finder_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_graph_reads_relative_and_function_level_imports() -> None:
    graph = import_graph()
    assert "volunteer.contribution.run" in graph["volunteer.cli"]  # imported inside a function
    assert "tui.app" in graph["tui"]


def test_volunteer_and_tui_have_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_the_core_never_imports_the_tui_or_textual() -> None:
    for name, path in _sources().items():
        if name.split(".")[0] != "volunteer":
            continue
        for imported in _imported_names(name, path):
            top = imported.split(".")[0]
            assert top not in ("tui", "textual"), f"{path.relative_to(ROOT)} imports {imported}"


def test_the_training_process_does_not_load_doctor() -> None:
    graph = import_graph()
    # its GPU probe lives in volunteer.device
    assert "volunteer.doctor" not in graph["volunteer.contribution.training_process"]
