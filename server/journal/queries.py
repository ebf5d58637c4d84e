"""Reading the journal: statistics, the JSONL export, forgetting, and rebuilding documents.

Used by `selftune journal` and by the tests (and, later, by the dataset
builders). Reads work while a server is writing (WAL); `forget` deletes with
`secure_delete` and vacuums, so forgotten text leaves the file.

Export schema: one JSON object per line, its kind in `type`:

- `edit_sequence`: `path`, `steps` (oldest first), each
  `{time, origin: "editor" | "history", diff, commit, message, code_and_tests}`;
  `diff` is zero-context unified-diff hunks without file headers (LintSeq's format);
  `commit`, `message` and `code_and_tests` are null for editor steps.
- `revision`: an accepted completion that the user changed: `completion`, `path`,
  `time`, `prefix` (up to 4000 characters before it), `suffix` (up to 1000 after),
  `model` (the text accepted), `user` (what the region held at the last check).
- `test_fix`: a function that changed while failing tests came to pass:
  `path`, `time`, `function` (qualified name), `context` (≤ 4000 characters of
  code before it), `failing`, `error` (the tests' messages), `passing`,
  `tests` (node ids). As a preference pair: prompt = `context`, chosen =
  `passing`, rejected = `failing`.
- `completion`: a suggestion shown: `id`, `path`, `time`, `line`, `character`
  (UTF-16), `text`, `model`, `adapter`, `latency_ms`, `context_hash`, `outcome`
  (`accepted`, `partially_accepted`, `rejected` or null while pending), `reason`,
  `accepted_length`, `retention`: `[{time, trigger, survived}]` (`survived` is
  the share of the accepted text still present).
- `edit` (only with `raw_edits`): one `didChange` content change as the editor sent it:
  `path`, `document` (one opening of it), `time`, `version`, `range`
  (`{start: {line, character}, end: ...}`, UTF-16 columns; null: the whole text
  replaced), `text`, `origin` (`typing` or `reload`); per document, in order.
"""

from __future__ import annotations

import fnmatch
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .migrations import migrate
from .rows import decompress
from .store import connect
from .text import rebuild

OUTCOMES = ("accepted", "partially_accepted", "rejected")


def open_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(f"no journal at {path}: selftune has not recorded in this workspace yet")
    return connect(path, readonly=True)


def blob(conn: sqlite3.Connection, digest: str) -> str:
    row = conn.execute("SELECT data FROM blobs WHERE hash = ?", (digest,)).fetchone()
    if row is None:
        raise KeyError(f"snapshot {digest} is missing from the journal")
    return decompress(row[0])


def document_text(conn: sqlite3.Connection, document_id: int) -> str:
    """A document as the journal has it: its snapshot at didOpen plus every recorded edit."""
    row = conn.execute("SELECT snapshot FROM documents WHERE id = ?", (document_id,)).fetchone()
    if row is None:
        raise KeyError(f"no document {document_id} in the journal")
    edits = conn.execute(
        "SELECT start_line, start_char, end_line, end_char, text FROM edits WHERE document_id = ? ORDER BY id",
        (document_id,),
    )
    changes = [(None if sl is None else ((sl, sc), (el, ec)), text) for sl, sc, el, ec, text in edits]
    return rebuild(blob(conn, row[0]), changes)


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the journal has `name` (one written by an older selftune may not, until a server opens it)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def _count(conn: sqlite3.Connection, sql: str, *args) -> int:
    return conn.execute(sql, args).fetchone()[0] or 0


