"""Fail -> pass fixes: which functions changed, and what each example holds."""

import subprocess
from pathlib import Path

from selftune.server.feedback.pairs import changed_functions, fixes, functions
from selftune.server.feedback.state import State, capture, changed_paths

BEFORE = """import math


@cache
def area(r):
    return math.pi * r * r


class Shape:
    def scale(self, k):
        return k

    class Inner:
        def deep(self):
            return 1


def untouched():
    return 0
"""


def test_functions_are_found_with_decorators_and_methods():
    found = functions(BEFORE)
    assert set(found) == {"area", "Shape.scale", "Shape.Inner.deep", "untouched"}
    assert BEFORE.splitlines()[found["area"].start] == "@cache"


def test_only_functions_whose_code_changed_count():
    after = (
        BEFORE.replace("math.pi * r * r", "math.pi * r ** 2")
        .replace("return k", "return k  # a comment is not a fix")
        .replace("return 1", "return 2")
        + "\n\ndef added():\n    pass\n"
    )
    changed = {fn.qualname: (old, new) for fn, old, new in changed_functions(BEFORE, after)}
    assert set(changed) == {"area", "Shape.Inner.deep"}
    assert changed["area"] == (
        "@cache\ndef area(r):\n    return math.pi * r * r\n",
        "@cache\ndef area(r):\n    return math.pi * r ** 2\n",
    )


def test_a_failing_version_that_does_not_parse_is_cut_along_the_passing_one():
    broken = BEFORE.replace("return math.pi * r * r", "return math.pi * r * (r")
    changed = {fn.qualname: (old, new) for fn, old, new in changed_functions(broken, BEFORE)}
    assert set(changed) == {"area"}
    assert changed["area"][0] == "@cache\ndef area(r):\n    return math.pi * r * (r\n"


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@e", *args], cwd=root, check=True, capture_output=True
    )


def test_fixes_between_two_captured_states(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "geo.py").write_text(BEFORE)
    (tmp_path / "notes.txt").write_text("hello\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "geo")
    (tmp_path / "geo.py").write_text(BEFORE.replace("r * r", "r + r"))
    (tmp_path / "new.py").write_text("def f():\n    return 1\n")
    failing = capture(tmp_path)
    assert set(failing.files) == {"geo.py", "new.py"} and failing.head
    (tmp_path / "geo.py").write_text(BEFORE)
    (tmp_path / "new.py").write_text("def f():\n    return 2\n")
    passing = capture(tmp_path)
    assert set(passing.files) == {"new.py"}
    assert changed_paths(failing, passing) == ["geo.py", "new.py"]
    found = {(f.path, f.function): f for f in fixes(failing, passing, "AssertionError: 2 != 4")}
    assert set(found) == {("geo.py", "area"), ("new.py", "f")}
    area = found["geo.py", "area"]
    assert area.context == "import math\n\n\n"
    assert "r + r" in area.failing and "r * r" in area.passing
    assert area.pair == (area.context, area.passing, area.failing)
    assert area.error == "AssertionError: 2 != 4"


def test_a_commit_between_the_runs_is_seen(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "geo.py").write_text(BEFORE.replace("r * r", "r + r"))
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "wrong")
    failing = capture(tmp_path)
    (tmp_path / "geo.py").write_text(BEFORE)
    git(tmp_path, "commit", "-qam", "right")
    passing = capture(tmp_path)
    assert failing.files == {} and passing.files == {} and failing.head != passing.head
    assert [f.function for f in fixes(failing, passing, "e")] == ["area"]


def test_a_workspace_without_git_is_captured_whole(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "b.py").write_text("y = 2\n")
    state = capture(tmp_path)
    assert state.head is None and state.files == {"a.py": "x = 1\n"}
    assert State(tmp_path, None).text("a.py") is None


def test_untracked_folders_give_their_python_files_but_environments_nothing(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "a")
    (tmp_path / "newpkg" / "sub").mkdir(parents=True)
    (tmp_path / "newpkg" / "sub" / "mod.py").write_text("y = 2\n")
    (tmp_path / "newpkg" / "data.bin").write_bytes(b"\x00\x01")
    (tmp_path / "venv2" / "lib").mkdir(parents=True)
    (tmp_path / "venv2" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / "venv2" / "lib" / "site.py").write_text("z = 3\n")
    assert capture(tmp_path).files == {"newpkg/sub/mod.py": "y = 2\n"}
