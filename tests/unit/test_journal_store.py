"""The journal's schema, its writer thread, and what happens to a damaged file or a second writer."""

import sqlite3
import threading
import typing

from selftune.server.journal import events as ev
from selftune.server.journal.migrations import MIGRATIONS, migrate
from selftune.server.journal.queries import document_text
from selftune.server.journal.rows import WRITERS
from selftune.server.journal.store import Store, connect

EXPECTED = {
    "sessions": ["id", "started", "ended", "pid", "version", "model"],
    "blobs": ["hash", "size", "data"],
    "documents": ["id", "session_id", "path", "language", "opened", "version", "snapshot", "closed", "close_snapshot"],
    "edits": [
        "id",
        "document_id",
        "time",
        "version",
        "start_line",
        "start_char",
        "end_line",
        "end_char",
        "text",
        "origin",
    ],
    "files": ["id", "time", "path", "snapshot", "origin", "session_id"],
    "commits": ["sha", "time", "author", "message", "code_and_tests"],
    "steps": ["id", "time", "path", "origin", "document_id", "commit_sha", "diff", "edits"],
    "completions": [
        "id",
        "session_id",
        "document_id",
        "time",
        "version",
        "line",
        "character",
        "offset",
        "text",
        "model",
        "adapter",
        "latency_ms",
        "context_hash",
    ],
    "completion_events": ["id", "completion_id", "time", "kind", "accepted_length", "reason", "survived", "region"],
    "revisions": ["completion_id", "time", "path", "prefix", "suffix", "model_text", "user_text"],
    "meta": ["key", "value"],
    "_migrations": ["name", "applied"],
    "test_runs": [
        "id",
        "session_id",
        "started",
        "ended",
        "trigger",
        "scope",
        "interpreter",
        "head",
        "status",
        "exit_code",
        "passed",
        "failed",
        "errors",
    ],
    "run_files": ["run_id", "path", "snapshot"],
    "test_results": [
        "id",
        "run_id",
        "nodeid",
        "outcome",
        "duration",
        "message",
        "path",
        "line",
        "test_path",
        "test_line",
    ],
    "test_fixes": [
        "id",
        "time",
        "failing_run",
        "passing_run",
        "path",
        "function",
        "context",
        "failing",
        "error",
        "passing",
        "tests",
    ],
    "run_completions": ["run_id", "completion_id"],
    "adaptation_runs": [
        "id",
        "started",
        "ended",
        "base",
        "decision",
        "reason",
        "examples",
        "metrics",
        "warm_from",
        "tokens",
    ],  # fmt: skip
    "trained_examples": ["run_id", "key", "kind", "path", "version"],
}


def test_migrations_give_the_schema_and_apply_once():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert migrate(conn) == [m.__name__ for m in MIGRATIONS]
    assert migrate(conn) == []
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == set(EXPECTED)
    for table, columns in EXPECTED.items():
        assert [row[1] for row in conn.execute(f"PRAGMA table_info({table})")] == columns, table
    assert [row[1] for row in conn.execute("PRAGMA table_info(preference_pairs)")] == [
        "id",
        "time",
        "path",
        "function",
        "prompt",
        "chosen",
        "rejected",
        "error",
    ]


def _open_event(doc=1, path="a.py", text="x = 1\n"):
    return ev.DocumentOpened(doc, "s1", path, "python", 1.0, 1, text)


def test_events_are_committed_and_flush_waits_for_them(tmp_path):
    store = Store(tmp_path / "j.sqlite3")
    store.put(ev.SessionStarted("s1", 0.0, "test", "m"))
    store.put(_open_event())
    for i in range(200):
        store.put(ev.Edited(1, 2.0 + i, 2 + i, ((1, i), (1, i)), "y", "typing"))
    assert store.flush(5)
    reader = connect(tmp_path / "j.sqlite3", readonly=True)
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert document_text(reader, 1) == "x = 1\n" + "y" * 200
    store.close()


def test_a_damaged_journal_is_moved_aside_and_a_new_one_started(tmp_path):
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    problems = []
    store = Store(path, on_problem=problems.append)
    store.put(ev.SessionStarted("s1", 0.0, "test", "m"))
    store.put(_open_event())
    assert store.flush(5)
    store.close()
    assert len(problems) == 1 and "moved" in problems[0]
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert document_text(connect(path, readonly=True), 1) == "x = 1\n"


