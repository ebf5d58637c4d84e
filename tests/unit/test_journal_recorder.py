"""The recorder on a real store with a hand-driven clock: the completion lifecycle, retention,
revision pairs, edit steps, outside changes and the size rules."""

import itertools

import pytest

from selftune.server.journal import recorder as recorder_
from selftune.server.journal.queries import document_text, export
from selftune.server.journal.recorder import Recorder, follow, survival
from selftune.server.journal.store import Store, connect
from selftune.server.journal.text import Edit

URI = "file:///w/a.py"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def rec(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "journal.sqlite3")
    ids = itertools.count(1)
    r = Recorder(store, "s", new_id=lambda: next(ids), clock=clock)
    r.clock = clock
    r.db = lambda: (store.flush(5), connect(tmp_path / "journal.sqlite3", readonly=True))[1]
    yield r
    store.close()


VERSIONS = itertools.count(2)  # document versions, increasing across every edit the tests send


def insert(rec, line, col, text):
    rec.changed(URI, next(VERSIONS), [(((line, col), (line, col)), text)])


def events(conn, completion):
    return conn.execute(
        "SELECT kind, reason, accepted_length, survived, region FROM completion_events "
        "WHERE completion_id = ? ORDER BY id",
        (completion,),
    ).fetchall()


def test_typing_through_keeps_a_suggestion_and_typing_over_rejects_it(rec):
    rec.opened(URI, "a.py", "python", 1, "x = ")
    rec.shown(URI, "c1", 4, 0, 4, "compute()", model="m", adapter=None, latency_ms=5, context_hash="h")
    insert(rec, 0, 4, "co")  # what it said
    rec.tick()
    assert events(rec.db(), "s-c1") == []
    insert(rec, 0, 6, "x")  # not what it said
    assert events(rec.db(), "s-c1") == [("rejected", "typed-over", None, None, None)]


def test_unaccepted_suggestions_time_out_or_are_replaced(rec):
    rec.opened(URI, "a.py", "python", 1, "x = ")
    rec.shown(URI, "c1", 4, 0, 4, "1", model="m", adapter=None, latency_ms=5, context_hash="h")
    rec.shown(URI, "c2", 4, 0, 4, "2", model="m", adapter=None, latency_ms=5, context_hash="h")
    rec.clock.now += recorder_.REJECT_SECONDS - 1
    rec.tick()
    assert events(rec.db(), "s-c1") == []
    rec.clock.now += 1
    rec.tick()
    conn = rec.db()
    assert events(conn, "s-c1") == [("rejected", "replaced", None, None, None)]
    assert events(conn, "s-c2") == [("rejected", "timeout", None, None, None)]


def test_an_accepted_completion_the_user_changes_is_a_revision_pair(rec):
    rec.opened(URI, "a.py", "python", 1, "def area(r):\n    \n")
    rec.shown(URI, "c1", 17, 1, 4, "return 3.14 * r * r", model="m", adapter=None, latency_ms=5, context_hash="h")
    insert(rec, 1, 4, "return 3.14 * r * r")  # the editor inserts it, then runs the command
    assert rec.accepted("c1")
    insert(rec, 0, 0, "import math\n")  # an edit above moves the region
    rec.changed(URI, 9, [(((2, 11), (2, 15)), "math.pi")])  # the user replaces 3.14
    rec.clock.now += recorder_.RETENTION_SECONDS
    rec.tick()
    conn = rec.db()
    kinds = events(conn, "s-c1")
    assert kinds[0] == ("accepted", None, None, None, None)
    kind, trigger, _, survived, region = kinds[1]
    assert (kind, trigger, region) == ("retention", "30s", "return math.pi * r * r")
    assert survived == pytest.approx(16 / 19)  # "return ", "." and " * r * r" survive
    (revision,) = [r for r in export(conn) if r["type"] == "revision"]
    assert revision["model"] == "return 3.14 * r * r" and revision["user"] == "return math.pi * r * r"
    assert revision["prefix"] == "def area(r):\n    "
    rec.saved(URI)  # measured at the save too, then no longer followed
    assert [e[1] for e in events(rec.db(), "s-c1")] == [None, "30s", "save"]
    assert rec.kept == []


def test_partial_acceptance_and_a_completion_item_replacing_the_word(rec):
    rec.opened(URI, "a.py", "python", 1, "val")
    rec.shown(URI, "c1", 3, 0, 3, "ue = compute(x)", model="m", adapter=None, latency_ms=5, context_hash="h")
    rec.changed(URI, 2, [(((0, 0), (0, 3)), "value = compute(x)")])  # textEdit over the word
    assert rec.accepted("c1", 5)
    rec.saved(URI)
    assert events(rec.db(), "s-c1") == [
        ("partially_accepted", None, 5, None, None),
        ("retention", "save", None, 1.0, "ue = "),
    ]


def test_accept_before_the_editor_inserts_the_text_is_found_on_the_next_edit(rec):
    rec.opened(URI, "a.py", "python", 1, "x = ")
    rec.shown(URI, "c1", 4, 0, 4, "42", model="m", adapter=None, latency_ms=5, context_hash="h")
    assert rec.accepted("c1")
    insert(rec, 0, 4, "42")
    rec.saved(URI)
    assert events(rec.db(), "s-c1")[-1] == ("retention", "save", None, 1.0, "42")


