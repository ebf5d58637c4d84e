"""Fail -> pass: the functions that changed, as SEED revision examples and CodeLutra preference pairs.

When a test that failed in one run passes in a later one, the code between
the two workspace states is the fix. `fixes` compares each changed Python file
function by function (module-level functions and methods, found with `ast`)
and yields, for each function whose code changed: the context before it (from
the passing version), the failing version, the error the tests gave, and the
passing version. The preference pair is the same example read as
(prompt = context, chosen = passing, rejected = failing).

A failing file that does not parse (the error was a syntax error) is cut
along the passing version's function boundaries, mapped through a line diff.
Changes that leave a function's syntax tree alone (comments, formatting) are
not fixes and are skipped.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterator
from dataclasses import dataclass

from .state import State, changed_paths

CONTEXT_CHARS = 4000
MAX_FUNCTIONS = 20  # per fix: a large refactor is not a revision of one function


@dataclass(frozen=True)
class Function:
    qualname: str
    start: int  # first line (0-based), decorators included
    end: int  # line after the last
    node: ast.AST


@dataclass(frozen=True)
class Fix:
    path: str
    function: str
    context: str  # code before the function, passing version, at most CONTEXT_CHARS
    failing: str
    passing: str
    error: str

    @property
    def pair(self) -> tuple[str, str, str]:
        """(prompt, chosen, rejected) for preference learning."""
        return self.context, self.passing, self.failing


def functions(text: str) -> dict[str, Function] | None:
    """Module-level functions and methods of (nested) classes by qualified name; None if `text` does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    found: dict[str, Function] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                end = node.end_lineno if node.end_lineno is not None else node.lineno  # always set by ast.parse
                found[prefix + node.name] = Function(prefix + node.name, first - 1, end, node)
            elif isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return found


def _map_span(old_lines: list[str], new_lines: list[str], start: int, end: int) -> tuple[int, int]:
    """The old lines that correspond to new lines [start, end)."""
    opcodes = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes()

    def where(j: int, at_end: bool) -> int:
        for tag, i1, i2, j1, j2 in opcodes:
            if j1 <= j < j2 or (at_end and j == j2):
                if tag == "equal":
                    return i1 + (j - j1)
                return i2 if at_end else i1
        return len(old_lines)

    return where(start, False), where(end, True)


def changed_functions(old: str, new: str) -> Iterator[tuple[Function, str, str]]:
    """(function in the new text, its old code, its new code) for each function whose code changed."""
    new_functions = functions(new)
    if not new_functions:
        return
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    old_functions = functions(old)
    for name, fn in new_functions.items():
        new_code = "".join(new_lines[fn.start : fn.end])
        if old_functions is not None:
            before = old_functions.get(name)
            if before is None:
                continue  # a new function has no failing version
            if ast.dump(before.node) == ast.dump(fn.node):
                continue
            old_code = "".join(old_lines[before.start : before.end])
        else:
            lo, hi = _map_span(old_lines, new_lines, fn.start, fn.end)
            old_code = "".join(old_lines[lo:hi])
            if old_code == new_code or not old_code.strip():
                continue
        yield fn, old_code, new_code


def fixes(failing: State, passing: State, error: str) -> list[Fix]:
    """The revision examples for one failing -> passing change of the workspace."""
    found: list[Fix] = []
    for path in changed_paths(failing, passing):
        if not path.endswith(".py"):
            continue
        old, new = failing.text(path), passing.text(path)
        if old is None or new is None:
            continue
        new_lines = new.splitlines(keepends=True)
        for fn, old_code, new_code in changed_functions(old, new):
            context = "".join(new_lines[: fn.start])[-CONTEXT_CHARS:]
            found.append(Fix(path, fn.qualname, context, old_code, new_code, error))
            if len(found) >= MAX_FUNCTIONS:
                return found
    return found
