"""Recovery of sessions whose server was killed, on real journals: a recorder writes through a real store and
is dropped without closing (as `kill -9` leaves it), then a new store, as the next server has, settles it."""

import itertools
import os
import signal
import subprocess
import sys
from contextlib import closing

import pytest

from selftune.server.journal import events as ev
from selftune.server.journal import recovery
from selftune.server.journal.queries import document_text, export
from selftune.server.journal.recorder import Recorder
from selftune.server.journal.steps import SETTLE_SECONDS
from selftune.server.journal.store import Store, connect

URI = "file:///w/a.py"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def typing(rec: Recorder, clock: Clock) -> float:
    """Lines typed in three runs (a pause, a jump to the top), suggestions shown; returns the last edit's time."""
    rec.opened(URI, "a.py", "python", 1, "", at=clock.now)
    versions = itertools.count(2)
    lines = 0

    def append(i: int) -> None:
        nonlocal lines
        clock.now += 0.1
        rec.changed(URI, next(versions), [(((lines, 0), (lines, 0)), f"v{i} = {i}\n")])
        lines += 1

    for i in range(5):
        append(i)
    rec.shown(URI, "c0", 0, lines, 0, "v5 = 5", model="m", adapter=None, latency_ms=5, context_hash="h")
    assert rec.accepted("c0")  # resolved: not touched by a recovery
    clock.now += 5  # a pause: the next edit finds the step settled
    for i in range(5, 10):
        append(i)
    clock.now += 0.1
    rec.changed(URI, next(versions), [(((0, 0), (0, 0)), "# top\n")])  # elsewhere: the step ends
    lines += 1
    for i in range(10, 15):
        append(i)
    rec.shown(URI, "c1", 0, lines, 0, "v15 = 15", model="m", adapter=None, latency_ms=5, context_hash="h")
    return clock.now


def server(path, session: str):
    clock = Clock()
    store = Store(path)
    store.put(ev.SessionStarted(session, clock.now, "0.1", "m"))
    ids = itertools.count(1)
    return Recorder(store, session, new_id=lambda: next(ids), clock=clock), clock, store


def killed(path, died_after: float) -> tuple[float, float]:
    """A session that typed, then died `died_after` seconds after its last edit (its last sign of life: an
    outside change it recorded); returns (last edit, death)."""
    rec, clock, store = server(path, "dead")
    last = typing(rec, clock)
    clock.now += died_after
    rec.outside_change("b.py", "b = 1\n")
    assert store.flush(5)
    store.close()  # no SessionEnded, no settled step: what kill -9 leaves
    return last, clock.now


def lived(path, last: float, died: float) -> None:
    """The same typing in a server that lived until `died` and then shut down."""
    rec, clock, store = server(path, "lived")
    typing(rec, clock)
    if last + SETTLE_SECONDS <= died:
        clock.now = last + SETTLE_SECONDS
        rec.tick()
    clock.now = died
    rec.outside_change("b.py", "b = 1\n")
    rec.close()
    store.close()


def recover(path, alive=recovery.server_alive) -> list[str]:
    store = Store(path)  # a new server's: it never saw the dead session's documents
    try:
        with closing(connect(path, readonly=True)) as conn:
            done = recovery.recover(conn, store.put, alive)
        assert store.flush(5)
        return done
    finally:
        store.close()


def steps(path):
    with closing(connect(path, readonly=True)) as conn:
        return conn.execute("SELECT time, path, origin, document_id, diff, edits FROM steps ORDER BY id").fetchall()


@pytest.mark.parametrize("died_after", [0.1, 30.0])
def test_a_killed_session_is_settled_as_its_recorder_would_have_settled_it(tmp_path, died_after):
    dead, alive = tmp_path / "dead.sqlite3", tmp_path / "lived.sqlite3"
    last, died = killed(dead, died_after)
    lived(alive, last, died)
    before = steps(dead)
    assert len(before) == 3 and len(steps(alive)) == 4  # the last step was pending when the server died

    assert recover(dead) == ["dead"]
    assert steps(dead) == steps(alive)  # the same steps, times and all, continuing after the settled ones
    assert steps(dead)[-1][0] == min(last + SETTLE_SECONDS, died)
    added = [line[1:] for *_, diff, _ in steps(dead) for line in diff.splitlines() if line.startswith("+")]
    assert sorted(added) == sorted(["# top"] + [f"v{i} = {i}" for i in range(15)])  # each line once

    with closing(connect(dead, readonly=True)) as conn:
        assert conn.execute("SELECT ended FROM sessions WHERE id = 'dead'").fetchone() == (died,)
        (doc, closed) = conn.execute("SELECT id, closed FROM documents").fetchone()
        assert closed == died
        assert document_text(conn, doc) == "# top\n" + "".join(f"v{i} = {i}\n" for i in range(15))
        assert conn.execute(
            "SELECT b.data IS NOT NULL FROM documents d JOIN blobs b ON b.hash = d.close_snapshot"
        ).fetchone() == (1,)
        outcomes = {r["id"]: (r["outcome"], r["reason"]) for r in export(conn) if r["type"] == "completion"}
        assert outcomes == {"dead-c0": ("accepted", None), "dead-c1": ("rejected", recovery.LOST)}
        (lost_at,) = conn.execute("SELECT time FROM completion_events WHERE reason = ?", (recovery.LOST,)).fetchone()
        assert lost_at == died


