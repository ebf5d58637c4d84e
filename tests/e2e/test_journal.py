"""The journal, recorded by the real server through LSP, on a real temporary git repository."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
import zlib
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from selftune.server.demo.replay import Doc
from selftune.server.journal.queries import document_text

from .conftest import Editor, config, flush, git, start, until

AWS_KEY = "AKIAQWERTYUIOPASDF12"
PRIVATE_BODY = "MIIEpAIBAAKCAQEAzQ9vXbn3Lq0hR7sT2uV8wX4yZ1aB6cD5eF9gH0iJ3kL2mN7o"
ENV_SECRET = "hunter2-correct-horse-battery"
IGNORED_MARKER = "this_line_lives_in_an_ignored_build_file"

CART = """class Cart:
    def __init__(self):
        self.items = {}

    def add(self, sku, count=1):
        self.items[sku] = self.items.get(sku, 0) + count
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    git(root, "init", "-q")
    (root / ".gitignore").write_text("build/\n")
    (root / "shop").mkdir()
    (root / "shop" / "cart.py").write_text("class Cart:\n    pass\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "cart")
    (root / "shop" / "cart.py").write_text(CART)
    (root / "tests").mkdir()
    (root / "tests" / "test_cart.py").write_text(
        "from shop.cart import Cart\n\n\ndef test_add():\n"
        "    c = Cart()\n    c.add('a')\n    assert c.items == {'a': 1}\n"
    )
    git(root, "add", ".")
    git(root, "commit", "-qm", "cart: add, with a test")
    return root


@pytest_lsp.fixture(config=config(), scope="module")
async def client(lsp_client: LanguageClient, repo: Path):
    lsp_client.root = repo
    await start(lsp_client, repo)
    yield
    await lsp_client.shutdown_session()


def journal(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True)


async def rows(root: Path, sql: str, *args, until=bool, timeout: float = 15.0) -> list:
    """The rows of `sql` once `until(rows)` holds (the writer commits within 100 ms; rules act on a clock)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = journal(root).execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # not created yet
            found = []
        if until(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_history_is_imported_with_progress(client: LanguageClient):
    commits = await rows(client.root, "SELECT message, code_and_tests FROM commits", until=lambda r: len(r) == 2)
    assert sorted(commits) == [("cart", 0), ("cart: add, with a test", 1)]
    steps = await rows(
        client.root, "SELECT path FROM steps WHERE origin = 'history' ORDER BY id", until=lambda r: len(r) == 3
    )
    assert [p for (p,) in steps] == ["shop/cart.py", "shop/cart.py", "tests/test_cart.py"]

    # The journal can commit before the client hears of the progress (its token is a round trip away).
    def history_progress_ended():
        return [
            rs
            for rs in client.progress_reports.values()
            if rs
            and isinstance(rs[0], types.WorkDoneProgressBegin)
            and "git history" in rs[0].title
            and isinstance(rs[-1], types.WorkDoneProgressEnd)
        ]

    await until(history_progress_ended, timeout=15.0, what="the git history's progress to begin and end")
    assert "/.selftune/" in (client.root / ".git" / "info" / "exclude").read_text()


async def test_accept_edit_and_save_record_retention_and_a_revision_pair(client: LanguageClient):
    ed = Editor(client, client.root / "shop" / "cart.py", CART)
    ed.type("\n    def remove(self, sku):\n        ")
    result = await client.text_document_inline_completion_async(ed.params())
    (item,) = result.items
    assert item.insert_text.strip() and item.command.command == "selftune.accept"
    start = len(ed.text)
    ed.type(item.insert_text)  # the editor inserts the suggestion, then runs its command
    assert (
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(item.command.command, item.command.arguments)
        )
        is True
    )
    # The user rewrites the suggestion's first line.
    first_line_end = ed.text.find("\n", start)
    first_line_end = len(ed.text) if first_line_end < 0 else first_line_end
    user_line = "raise NotImplementedError('remove ' + sku)  # decided later"
    ed.doc.text, old = ed.text[:start] + user_line + ed.text[first_line_end:], ed.text
    ed.doc.version += 1
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(ed.doc.version, ed.uri),
            [
                types.TextDocumentContentChangePartial(
                    range=types.Range(Doc(ed.uri, old).position(start), Doc(ed.uri, old).position(first_line_end)),
                    text=user_line,
                )
            ],
        )
    )
    client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(ed.uri)))

    item_id = item.command.arguments[0]
    shown = await rows(
        client.root,
        "SELECT id, text, model, latency_ms, context_hash FROM completions WHERE id LIKE ?",
        f"%-{item_id}",
        until=bool,
    )
    (cid, text, model, latency, context_hash) = shown[0]
    assert text == item.insert_text and model == "gemma3-270m" and latency > 0 and len(context_hash) == 16
    events = await rows(
        client.root,
        "SELECT kind, reason, survived, region FROM completion_events WHERE completion_id = ? ORDER BY id",
        cid,
        until=lambda r: any(e[0] == "retention" for e in r),
    )
    assert events[0][0] == "accepted"
    (_, trigger, survived, region) = [e for e in events if e[0] == "retention"][0]
    assert trigger == "save" and region.startswith(user_line) and 0 <= survived < 1
    revision = await rows(
        client.root, "SELECT model_text, user_text, prefix FROM revisions WHERE completion_id = ?", cid, until=bool
    )
    model_text, user_text, prefix = revision[0]
    assert (
        model_text == item.insert_text and user_text == region and prefix.endswith("def remove(self, sku):\n        ")
    )
    # The document rebuilt from the journal is the text the client holds.
    doc_id = (
        await rows(client.root, "SELECT id FROM documents WHERE path = 'shop/cart.py' ORDER BY opened DESC", until=bool)
    )[0][0]
    await rows(client.root, "SELECT count(*) FROM edits WHERE document_id = ?", doc_id, until=lambda r: r[0][0] >= 3)
    assert document_text(journal(client.root), doc_id) == ed.text


async def test_typing_over_a_suggestion_rejects_it(client: LanguageClient):
    ed = Editor(client, client.root / "shop" / "prices.py", "PRICES = {\n    'apple': 3,\n")
    result = await client.text_document_inline_completion_async(ed.params())
    (item,) = result.items
    ed.type("§" if not item.insert_text.startswith("§") else "¤")
    events = await rows(
        client.root,
        "SELECT e.kind, e.reason FROM completion_events e WHERE e.completion_id LIKE ?",
        f"%-{item.command.arguments[0]}",
        until=bool,
    )
    assert events == [("rejected", "typed-over")]


async def test_settled_edits_become_steps(client: LanguageClient):
    ed = Editor(client, client.root / "shop" / "tax.py", "")
    for ch in "RATE = 0.2\n":
        ed.type(ch)
    steps = await rows(client.root, "SELECT diff, origin FROM steps WHERE path = 'shop/tax.py'", until=bool)
    assert steps == [("@@ -0,0 +1 @@\n+RATE = 0.2", "editor")]


async def test_outside_changes_are_snapshots_and_editor_saves_are_not(client: LanguageClient):
    ed = Editor(client, client.root / "shop" / "saved.py", "A = 1\n")
    ed.type("B = 2\n")
    (client.root / "shop" / "saved.py").write_text(ed.text)  # what the editor writes on save
    (client.root / "shop" / "formatted.py").write_text("x = [1, 2]\n")  # a formatter or `git checkout`
    # The watcher handles changed files in the order they first changed: once the formatter's file is
    # recorded, the save was seen and judged before it.
    await rows(client.root, "SELECT path FROM files WHERE path LIKE 'shop/%'", until=bool)
    await flush(client)
    found = journal(client.root).execute("SELECT path, origin, snapshot FROM files WHERE path LIKE 'shop/%'").fetchall()
    assert [(p, o) for p, o, _ in found] == [("shop/formatted.py", "outside")]
    data = journal(client.root).execute("SELECT data FROM blobs WHERE hash = ?", (found[0][2],)).fetchone()[0]
    assert zlib.decompress(data).decode() == "x = [1, 2]\n"


async def test_secrets_and_ignored_files_never_reach_the_database_file(client: LanguageClient):
    (client.root / "build").mkdir(exist_ok=True)
    Editor(client, client.root / ".env", f"DB_PASSWORD={ENV_SECRET}\n", "dotenv")
    Editor(client, client.root / "build" / "gen.py", f"# {IGNORED_MARKER}\n")
    ed = Editor(client, client.root / "shop" / "settings.py", f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"\n')
    ed.type(f'KEY = """-----BEGIN RSA PRIVATE KEY-----\n{PRIVATE_BODY}\n-----END RSA PRIVATE KEY-----"""\n')
    ed.type(f"backup_key = '{AWS_KEY}'\n")
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(ed.uri)))
    await rows(
        client.root,
        "SELECT close_snapshot FROM documents WHERE path = 'shop/settings.py'",
        until=lambda r: r and r[0][0] is not None,
    )
    await flush(client)
    conn = journal(client.root)
    texts = [zlib.decompress(d).decode() for (d,) in conn.execute("SELECT data FROM blobs")]
    texts += [t for (t,) in conn.execute("SELECT text FROM edits")] + [
        d for (d,) in conn.execute("SELECT diff FROM steps")
    ]
    raw = b"".join(p.read_bytes() for p in (client.root / ".selftune").glob("journal.sqlite3*"))
    for secret in (AWS_KEY, PRIVATE_BODY, ENV_SECRET, IGNORED_MARKER):
        assert secret.encode() not in raw, secret
        assert not any(secret in t for t in texts), secret
    paths = {p for (p,) in conn.execute("SELECT path FROM documents")}
    assert "shop/settings.py" in paths and ".env" not in paths and "build/gen.py" not in paths


async def test_journal_stats_and_export_from_the_command_line(client: LanguageClient):
    import json
    import sys

    await flush(client)
    out = subprocess.run(
        [sys.executable, "-m", "selftune.server", "journal", "stats", "--json", "--workspace", str(client.root)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stats = json.loads(out)
    assert stats["completions_shown"] >= 2 and stats["accepted"] >= 1 and stats["rejected"] >= 1
    assert stats["history_commits"] == 2 and stats["revision_pairs"] >= 1 and stats["bytes"] > 0
    export = subprocess.run(
        [sys.executable, "-m", "selftune.server", "journal", "export", "--workspace", str(client.root)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    records = [json.loads(line) for line in export.splitlines()]
    assert {"edit_sequence", "revision", "completion"} <= {r["type"] for r in records}
    accepted = [r for r in records if r["type"] == "completion" and r["outcome"] == "accepted"]
    assert accepted and accepted[0]["retention"][0]["trigger"] == "save"


async def test_journal_forget_from_the_command_line_scrubs_the_file(client: LanguageClient):
    import sys

    client.text_document_did_close(
        types.DidCloseTextDocumentParams(types.TextDocumentIdentifier((client.root / "shop" / "tax.py").as_uri()))
    )
    await flush(client)
    out = subprocess.run(
        [sys.executable, "-m", "selftune.server", "journal", "forget", "shop/tax.py", "--workspace", str(client.root)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("deleted: ") and "steps" in out and "edits" in out
    conn = journal(client.root)
    assert conn.execute("SELECT count(*) FROM documents WHERE path = 'shop/tax.py'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM steps WHERE path = 'shop/tax.py'").fetchone()[0] == 0
    raw = b"".join(p.read_bytes() for p in (client.root / ".selftune").glob("journal.sqlite3*"))
    assert b"RATE = 0.2" not in raw