def stats(conn: sqlite3.Connection, path: Path) -> dict:
    wal = Path(f"{path}-wal")
    shown = _count(conn, "SELECT count(*) FROM completions")
    final = dict(
        conn.execute(
            "SELECT kind, count(*) FROM (SELECT completion_id, kind, max(id) FROM completion_events "
            f"WHERE kind IN {OUTCOMES} GROUP BY completion_id) GROUP BY kind"
        ).fetchall()
    )
    reasons = dict(
        conn.execute(
            "SELECT reason, count(*) FROM (SELECT completion_id, kind, reason, max(id) FROM completion_events "
            f"WHERE kind IN {OUTCOMES} GROUP BY completion_id) WHERE kind = 'rejected' GROUP BY reason"
        ).fetchall()
    )
    retained = conn.execute(
        "SELECT avg(survived), count(*) FROM (SELECT completion_id, survived, max(id) FROM completion_events "
        "WHERE kind = 'retention' GROUP BY completion_id)"
    ).fetchone()
    accepted = final.get("accepted", 0) + final.get("partially_accepted", 0)
    times = conn.execute("SELECT min(started), max(coalesce(ended, started)) FROM sessions").fetchone()
    tests = has_table(conn, "test_runs")
    return {
        "journal": str(path),
        "bytes": path.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,  # the write-ahead log, folded in at checkpoints
        "sessions": _count(conn, "SELECT count(*) FROM sessions"),
        "first_session": times[0],
        "last_session": times[1],
        "documents_opened": _count(conn, "SELECT count(*) FROM documents"),
        "edits": _count(conn, "SELECT count(*) FROM edits"),
        "editor_steps": _count(conn, "SELECT count(*) FROM steps WHERE origin = 'editor'"),
        "history_commits": _count(conn, "SELECT count(*) FROM commits"),
        "history_steps": _count(conn, "SELECT count(*) FROM steps WHERE origin = 'history'"),
        "outside_changes": _count(conn, "SELECT count(*) FROM files"),
        "completions_shown": shown,
        "accepted": final.get("accepted", 0),
        "partially_accepted": final.get("partially_accepted", 0),
        "rejected": final.get("rejected", 0),
        "rejected_by_reason": reasons,
        "acceptance_rate": accepted / shown if shown else None,
        "retention_rate": retained[0],
        "retention_measured": retained[1],
        "revision_pairs": _count(conn, "SELECT count(*) FROM revisions"),
        "test_runs": _count(conn, "SELECT count(*) FROM test_runs") if tests else 0,
        "test_failures": _count(
            conn, "SELECT count(*) FROM test_results WHERE outcome NOT IN ('passed', 'skipped', 'xfailed', 'xpassed')"
        )
        if tests
        else 0,
        "test_fixes": _count(conn, "SELECT count(*) FROM test_fixes") if tests else 0,
    }


