"""The package's layout shows the data flow, and its code reads top to bottom.

- No import cycle among gcstudy's modules (imports inside functions count too): a cycle
  means two rooms own one thing.
- ``gcstudy.study`` (the vocabulary) imports no stage: every stage imports it, never the
  other way round.
- No function is longer than ``MAX_LINES`` without saying why in its docstring
  (``LONG_REASON``).
- No loop over a literal of one element.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 60
LONG_REASON = "Kept in one piece because"
STAGES = ("data", "models", "training", "metrics", "measure", "analysis", "scheduling", "cli")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "gcstudy").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gcstudy modules ``name`` imports (a name imported from a package counts as
    that package's module when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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
            visit(node)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it():
    """Package __init__ files that only gather their submodules are exempt from counting
    as the package's members importing them back."""
    graph = import_graph()
    for name, imported in graph.items():
        graph[name] = {m for m in imported if not name.startswith(m + ".")}
    assert cycles(graph) == []


def test_the_vocabulary_imports_no_stage():
    graph = import_graph()
    for name, imported in graph.items():
        if name == "gcstudy.study" or name.startswith("gcstudy.study."):
            stages = [m for m in imported if m.split(".")[1] in STAGES]
            assert not stages, f"{name} imports the stage(s) {stages}"


def label(path: Path) -> str:
    return str(path.relative_to(SRC)) if path.is_relative_to(SRC) else path.name


def long_functions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_LINES and LONG_REASON not in (ast.get_docstring(node) or ""):
                found.append(f"{label(path)}:{node.lineno} {node.name} ({length} lines)")
    return found


def one_element_loops(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.For | ast.comprehension):
            items = node.iter
            if isinstance(items, ast.Tuple | ast.List | ast.Set) and len(items.elts) == 1:
                found.append(f"{label(path)}:{items.lineno}")
    return found


@pytest.mark.parametrize("check", [long_functions, one_element_loops])
def test_functions_read_on_one_screen(check):
    found = [line for path in modules().values() for line in check(path)]
    assert found == []


def test_the_code_checks_find_planted_faults(tmp_path):
    long = "def f():\n" + "    x = 1\n" * MAX_LINES + "    return x\n"
    reasoned = f'def f():\n    """{LONG_REASON} it is one formula."""\n' + "    x = 1\n" * 60
    loop = "for x in (1,):\n    pass\n"
    for text, check, expected in (
        (long, long_functions, 1),
        (reasoned, long_functions, 0),
        (loop, one_element_loops, 1),
        ("for x in (1, 2):\n    pass\n", one_element_loops, 0),
    ):
        path = tmp_path / "planted.py"
        path.write_text(text)
        assert len(check(path)) == expected, text
