"""The journal's schema, as append-only named migrations.

Each migration is a function `mNNN_name(conn)`; `migrate` applies those not
yet listed in `_migrations`, in order, each in its own `BEGIN IMMEDIATE`
transaction so that two servers opening one journal at once apply it once.
Never edit a migration that has shipped: add the next one.

Times are Unix seconds (REAL). Texts are UTF-8. Snapshots are content-addressed
blobs (sha256 of the text, zlib-compressed). Document and completion ids are
chosen by the recorder (random 62-bit integers and `<session>-<item>` strings)
so that events can refer to each other before they are written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable


def _run(conn: sqlite3.Connection, script: str) -> None:
    """Execute each statement of `script` inside the current transaction
    (`executescript` would commit it first)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement.strip()[:80]}")


def m001_initial(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,            -- random, one per server process
            started REAL NOT NULL,
            ended REAL,                     -- NULL: still running or killed
            pid INTEGER,
            version TEXT,                   -- selftune version
            model TEXT
        );
        CREATE TABLE blobs (
            hash TEXT PRIMARY KEY,          -- sha256 of the UTF-8 text
            size INTEGER NOT NULL,          -- characters
            data BLOB NOT NULL              -- zlib(UTF-8 text)
        );
        CREATE TABLE documents (            -- one row per didOpen
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL,
            path TEXT NOT NULL,             -- relative to the workspace, POSIX
            language TEXT,
            opened REAL NOT NULL,
            version INTEGER,
            snapshot TEXT NOT NULL REFERENCES blobs(hash),
            closed REAL,
            close_snapshot TEXT REFERENCES blobs(hash)
        );
        CREATE INDEX documents_path ON documents(path);
        CREATE TABLE edits (                -- every didChange content change, as sent
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL,
            time REAL NOT NULL,
            version INTEGER,
            start_line INTEGER,             -- NULL range: the whole text was replaced
            start_char INTEGER,             -- UTF-16 columns, as in LSP
            end_line INTEGER,
            end_char INTEGER,
            text TEXT NOT NULL,
            origin TEXT NOT NULL            -- 'typing', or 'reload' when the editor took a change made outside it
        );
        CREATE INDEX edits_document ON edits(document_id, id);
        CREATE TABLE files (                -- a file's content on disk when it changed outside the editor
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            path TEXT NOT NULL,
            snapshot TEXT REFERENCES blobs(hash),  -- NULL: deleted
            origin TEXT NOT NULL,           -- 'outside'
            session_id TEXT
        );
        CREATE INDEX files_path ON files(path, id);
        CREATE TABLE commits (              -- imported git history
            sha TEXT PRIMARY KEY,
            time REAL NOT NULL,
            author TEXT,
            message TEXT,
            code_and_tests INTEGER NOT NULL -- 1: changes both code and tests
        );
        CREATE TABLE steps (                -- settled edit steps, zero-context unified-diff hunks
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            path TEXT NOT NULL,
            origin TEXT NOT NULL,           -- 'editor' or 'history'
            document_id INTEGER,
            commit_sha TEXT,
            diff TEXT NOT NULL,
            UNIQUE (commit_sha, path)
        );
        CREATE INDEX steps_path ON steps(path, time);
        CREATE TABLE completions (          -- each suggestion returned to the editor
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            document_id INTEGER NOT NULL,
            time REAL NOT NULL,
            version INTEGER,
            line INTEGER,
            character INTEGER,
            offset INTEGER,
            text TEXT NOT NULL,
            model TEXT,
            adapter TEXT,                   -- NULL: the base model
            latency_ms REAL,
            context_hash TEXT               -- sha1 of the prompt, first 16 hex digits
        );
        CREATE TABLE completion_events (
            id INTEGER PRIMARY KEY,
            completion_id TEXT NOT NULL,
            time REAL NOT NULL,
            kind TEXT NOT NULL,             -- accepted | partially_accepted | rejected | retention
            accepted_length INTEGER,        -- characters accepted (partial acceptance)
            reason TEXT,                    -- rejected: timeout | typed-over | replaced | closed;
                                            -- retention: 30s | save | close
            survived REAL,                  -- retention: share of the accepted text still there
            region TEXT                     -- retention: what the accepted region holds now
        );
        CREATE INDEX completion_events_completion ON completion_events(completion_id);
        CREATE TABLE revisions (            -- an accepted completion the user changed: model's code -> user's code
            completion_id TEXT PRIMARY KEY,
            time REAL NOT NULL,
            path TEXT NOT NULL,
            prefix TEXT NOT NULL,           -- up to 4000 characters before the completion
            suffix TEXT NOT NULL,           -- up to 1000 characters after it
            model_text TEXT NOT NULL,
            user_text TEXT NOT NULL
        );
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        """,
    )


def m002_test_runs(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
        CREATE TABLE test_runs (            -- one pytest run (or two phases: related tests, then the rest) after a save
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL,                     -- NULL: still running, or the server died
            trigger TEXT NOT NULL,          -- the saved paths, comma-separated
            scope TEXT NOT NULL,            -- related | related-then-all | all
            interpreter TEXT,
            head TEXT,                      -- git HEAD the run's state is based on (NULL: no git)
            status TEXT,                    -- finished | timeout | crashed | cancelled | no-pytest | no-interpreter
            exit_code INTEGER,              -- pytest's exit status (or the process's return code)
            passed INTEGER,
            failed INTEGER,
            errors INTEGER
        );
        CREATE TABLE run_files (            -- the run's state: HEAD plus these files as they were (dirty files)
            run_id INTEGER NOT NULL,
            path TEXT NOT NULL,
            snapshot TEXT REFERENCES blobs(hash),  -- NULL: deleted
            PRIMARY KEY (run_id, path)
        );
        CREATE TABLE test_results (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL,
            nodeid TEXT NOT NULL,
            outcome TEXT NOT NULL,          -- passed | failed | error | skipped | xfailed | xpassed | timeout | crashed
            duration REAL,
            message TEXT,
            path TEXT,                      -- deepest traceback frame in the workspace
            line INTEGER,
            test_path TEXT,                 -- the test's own failing line (or its definition)
            test_line INTEGER
        );
        CREATE INDEX test_results_run ON test_results(run_id);
        CREATE INDEX test_results_nodeid ON test_results(nodeid, run_id);
        CREATE TABLE test_fixes (           -- a function that changed while a failing test came to pass (SEED)
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            failing_run INTEGER NOT NULL,
            passing_run INTEGER NOT NULL,
            path TEXT NOT NULL,
            function TEXT NOT NULL,         -- qualified name: Class.method
            context TEXT NOT NULL,          -- code before the function (passing version), up to 4000 characters
            failing TEXT NOT NULL,
            error TEXT NOT NULL,            -- the failing tests' messages
            passing TEXT NOT NULL,
            tests TEXT NOT NULL             -- the tests that came to pass, comma-separated
        );
        CREATE VIEW preference_pairs AS     -- the same fixes as CodeLutra's (prompt, chosen, rejected)
            SELECT id, time, path, function, context AS prompt, passing AS chosen, failing AS rejected, error
            FROM test_fixes;
        CREATE TABLE run_completions (      -- accepted completions edited before this (passing) run
            run_id INTEGER NOT NULL,
            completion_id TEXT NOT NULL,
            PRIMARY KEY (run_id, completion_id)
        );
        """,
    )