def describe_stats(s: dict) -> str:
    """`stats` as the lines `selftune journal stats` prints (and editors show)."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.0f}%"

    reasons = ", ".join(f"{n} {r}" for r, n in sorted(s["rejected_by_reason"].items())) or "none"
    return (
        f"journal: {s['journal']} ({s['bytes'] / 1e6:.2f} MB + {s['wal_bytes'] / 1e6:.2f} MB write-ahead log, "
        f"{s['sessions']} sessions)\n"
        f"documents opened: {s['documents_opened']}, edits: {s['edits']}, edit steps: {s['editor_steps']}, "
        f"changes outside the editor: {s['outside_changes']}\n"
        f"git history: {s['history_commits']} commits, {s['history_steps']} file steps\n"
        f"completions shown: {s['completions_shown']}, accepted: {s['accepted']}, "
        f"partially: {s['partially_accepted']}, rejected: {s['rejected']} ({reasons})\n"
        f"acceptance rate: {pct(s['acceptance_rate'])}, retention: {pct(s['retention_rate'])} of accepted text "
        f"survives ({s['retention_measured']} measured), revision pairs: {s['revision_pairs']}\n"
        f"test runs: {s['test_runs']}, failing results: {s['test_failures']}, "
        f"fixes (revision examples and preference pairs): {s['test_fixes']}"
    )


def _between(column: str, since: float | None, until: float | None) -> tuple[str, list]:
    clauses, args = [], []
    if since is not None:
        clauses.append(f"{column} >= ?")
        args.append(since)
    if until is not None:
        clauses.append(f"{column} < ?")
        args.append(until)
    return (" AND ".join(clauses) or "1"), args


def export(
    conn: sqlite3.Connection, since: float | None = None, until: float | None = None, *, raw_edits: bool = False
) -> Iterator[dict]:
    where, args = _between("s.time", since, until)
    sequence: dict | None = None
    for path, at, origin, diff, sha, message, both in conn.execute(
        "SELECT s.path, s.time, s.origin, s.diff, s.commit_sha, c.message, c.code_and_tests FROM steps s "
        f"LEFT JOIN commits c ON c.sha = s.commit_sha WHERE {where} ORDER BY s.path, s.time, s.id",
        args,
    ):
        if sequence is None or sequence["path"] != path:
            if sequence is not None:
                yield sequence
            sequence = {"type": "edit_sequence", "path": path, "steps": []}
        sequence["steps"].append(
            {
                "time": at,
                "origin": origin,
                "diff": diff,
                "commit": sha,
                "message": message,
                "code_and_tests": None if both is None else bool(both),
            }
        )
    if sequence is not None:
        yield sequence

    where, args = _between("time", since, until)
    for completion, path, at, prefix, suffix, model_text, user_text in conn.execute(
        "SELECT completion_id, path, time, prefix, suffix, model_text, user_text FROM revisions "
        f"WHERE {where} ORDER BY time",
        args,
    ):
        yield {
            "type": "revision",
            "completion": completion,
            "path": path,
            "time": at,
            "prefix": prefix,
            "suffix": suffix,
            "model": model_text,
            "user": user_text,
        }

    if has_table(conn, "test_fixes"):
        for path, at, function, context, failing, error, passing, tests in conn.execute(
            f"SELECT path, time, function, context, failing, error, passing, tests FROM test_fixes WHERE {where} "
            "ORDER BY time",
            args,
        ):
            yield {
                "type": "test_fix",
                "path": path,
                "time": at,
                "function": function,
                "context": context,
                "failing": failing,
                "error": error,
                "passing": passing,
                "tests": tests.split(","),
            }

    where, args = _between("c.time", since, until)
    rows = conn.execute(
        "SELECT c.id, d.path, c.time, c.line, c.character, c.text, c.model, c.adapter, c.latency_ms, c.context_hash "
        f"FROM completions c LEFT JOIN documents d ON d.id = c.document_id WHERE {where} ORDER BY c.time",
        args,
    ).fetchall()
    for cid, path, at, line, character, text, model, adapter, latency, context_hash in rows:
        record = {
            "type": "completion",
            "id": cid,
            "path": path,
            "time": at,
            "line": line,
            "character": character,
            "text": text,
            "model": model,
            "adapter": adapter,
            "latency_ms": latency,
            "context_hash": context_hash,
            "outcome": None,
            "reason": None,
            "accepted_length": None,
            "retention": [],
        }
        for kind, at_event, length, reason, survived in conn.execute(
            "SELECT kind, time, accepted_length, reason, survived FROM completion_events "
            "WHERE completion_id = ? ORDER BY id",
            (cid,),
        ):
            if kind == "retention":
                record["retention"].append({"time": at_event, "trigger": reason, "survived": survived})
            else:
                record.update(outcome=kind, reason=reason, accepted_length=length)
        yield record

    if raw_edits:
        yield from edits(conn, since, until)


def edits(conn: sqlite3.Connection, since: float | None = None, until: float | None = None) -> Iterator[dict]:
    """The raw edits as export records, per document (oldest opening first), in the order they were made."""
    where, args = _between("e.time", since, until)
    for path, document, at, version, sl, sc, el, ec, text, origin in conn.execute(
        "SELECT d.path, e.document_id, e.time, e.version, e.start_line, e.start_char, e.end_line, e.end_char, "
        f"e.text, e.origin FROM edits e JOIN documents d ON d.id = e.document_id WHERE {where} "
        "ORDER BY d.path, d.opened, e.document_id, e.id",
        args,
    ):
        yield {
            "type": "edit",
            "path": path,
            "document": document,
            "time": at,
            "version": version,
            "range": None
            if sl is None
            else {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}},
            "text": text,
            "origin": origin,
        }


def forget(
    conn: sqlite3.Connection, paths: list[str] | None = None, since: float | None = None, until: float | None = None
) -> dict[str, int]:
    """Delete what was recorded for files matching `paths` (globs, relative to the workspace)
    and/or in the time range; returns rows deleted per table."""
    if not paths and since is None and until is None:
        raise ValueError("say what to forget: one or more paths, a time range, or both")
    migrate(conn)  # a journal written by an older selftune lacks the newer tables
    conn.execute("PRAGMA secure_delete = ON")
    known = {
        p
        for (p,) in conn.execute(
            "SELECT path FROM documents UNION SELECT path FROM steps UNION SELECT path FROM files "
            "UNION SELECT path FROM revisions "
            "UNION SELECT path FROM run_files UNION SELECT path FROM test_fixes UNION SELECT path FROM test_results "
            "WHERE path IS NOT NULL UNION SELECT test_path FROM test_results WHERE test_path IS NOT NULL"
        )
    }
    matched = sorted(
        p
        for p in known
        if not paths
        or any(fnmatch.fnmatchcase(p, g) or p == g.rstrip("/") or p.startswith(g.rstrip("/") + "/") for g in paths)
    )
    counts: dict[str, int] = {}

    def delete(table: str, sql: str, args: list) -> None:
        counts[table] = counts.get(table, 0) + conn.execute(f"DELETE FROM {table} WHERE {sql}", args).rowcount

    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS forget_paths (path TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM forget_paths")
        conn.executemany("INSERT INTO forget_paths VALUES (?)", [(p,) for p in matched])
        in_paths = "path IN (SELECT path FROM forget_paths)"
        when, args = _between("time", since, until)
        opened, args_opened = _between("opened", since, until)
        docs = f"SELECT id FROM documents WHERE {in_paths} AND {opened}"
        delete(
            "completion_events",
            f"completion_id IN (SELECT id FROM completions WHERE document_id IN ({docs}))",
            args_opened,
        )
        delete(
            "completion_events",
            f"{when} AND completion_id IN (SELECT c.id FROM completions c JOIN documents d "
            f"ON d.id = c.document_id WHERE d.{in_paths})",
            args,
        )
        delete("completions", f"document_id IN ({docs})", args_opened)
        delete("completions", f"{when} AND document_id IN (SELECT id FROM documents WHERE {in_paths})", args)
        delete("edits", f"document_id IN ({docs})", args_opened)
        delete("edits", f"{when} AND document_id IN (SELECT id FROM documents WHERE {in_paths})", args)
        delete("documents", f"{in_paths} AND {opened}", args_opened)
        delete("steps", f"{in_paths} AND {when}", args)
        delete("files", f"{in_paths} AND {when}", args)
        delete("revisions", f"{in_paths} AND {when}", args)
        delete("test_fixes", f"{in_paths} AND {when}", args)
        started, args_started = _between("started", since, until)
        runs = f"SELECT id FROM test_runs WHERE {started}"
        delete("run_files", f"{in_paths} AND run_id IN ({runs})", args_started)
        delete(
            "test_results",
            f"({in_paths} OR test_path IN (SELECT path FROM forget_paths)) AND run_id IN ({runs})",
            args_started,
        )
        if not paths:
            delete("commits", when, args)
            for table in ("run_files", "test_results", "run_completions"):
                delete(table, f"run_id IN ({runs})", args_started)
            delete("test_runs", started, args_started)
        delete(
            "blobs",
            "hash NOT IN (SELECT snapshot FROM documents UNION SELECT close_snapshot FROM documents "
            "WHERE close_snapshot IS NOT NULL UNION SELECT snapshot FROM files WHERE snapshot IS NOT NULL "
            "UNION SELECT snapshot FROM run_files WHERE snapshot IS NOT NULL)",
            [],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    return {table: n for table, n in counts.items() if n}
