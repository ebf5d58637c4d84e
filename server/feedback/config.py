"""Whether and how a workspace's tests run on save: the editor's settings, the workspace's file, and trust.

Running tests runs the project's code, so it is off until the user turns it
on, either for every workspace with the ``testFeedback`` setting or for one
workspace in its ``.selftune/config.toml``::

    [tests]
    enabled = true
    interpreter = ".venv/bin/python"   # relative to the workspace, or absolute
    timeout = 60                        # seconds, per pytest run
    scope = "related-then-all"          # related | related-then-all | all

and in either case only in a trusted workspace (trust.py). In a trusted
workspace a key in the file wins over the setting. In an untrusted one the
file can only narrow what would run (tests off, a shorter timeout, a
narrower scope); a file git tracks is ignored there entirely; and nothing
runs, whatever the settings and the file say. A bad value is reported (file,
key, what was used instead) and the setting's value is kept.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..workspace import read_config

SCOPES = ("related", "related-then-all", "all")
BREADTH = {"related": 0, "related-then-all": 1, "all": 1}  # how much of the suite a scope runs


@dataclass(frozen=True)
class TestConfig:
    enabled: bool
    interpreter: str
    timeout: float
    scope: str
    held_back: str = ""  # what asked for tests in an untrusted workspace ("" when nothing did)


def default_interpreter(root: Path) -> str:
    """The workspace's own virtual environment if it has one, else the server's interpreter."""
    for candidate in (root / ".venv" / "bin" / "python", root / ".venv" / "Scripts" / "python.exe"):
        if candidate.exists():
            return str(candidate)
    return sys.executable


def resolve_interpreter(root: Path, value: str) -> str:
    if not value:
        return default_interpreter(root)
    path = Path(value).expanduser()
    if not path.is_absolute() and ("/" in value or "\\" in value):
        path = root / path
    return str(path)


def untracked_note(path: Path) -> str:
    return (
        f"{path} is tracked by git, so it came with the repository: selftune ignores it until you trust this workspace"
    )


def load(
    root: Path, *, enabled: bool, interpreter: str, timeout: float, scope: str, trusted: bool
) -> tuple[TestConfig, list[str]]:
    """The test configuration for `root`: the settings given, with the workspace's file applied as trust allows."""
    found = read_config(root)
    problems = list(found.problems)
    tests, bad = found.table("tests")
    problems += bad
    asked = "the testFeedback setting" if enabled else ""
    if found.tracked and not trusted:
        if tests:
            problems.append(untracked_note(found.path))
        if tests.get("enabled") is True:
            asked = f"tests.enabled in {found.path}, which came with the repository"
        tests = {}
    where = found.path
    for key, value in tests.items():
        if key == "enabled":
            if not isinstance(value, bool):
                problems.append(f"{where}: tests.enabled = {value!r} is not true or false; using {enabled}")
            elif trusted or not value:
                enabled = value
                asked = f"tests.enabled in {where}" if value else ""
            else:
                asked = f"tests.enabled in {where}"
        elif key == "interpreter":
            if not isinstance(value, str):
                problems.append(
                    f"{where}: tests.interpreter = {value!r} is not a string; using {interpreter or 'the default'}"
                )
            elif trusted:
                interpreter = value
        elif key == "timeout":
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 3600):
                problems.append(
                    f"{where}: tests.timeout = {value!r} is not a number of seconds in 1..3600; using {timeout:g}"
                )
            elif trusted or value < timeout:
                timeout = float(value)
        elif key == "scope":
            if value not in SCOPES:
                problems.append(f"{where}: tests.scope = {value!r} is not one of {', '.join(SCOPES)}; using {scope}")
            elif trusted or BREADTH[value] <= BREADTH.get(scope, 0):
                scope = value
        else:
            problems.append(f"{where}: unknown key tests.{key} is ignored")
    if scope not in SCOPES:
        problems.append(f"selftune setting 'testScope' = {scope!r} is not one of {', '.join(SCOPES)}; using related")
        scope = "related"
    if not trusted:
        # Nothing runs here; the workspace's own interpreter is not even looked for.
        return TestConfig(False, interpreter or sys.executable, timeout, scope, held_back=asked), problems
    return TestConfig(enabled, resolve_interpreter(root, interpreter), timeout, scope), problems
