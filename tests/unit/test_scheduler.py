"""The adaptation scheduler's run supervision, with a real child process standing in for `selftune adapt`."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from selftune.server.scheduler import Scheduler
from selftune.server.settings import Settings


class _Host:
    """What the scheduler asks of the server: settings, messages, and progress (shown nowhere here)."""

    def __init__(self, **settings):
        self.settings = dataclasses.replace(Settings(), **settings)
        self.said: list[str] = []

    def say(self, message, kind=None, *, once=False):
        self.said.append(message)

    def start_progress(self, title, message="", *, kind="work"):
        return SimpleNamespace(report=lambda *args: None, end=lambda *args: None)


def _scheduler(host: _Host) -> Scheduler:
    return Scheduler(
        host,
        recording=SimpleNamespace(roots=[], journals={}),
        checking=SimpleNamespace(),
        completer=lambda: None,
        changed=lambda: None,
    )


def _gone(pid: int) -> bool:
    """No such process, or only a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


async def test_a_run_past_adapt_max_minutes_is_stopped_with_its_children(tmp_path: Path):
    child_pid = tmp_path / "child.pid"
    # A run that reports progress, starts a child of its own, and then never ends.
    hang = (
        "import json, subprocess, sys, time\n"
        "print(json.dumps({'event': 'progress', 'message': 'training', 'percent': 10}), flush=True)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n"
    )
    server = _Host(adapt_max_minutes=0.05)  # 3 s
    scheduler = _scheduler(server)
    scheduler.command = lambda root: [sys.executable, "-c", hang]
    started = time.monotonic()
    # A child left alive would hold the run's stdout open, and the run would never be seen to end.
    await asyncio.wait_for(scheduler._run(tmp_path), 60)
    assert 2.5 < time.monotonic() - started < 30
    assert scheduler.reserved is None and scheduler.process is None  # the slot is free for the next run
    assert scheduler.last_result["event"] == "error"
    assert "stopped after 0.05 minutes (adaptMaxMinutes)" in scheduler.last_result["message"]
    assert any("adaptation failed, the adapter in use stays" in m and "adaptMaxMinutes" in m for m in server.said)
    pid = int(child_pid.read_text())
    for _ in range(50):  # the kill reaches the child at once; reaping it may take a moment
        if _gone(pid):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the run's child {pid} outlived the stopped run")


async def test_a_run_that_ends_in_time_reports_its_result(tmp_path: Path):
    done = (
        "import json\n"
        "print(json.dumps({'event': 'result', 'decision': 'kept',\n"
        "                  'reason': 'edit similarity 0.4 does not beat 0.5'}))\n"
    )
    server = _Host(adapt_max_minutes=5.0)
    scheduler = _scheduler(server)
    scheduler.command = lambda root: [sys.executable, "-c", done]
    await scheduler._run(tmp_path)
    assert scheduler.last_result["decision"] == "kept"
    assert server.said == [
        "selftune: the new adapter was not better, the one in use stays: edit similarity 0.4 does not beat 0.5."
    ]


def test_a_run_is_told_when_it_will_be_stopped_and_plans_its_verdict_before(tmp_path: Path):
    import argparse

    from selftune.server.cli_adapt import _adaptation

    scheduler = _scheduler(_Host(adapt_max_minutes=15.0))
    scheduler.checking = SimpleNamespace(trust=lambda root: SimpleNamespace(trusted=False), enabled_roots=lambda: [])
    command = scheduler.command(tmp_path)
    assert command[command.index("--stop-after") + 1] == "15"
    # what `selftune adapt` makes of it: the recipe's 20 minutes become 13.5, so its verdict comes before the stop
    args = argparse.Namespace(
        command="adapt", workspace=str(tmp_path), set=[], stop_after=15.0, trusted=False, json=True
    )
    assert _adaptation(args)[1].minutes == 13.5
    # a run with no limit of its own plans for the same share of the stop; a shorter plan stays as it is
    assert _adaptation(argparse.Namespace(**{**vars(args), "set": ["minutes=0"]}))[1].minutes == 13.5
    assert _adaptation(argparse.Namespace(**{**vars(args), "set": ["minutes=5"]}))[1].minutes == 5.0
    assert _adaptation(argparse.Namespace(**{**vars(args), "stop_after": 0.0}))[1].minutes == 20.0


def test_a_run_imports_the_history_the_server_imports_and_none_with_record_off(tmp_path: Path):
    import argparse

    from selftune.server.cli_adapt import _adaptation

    def depth(**settings) -> int:
        scheduler = _scheduler(_Host(**settings))
        scheduler.checking = SimpleNamespace(trust=lambda root: SimpleNamespace(trusted=False), enabled_roots=list)
        command = scheduler.command(tmp_path)
        sets = [command[i + 1] for i, a in enumerate(command) if a == "--set"]
        args = argparse.Namespace(command="adapt", workspace=str(tmp_path), set=sets, stop_after=0.0, trusted=False,
                                  json=True)  # fmt: skip
        return _adaptation(args)[1].history_depth

    assert depth(history_depth=37) == 37
    assert depth(history_depth=37, record=False) == 0
