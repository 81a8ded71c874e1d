"""No import cycles in the project: every import of a project module, at the top of a file or inside a function
(an import tucked into a function hides a cycle; it does not remove it), follows the layers downwards."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "site_build", "benchmarks")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the project's packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..y import z
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_of_the_project_imports_itself_back():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert graph["site_build.build"] and graph["site_build.macros"], "the import reader found no imports"
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from pkg import a  # late\n    return a\n")
    known = {"pkg": package / "__init__.py", "pkg.a": package / "a.py", "pkg.b": package / "b.py"}
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


# The page layers of site_build, from the bottom: what the facts and macros share, the macros, the facts, the blocks
# built from facts, the page renderer. A module imports only from its own layer or those below (docs/architecture.md).
LAYERS = ["site_build.figures", "site_build.mathslots", "site_build.macros", "site_build.facts",
          "site_build.sections", "site_build.render"]


def layer_of(name: str) -> int | None:
    for rank, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return rank
    return None


def upward(graph: dict[str, set[str]]) -> list[str]:
    """The imports from a page layer to a higher one."""
    out = []
    for name, targets in graph.items():
        here = layer_of(name)
        for target in targets:
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                out.append(f"{name} -> {target}")
    return sorted(out)


def test_the_page_layers_import_only_downwards():
    """A macro that read a fact, or a fact that read a block of sections/, would be an import up a layer: the facts
    use the macros' formatting, so a block built from facts belongs in sections/ (above both)."""
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert {layer_of(n) for n in graph} >= set(range(len(LAYERS))), "a layer has no module: update LAYERS"
    assert not (found := upward(graph)), "imports up a layer: " + "; ".join(found)
    graph["site_build.macros.text"] = graph["site_build.macros.text"] | {"site_build.facts.attn"}
    assert upward(graph) == ["site_build.macros.text -> site_build.facts.attn"]  # the check can fail
