"""The package's shape: no import cycles, and no layer imports a layer above it.

Imports are read from the source (module level and inside functions alike, but not those under
``if TYPE_CHECKING``), so a cycle hidden in a function body counts too.
"""

import ast
from pathlib import Path

import memlaw

SOURCE = Path(memlaw.__file__).parent
#: The pipeline, lowest first; a module may import its own layer and the ones before it.
LAYERS = ["base", "data", "models", "placements", "engine", "measure", "training", "probe", "memory", "sweep", "law",
          "laws", "report", "api", "hf", "cli"]  # fmt: skip
BASE = {"errors", "constants", "config", "io", "_lazy", "_version"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SOURCE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """memlaw modules ``path`` imports (outside ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(n) for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }  # fmt: skip
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                      for alias in node.names}  # fmt: skip
    return {name for name in found if name in MODULES}


def layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else "base"
    return "base" if part in BASE else part


GRAPH = {module: imports(path) for module, path in MODULES.items()}


def test_no_import_cycles():
    """Tarjan's strongly connected components; a package importing its own submodules is no cycle."""
    edges = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in GRAPH.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert cycles == []


def test_no_layer_imports_a_higher_one():
    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if module != "memlaw" and LAYERS.index(layer(target)) > LAYERS.index(layer(module))
    ]
    assert wrong == []