def test_two_writers_on_one_journal_lose_nothing(tmp_path):
    path = tmp_path / "journal.sqlite3"
    stores = [Store(path), Store(path)]

    def write(store, doc):
        store.put(_open_event(doc, f"f{doc}.py", ""))
        for i in range(300):
            store.put(ev.Edited(doc, float(i), i, ((0, i), (0, i)), "ab"[doc - 1], "typing"))

    threads = [threading.Thread(target=write, args=(s, n + 1)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        assert s.flush(10)
        s.close()
    conn = connect(path, readonly=True)
    assert document_text(conn, 1) == "a" * 300 and document_text(conn, 2) == "b" * 300


def test_lone_surrogates_are_stored_as_replacement_characters(tmp_path):
    store = Store(tmp_path / "j.sqlite3")
    store.put(_open_event(text="bad \udc80 text\n"))
    assert store.flush(5)
    store.close()
    assert document_text(connect(tmp_path / "j.sqlite3", readonly=True), 1) == "bad \ufffd text\n"


def test_test_runs_fixes_export_and_forget(tmp_path):
    from selftune.server.journal.queries import export, forget, stats

    path = tmp_path / "journal.sqlite3"
    store = Store(path)
    store.put(ev.SessionStarted("s1", 0.0, "test", "m"))
    store.put(ev.RunStarted(7, "s1", 1.0, "geo.py", "related", "/usr/bin/python3"))
    store.put(ev.RunFile(7, "geo.py", "def area(r):\n    return r + r  # FAILING_MARK\n"))
    store.put(ev.RunResult(7, "test_geo.py::test_area", "failed", 0.01, "assert 4 == 6", "geo.py", 2, "test_geo.py", 5))
    store.put(ev.RunEnded(7, 2.0, "finished", 1, passed=0, failed=1, errors=0))
    store.put(ev.RunHead(7, "abc123"))
    store.put(ev.RunStarted(8, "s1", 3.0, "geo.py", "related", "/usr/bin/python3"))
    store.put(ev.RunResult(8, "test_geo.py::test_area", "passed", 0.01, "", None, None, None, None))
    store.put(ev.RunHead(8, "abc123"))
    store.put(ev.RunEnded(8, 4.0, "finished", 0, passed=1, failed=0, errors=0))
    store.put(
        ev.Fix(
            4.0,
            7,
            8,
            "geo.py",
            "area",
            "import math\n",
            "def area(r):\n    return r + r  # FAILING_MARK\n",
            "test_geo.py::test_area: assert 4 == 6",
            "def area(r):\n    return r * r\n",
            "test_geo.py::test_area",
        )
    )
    store.put(ev.RunCompletion(8, "s1-c1"))
    assert store.flush(5)
    store.close()

    conn = connect(path)
    assert conn.execute("SELECT status, failed, passed, head FROM test_runs ORDER BY id").fetchall() == [
        ("finished", 1, 0, "abc123"),
        ("finished", 0, 1, "abc123"),
    ]
    s = stats(conn, path)
    assert (s["test_runs"], s["test_failures"], s["test_fixes"]) == (2, 1, 1)
    (fix,) = [r for r in export(conn) if r["type"] == "test_fix"]
    assert fix["function"] == "area" and fix["tests"] == ["test_geo.py::test_area"] and "r * r" in fix["passing"]
    assert conn.execute("SELECT prompt, chosen, rejected FROM preference_pairs").fetchone() == (
        fix["context"],
        fix["passing"],
        fix["failing"],
    )

    deleted = forget(conn, ["geo.py"])
    assert deleted["test_fixes"] == 1 and deleted["run_files"] == 1 and deleted["test_results"] == 1
    assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (0,)  # the run's snapshot of geo.py is gone
    conn.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    assert b"FAILING_MARK" not in raw and b"r * r" not in raw


def test_every_kind_of_event_round_trips_through_the_store(tmp_path):
    """Each event lands in its table with every field in the column of the same meaning."""
    path = tmp_path / "journal.sqlite3"
    shown = ev.Shown(
        "s1-c1",
        "s1",
        1,
        3.0,
        2,
        line=4,
        character=5,
        offset=40,
        text="return x",
        model="m",
        adapter="a1",
        latency_ms=12.5,
        context_hash="h",
    )
    events = [
        ev.SessionStarted("s1", 1.0, "0.1", "m"),
        ev.DocumentOpened(1, "s1", "a.py", "python", 2.0, 1, "x = 1\n"),
        ev.Edited(1, 2.5, 2, ((1, 0), (1, 0)), "y", "typing"),
        ev.StepSettled(1, 2.6, "x = 1\n", "x = 1\ny", 1),
        shown,
        ev.CompletionOutcome("s1-c1", 1, 3.5, "partially_accepted", accepted_length=3),
        ev.CompletionOutcome("s1-c1", 1, 4.0, "retention", reason="save", survived=0.5, region="ret"),
        ev.Revised("s1-c1", 1, 4.1, prefix="P", suffix="S", model_text="return x", user_text="ret"),
        ev.FileChanged("b.py", 4.2, "z = 2\n", "outside", "s1"),
        ev.CommitImported("abc", 5.0, "A", "fix", True),
        ev.HistoryStep("abc", "a.py", 5.0, "@@ -1 +1 @@\n-a\n+b"),
        ev.MetaSet("history_head", "abc"),
        ev.RunStarted(7, "s1", 6.0, "a.py", "related", "/py"),
        ev.RunFile(7, "a.py", "x = 2\n"),
        ev.RunHead(7, "abc"),
        ev.RunResult(7, "t.py::t", "failed", 0.5, "boom", "a.py", 1, "t.py", 3),
        ev.RunEnded(7, 6.5, "finished", 1, passed=2, failed=1, errors=0),
        ev.Fix(7.0, 7, 8, "a.py", "f", "ctx", "bad", "err", "good", "t.py::t"),
        ev.RunCompletion(7, "s1-c1"),
        ev.DocumentClosed(1, 8.0, "x = 1\ny"),
        ev.SessionEnded("s1", 9.0),
        ev.SessionStarted("s0", 0.5, "0.1", "m"),  # a killed server's, settled by a later one
        ev.SessionRecovered("s0", (ev.SessionEnded("s0", 0.7),)),
        ev.SessionRecovered("s0", (ev.SessionEnded("s0", 0.9),)),  # once: it has ended meanwhile
    ]
    assert {type(e) for e in events} == set(typing.get_args(ev.Event)) == set(WRITERS)
    store = Store(path)
    for e in events:
        store.put(e)
    assert store.flush(5)
    store.close()
    conn = connect(path, readonly=True)

    def row(sql):
        return conn.execute(sql).fetchone()

    assert conn.execute("SELECT id, started, ended, version, model FROM sessions ORDER BY started").fetchall() == [
        ("s0", 0.5, 0.7, "0.1", "m"),
        ("s1", 1.0, 9.0, "0.1", "m"),
    ]
    assert row("SELECT id, session_id, path, language, opened, version, closed FROM documents") == (
        1,
        "s1",
        "a.py",
        "python",
        2.0,
        1,
        8.0,
    )
    assert document_text(conn, 1) == "x = 1\ny"
    assert row(
        "SELECT document_id, time, version, start_line, start_char, end_line, end_char, text, origin FROM edits"
    ) == (1, 2.5, 2, 1, 0, 1, 0, "y", "typing")
    assert row("SELECT time, path, origin, document_id, diff, edits FROM steps WHERE origin = 'editor'") == (
        2.6,
        "a.py",
        "editor",
        1,
        "@@ -1,0 +2 @@\n+y",
        1,
    )
    assert row(
        "SELECT id, session_id, document_id, time, version, line, character, offset, text, model, adapter, "
        "latency_ms, context_hash FROM completions"
    ) == ("s1-c1", "s1", 1, 3.0, 2, 4, 5, 40, "return x", "m", "a1", 12.5, "h")
    assert conn.execute(
        "SELECT completion_id, time, kind, accepted_length, reason, survived, region FROM completion_events ORDER BY id"
    ).fetchall() == [
        ("s1-c1", 3.5, "partially_accepted", 3, None, None, None),
        ("s1-c1", 4.0, "retention", None, "save", 0.5, "ret"),
    ]
    assert row("SELECT completion_id, time, path, prefix, suffix, model_text, user_text FROM revisions") == (
        "s1-c1",
        4.1,
        "a.py",
        "P",
        "S",
        "return x",
        "ret",
    )
    assert row("SELECT time, path, origin, session_id FROM files") == (4.2, "b.py", "outside", "s1")
    assert row("SELECT sha, time, author, message, code_and_tests FROM commits") == ("abc", 5.0, "A", "fix", 1)
    assert row("SELECT time, path, origin, commit_sha, diff FROM steps WHERE origin = 'history'") == (
        5.0,
        "a.py",
        "history",
        "abc",
        "@@ -1 +1 @@\n-a\n+b",
    )
    assert row("SELECT value FROM meta WHERE key = 'history_head'") == ("abc",)
    assert row(
        "SELECT id, session_id, started, ended, trigger, scope, interpreter, head, status, exit_code, passed, "
        "failed, errors FROM test_runs"
    ) == (7, "s1", 6.0, 6.5, "a.py", "related", "/py", "abc", "finished", 1, 2, 1, 0)
    assert row("SELECT run_id, path FROM run_files") == (7, "a.py")
    assert row(
        "SELECT run_id, nodeid, outcome, duration, message, path, line, test_path, test_line FROM test_results"
    ) == (7, "t.py::t", "failed", 0.5, "boom", "a.py", 1, "t.py", 3)
    assert row(
        "SELECT time, failing_run, passing_run, path, function, context, failing, error, passing, tests FROM test_fixes"
    ) == (7.0, 7, 8, "a.py", "f", "ctx", "bad", "err", "good", "t.py::t")
    assert row("SELECT run_id, completion_id FROM run_completions") == (7, "s1-c1")


def test_a_tuple_is_not_an_event():
    store = Store.__new__(Store)
    try:
        store.put(("session", "s1", 0.0, "v", "m"))  # the old positional form
    except TypeError as exc:
        assert "not a journal event" in str(exc)
    else:
        raise AssertionError("a tuple was accepted as an event")