def test_a_second_recovery_writes_nothing(tmp_path):
    path = tmp_path / "j.sqlite3"
    killed(path, 0.1)
    with closing(connect(path, readonly=True)) as conn:
        settled = recovery.settle(conn, "dead")
    assert recover(path) == ["dead"]
    once = steps(path)
    assert recover(path) == []  # it has ended
    store = Store(path)  # and the same recovery arriving late (a second server that read before the first wrote)
    store.put(settled)
    assert store.flush(5)
    store.close()
    assert steps(path) == once
    with closing(connect(path, readonly=True)) as conn:
        assert conn.execute("SELECT count(*) FROM completion_events WHERE reason = ?", (recovery.LOST,)).fetchone() == (
            1,
        )


def test_steps_of_an_older_selftune_are_continued_from_their_time(tmp_path):
    """Steps written before steps.edits existed say only when they settled: the edits before that are theirs."""
    dead, alive = tmp_path / "dead.sqlite3", tmp_path / "lived.sqlite3"
    last, died = killed(dead, 0.1)
    lived(alive, last, died)
    with closing(connect(dead)) as conn:
        conn.execute("UPDATE steps SET edits = NULL")
    assert recover(dead) == ["dead"]
    assert [row[:5] for row in steps(dead)] == [row[:5] for row in steps(alive)]


def test_a_live_session_is_left_alone(tmp_path):
    path = tmp_path / "j.sqlite3"
    killed(path, 0.1)
    assert recover(path, alive=lambda pid, session: True) == []
    assert len(steps(path)) == 3
    with closing(connect(path, readonly=True)) as conn:
        assert conn.execute("SELECT ended FROM sessions").fetchall() == [(None,)]
        assert conn.execute("SELECT count(*) FROM completion_events WHERE kind = 'rejected'").fetchone() == (0,)


def test_a_server_is_alive_while_its_process_is_a_python_or_selftune_process():
    python = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    other = subprocess.Popen(["sleep", "60"])  # a pid taken over by another program
    try:
        assert recovery.server_alive(python.pid, "s")
        assert not recovery.server_alive(other.pid, "s")
    finally:
        for process in (python, other):
            process.kill()
    python.wait()
    assert not recovery.server_alive(python.pid, "s")  # gone
    assert not recovery.server_alive(None, "s")
    assert not recovery.server_alive(os.getpid(), "an earlier process's")  # our pid, reused (a container)
    recovery.opened_here("ours")
    try:
        assert recovery.server_alive(os.getpid(), "ours")
    finally:
        recovery.closed_here("ours")


def test_a_zombie_is_not_alive():
    """A server killed but not yet reaped by its editor has no command line."""
    python = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(python.pid, signal.SIGKILL)
        os.waitid(os.P_PID, python.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped
        assert not recovery.server_alive(python.pid, "s")
    finally:
        python.wait()


def test_raw_edits_are_exported_only_when_asked(tmp_path):
    path = tmp_path / "j.sqlite3"
    killed(path, 0.1)
    with closing(connect(path, readonly=True)) as conn:
        assert not [r for r in export(conn) if r["type"] == "edit"]
        edits = [r for r in export(conn, raw_edits=True) if r["type"] == "edit"]
    assert len(edits) == 16
    assert edits[0] == {
        "type": "edit",
        "path": "a.py",
        "document": 1,
        "time": pytest.approx(1000.1),
        "version": 2,
        "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
        "text": "v0 = 0\n",
        "origin": "typing",
    }
    assert [e["time"] for e in edits] == sorted(e["time"] for e in edits)
