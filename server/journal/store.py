"""The journal's store: `.selftune/journal.sqlite3`, written by one thread.

`Store.put` takes an event (a tuple whose first item names it) from any
thread and returns at once; the writer thread applies the privacy rules,
masks secrets, compresses snapshots, and writes everything that arrived in
one transaction, committing at most `COMMIT_INTERVAL` after the first event of
a batch. `flush` waits until everything put so far is committed; `close`
commits the rest and stops the thread.

The database is in WAL mode, so `selftune journal`, `selftune adapt` and a
second server (a second editor window) read and write it at the same time;
writers wait for each other (`busy_timeout`) rather than fail. A journal that
cannot be read (not a database, damaged) is moved aside as
`journal.sqlite3.corrupt-<time>` and a new one started; the problem is reported
once through `on_problem`, and events are kept in memory meanwhile, so nothing
acknowledged is lost.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import sqlite3
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

from .migrations import migrate
from .privacy import Rules, redact
from .steps import hunks

log = logging.getLogger(__name__)

COMMIT_INTERVAL = 0.05  # seconds from the first event of a batch to its commit
BUSY_TIMEOUT_MS = 10_000
RETRY_SECONDS = 1.0  # after a failed write (disk full, locked for too long)
_STOP = ("stop",)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to a journal in WAL mode; readers see a consistent snapshot per statement."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
        conn.execute("PRAGMA journal_size_limit=1048576")  # the WAL shrinks back to 1 MB after a checkpoint
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compress(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8"), 6)


def decompress(data: bytes) -> str:
    return zlib.decompress(data).decode("utf-8")


def clean(text: str) -> str:
    """`text` storable as UTF-8: lone surrogates (from JSON escapes) become U+FFFD, one for one."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def scrub(text: str) -> str:
    """What of `text` may reach the disk: storable as UTF-8, likely secrets masked."""
    return redact(clean(text))


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
        self._documents: dict[int, str | None] = {}  # document id -> its path, or None when not recorded
        self._said: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="selftune-journal", daemon=True)
        self._thread.start()

    # --- any thread ------------------------------------------------------------

    def put(self, event: tuple) -> None:
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
            self._say_once(f"selftune: the journal {self.path} could not be read ({exc}); "
                           f"it was moved to {aside.name} and a new journal started")
            conn = connect(self.path)
            migrate(conn)
            return conn

    def _run(self) -> None:
        pending: list[tuple] = []
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
            if _STOP in pending:
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

    def _write(self, events: list[tuple]) -> None:
        if self._conn is None:
            self._conn = self._open()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for event in events:
                getattr(self, "_w_" + event[0])(conn, *event[1:])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # --- one method per event -----------------------------------------------------

    def _blob(self, conn: sqlite3.Connection, text: str) -> str:
        digest = text_hash(text)
        conn.execute("INSERT OR IGNORE INTO blobs (hash, size, data) VALUES (?, ?, ?)", (digest, len(text), compress(text)))
        return digest

    def _allows(self, path: str) -> bool:
        return self.rules is None or self.rules.allows(self.rules.root / path)

    def _w_session(self, conn, session_id: str, started: float, version: str, model: str) -> None:
        conn.execute("INSERT OR IGNORE INTO sessions (id, started, pid, version, model) VALUES (?, ?, ?, ?, ?)",
                     (session_id, started, os.getpid(), version, model))

    def _w_session_end(self, conn, session_id: str, ended: float) -> None:
        conn.execute("UPDATE sessions SET ended = ? WHERE id = ?", (ended, session_id))

    def _w_open(self, conn, doc: int, session_id: str, path: str, language: str, opened: float, version: int, text: str) -> None:
        if not self._allows(path):
            self._documents[doc] = None
            log.info("not recording %s (ignored by git, or a file that holds secrets)", path)
            return
        self._documents[doc] = path
        snapshot = self._blob(conn, scrub(text))
        conn.execute("INSERT OR REPLACE INTO documents (id, session_id, path, language, opened, version, snapshot) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (doc, session_id, path, language, opened, version, snapshot))

    def _w_close(self, conn, doc: int, closed: float, text: str | None) -> None:
        if self._documents.pop(doc, None) is None:
            return
        snapshot = self._blob(conn, scrub(text)) if text is not None else None
        conn.execute("UPDATE documents SET closed = ?, close_snapshot = ? WHERE id = ?", (closed, snapshot, doc))

    def _w_edit(self, conn, doc: int, at: float, version: int, range_, text: str, origin: str) -> None:
        if self._documents.get(doc) is None:
            return
        (sl, sc), (el, ec) = range_ if range_ is not None else ((None, None), (None, None))
        conn.execute("INSERT INTO edits (document_id, time, version, start_line, start_char, end_line, end_char, text, origin) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (doc, at, version, sl, sc, el, ec, scrub(text), origin))

    def _w_step(self, conn, doc: int, at: float, before: str, after: str) -> None:
        path = self._documents.get(doc)
        if path is None:
            return
        diff = hunks(before, after)
        if diff:
            conn.execute("INSERT INTO steps (time, path, origin, document_id, diff) VALUES (?, ?, 'editor', ?, ?)",
                         (at, path, doc, scrub(diff)))

    def _w_shown(self, conn, completion: str, session_id: str, doc: int, at: float, version: int, line: int,
                 character: int, offset: int, text: str, model: str, adapter: str | None, latency_ms: float,
                 context_hash: str) -> None:
        if self._documents.get(doc) is None:
            return
        conn.execute("INSERT OR IGNORE INTO completions (id, session_id, document_id, time, version, line, character, offset, "
                     "text, model, adapter, latency_ms, context_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (completion, session_id, doc, at, version, line, character, offset, scrub(text), model,
                      adapter, latency_ms, context_hash))

    def _w_outcome(self, conn, completion: str, doc: int, at: float, kind: str, accepted_length: int | None,
                   reason: str | None, survived: float | None = None, region: str | None = None) -> None:
        if self._documents.get(doc) is None:
            return
        conn.execute("INSERT INTO completion_events (completion_id, time, kind, accepted_length, reason, survived, region) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (completion, at, kind, accepted_length, reason, survived, scrub(region) if region is not None else None))

    def _w_revision(self, conn, completion: str, doc: int, at: float, prefix: str, suffix: str, model_text: str, user_text: str) -> None:
        path = self._documents.get(doc)
        if path is None:
            return
        conn.execute("INSERT OR REPLACE INTO revisions (completion_id, time, path, prefix, suffix, model_text, user_text) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (completion, at, path, scrub(prefix), scrub(suffix), scrub(model_text),
                      scrub(user_text)))

    def _w_file(self, conn, path: str, at: float, text: str | None, origin: str, session_id: str) -> None:
        if not self._allows(path):
            return
        snapshot = self._blob(conn, scrub(text)) if text is not None else None
        last = conn.execute("SELECT snapshot FROM files WHERE path = ? ORDER BY id DESC LIMIT 1", (path,)).fetchone()
        if last is not None and last[0] == snapshot:
            return  # already recorded (by another server on this workspace, say)
        conn.execute("INSERT INTO files (time, path, snapshot, origin, session_id) VALUES (?, ?, ?, ?, ?)",
                     (at, path, snapshot, origin, session_id))

    def _w_commit(self, conn, sha: str, at: float, author: str, message: str, code_and_tests: bool) -> None:
        conn.execute("INSERT OR IGNORE INTO commits (sha, time, author, message, code_and_tests) VALUES (?, ?, ?, ?, ?)",
                     (sha, at, author, scrub(message), int(code_and_tests)))

    def _w_history_step(self, conn, sha: str, path: str, at: float, diff: str) -> None:
        if self.rules is not None and not self.rules.allows(self.rules.root / path, ask_git=False):
            return  # committed files are not ignored; asking git for each would be slow
        conn.execute("INSERT OR IGNORE INTO steps (time, path, origin, commit_sha, diff) VALUES (?, ?, 'history', ?, ?)",
                     (at, path, sha, scrub(diff)))

    def _w_meta(self, conn, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _w_test_run(self, conn, run_id: int, session_id: str, started: float, trigger: str, scope: str,
                    interpreter: str) -> None:
        conn.execute("INSERT OR IGNORE INTO test_runs (id, session_id, started, trigger, scope, interpreter) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (run_id, session_id, started, trigger, scope, interpreter))

    def _w_run_file(self, conn, run_id: int, path: str, text: str | None) -> None:
        if not self._allows(path):
            return
        snapshot = self._blob(conn, scrub(text)) if text is not None else None
        conn.execute("INSERT OR REPLACE INTO run_files (run_id, path, snapshot) VALUES (?, ?, ?)", (run_id, path, snapshot))

    def _w_test_result(self, conn, run_id: int, nodeid: str, outcome: str, duration: float | None, message: str | None,
                       path: str | None, line: int | None, test_path: str | None, test_line: int | None) -> None:
        conn.execute("INSERT INTO test_results (run_id, nodeid, outcome, duration, message, path, line, test_path, "
                     "test_line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (run_id, nodeid, outcome, duration, scrub(message) if message else message, path, line,
                      test_path, test_line))

    def _w_test_run_end(self, conn, run_id: int, ended: float, status: str, exit_code: int | None, passed: int,
                        failed: int, errors: int) -> None:
        conn.execute("UPDATE test_runs SET ended = ?, status = ?, exit_code = ?, passed = ?, failed = ?, errors = ? "
                     "WHERE id = ?", (ended, status, exit_code, passed, failed, errors, run_id))

    def _w_test_run_head(self, conn, run_id: int, head: str | None) -> None:
        conn.execute("UPDATE test_runs SET head = ? WHERE id = ?", (head, run_id))

    def _w_test_fix(self, conn, at: float, failing_run: int, passing_run: int, path: str, function: str, context: str,
                    failing: str, error: str, passing: str, tests: str) -> None:
        if not self._allows(path):
            return
        conn.execute("INSERT INTO test_fixes (time, failing_run, passing_run, path, function, context, failing, error, "
                     "passing, tests) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (at, failing_run, passing_run, path, function, scrub(context), scrub(failing), scrub(error),
                      scrub(passing), tests))

    def _w_run_completion(self, conn, run_id: int, completion: str) -> None:
        conn.execute("INSERT OR IGNORE INTO run_completions (run_id, completion_id) VALUES (?, ?)", (run_id, completion))