def test_steps_and_edits_rebuild_the_document(rec):
    rec.opened(URI, "a.py", "python", 1, "")
    for i, ch in enumerate("def f():\n    return 1\n"):
        line = "def f():\n    return 1\n"[:i].count("\n")
        col = i - ("def f():\n    return 1\n"[:i].rfind("\n") + 1)
        insert(rec, line, col, ch)
    rec.clock.now += 5
    rec.tick()
    insert(rec, 0, 0, "# header\n")
    rec.saved(URI)
    conn = rec.db()
    diffs = [d for (d,) in conn.execute("SELECT diff FROM steps ORDER BY id")]
    assert diffs == ["@@ -0,0 +1,2 @@\n+def f():\n+    return 1", "@@ -0,0 +1 @@\n+# header"]
    assert document_text(conn, 1) == "# header\ndef f():\n    return 1\n"


def test_a_reload_of_an_outside_change_is_not_typing(rec):
    rec.opened(URI, "a.py", "python", 1, "x=1\n")
    rec.outside_change("a.py", "x = 1\n")
    rec.changed(URI, 2, [(None, "x = 1\n")])
    conn = rec.db()
    assert conn.execute("SELECT origin FROM edits").fetchall() == [("reload",)]
    assert conn.execute("SELECT path, origin FROM files").fetchall() == [("a.py", "outside")]
    rec.saved(URI)
    assert rec.db().execute("SELECT count(*) FROM steps").fetchone()[0] == 0


def test_oversized_and_binary_documents_are_not_recorded(rec, monkeypatch):
    monkeypatch.setattr(recorder_, "MAX_RECORDED_CHARS", 100)
    rec.opened(URI, "a.py", "python", 1, "x" * 200)
    rec.opened("file:///w/b.bin", "b.bin", "", 1, "ab\x00cd")
    rec.opened("file:///w/.env", ".env", "", 1, "TOKEN=abc")
    assert ".env" not in {d.path for d in rec.docs.values()}
    rec.changed(URI, 2, [(((0, 0), (0, 150)), "")])  # shrinks under the limit: recorded from here on
    conn = rec.db()
    assert conn.execute("SELECT path FROM documents").fetchall() == [("a.py",)]
    assert document_text(conn, conn.execute("SELECT id FROM documents").fetchone()[0]) == "x" * 50


def test_follow_moves_grows_and_takes_in_edits():
    assert follow(10, 20, Edit(0, 0, "abc")) == (13, 23)
    assert follow(10, 20, Edit(12, 14, "")) == (10, 18)
    assert follow(10, 20, Edit(25, 25, "x")) == (10, 20)
    assert follow(10, 20, Edit(5, 15, "Z")) == (5, 11)
    assert follow(10, 20, Edit(5, 30, "new")) == (5, 8)
    assert survival("abcdef", "abXdef") == pytest.approx(5 / 6)


def test_word_by_word_acceptance_records_each_longer_length_then_the_whole(rec):
    rec.opened(URI, "a.py", "python", 1, "x = ")
    rec.shown(URI, "c1", 4, 0, 4, "compute(a, b)", model="m", adapter=None, latency_ms=5, context_hash="h")
    insert(rec, 0, 4, "compute")
    assert rec.accepted("c1", 7)
    insert(rec, 0, 11, "(a, ")
    assert rec.accepted("c1", 11)
    assert rec.accepted("c1", 9)  # a shorter (stale) report changes nothing
    assert rec.accepted("c1", 11)
    insert(rec, 0, 15, "b)")
    assert rec.accepted("c1")
    assert rec.accepted("c1")  # the command ran twice
    rec.saved(URI)
    assert events(rec.db(), "s-c1") == [
        ("partially_accepted", None, 7, None, None),
        ("partially_accepted", None, 11, None, None),
        ("accepted", None, None, None, None),
        ("retention", "save", None, 1.0, "compute(a, b)"),
    ]


def test_deleting_what_was_typed_of_a_suggestion_does_not_reject_it(rec):
    """Backspace over typed-through text, or an editor (eglot) that removes the inserted label and then
    applies the item's text edit: the suggestion is still pending, and its acceptance is measured whole."""
    rec.opened(URI, "a.py", "python", 1, "x = ")
    rec.shown(URI, "c1", 4, 0, 4, "total(a)", model="m", adapter=None, latency_ms=5, context_hash="h")
    insert(rec, 0, 4, "total(a)")  # the label, inserted by the completion UI
    rec.changed(URI, 9, [(((0, 4), (0, 12)), "")])  # removed again
    insert(rec, 0, 4, "total(a)")  # the item's text edit
    assert rec.accepted("c1")
    rec.saved(URI)
    assert events(rec.db(), "s-c1") == [
        ("accepted", None, None, None, None),
        ("retention", "save", None, 1.0, "total(a)"),
    ]
    rec.shown(URI, "c2", 12, 0, 12, " + 1", model="m", adapter=None, latency_ms=5, context_hash="h")
    insert(rec, 0, 12, " +")
    rec.changed(URI, 20, [(((0, 13), (0, 14)), "")])  # backspace over "+"
    rec.changed(URI, 21, [(((0, 13), (0, 13)), "-")])  # then not what it said
    assert events(rec.db(), "s-c2") == [("rejected", "typed-over", None, None, None)]
