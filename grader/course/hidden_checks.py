"""Hidden checks in a check file: which test functions are hidden (``@pytest.mark.hidden``), how
many checks and points they make, and the file without them (what a release ships).

Read from the source, never imported: the release and the bundle count the same way, so that the
two agree on names, points and public checks.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

HIDDEN_MARK = "hidden"


class CheckFileError(Exception):
    """A check file the counting cannot read; the message says what to change."""


@dataclass
class CheckFileCut:
    """A check file without its hidden checks."""

    text: str
    hidden_checks: int = 0
    hidden_points: float = 0.0
    public: dict[str, float] = field(default_factory=dict)  # public test function -> points per case


def _is_mark(decorator: ast.expr, name: str) -> bool:
    """@pytest.mark.<name> or @pytest.mark.<name>(...)."""
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(node, ast.Attribute) and node.attr == name and ast.unparse(node.value) == "pytest.mark"


def _points(function: ast.FunctionDef) -> float:
    for decorator in function.decorator_list:
        if _is_mark(decorator, "points") and isinstance(decorator, ast.Call) and decorator.args:
            return float(ast.literal_eval(decorator.args[0]))
    return 1.0


def _cases(function: ast.FunctionDef, module: ast.Module) -> int:
    """How many tests a function makes: the product of its parametrize lists' lengths."""
    count = 1
    for decorator in function.decorator_list:
        if not (_is_mark(decorator, "parametrize") and isinstance(decorator, ast.Call) and len(decorator.args) > 1):
            continue
        values = decorator.args[1]
        if isinstance(values, ast.Call) and isinstance(values.func, ast.Name) and values.func.id == "list" and values.args:
            values = values.args[0]
        if isinstance(values, ast.Name):
            bound = [n.value for n in module.body if isinstance(n, ast.Assign)
                     and any(isinstance(t, ast.Name) and t.id == values.id for t in n.targets)]
            values = bound[-1] if bound else values
        if not isinstance(values, (ast.List, ast.Tuple, ast.Dict)):
            raise CheckFileError(f"cannot count the cases of {function.name}: parametrize it with a list literal "
                               "or a module-level list")
        count *= len(values.keys) if isinstance(values, ast.Dict) else len(values.elts)
    return count


def _names_used(nodes: list[ast.stmt]) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def _defined_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    return None


def cut_hidden_checks(source: str) -> CheckFileCut:
    """`source` without its @pytest.mark.hidden test functions, nor the module-level helpers and
    constants only they used, and with HIDDEN_CHECKS saying what was cut."""
    module = ast.parse(source)
    hidden = [n for n in module.body if isinstance(n, ast.FunctionDef) and any(_is_mark(d, HIDDEN_MARK) for d in n.decorator_list)]
    cut = CheckFileCut(source)
    for function in hidden:
        cases = _cases(function, module)
        cut.hidden_checks += cases
        cut.hidden_points += cases * _points(function)
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and node not in hidden:
            cut.public[node.name] = _points(node)
    removed = list(hidden)
    while True:  # helpers only the removed code used, until none is left
        kept = [n for n in module.body if n not in removed]
        used_by_removed = _names_used(removed)
        orphans = [n for n in kept if (name := _defined_name(n)) and name in used_by_removed
                   and not any(name in _names_used([k]) for k in kept if k is not n)]
        if not orphans:
            break
        removed += orphans
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    for node in removed:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        drop.update(range(first - 1, node.end_lineno or node.lineno))
    text = "".join(line for i, line in enumerate(lines) if i not in drop)
    text = _squeeze_blank_lines(text)
    if cut.hidden_checks:
        points = f"{cut.hidden_points:g}"
        declaration = (f"# This release leaves out {cut.hidden_checks} hidden checks ({points} points), on inputs the "
                       f"exercise never shows: only the autograder runs them.\n"
                       f"HIDDEN_CHECKS = {{\"checks\": {cut.hidden_checks}, \"points\": {points}}}\n")
        text = _after_topic(text, declaration)
    cut.text = text
    return cut


def _squeeze_blank_lines(text: str) -> str:
    """At most two blank lines in a row, as the file had them around what was cut."""
    out: list[str] = []
    blank = 0
    for line in text.splitlines(keepends=True):
        blank = blank + 1 if not line.strip() else 0
        if blank <= 2:
            out.append(line)
    return "".join(out).rstrip("\n") + "\n"


def _after_topic(text: str, declaration: str) -> str:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("TOPIC ="):
            return "".join(lines[: i + 1] + [declaration] + lines[i + 1 :])
    raise CheckFileError("a check file with hidden checks must set TOPIC at module level")
