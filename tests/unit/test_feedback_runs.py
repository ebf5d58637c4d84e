"""A test run's workspace state is the one pytest ran on, even when reading it is slow."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

from selftune.server.feedback import config as feedback_config
from selftune.server.feedback import on_save as feedback
from selftune.server.journal import events as ev

BROKEN = "def mean(xs):\n    return totl / len(xs)\n"
FIXED = "def mean(xs):\n    return sum(xs) / len(xs)\n"


class Store:
    def __init__(self):
        self.events: list[ev.Event] = []

    def put(self, event: ev.Event) -> None:
        self.events.append(event)


class Progress:
    def report(self, message: str, percent: int | None = None) -> None:
        pass

    def end(self, message: str) -> None:
        pass


def project(root: Path) -> Path:
    (root / "stats.py").write_text(FIXED)
    (root / "test_stats.py").write_text("from stats import mean\n\n\ndef test_mean():\n    assert mean([1, 3]) == 2\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "stats"]):
        subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@e", *args], cwd=root, check=True)
    return root


def test_a_state_read_after_the_run_still_holds_the_failing_code(tmp_path, monkeypatch):
    root = project(tmp_path)
    real_capture = feedback.capture
    fix_written = threading.Event()

    def slow_capture(*args):
        fix_written.wait(timeout=5.0)  # a busy machine: read only once the fix is on disk, if the run allows it
        return real_capture(*args)

    monkeypatch.setattr(feedback, "capture", slow_capture)
    store = Store()
    journal = SimpleNamespace(
        store=store,
        session="s",
        rules=SimpleNamespace(allows=lambda path: True),
        recorder=SimpleNamespace(revised={}, forget_revised=lambda keys: None),
    )
    config = feedback_config.TestConfig(enabled=True, interpreter=sys.executable, timeout=60.0, scope="related")

    async def edit_and_save() -> None:
        tests = feedback.TestFeedback(
            root,
            publish=lambda paths: None,
            progress=lambda title, message: Progress(),
            say=lambda message: None,
            journal=lambda: journal,
        )
        (root / "stats.py").write_text(BROKEN)
        tests.saved("stats.py", config)
        await tests.task
        (root / "stats.py").write_text(FIXED)  # right after the failing run ends
        fix_written.set()
        tests.saved("stats.py", config)
        await tests.task
        tests.stop()

    asyncio.run(edit_and_save())
    ends = [e for e in store.events if isinstance(e, ev.RunEnded)]
    assert [(e.status, e.failed) for e in ends] == [("finished", 1), ("finished", 0)]
    fixes = [e for e in store.events if isinstance(e, ev.Fix)]
    assert len(fixes) == 1
    fix = fixes[0]
    assert (fix.path, fix.function, fix.failing, fix.passing, fix.tests) == (
        "stats.py",
        "mean",
        BROKEN,
        FIXED,
        "test_stats.py::test_mean",
    )
    assert "NameError" in fix.error
    assert ev.RunFile(fix.failing_run, "stats.py", BROKEN) in store.events
