"""Whether and how a workspace's tests run on save: the editor's settings, overridden by `.selftune/config.toml`.

Running tests runs the project's code, so it is off until the user turns it
on, either for every workspace with the ``testFeedback`` setting or for one
workspace in its ``.selftune/config.toml``::

    [tests]
    enabled = true
    interpreter = ".venv/bin/python"   # relative to the workspace, or absolute
    timeout = 60                        # seconds, per pytest run
    scope = "related-then-all"          # related | related-then-all | all

A key in the file wins over the setting for that workspace. A bad value is
reported (file, key, what was used instead) and the setting's value is kept.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = Path(".selftune") / "config.toml"
SCOPES = ("related", "related-then-all", "all")


@dataclass(frozen=True)
class TestConfig:
    enabled: bool
    interpreter: str
    timeout: float
    scope: str


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


_cache: dict[Path, tuple[tuple[int, int], dict, list[str]]] = {}


def _read_file(root: Path) -> tuple[dict, list[str]]:
    path = root / CONFIG_FILE
    try:
        st = path.stat()
    except OSError:
        return {}, []
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1], cached[2]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        tests = data.get("tests", {})
        problems = [] if isinstance(tests, dict) else [f"{path}: [tests] must be a table; it is ignored"]
        tests = tests if isinstance(tests, dict) else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        tests, problems = {}, [f"{path} cannot be read ({exc}); it is ignored"]
    _cache[path] = (stamp, tests, problems)
    return tests, problems


def load(root: Path, *, enabled: bool, interpreter: str, timeout: float, scope: str) -> tuple[TestConfig, list[str]]:
    """The test configuration for `root`: the settings given, overridden by the workspace's config file."""
    tests, problems = _read_file(root)
    problems = list(problems)
    where = root / CONFIG_FILE
    for key, value in tests.items():
        if key == "enabled":
            if isinstance(value, bool):
                enabled = value
            else:
                problems.append(f"{where}: tests.enabled = {value!r} is not true or false; using {enabled}")
        elif key == "interpreter":
            if isinstance(value, str):
                interpreter = value
            else:
                problems.append(f"{where}: tests.interpreter = {value!r} is not a string; using {interpreter or 'the default'}")
        elif key == "timeout":
            if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 3600:
                timeout = float(value)
            else:
                problems.append(f"{where}: tests.timeout = {value!r} is not a number of seconds in 1..3600; using {timeout:g}")
        elif key == "scope":
            if value in SCOPES:
                scope = value
            else:
                problems.append(f"{where}: tests.scope = {value!r} is not one of {', '.join(SCOPES)}; using {scope}")
        else:
            problems.append(f"{where}: unknown key tests.{key} is ignored")
    if scope not in SCOPES:
        problems.append(f"selftune setting 'testScope' = {scope!r} is not one of {', '.join(SCOPES)}; using related")
        scope = "related"
    return TestConfig(enabled, resolve_interpreter(root, interpreter), timeout, scope), problems
