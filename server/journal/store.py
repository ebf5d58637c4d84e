"""The journal's store: `.selftune/journal.sqlite3`, written by one thread.

`Store.put` takes an event (events.py) from any thread and returns at once;
the writer thread turns everything that arrived into rows (rows.py: privacy
rules, masked secrets, compressed snapshots) in one transaction, committing
at most `COMMIT_INTERVAL` after the first event of a batch. `flush` waits
until everything put so far is committed; `close` commits the rest and stops
the thread.

The database is in WAL mode, so `selftune journal`, `selftune adapt` and a
second server (a second editor window) read and write it at the same time;
writers wait for each other (`busy_timeout`) rather than fail. A journal that
cannot be read (not a database, damaged) is moved aside as
`journal.sqlite3.corrupt-<time>` and a new one started; the problem is reported
once through `on_problem`, and events are kept in memory meanwhile, so nothing
acknowledged is lost.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import events as ev
from .migrations import migrate
from .privacy import Rules
from .rows import WRITERS, Rows

log = logging.getLogger(__name__)

COMMIT_INTERVAL = 0.05  # seconds from the first event of a batch to its commit
BUSY_TIMEOUT_MS = 10_000
RETRY_SECONDS = 1.0  # after a failed write (disk full, locked for too long)
_STOP = object()  # tells the writer thread to finish


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to a journal in WAL mode; readers see a consistent snapshot per statement."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro",
            uri=True,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
        conn.execute("PRAGMA journal_size_limit=1048576")  # the WAL shrinks back to 1 MB after a checkpoint
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def _is_damage(exc: sqlite3.Error) -> bool:
    """A database error that moving the file aside would cure (not a lock, not a full disk)."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "unable to open" in text or "disk i/o" in text
    return isinstance(exc, sqlite3.DatabaseError)


class Store:
    def __init__(self, path: Path, *, rules: Rules | None = None, on_problem: Callable[[str], None] | None = None):
        self.path = path
        self.rules = rules
        self.on_problem = on_problem or (lambda message: log.warning("%s", message))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._put_count = 0
        self._put_lock = threading.Lock()
        self._committed = 0
        self._done = threading.Condition()
        self._conn: sqlite3.Connection | None = None
        self._rows = Rows(rules)
        self._said: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="selftune-journal", daemon=True)
        self._thread.start()

    # --- any thread ------------------------------------------------------------

    def put(self, event: ev.Event) -> None:
        inner = event.events if isinstance(event, ev.SessionRecovered) else ()
        if any(type(e) not in WRITERS for e in (event, *inner)):  # here, where the caller is, not on the writer
            raise TypeError(f"not a journal event: {event!r}")
        with self._put_lock:
            self._put_count += 1
            self._queue.put(event)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event put so far is committed (or dropped by a privacy rule)."""
        target = self._put_count
        with self._done:
            return self._done.wait_for(lambda: self._committed >= target or not self._thread.is_alive(), timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # --- the writer thread -----------------------------------------------------

    def _say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.on_problem(message)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = connect(self.path)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                conn.close()
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            migrate(conn)
            return conn
        except sqlite3.Error as exc:
            if not _is_damage(exc):
                raise
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    os.replace(src, Path(str(aside) + suffix))
            self._say_once(
                f"selftune: the journal {self.path} could not be read ({exc}); "
                f"it was moved to {aside.name} and a new journal started"
            )
            conn = connect(self.path)
            migrate(conn)
            return conn

    def _run(self) -> None:
        pending: list = []
        stopping = False
        while not stopping:
            if not pending:
                pending.append(self._queue.get())
            deadline = time.monotonic() + COMMIT_INTERVAL
            while (left := deadline - time.monotonic()) > 0:
                try:
                    pending.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            while True:  # whatever else is already waiting
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(e is _STOP for e in pending):
                pending = [e for e in pending if e is not _STOP]
                stopping = True
            try:
                self._write(pending)
            except Exception as exc:  # keep the events; try again (a new file if this one is damaged)
                if isinstance(exc, sqlite3.Error) and _is_damage(exc) and self._conn is not None:
                    self._conn.close()
                    self._conn = None
                self._say_once(f"selftune: the journal cannot be written ({exc}); retrying, events are kept")
                log.debug("journal write failed", exc_info=True)
                if stopping:
                    break
                time.sleep(RETRY_SECONDS)
                continue
            with self._done:
                self._committed += len(pending)
                self._done.notify_all()
            pending = []
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        with self._done:
            self._done.notify_all()

    def _write(self, events: list[ev.Event]) -> None:
        if self._conn is None:
            self._conn = self._open()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for event in events:
                self._rows.write(conn, event)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
