"""The world package's shape: no import circle through it (nor anywhere else in lsc) and no private name
read across its modules.

Imports are read from the source (lazy imports inside functions count too: a circle of lazy imports
still ties the modules together), over all of src/lsc, so a circle that leaves the package and comes
back is found as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lsc

SRC = Path(lsc.__file__).parent
WORLD = "lsc.backends.world"


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], list[tuple[str, str]]]:
    """The lsc modules `name` imports, and the (module, private name) pairs it reads from other modules."""

    def owner(dotted: str) -> str:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted

    edges: set[str] = set()
    private: list[tuple[str, str]] = []
    aliases: dict[str, str] = {}  # local name -> lsc module it is bound to
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lsc"):
                    edges.add(owner(a.name))
                    if a.asname:
                        aliases[a.asname] = owner(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).rstrip(".") if node.level else node.module or ""
            if not base.startswith("lsc"):
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                if full in modules:
                    edges.add(full)
                    aliases[a.asname or a.name] = full
                else:
                    edges.add(owner(base))
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        private.append((owner(base), a.name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                private.append((aliases[node.value.id], node.attr))
    edges.discard(name)
    return edges, private


def _graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, str]]]]:
    modules = _modules(SRC)
    edges, private = {}, {}
    for name, path in modules.items():
        edges[name], private[name] = _imports(name, path, modules)
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_circle_and_nothing_else():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_import_reader_sees_lazy_and_private_imports(tmp_path):
    pkg = tmp_path / "lsc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from lsc.b import _hidden\n    from lsc import b as other\n    return other._x\n")
    (pkg / "b.py").write_text("_hidden = 1\n_x = 2\n")
    modules = _modules(pkg)
    edges, private = _imports("lsc.a", pkg / "a.py", modules)
    assert edges == {"lsc.b"} and sorted(private) == [("lsc.b", "_hidden"), ("lsc.b", "_x")]


def test_no_import_circle_runs_through_the_world_package():
    edges, _ = _graph()
    assert any(m.startswith(WORLD + ".") for m in edges), "the world package was not read"
    through_world = [c for c in _cycles(edges) if any(m == WORLD or m.startswith(WORLD + ".") for m in c)]
    assert through_world == [], through_world


def test_no_import_circle_anywhere_in_lsc():
    edges, _ = _graph()
    assert "lsc.channel.config" in edges and "lsc.channel.registry" in edges["lsc.channel.config"]  # lazy imports are read
    assert _cycles(edges) == []


def test_no_private_name_is_read_across_the_world_modules():
    _, private = _graph()
    crossing = [(importer, source, name) for importer, pairs in private.items() for source, name in pairs
                if importer.startswith(WORLD) and source.startswith(WORLD) and source != importer]
    assert crossing == [], crossing


def test_every_world_module_stays_readable_in_one_sitting():
    """No world module over 400 lines: a module that grows past it holds more than one job."""
    root = SRC / "backends" / "world"
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert len(sizes) > 20, sizes
    assert {name: n for name, n in sizes.items() if n > 400} == {}
