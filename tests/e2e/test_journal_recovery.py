"""Nothing typed is lost: a server killed in the middle of a step has it settled by the next one, and the
edits that arrive before the settings are known are recorded, at their own times, once they are."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from contextlib import closing
from pathlib import Path

import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from selftune.server.demo.replay import Session
from selftune.server.journal.queries import document_text, export
from selftune.server.journal.recovery import LOST

from .conftest import ENV, Editor, config, flush, start, until

LINES = 200
TOP = 100  # the line typed at the top of the file instead of at its end: the step before it settles


def git_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def journal(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True)


def line(i: int) -> str:
    return f"typed_{i} = {i}  # line {i}"


def exported_lines(root: Path, path: str) -> list[str]:
    """The lines the journal's export has `path`'s edit steps add (each time one is added)."""
    conn = journal(root)
    try:
        return [
            added[1:]
            for record in export(conn)
            if record["type"] == "edit_sequence" and record["path"] == path
            for step in record["steps"]
            for added in step["diff"].splitlines()
            if added.startswith("+")
        ]
    finally:
        conn.close()


async def test_a_killed_servers_typing_is_in_the_export_soon_after_a_restart(tmp_path):
    root = git_repo(tmp_path / "proj")
    typed = [line(i) for i in range(LINES)]
    session = await Session.start(root)
    try:
        doc = session.open(root / "typed.py", "")
        other = session.open(root / "other.py", "def add(a, b):\n    return ")
        suggestion, _ = await session.inline(other, len(other.text))  # shown, and pending when the server dies
        for i, text in enumerate(typed):  # one didChange a line, as fast as the client sends them
            session.insert(doc, 0 if i == TOP else len(doc.text), text + "\n")
        assert await session.flush()  # every edit is committed; the last step is still in the recorder
        pending = set(typed) - set(exported_lines(root, "typed.py"))
        assert pending, "the server settled every step before it was killed: nothing left to recover"
        server = session.client._server
        assert server is not None
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.wait_for(server.wait(), 10)
    finally:
        try:
            await asyncio.wait_for(session.client.stop(), 5)
        except Exception:
            pass
    assert set(typed) - set(exported_lines(root, "typed.py")) == pending

    restarted = time.monotonic()
    again = await Session.start(root)
    try:
        await until(
            lambda: set(typed) <= set(exported_lines(root, "typed.py")),
            timeout=max(0.0, restarted + 5 - time.monotonic()),
            what="every typed line in the export within 5 s of the restart",
        )
        print(f"\nevery typed line exported {time.monotonic() - restarted:.2f} s after the restart")
        assert sorted(exported_lines(root, "typed.py")) == sorted(typed)  # each once: no step twice
        conn = journal(root)
        (dead, died), live = conn.execute("SELECT id, ended FROM sessions ORDER BY started").fetchall()
        assert died is not None and live[1] is None  # settled, and the new session is the running one
        typed_doc = conn.execute("SELECT id FROM documents WHERE path = 'typed.py'").fetchone()[0]
        assert document_text(conn, typed_doc) == doc.text
        assert conn.execute("SELECT closed FROM documents WHERE id = ?", (typed_doc,)).fetchone() == (died,)
        outcomes = conn.execute(
            "SELECT e.kind, e.reason FROM completion_events e JOIN completions c ON c.id = e.completion_id "
            "WHERE c.session_id = ?",
            (dead,),
        ).fetchall()
        assert outcomes == ([("rejected", LOST)] if suggestion else [])
        conn.close()
        # What the command line writes, raw edits too.
        out = subprocess.run(
            [sys.executable, "-m", "selftune.server", "journal", "export", "--raw-edits", "--workspace", str(root)],
            capture_output=True,
            text=True,
            check=True,
            env=ENV,
        ).stdout
        records = [json.loads(r) for r in out.splitlines()]
        (sequence,) = [r for r in records if r["type"] == "edit_sequence" and r["path"] == "typed.py"]
        assert all(any(text in step["diff"] for step in sequence["steps"]) for text in typed)
        edits = [r for r in records if r["type"] == "edit" and r["path"] == "typed.py"]
        assert [e["text"] for e in edits] == [text + "\n" for text in typed]
        assert set(edits[0]) == {"type", "path", "document", "time", "version", "range", "text", "origin"}
    finally:
        await again.close()


@pytest_lsp.fixture(config=config())
async def unsettled(lsp_client: LanguageClient, tmp_path):
    """A client that holds back its answer to workspace/configuration until `lsp_client.answer` is set."""
    lsp_client.root = git_repo(tmp_path / "proj")
    lsp_client.answer = asyncio.Event()
    del lsp_client.protocol.fm.features[types.WORKSPACE_CONFIGURATION]

    @lsp_client.feature(types.WORKSPACE_CONFIGURATION)
    async def configuration(params: types.ConfigurationParams):
        await lsp_client.answer.wait()
        return [{"historyDepth": 0}]

    await start(lsp_client, lsp_client.root, {"historyDepth": 0})
    yield
    await lsp_client.shutdown_session()


async def test_typing_before_the_settings_arrive_is_recorded_as_it_happened(unsettled: LanguageClient):
    root = unsettled.root
    opening = "import math\n"
    editor = Editor(unsettled, root / "early.py", opening)
    n = 40
    for i in range(n):
        editor.type(f"x{i} = math.sqrt({i})\n")
    await flush(unsettled)  # a round trip: the server has read every edit
    assert not (root / ".selftune" / "journal.sqlite3").exists()  # nothing written until the settings say so
    answered = time.time()
    unsettled.answer.set()

    def recorded() -> list[float] | None:
        if not (root / ".selftune" / "journal.sqlite3").exists():
            return None
        try:
            with closing(journal(root)) as conn:
                rows = conn.execute(
                    "SELECT e.time FROM edits e JOIN documents d ON d.id = e.document_id WHERE d.path = 'early.py' "
                    "ORDER BY e.id"
                ).fetchall()
        except sqlite3.OperationalError:  # created, not yet given its tables
            return None
        return [t for (t,) in rows] if len(rows) >= n else None

    times = await until(recorded, what=f"{n} edits recorded")
    await flush(unsettled)
    assert len(times) == n
    conn = journal(root)
    (doc, version, opened, snapshot) = conn.execute(
        "SELECT d.id, d.version, d.opened, b.data FROM documents d JOIN blobs b ON b.hash = d.snapshot "
        "WHERE d.path = 'early.py'"
    ).fetchone()
    assert (version, zlib.decompress(snapshot).decode()) == (1, opening)  # as sent at didOpen
    assert opened <= times[0] and times == sorted(times) and times[-1] < answered  # when they happened
    assert document_text(conn, doc) == editor.text
    conn.close()
