"""The journal under faults: kill -9, a corrupt file, two servers on one workspace, recording off,
and input that must be recorded or skipped by rule (a 5 MB paste, a binary file, broken text)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from lsprotocol import types

from selftune.server.demo.replay import Session
from selftune.server.journal.queries import document_text

from .conftest import until


def git_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def journal(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True)


def latest_document(conn: sqlite3.Connection, path: str) -> int:
    return conn.execute("SELECT id FROM documents WHERE path = ? ORDER BY opened DESC", (path,)).fetchone()[0]


def type_randomly(session: Session, doc, rng: random.Random, keys: int) -> None:
    """Typing with the odd newline, deletion and jump elsewhere, as the editor sends it."""
    for _ in range(keys):
        roll = rng.random()
        if roll < 0.1 and doc.text:
            end = rng.randrange(len(doc.text))
            start = max(0, end - rng.randrange(1, 4))
            a, b = doc.position(start), doc.position(end)
            doc.text = doc.text[:start] + doc.text[end:]
            doc.version += 1
            session.client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    types.VersionedTextDocumentIdentifier(doc.version, doc.uri),
                    [types.TextDocumentContentChangePartial(range=types.Range(a, b), text="")],
                )
            )
        else:
            at = len(doc.text) if roll < 0.8 else rng.randrange(len(doc.text) + 1)
            session.insert(doc, at, rng.choice(["x", "_", " ", "\n", "(", "é", "1", "😀", "\n    "]))


async def test_kill_9_loses_nothing_older_than_the_commit_interval(tmp_path):
    root = git_repo(tmp_path / "proj")
    session = await Session.start(root)
    try:
        rng = random.Random(7)
        docs = [session.open(root / "a.py", "import os\n"), session.open(root / "b.py", "")]
        for _ in range(6):
            for doc in docs:
                type_randomly(session, doc, rng, 60)
        await session.inline(docs[0], len(docs[0].text))  # a round trip: the server has read every edit

        def recorded() -> bool:  # what a reader sees, without any flush: the writer commits on its own
            conn = journal(root)
            return all(document_text(conn, latest_document(conn, p)) == d.text for d, p in zip(docs, ["a.py", "b.py"]))

        await until(recorded, timeout=10, what="the typing to be committed")
        server = session.client._server
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.wait_for(server.wait(), 10)
        conn = journal(root)
        for doc, path in zip(docs, ["a.py", "b.py"]):
            assert document_text(conn, latest_document(conn, path)) == doc.text
        assert conn.execute("SELECT ended FROM sessions").fetchall() == [(None,)]  # it never said goodbye
    finally:
        try:
            await asyncio.wait_for(session.client.stop(), 5)
        except Exception:
            pass


async def test_a_corrupt_journal_is_moved_aside_and_completions_go_on(tmp_path):
    root = git_repo(tmp_path / "proj")
    (root / ".selftune").mkdir()
    (root / ".selftune" / "journal.sqlite3").write_bytes(b"\x00garbage, not SQLite\x00" * 500)
    session = await Session.start(root)
    try:
        doc = session.open(root / "m.py", "def double(x):\n    return ")
        text, _ = await session.inline(doc, len(doc.text))
        assert text and text.strip()
        deadline = time.monotonic() + 10
        while not any("could not be read" in m for m in session.messages) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        said = [m for m in session.messages if "could not be read" in m]
        assert len(said) == 1 and "moved to journal.sqlite3.corrupt-" in said[0]
        aside = list((root / ".selftune").glob("journal.sqlite3.corrupt-*"))
        assert aside and aside[0].read_bytes().startswith(b"\x00garbage")
        assert await session.flush()
        conn = journal(root)
        assert document_text(conn, latest_document(conn, "m.py")) == doc.text
    finally:
        await session.close()


async def test_two_servers_on_one_workspace_both_record(tmp_path):
    root = git_repo(tmp_path / "proj")
    sessions = [await Session.start(root), await Session.start(root)]
    try:
        rng = random.Random(3)
        docs = [sessions[0].open(root / "one.py", ""), sessions[1].open(root / "two.py", "")]
        for _ in range(10):
            for session, doc in zip(sessions, docs):
                type_randomly(session, doc, rng, 20)
    finally:
        for session in sessions:
            await session.close()  # shutdown commits everything
    conn = journal(root)
    assert len(conn.execute("SELECT id FROM sessions WHERE ended IS NOT NULL").fetchall()) == 2
    for doc, path in zip(docs, ["one.py", "two.py"]):
        assert document_text(conn, latest_document(conn, path)) == doc.text


async def test_with_recording_off_nothing_is_written(tmp_path):
    root = git_repo(tmp_path / "proj")
    (root / "x.py").write_text("x = 1\n")
    subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@e", "-C", str(root), "add", "."], check=True)
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@e", "-C", str(root), "commit", "-qm", "x"], check=True
    )
    session = await Session.start(root, {"record": False})
    try:
        doc = session.open(root / "x.py", "x = 1\n")
        session.insert(doc, len(doc.text), "y = ")
        text, _ = await session.inline(doc, len(doc.text))
        assert text is not None
        (root / "outside.py").write_text("z = 3\n")
        status = await session.execute(types.Command("status", "selftune.status"))
        assert status["recording"] is False and status["journals"] == []  # nothing open that could write
    finally:
        await session.close()
    assert not (root / ".selftune").exists()
    assert "selftune" not in (root / ".git" / "info" / "exclude").read_text()


async def test_huge_binary_and_broken_input_is_recorded_or_skipped_by_rule(tmp_path):
    root = git_repo(tmp_path / "proj")
    session = await Session.start(root)
    try:
        big = session.open(root / "big.py", "start = 1\n")
        session.insert(big, len(big.text), "x = 1\n" * 900_000)  # a 5 MB paste
        session.open(root / "blob.bin", "PNG\x00\x01\x02", "plaintext")
        # A didOpen whose text holds a lone surrogate (valid JSON, not valid Unicode), and a message
        # that is not UTF-8 at all, written to the server as raw bytes.
        stdin = session.client._server.stdin
        for body in (
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {
                        "textDocument": {
                            "uri": (root / "odd.py").as_uri(),
                            "languageId": "python",
                            "version": 1,
                            "text": "s = '\udc80'\n",
                        }
                    },
                }
            ).encode(),
            b'{"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": "'
            + (root / "bad.py").as_uri().encode()
            + b'", "languageId": "python", "version": 1, "text": "\xff\xfe"}}}',
        ):
            stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        small = session.open(root / "small.py", "def half(x):\n    return ")
        text, _ = await session.inline(small, len(small.text))
        assert text and text.strip()  # still serving
        session.insert(big, 0, "# edited after the paste\n")
        assert await session.flush()
        conn = journal(root)
        paths = {p for (p,) in conn.execute("SELECT path FROM documents")}
        assert {"big.py", "small.py", "odd.py"} <= paths and "blob.bin" not in paths
        big_doc = latest_document(conn, "big.py")
        # Past 2 million characters the document is no longer recorded: its instance is closed.
        assert conn.execute("SELECT closed FROM documents WHERE id = ?", (big_doc,)).fetchone()[0] is not None
        assert (
            conn.execute("SELECT coalesce(max(length(text)), 0) FROM edits").fetchone()[0] < 1000
        )  # the paste itself is not kept
        assert document_text(conn, latest_document(conn, "odd.py")) == "s = '\ufffd'\n"
    finally:
        await session.close()
