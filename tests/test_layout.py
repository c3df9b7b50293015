"""The package's layout: imports point one way, and what runs beside student code never reaches
the answers.

Read from the source (no module is imported): every ``import`` in ``grader/``, at module level,
inside a function or under ``TYPE_CHECKING``, is an arrow from one module to another. An import
of a package's own face (``import grader.student`` in a submodule) is not an arrow:
Python runs a package's ``__init__`` before any module in it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "grader"

# What each folder may import, besides itself and the ground floor (the layers, from the ground
# up). The top-level modules (cli, plugin, the package's face) are entry points: they may import any.
GROUND = {"project"}  # where the course project is: every layer may ask
MAY_IMPORT: dict[str, set[str]] = {
    "project": set(),
    "models": set(),
    "student": {"models"},
    "sandbox": {"student", "models"},
    "judging": {"sandbox", "student", "models"},
    "reports": {"judging"},
    "grading": {"judging", "sandbox", "student", "models", "reports"},
    "classroom": {"grading", "reports", "sandbox", "student"},  # student: the one notebook reader
    "notebooks": {"grading", "reports", "student", "models"},
    "course": {"judging", "models", "toy"},  # a bundle draws hidden inputs from the toy corpus's word lists
    "toy": {"judging", "models"},
}
# Where student code runs, nothing may lead, however indirectly, to expected values or points.
STUDENT_SIDE = "grader.student"
NEVER_FROM_STUDENT_SIDE = ("grader.judging", "grader.grading", "grader.reports", "grader.classroom",
                           "grader.course", "grader.notebooks", "grader.plugin", "grader.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_names(tree: ast.AST, importer: str) -> Iterator[tuple[str, ast.stmt]]:
    """Every dotted name an import statement names: the module, and module.name for each name."""
    package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base, node
            for alias in node.names:
                yield f"{base}.{alias.name}", node


def resolve(name: str) -> str | None:
    """The grader module a dotted name lives in (longest known prefix), or None outside grader."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def arrows() -> dict[str, dict[str, int]]:
    """importer -> {imported module: line of the first import of it}."""
    graph: dict[str, dict[str, int]] = {}
    for importer, path in MODULES.items():
        found = graph.setdefault(importer, {})
        for name, node in imported_names(ast.parse(path.read_text(encoding="utf-8")), importer):
            target = resolve(name)
            if target is None or target == importer or importer.startswith(f"{target}."):
                continue  # outside grader, itself, or its own package's face
            found.setdefault(target, node.lineno)
    return graph


GRAPH = arrows()


def folder_of(module: str) -> str | None:
    """'student' for grader.student.executor; None for the top-level entry points."""
    parts = module.split(".")
    if len(parts) == 2 and parts[1] in ("models", "project"):
        return parts[1]
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
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
            visit(node)
    return found


def reachable_from(start: str) -> dict[str, list[str]]:
    """Every module `start` leads to, with the chain of imports that gets there."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        current = queue.pop(0)
        for target in GRAPH.get(current, {}):
            if target not in paths:
                paths[target] = [*paths[current], target]
                queue.append(target)
    return paths


def test_the_import_reader_sees_the_package() -> None:
    assert {"grader.plugin", "grader.student.executor", "grader.judging.fixtures"} <= set(MODULES)
    assert "grader.judging.compare" in GRAPH["grader.judging.fixtures"]  # a module-level import
    assert "grader.judging.pictures" in GRAPH["grader.judging.scoring"]  # a late one counts too


def test_no_module_imports_itself_through_others() -> None:
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(f"{STUDENT_SIDE}.")))
def test_the_student_side_never_leads_to_the_answers(module: str) -> None:
    for target, chain in reachable_from(module).items():
        assert not target.startswith(NEVER_FROM_STUDENT_SIDE), " -> ".join(chain)


@pytest.mark.parametrize("importer", sorted(GRAPH))
def test_each_folder_imports_only_the_layers_below_it(importer: str) -> None:
    folder = folder_of(importer)
    if folder is None:
        return  # an entry point: cli, plugin, the package's face
    allowed = MAY_IMPORT[folder] | {folder} | GROUND
    for target, line in GRAPH[importer].items():
        assert folder_of(target) in allowed, (
            f"{MODULES[importer].relative_to(PACKAGE.parent)}:{line} imports {target}, but "
            f"grader/{folder}/ may import only {sorted(allowed)}")


@pytest.mark.parametrize("folder", sorted(p.name for p in PACKAGE.iterdir()
                                         if p.is_dir() and any(p.glob("*.py"))))
def test_each_folder_says_what_it_is_for_and_what_it_may_import(folder: str) -> None:
    face = PACKAGE / folder / "__init__.py"
    assert face.is_file(), f"grader/{folder}/ has no __init__.py"
    docstring = ast.get_docstring(ast.parse(face.read_text(encoding="utf-8"))) or ""
    assert len(docstring.split()) >= 8, f"grader/{folder}/__init__.py: say in its docstring what the folder is for"
    assert "May import" in docstring, f"grader/{folder}/__init__.py: say what the folder may import"
    assert folder in MAY_IMPORT, f"grader/{folder}/: give it a row in MAY_IMPORT"


def test_the_layer_rules_name_only_folders_that_exist() -> None:
    for folder, allowed in MAY_IMPORT.items():
        for name in {folder, *allowed}:
            assert (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file(), name


def late_imports() -> Iterator[tuple[str, int, str]]:
    """(file, line, source line) of every import of a grader module made inside a function."""
    for module, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and any(
                            resolve(name) for name, _ in imported_names(inner, module)):
                        yield str(path.relative_to(PACKAGE.parent)), inner.lineno, lines[inner.lineno - 1]


def test_a_late_import_of_the_package_says_why() -> None:
    """An import inside a function is for a heavy dependency (matplotlib, pytest), never to dodge a
    cycle: it says why on its line or the line above, as ``# late: <reason>``."""
    unexplained = []
    for file, line, text in late_imports():
        above = (PACKAGE.parent / file).read_text(encoding="utf-8").splitlines()[line - 2]
        if "# late:" not in text and not above.strip().startswith("# late:"):
            unexplained.append(f"{file}:{line}: {text.strip()}")
    assert not unexplained, "\n".join(unexplained)
