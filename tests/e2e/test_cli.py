"""The `selftune` command line: complete, models, serve --tcp."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from .conftest import ENV, capabilities

SELFTUNE = [sys.executable, "-m", "selftune.server"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*SELFTUNE, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def test_complete_prints_the_suggestion(tmp_path):
    src = tmp_path / "stats.py"
    src.write_text("def mean(values):\n    total = sum(values)\n    \n")
    done = run("complete", f"{src}:3:5", "--stats")
    assert done.returncode == 0, done.stderr
    suggestion = done.stdout.rstrip("\n")
    assert suggestion.strip() and "ms" in done.stderr
    assert not suggestion.startswith(" "), "the cursor is already at the block's indentation"


def test_complete_outside_the_file_says_so(tmp_path):
    src = tmp_path / "one.py"
    src.write_text("x = 1\n")
    done = run("complete", f"{src}:9:1")
    assert done.returncode == 2 and "outside" in done.stderr


def test_complete_refuses_binary_and_missing_files(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01\x02")
    done = run("complete", f"{blob}:1:1")
    assert done.returncode == 2 and "binary" in done.stderr
    done = run("complete", f"{tmp_path / 'none.py'}:1:1")
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_complete_with_a_missing_model_says_what_to_set(tmp_path):
    src = tmp_path / "a.py"
    src.write_text("x = ")
    done = run("complete", f"{src}:1:5", "--model-path", str(tmp_path / "missing.gguf"))
    assert done.returncode == 2 and "modelPath" in done.stderr and "does not exist" in done.stderr


def test_models_lists_manifests_and_settings():
    done = run("models")
    assert done.returncode == 0
    assert "gemma3-270m (default)" in done.stdout and "qwen2.5-coder-1.5b" in done.stdout
    assert "maxTokens" in done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_over_tcp(tmp_path):
    port = free_port()
    server = subprocess.Popen([*SELFTUNE, "serve", "--tcp", f"127.0.0.1:{port}"], env=ENV, stderr=subprocess.DEVNULL)
    client = LanguageClient("tcp-test", "1")
    try:
        for _ in range(100):
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        await client.initialize_async(types.InitializeParams(capabilities=capabilities(), root_uri=tmp_path.as_uri()))
        client.initialized(types.InitializedParams())
        uri = (tmp_path / "t.py").as_uri()
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, "def triple(x):\n    return "))
        )
        result = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
                text_document=types.TextDocumentIdentifier(uri),
                position=types.Position(1, 11),
            )
        )
        assert result.items and result.items[0].insert_text.strip()
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        server.terminate()
        server.wait(10)


def test_the_demo_runs_the_whole_tour():
    done = run("demo", timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)  # without colours
    for part in (
        "1. Typing",
        "2. Accepting",
        "3. A classic",
        "4. Switching",
        "5. Tests on save",
        "6. What the journal",
        "7. Adapting",
    ):
        assert part in out
    # the broken count() shows up at its line and in the test, is cleared by the fix, and becomes a fix in the journal
    assert "inventory/stock.py:" in out and "KeyError" in out and "tests/test_stock.py:" in out
    assert "the diagnostics are cleared" in out
    assert "revision example (SEED) for Stock.count" in out and "passing: return self.counts.get(sku, 0)" in out
    # the closing adaptation ran through selftune.adapt, trained, and reports both models' held-out numbers
    assert re.search(r"done: \d+ training steps, \d+ tokens", out), out[-2000:]
    assert re.search(r"edit similarity\s+\d\.\d{3}\s+\d\.\d{3}", out)
    assert re.search(r"the gate: (promoted|kept)", out)
