"""Test-feedback configuration and the bookkeeping of failing tests."""

import sys

from selftune.server.feedback import config
from selftune.server.feedback.diagnostics import Failures, Problem, result_problems
from selftune.server.settings import parse

DEFAULTS = dict(enabled=False, interpreter="", timeout=60.0, scope="related", trusted=True)


def test_off_unless_turned_on_and_the_default_interpreter(tmp_path):
    cfg, problems = config.load(tmp_path, **DEFAULTS)
    assert (cfg.enabled, cfg.interpreter, problems) == (False, sys.executable, [])
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    assert config.load(tmp_path, **DEFAULTS)[0].interpreter == str(tmp_path / ".venv" / "bin" / "python")


def test_the_workspace_file_wins_and_bad_values_are_named(tmp_path):
    (tmp_path / ".selftune").mkdir()
    path = tmp_path / ".selftune" / "config.toml"
    path.write_text('[tests]\nenabled = true\ninterpreter = "env/bin/python"\ntimeout = 5\nscope = "all"\n')
    cfg, problems = config.load(tmp_path, **DEFAULTS)
    assert cfg == config.TestConfig(True, str(tmp_path / "env" / "bin" / "python"), 5.0, "all") and problems == []
    path.write_text('[tests]\nenabled = "yes"\ntimeout = 0\nscope = "some"\ncolour = 1\n')
    cfg, problems = config.load(tmp_path, **DEFAULTS)
    assert (cfg.enabled, cfg.timeout, cfg.scope) == (False, 60.0, "related")
    assert len(problems) == 4 and all(str(path) in p for p in problems)
    assert any("tests.enabled" in p for p in problems) and any("tests.colour" in p for p in problems)
    path.write_text("[tests\n")
    cfg, problems = config.load(tmp_path, **DEFAULTS)
    assert not cfg.enabled and "cannot be read" in problems[0]


def test_settings_for_tests():
    settings, problems = parse({"testFeedback": True, "testScope": "everything", "testTimeout": 0})
    assert settings.test_feedback and settings.test_scope == "related" and settings.test_timeout == 60
    assert any("testScope" in p and "related-then-all" in p for p in problems)
    assert any("testTimeout" in p for p in problems)


def test_a_failure_at_two_places_and_its_clearing():
    result = {
        "event": "result",
        "nodeid": "tests/test_a.py::test_x",
        "outcome": "failed",
        "when": "call",
        "message": "ValueError: no",
        "frame": ["a.py", 3],
        "test_frame": ["tests/test_a.py", 7],
        "location": ["tests/test_a.py", 5],
    }
    problems = result_problems(result)
    assert [(p.path, p.line) for p in problems] == [("a.py", 3), ("tests/test_a.py", 7)]
    assert problems[0].related[0][:2] == ("tests/test_a.py", 7) and problems[1].related[0][:2] == ("a.py", 3)
    assert result_problems({**result, "outcome": "passed"}) == []
    same = result_problems({**result, "frame": ["tests/test_a.py", 7]})
    assert len(same) == 1 and same[0].message.startswith("tests/test_a.py::test_x failed: ValueError")

    failures = Failures()
    assert failures.set("tests/test_a.py::test_x", problems) == {"a.py", "tests/test_a.py"}
    assert failures.set("tests/test_a.py::test_x", problems) == set()  # nothing changed: nothing to publish
    other = [Problem("tests/test_b.py", 1, "m", "failed", "tests/test_b.py::test_y")]
    failures.set("tests/test_b.py::test_y", other)
    # test_a.py ran completely and test_x was not in it any more
    assert failures.forget_missing({"tests/test_a.py"}, set()) == {"a.py", "tests/test_a.py"}
    assert set(failures.by_test) == {"tests/test_b.py::test_y"}
    assert failures.set("tests/test_b.py::test_y", []) == {"tests/test_b.py"}
    assert failures.by_path() == {}
