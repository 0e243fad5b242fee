"""The localize package has no import circles, and the layers below the services never import them.

Data flows request -> route -> service -> engine -> store. A module-level import circle makes start-up order
matter (a half-initialised module) and says two modules are one; the graph is read from the source with ``ast``,
so nothing is imported to check it.
"""
from __future__ import annotations

import ast
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def package_folders() -> dict[str, Path]:
    """Every folder the ``localize`` distribution installs, by package name (api/ installs as localize.api, ...)."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in settings["package-dir"].items()}


def modules_of(folders: dict[str, Path]) -> dict[str, Path]:
    modules = {}
    for package, folder in folders.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(folders: dict[str, Path], *, function_level: bool = False) -> dict[str, set[str]]:
    """``module -> modules of the packages it imports``. Counts imports that run when the module is imported (its
    body, class bodies, ``try``/``if`` blocks), not ``if TYPE_CHECKING:`` blocks; with ``function_level`` also
    the imports inside functions (run on first call)."""
    modules = modules_of(folders)

    def known(name: str) -> str | None:
        while name and name not in modules:  # ``import a.b.c`` of a name inside a module: the module
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()

        def visit(nodes, *, executed: bool) -> None:
            for node in nodes:
                if isinstance(node, ast.Import) and executed:
                    edges.update(filter(None, (known(alias.name) for alias in node.names)))
                elif isinstance(node, ast.ImportFrom) and executed:
                    base = node.module or ""
                    if node.level:  # relative: from .x import y
                        parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                        base = ".".join(parent + ([base] if base else []))
                    for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                        target = f"{base}.{alias.name}"
                        edges.add(target if target in modules else known(base))
                elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    visit(node.orelse, executed=executed)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    visit(ast.iter_child_nodes(node), executed=function_level)
                else:
                    visit(ast.iter_child_nodes(node), executed=executed)

        visit(ast.parse(path.read_text(), str(path)).body, executed=True)
        graph[name] = {edge for edge in edges if edge and edge != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_localize_package_has_no_import_circle():
    graph = import_graph(package_folders())
    # the graph is real: the folders outside localize/ are in it under their installed names
    assert len(graph) > 100 and "localize.runtime" in graph["localize.services.adapters"]
    assert "localize.api.deps" in graph["localize.api.routes.tasks"]
    assert circles(graph) == []


def test_the_runtime_never_reaches_the_services_or_the_front_doors():
    """What the runtime holds (database, store, engine, the Ray predictor) sits below the services: nothing it
    imports, even on first use inside a function, may import a service, the API or the CLI."""
    graph = import_graph(package_folders(), function_level=True)
    above = sorted(m for m in reachable(graph, "localize.runtime")
                   if m.startswith(("localize.services", "localize.api", "localize.cli", "localize.server")))
    assert above == []
    assert "localize.distributed.predictor" in graph["localize.runtime"]


def _write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"pkg": package}


def test_circles_finds_module_level_circles_only(tmp_path):
    package = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import thing\n",
        "b.py": "import pkg.c\n",
        "c.py": "from . import a\n",  # a -> b -> c -> a
        "d.py": "def later():\n    from pkg import e\n",
        "e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n"
                "try:\n    import pkg.a\nexcept ImportError:\n    pass\n",
        "sub/__init__.py": "from .f import x\n",
        "sub/f.py": "from ..sub import g\n",
        "sub/g.py": "",
    })
    graph = import_graph(package)
    assert graph["pkg.e"] == {"pkg.a"} and graph["pkg.d"] == set()
    assert graph["pkg.sub"] == {"pkg.sub.f"} and graph["pkg.sub.f"] == {"pkg.sub.g"}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    # d -> e only inside a function, e -> d only for type checkers: no circle either way
    assert ["pkg.d", "pkg.e"] not in circles(import_graph(package, function_level=True))
    assert circles(import_graph(package, function_level=True)) == [["pkg.a", "pkg.b", "pkg.c"]]
