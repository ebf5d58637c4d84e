"""Settling what a killed server left unsettled: the sessions that never ended.

A server that ends without a shutdown (the editor killed, `kill -9`, power
loss) has committed its raw edits (the store commits within 100 ms) but not
what lived in its recorder's memory: the edit step it was in the middle of,
the outcome of a suggestion still shown, its documents' close. When a
workspace's `Journal` opens, it runs `recover` on a thread. Every session with
no end whose server is gone (`server_alive`: its pid is no longer a selftune
or Python process) is settled as its recorder would have done: the recorded
edits after the last step it settled go through the same step rules
(`Steps.change`, with their own times), what it showed and never resolved is
rejected (`session-lost`), its open documents are closed with their rebuilt
text, and the session ends at its last event. All of it goes to the store as
one `SessionRecovered` event, written in one transaction and only while the
session still has no end, so a second server starting at the same moment
cannot settle it twice, and a live server is never settled under its feet.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from . import events as ev
from .queries import blob
from .steps import SETTLE_SECONDS, Steps
from .text import Text

log = logging.getLogger(__name__)

LOST = "session-lost"  # the reason a suggestion still pending when its server died is rejected
_OURS: set[str] = set()  # sessions this process has open


def opened_here(session_id: str) -> None:
    _OURS.add(session_id)


def closed_here(session_id: str) -> None:
    _OURS.discard(session_id)


def server_alive(pid: int | None, session_id: str) -> bool:
    """Whether the server that wrote `session_id`, process `pid`, may still be running."""
    if not pid:
        return False
    if pid == os.getpid():
        return session_id in _OURS  # else an earlier process had our pid (a restarted container)
    if Path("/proc/self").exists():
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False  # gone
    elif sys.platform != "win32":
        try:
            found = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, check=False)
        except OSError:
            return True  # no way to tell: leave it alone
        argv = found.stdout.split() if found.returncode == 0 else []
    else:
        return True  # no cheap way to tell: leave it alone
    # A zombie has no command line; a pid taken over by another program has a different one.
    return any(b"selftune" in arg or os.path.basename(arg).startswith(b"python") for arg in argv if arg)


def dead_sessions(conn: sqlite3.Connection, alive: Callable[[int | None, str], bool] = server_alive) -> list[str]:
    """The sessions that never ended and whose server is gone, oldest first."""
    rows = conn.execute("SELECT id, pid FROM sessions WHERE ended IS NULL ORDER BY started").fetchall()
    return [session for session, pid in rows if not alive(pid, session)]


def last_event(conn: sqlite3.Connection, session_id: str) -> float:
    """The time of the last thing `session_id` recorded: when its server was last seen alive."""
    docs = "SELECT id FROM documents WHERE session_id = :s"
    (at,) = conn.execute(
        f"""SELECT max(t) FROM (
            SELECT started AS t FROM sessions WHERE id = :s
            UNION ALL SELECT max(max(opened, coalesce(closed, opened))) FROM documents WHERE session_id = :s
            UNION ALL SELECT max(time) FROM edits WHERE document_id IN ({docs})
            UNION ALL SELECT max(time) FROM steps WHERE document_id IN ({docs})
            UNION ALL SELECT max(time) FROM completions WHERE session_id = :s
            UNION ALL SELECT max(e.time) FROM completion_events e JOIN completions c ON c.id = e.completion_id
                WHERE c.session_id = :s
            UNION ALL SELECT max(time) FROM files WHERE session_id = :s
            UNION ALL SELECT max(max(started, coalesce(ended, started))) FROM test_runs WHERE session_id = :s
        )""",
        {"s": session_id},
    ).fetchone()
    return at


def settle_document(conn: sqlite3.Connection, document_id: int, snapshot: str, end: float) -> list[ev.Event]:
    """The steps a document's recorder had not settled when its server died (time `end`), then its close."""
    edits = conn.execute(
        "SELECT time, start_line, start_char, end_line, end_char, text, origin FROM edits "
        "WHERE document_id = ? ORDER BY id",
        (document_id,),
    ).fetchall()
    through, last_step = conn.execute(
        "SELECT max(edits), max(time) FROM steps WHERE document_id = ? AND origin = 'editor'", (document_id,)
    ).fetchone()
    if through is None and last_step is not None:  # a step of an older selftune says only when it settled
        through = next((i for i, edit in enumerate(edits) if edit[0] >= last_step), len(edits))
    through = through or 0
    text, steps = Text(blob(conn, snapshot)), Steps()
    events: list[ev.Event] = []
    for i, (at, sl, sc, el, ec, new, origin) in enumerate(edits):
        range_ = None if sl is None else ((sl, sc), (el, ec))
        if i >= through:
            if origin == "reload":  # the editor took a change made outside it: not typing, and a step ends
                finished = steps.finish(text.text)
                ended = [(at, *finished)] if finished else []
            else:
                ended = steps.change(text.text, range_, new, at)
            events += [ev.StepSettled(document_id, t, base, after, i) for t, base, after in ended]
        text.apply(range_, new)
    if steps.pending is not None:  # settled by the pause, or when the server died if that came first
        at = min(steps.pending.last_edit + SETTLE_SECONDS, max(end, steps.pending.last_edit))
        base, after = steps.finish(text.text) or ("", "")
        events.append(ev.StepSettled(document_id, at, base, after, len(edits)))
    events.append(ev.DocumentClosed(document_id, end, text.text))
    return events


def settle(conn: sqlite3.Connection, session_id: str) -> ev.SessionRecovered:
    """Everything `session_id` left unsettled, as its recorder would have settled it."""
    end = last_event(conn, session_id)
    events: list[ev.Event] = []
    closes: list[ev.Event] = []
    for document_id, snapshot in conn.execute(
        "SELECT id, snapshot FROM documents WHERE session_id = ? AND closed IS NULL ORDER BY opened", (session_id,)
    ).fetchall():
        *steps, close = settle_document(conn, document_id, snapshot, end)
        events += steps
        closes.append(close)
    for completion_id, document_id in conn.execute(
        "SELECT id, document_id FROM completions c WHERE session_id = ? AND NOT EXISTS (SELECT 1 FROM "
        "completion_events e WHERE e.completion_id = c.id AND e.kind IN ('accepted', 'partially_accepted', "
        "'rejected')) ORDER BY time",
        (session_id,),
    ).fetchall():
        events.append(ev.CompletionOutcome(completion_id, document_id, end, "rejected", reason=LOST))
    return ev.SessionRecovered(session_id, (*events, *closes, ev.SessionEnded(session_id, end)))


def recover(
    conn: sqlite3.Connection,
    put: Callable[[ev.Event], None],
    alive: Callable[[int | None, str], bool] = server_alive,
    stopping: Callable[[], bool] = lambda: False,
) -> list[str]:
    """Settle every session whose server died without ending it (reading `conn`, writing through `put`);
    returns the sessions settled."""
    done = []
    for session_id in dead_sessions(conn, alive):
        if stopping():
            break
        try:
            recovered = settle(conn, session_id)
        except (KeyError, ValueError, IndexError) as exc:  # damaged or partly forgotten: tried again next time
            log.warning("could not settle session %s of a server that was killed: %s", session_id, exc)
            continue
        put(recovered)
        steps = sum(isinstance(e, ev.StepSettled) for e in recovered.events)
        lost = sum(isinstance(e, ev.CompletionOutcome) for e in recovered.events)
        log.info("settled session %s of a killed server: %d edit steps, %d suggestions lost", session_id, steps, lost)
        done.append(session_id)
    return done
