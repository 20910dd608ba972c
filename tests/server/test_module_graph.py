"""The server's modules import each other in one direction only.

Read statically from the source, so every import counts: those under
``if TYPE_CHECKING:`` and inside functions too (a lazy import hides a cycle, it does not
remove it).  A module in a circle cannot be understood, tested or imported on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trigear

ROOT = Path(trigear.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each trigear module -> the trigear modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from pkg import mod`` imports the module pkg.mod.
                targets = [target, *(f"{target}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_server_module_is_in_an_import_circle() -> None:
    graph = import_graph()
    assert "trigear.server.dispatcher" in graph
    assert "trigear.server.admin" in graph["trigear.server.dispatcher"]
    server_circles = [c for c in circles(graph) if any(m.startswith("trigear.server") for m in c)]
    assert server_circles == []


def test_the_check_finds_a_circle() -> None:
    """The check itself works: admin importing the dispatcher again would be caught."""
    graph = import_graph()
    graph["trigear.server.admin"].add("trigear.server.dispatcher")
    assert {"trigear.server.admin", "trigear.server.dispatcher"} in circles(graph)
