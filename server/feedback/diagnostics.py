"""Failing tests as problems in files: what the editor shows, without LSP.

Each failing test gives one `Problem` at the deepest traceback frame in the
project's source and one at the test's own failing line (one if those are the
same place), each pointing at the other. A test that timed out or killed its
interpreter gets one at its definition and one where it was when it ended, if
that is known. `Failures` keeps the problems of the tests failing now, by test,
and says which files' diagnostics change when a test fails or passes again.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from dataclasses import dataclass

from .runner import RunEnd

SOURCE = "selftune-tests"


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the workspace, POSIX
    line: int  # 1-based
    message: str
    code: str  # failed | error | collection-error | timeout | crashed
    nodeid: str
    related: tuple[tuple[str, int, str], ...] = ()  # (path, line, what is there)


def _place(value) -> tuple[str, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
        return value[0], max(1, value[1])
    return None


def _pair(
    nodeid: str, code: str, source: tuple[str, int] | None, test: tuple[str, int] | None, at_source: str, at_test: str
) -> list[Problem]:
    if source is None and test is None:
        return []
    if source is None or source == test:
        where = test if test is not None else source
        assert where is not None  # checked above
        return [Problem(*where, at_test, code, nodeid)]
    if test is None:
        return [Problem(*source, at_source, code, nodeid)]
    return [
        Problem(*source, at_source, code, nodeid, ((*test, f"{nodeid} fails here"),)),
        Problem(*test, at_test, code, nodeid, ((*source, "raised here"),)),
    ]


def result_problems(result: dict) -> list[Problem]:
    """The problems of one plugin `result` event (none if it passed or was skipped)."""
    outcome = result.get("outcome")
    if outcome not in ("failed", "error"):
        return []
    nodeid = str(result.get("nodeid") or "")
    message = str(result.get("message") or outcome)
    if result.get("when") == "collect":
        code, at_test = "collection-error", f"{nodeid} cannot be collected: {message}"
    elif outcome == "error":
        code, at_test = "error", f"{nodeid} errored in {result.get('when', 'setup')}: {message}"
    else:
        code, at_test = "failed", f"{nodeid} failed: {message}"
    source = _place(result.get("frame"))
    test = _place(result.get("test_frame")) or _place(result.get("location"))
    return _pair(nodeid, code, source, test, f"{message}\n(in {nodeid})", at_test)


def ending_problems(end: RunEnd, location: tuple[str, int] | None, timeout: float, interpreter: str) -> list[Problem]:
    """The problems of the test that was running when the run timed out or crashed."""
    nodeid = end.running or ""
    if end.status == "timeout":
        code = "timeout"
        what = (
            f"{nodeid or 'the test run'} did not finish within {timeout:g} s (testTimeout); "
            "the test process was killed with every process it started"
        )
        at_source = f"{nodeid or 'the test run'} was here when it was killed after {timeout:g} s"
    else:
        code = "crashed"
        how = f"was killed by {end.signal_name}" if end.signal_name else f"exited with status {end.exit_code}"
        what = f"{nodeid or 'the test run'} killed its interpreter: {interpreter} {how} during this test"
        at_source = f"the interpreter {how} here, in {nodeid or 'the test run'}"
    deepest = end.stacks[0] if end.stacks else None
    test_file = nodeid.split("::")[0] if nodeid else None
    in_test = next((f for f in end.stacks if f[0] == test_file), None) or location
    return _pair(nodeid, code, deepest, in_test, at_source, what)


class Failures:
    """The problems of the tests failing now, by test id."""

    def __init__(self) -> None:
        self.by_test: dict[str, list[Problem]] = {}

    def set(self, nodeid: str, problems: list[Problem]) -> set[str]:
        """Record the test's problems now (none: it passes); returns the paths whose diagnostics changed."""
        old = self.by_test.pop(nodeid, [])
        if problems:
            self.by_test[nodeid] = problems
        if old == problems:
            return set()
        return {p.path for p in old} | {p.path for p in problems}

    def forget_missing(self, test_files: builtins.set[str], reported: builtins.set[str]) -> builtins.set[str]:
        """Tests of `test_files` that a complete run did not report no longer exist: drop them."""
        changed: builtins.set[str] = builtins.set()
        for nodeid in [n for n in self.by_test if n.split("::")[0] in test_files and n not in reported]:
            changed |= self.set(nodeid, [])
        return changed

    def by_path(self) -> dict[str, list[Problem]]:
        paths: dict[str, list[Problem]] = defaultdict(list)
        for problems in self.by_test.values():
            for problem in problems:
                paths[problem.path].append(problem)
        return paths