def m003_adaptation_runs(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
        CREATE TABLE adaptation_runs (      -- one `selftune adapt` run, written by that process when it ends
            id TEXT PRIMARY KEY,            -- the adapter id (its folder under .selftune/adapters/)
            started REAL NOT NULL,
            ended REAL NOT NULL,
            base TEXT NOT NULL,             -- model manifest name
            decision TEXT NOT NULL,         -- promoted | kept | failed
            reason TEXT,
            examples INTEGER,               -- training examples
            metrics TEXT NOT NULL           -- JSON: held-out metrics of base, previous and candidate
        );
        """,
    )


def m004_step_edits(conn: sqlite3.Connection) -> None:
    """Where an editor step ends in its document's edits, so that the steps of a session whose server was
    killed are settled later from the edits after the last one (recovery.py). Since this migration a
    suggestion still pending when its server died is rejected with the reason `session-lost`."""
    _run(
        conn,
        """
        -- editor steps: how many of the document's edits the text after the step includes (NULL: older steps)
        ALTER TABLE steps ADD COLUMN edits INTEGER;
        """,
    )


def m005_trained_examples(conn: sqlite3.Connection) -> None:
    """What each adaptation run trained on, and the adapter it started from: successive runs build on each other
    (adaptation/lineage.py) and the report says how much of the project they have covered."""
    _run(
        conn,
        """
        ALTER TABLE adaptation_runs ADD COLUMN warm_from TEXT;  -- the adapter the run started from (NULL: the base)
        ALTER TABLE adaptation_runs ADD COLUMN tokens INTEGER;  -- training tokens of the run
        CREATE TABLE trained_examples (     -- one row per example a run trained on
            run_id TEXT NOT NULL,           -- adaptation_runs.id
            key TEXT NOT NULL,              -- the example's identity across runs (kind, file, text)
            kind TEXT NOT NULL,             -- code | insertion | revision | edit | lintseq | ...
            path TEXT,                      -- its file (or function) in the workspace
            version TEXT,                   -- the commit it came from, or a hash of the file's content
            PRIMARY KEY (run_id, key)
        );
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    m001_initial,
    m002_test_runs,
    m003_adaptation_runs,
    m004_step_edits,
    m005_trained_examples,
]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations `conn` lacks; returns the names applied now."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    applied_now = []
    for migration in MIGRATIONS:
        name = migration.__name__
        if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                migration(conn)
                conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, time.time()))
                applied_now.append(name)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return applied_now
