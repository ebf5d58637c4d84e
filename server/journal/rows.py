"""Journal events into rows: one writer per kind of event (events.py), inserting by column name.

The store's writer thread (store.py) calls `Rows.write` for each event of a
batch, inside one transaction. Here the privacy rules are applied (a path
git ignores, or a file that holds secrets, is never written), likely
secrets are masked in every text, and snapshots are stored compressed and
content-addressed in `blobs`. `Rows` remembers which open documents are
recorded, so the edits of a document that is not are dropped too; a document
it has not seen (one opened by an earlier server, whose session a recovery
settles) is looked up in `documents`: one with no row was never recorded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import zlib
from collections.abc import Callable
from typing import Any

from . import events as ev
from .privacy import Rules, redact
from .steps import hunks

log = logging.getLogger(__name__)


def insert(conn: sqlite3.Connection, table: str, row: dict[str, Any], *, verb: str = "INSERT") -> None:
    """One row, by column name (the names are this code's, never data)."""
    conn.execute(f"{verb} INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))


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


class Rows:
    def __init__(self, rules: Rules | None):
        self.rules = rules
        self._documents: dict[int, str | None] = {}  # document id -> its path, or None when not recorded

    def write(self, conn: sqlite3.Connection, event: ev.Event) -> None:
        WRITERS[type(event)](self, conn, event)

    def _blob(self, conn: sqlite3.Connection, text: str) -> str:
        digest = text_hash(text)
        insert(conn, "blobs", {"hash": digest, "size": len(text), "data": compress(text)}, verb="INSERT OR IGNORE")
        return digest

    def _allows(self, path: str) -> bool:
        return self.rules is None or self.rules.allows(self.rules.root / path)

    def _path(self, conn: sqlite3.Connection, document_id: int) -> str | None:
        """Where a recorded document lives; None: it is not recorded (by rule, or never opened)."""
        if document_id not in self._documents:  # opened by an earlier server
            row = conn.execute("SELECT path FROM documents WHERE id = ?", (document_id,)).fetchone()
            self._documents[document_id] = row[0] if row is not None and self._allows(row[0]) else None
        return self._documents[document_id]

    def _session_started(self, conn, e: ev.SessionStarted) -> None:
        insert(
            conn,
            "sessions",
            {"id": e.session_id, "started": e.started, "pid": os.getpid(), "version": e.version, "model": e.model},
            verb="INSERT OR IGNORE",
        )

    def _session_ended(self, conn, e: ev.SessionEnded) -> None:
        conn.execute("UPDATE sessions SET ended = ? WHERE id = ?", (e.ended, e.session_id))

    def _document_opened(self, conn, e: ev.DocumentOpened) -> None:
        if not self._allows(e.path):
            self._documents[e.document_id] = None
            log.info("not recording %s (ignored by git, or a file that holds secrets)", e.path)
            return
        self._documents[e.document_id] = e.path
        insert(
            conn,
            "documents",
            {
                "id": e.document_id,
                "session_id": e.session_id,
                "path": e.path,
                "language": e.language,
                "opened": e.opened,
                "version": e.version,
                "snapshot": self._blob(conn, scrub(e.text)),
            },
            verb="INSERT OR REPLACE",
        )

    def _document_closed(self, conn, e: ev.DocumentClosed) -> None:
        path = self._path(conn, e.document_id)
        self._documents.pop(e.document_id, None)
        if path is None:
            return
        snapshot = self._blob(conn, scrub(e.text)) if e.text is not None else None
        conn.execute(
            "UPDATE documents SET closed = ?, close_snapshot = ? WHERE id = ?", (e.closed, snapshot, e.document_id)
        )

    def _edited(self, conn, e: ev.Edited) -> None:
        if self._path(conn, e.document_id) is None:
            return
        (sl, sc), (el, ec) = e.range if e.range is not None else ((None, None), (None, None))
        insert(
            conn,
            "edits",
            {
                "document_id": e.document_id,
                "time": e.time,
                "version": e.version,
                "start_line": sl,
                "start_char": sc,
                "end_line": el,
                "end_char": ec,
                "text": scrub(e.text),
                "origin": e.origin,
            },
        )

    def _step_settled(self, conn, e: ev.StepSettled) -> None:
        path = self._path(conn, e.document_id)
        if path is None:
            return
        diff = hunks(e.before, e.after)
        if diff:
            insert(
                conn,
                "steps",
                {
                    "time": e.time,
                    "path": path,
                    "origin": "editor",
                    "document_id": e.document_id,
                    "diff": scrub(diff),
                    "edits": e.edits,
                },
            )

    def _shown(self, conn, e: ev.Shown) -> None:
        if self._path(conn, e.document_id) is None:
            return
        insert(
            conn,
            "completions",
            {
                "id": e.completion_id,
                "session_id": e.session_id,
                "document_id": e.document_id,
                "time": e.time,
                "version": e.version,
                "line": e.line,
                "character": e.character,
                "offset": e.offset,
                "text": scrub(e.text),
                "model": e.model,
                "adapter": e.adapter,
                "latency_ms": e.latency_ms,
                "context_hash": e.context_hash,
            },
            verb="INSERT OR IGNORE",
        )

    def _completion_outcome(self, conn, e: ev.CompletionOutcome) -> None:
        if self._path(conn, e.document_id) is None:
            return
        insert(
            conn,
            "completion_events",
            {
                "completion_id": e.completion_id,
                "time": e.time,
                "kind": e.kind,
                "accepted_length": e.accepted_length,
                "reason": e.reason,
                "survived": e.survived,
                "region": scrub(e.region) if e.region is not None else None,
            },
        )

    def _revised(self, conn, e: ev.Revised) -> None:
        path = self._path(conn, e.document_id)
        if path is None:
            return
        insert(
            conn,
            "revisions",
            {
                "completion_id": e.completion_id,
                "time": e.time,
                "path": path,
                "prefix": scrub(e.prefix),
                "suffix": scrub(e.suffix),
                "model_text": scrub(e.model_text),
                "user_text": scrub(e.user_text),
            },
            verb="INSERT OR REPLACE",
        )

    def _file_changed(self, conn, e: ev.FileChanged) -> None:
        if not self._allows(e.path):
            return
        snapshot = self._blob(conn, scrub(e.text)) if e.text is not None else None
        last = conn.execute("SELECT snapshot FROM files WHERE path = ? ORDER BY id DESC LIMIT 1", (e.path,)).fetchone()
        if last is not None and last[0] == snapshot:
            return  # already recorded (by another server on this workspace, say)
        insert(
            conn,
            "files",
            {"time": e.time, "path": e.path, "snapshot": snapshot, "origin": e.origin, "session_id": e.session_id},
        )

    def _commit_imported(self, conn, e: ev.CommitImported) -> None:
        insert(
            conn,
            "commits",
            {
                "sha": e.sha,
                "time": e.time,
                "author": e.author,
                "message": scrub(e.message),
                "code_and_tests": int(e.code_and_tests),
            },
            verb="INSERT OR IGNORE",
        )

    def _history_step(self, conn, e: ev.HistoryStep) -> None:
        if self.rules is not None and not self.rules.allows(self.rules.root / e.path, ask_git=False):
            return  # committed files are not ignored; asking git for each would be slow
        insert(
            conn,
            "steps",
            {"time": e.time, "path": e.path, "origin": "history", "commit_sha": e.sha, "diff": scrub(e.diff)},
            verb="INSERT OR IGNORE",
        )

    def _meta_set(self, conn, e: ev.MetaSet) -> None:
        insert(conn, "meta", {"key": e.key, "value": e.value}, verb="INSERT OR REPLACE")

    def _run_started(self, conn, e: ev.RunStarted) -> None:
        insert(
            conn,
            "test_runs",
            {
                "id": e.run_id,
                "session_id": e.session_id,
                "started": e.started,
                "trigger": e.trigger,
                "scope": e.scope,
                "interpreter": e.interpreter,
            },
            verb="INSERT OR IGNORE",
        )

    def _run_file(self, conn, e: ev.RunFile) -> None:
        if not self._allows(e.path):
            return
        snapshot = self._blob(conn, scrub(e.text)) if e.text is not None else None
        insert(conn, "run_files", {"run_id": e.run_id, "path": e.path, "snapshot": snapshot}, verb="INSERT OR REPLACE")

    def _run_result(self, conn, e: ev.RunResult) -> None:
        insert(
            conn,
            "test_results",
            {
                "run_id": e.run_id,
                "nodeid": e.nodeid,
                "outcome": e.outcome,
                "duration": e.duration,
                "message": scrub(e.message) if e.message else e.message,
                "path": e.path,
                "line": e.line,
                "test_path": e.test_path,
                "test_line": e.test_line,
            },
        )

    def _run_ended(self, conn, e: ev.RunEnded) -> None:
        conn.execute(
            "UPDATE test_runs SET ended = ?, status = ?, exit_code = ?, passed = ?, failed = ?, errors = ? "
            "WHERE id = ?",
            (e.ended, e.status, e.exit_code, e.passed, e.failed, e.errors, e.run_id),
        )

    def _run_head(self, conn, e: ev.RunHead) -> None:
        conn.execute("UPDATE test_runs SET head = ? WHERE id = ?", (e.head, e.run_id))

    def _fix(self, conn, e: ev.Fix) -> None:
        if not self._allows(e.path):
            return
        insert(
            conn,
            "test_fixes",
            {
                "time": e.time,
                "failing_run": e.failing_run,
                "passing_run": e.passing_run,
                "path": e.path,
                "function": e.function,
                "context": scrub(e.context),
                "failing": scrub(e.failing),
                "error": scrub(e.error),
                "passing": scrub(e.passing),
                "tests": e.tests,
            },
        )

    def _run_completion(self, conn, e: ev.RunCompletion) -> None:
        insert(conn, "run_completions", {"run_id": e.run_id, "completion_id": e.completion_id}, verb="INSERT OR IGNORE")

    def _session_recovered(self, conn, e: ev.SessionRecovered) -> None:
        row = conn.execute("SELECT ended FROM sessions WHERE id = ?", (e.session_id,)).fetchone()
        if row is None or row[0] is not None:
            return  # ended meanwhile (another server recovered it first)
        for event in e.events:
            self.write(conn, event)


# The writer of each kind of event (every kind in events.Event has one; a test checks it).
WRITERS: dict[type, Callable[[Rows, sqlite3.Connection, Any], None]] = {
    ev.SessionStarted: Rows._session_started,
    ev.SessionEnded: Rows._session_ended,
    ev.DocumentOpened: Rows._document_opened,
    ev.DocumentClosed: Rows._document_closed,
    ev.Edited: Rows._edited,
    ev.StepSettled: Rows._step_settled,
    ev.Shown: Rows._shown,
    ev.CompletionOutcome: Rows._completion_outcome,
    ev.Revised: Rows._revised,
    ev.FileChanged: Rows._file_changed,
    ev.CommitImported: Rows._commit_imported,
    ev.HistoryStep: Rows._history_step,
    ev.MetaSet: Rows._meta_set,
    ev.RunStarted: Rows._run_started,
    ev.RunFile: Rows._run_file,
    ev.RunHead: Rows._run_head,
    ev.RunResult: Rows._run_result,
    ev.RunEnded: Rows._run_ended,
    ev.Fix: Rows._fix,
    ev.RunCompletion: Rows._run_completion,
    ev.SessionRecovered: Rows._session_recovered,
}
