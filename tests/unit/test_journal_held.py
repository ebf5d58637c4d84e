"""Editor events that arrive before the settings are known: held, then recorded with their own times, or dropped
(recording off, or too many of them). `Recording` with a host of its own, on a real journal."""

import dataclasses
import sqlite3
from contextlib import closing
from types import SimpleNamespace

from lsprotocol import types

from selftune.server import recording as recording_
from selftune.server.journal.queries import document_text
from selftune.server.recording import Recording
from selftune.server.settings import Settings


class Host:
    def __init__(self, record: bool):
        self.settings = dataclasses.replace(Settings(), record=record, history_depth=0)

    def say(self, message, kind=types.MessageType.Info, *, once=False):
        pass

    def start_progress(self, title, message="", *, kind="work"):
        raise AssertionError("no progress expected")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        self.now += 1.0
        return self.now


def change(uri: str, version: int, line: int, text: str) -> types.DidChangeTextDocumentParams:
    at = types.Position(line, 0)
    return types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(version, uri),
        [types.TextDocumentContentChangePartial(range=types.Range(at, at), text=text)],
    )


def typed_before_the_settings(tmp_path, record: bool, open_now: list | None = None):
    uri = (tmp_path / "a.py").as_uri()
    recording = Recording(Host(record), documents=lambda: open_now or [], clock=Clock())
    recording.roots = [tmp_path]
    recording.opened(uri, "python", 1, "import os\n")
    for i in range(5):
        recording.changed(change(uri, 2 + i, 1 + i, f"x{i} = {i}\n"))
    recording.saved(uri)
    return recording, uri


def journal(tmp_path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{tmp_path / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True)


async def test_held_events_are_recorded_with_their_own_times(tmp_path):
    recording, uri = typed_before_the_settings(tmp_path, record=True)
    assert not (tmp_path / ".selftune").exists()
    recording.update()  # the settings are known now (t = 1008 on this clock)
    try:
        assert recording.flush(5)
        with closing(journal(tmp_path)) as conn:
            doc, opened, version = conn.execute("SELECT id, opened, version FROM documents").fetchone()
            assert (opened, version) == (1001.0, 1)
            times = [t for (t,) in conn.execute("SELECT time FROM edits ORDER BY id")]
            assert times == [1002.0, 1003.0, 1004.0, 1005.0, 1006.0]
            assert document_text(conn, doc) == "import os\n" + "".join(f"x{i} = {i}\n" for i in range(5))
            # The save (t = 1007) ended the step: the edits are one step, settled then.
            assert conn.execute("SELECT time, edits FROM steps").fetchall() == [(1007.0, 5)]
    finally:
        recording.stop()


async def test_held_events_are_dropped_when_recording_is_off(tmp_path):
    recording, _ = typed_before_the_settings(tmp_path, record=False)
    recording.update()
    assert recording.journals == {} and not (tmp_path / ".selftune").exists()
    recording.host.settings = dataclasses.replace(recording.host.settings, record=True)
    recording.update()  # turned on later: the documents as they are then, nothing of before
    try:
        assert recording.flush(5)
        with closing(journal(tmp_path)) as conn:
            assert conn.execute("SELECT count(*) FROM documents").fetchone() == (0,)
    finally:
        recording.stop()


async def test_too_many_held_events_are_dropped_for_the_documents_as_they_are(tmp_path, monkeypatch):
    monkeypatch.setattr(recording_, "HELD_EVENTS", 3)
    now = SimpleNamespace(uri=(tmp_path / "a.py").as_uri(), language_id="python", version=7, source="as it is\n")
    recording, _ = typed_before_the_settings(tmp_path, record=True, open_now=[now])
    recording.update()
    try:
        assert recording.flush(5)
        with closing(journal(tmp_path)) as conn:
            doc, version = conn.execute("SELECT id, version FROM documents").fetchone()
            assert version == 7 and document_text(conn, doc) == "as it is\n"
            assert conn.execute("SELECT count(*) FROM edits").fetchone() == (0,)
    finally:
        recording.stop()
