"""The package's modules import each other one way: no import cycle, not even through a function-level import.

The graph is read from the source with `ast` (nothing is imported): every
`import` and `from ... import` of a `keras_margin` module, at any depth of a
file (inside functions too), relative ones resolved against the importing
module. `from package import name` points at the submodule `package.name`
when there is one, else at the package's `__init__`. Importing a submodule
also runs its parent packages' `__init__`; those edges are left out, since
every package that re-exports its submodules would otherwise be a cycle.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "keras_margin"


def module_files():
    """`{module name: path}` of every module of the package (a package is its `__init__.py`)."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name, path, modules):
    """The package's modules that the module `name` (at `path`) imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:  # `import a.b.c` of a name inside a.b → a.b
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def import_graph():
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph):
    """One cycle `[a, b, ..., a]` through each strongly connected group of modules (Tarjan's algorithm)."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph, group):
    """A closed path inside a strongly connected `group`, from its first module in sorted order."""
    start = min(group)
    path, seen = [start], {start}
    while True:
        successors = sorted(t for t in graph[path[-1]] if t in group)
        if start in successors and len(path) > 1:
            return path + [start]
        step = next((t for t in successors if t not in seen), None)
        if step is None:  # every successor seen: close the loop at the first one on the path
            back = next(t for t in successors if t in seen)
            return path[path.index(back):] + [back]
        path.append(step)
        seen.add(step)


def test_the_graph_is_read_from_the_package():
    graph = import_graph()
    assert "keras_margin.data.identity_dataset" in graph and "keras_margin.data.images" in graph
    # a function-level import and a relative one are edges too
    assert "keras_margin.data.pk_sampler" in graph["keras_margin.data.identity_dataset"]
    assert "keras_margin.data.images" in graph["keras_margin.data.align"]  # imported inside align_folder


def test_the_cycle_finder_names_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" → ".join(cycle) for cycle in found)
