"""Helpers for end-to-end tests: the real `selftune serve`, driven by pytest-lsp's client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from selftune.server.demo.replay import Doc, insert, replace

SERVER = [sys.executable, "-m", "selftune.server", "serve"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "SELFTUNE_LOG": os.environ.get("SELFTUNE_LOG", "INFO")}


def git(root: Path, *args: str) -> None:
    """Run git in `root` with a committer identity (CI machines have none)."""
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@e", *args], cwd=root, check=True, capture_output=True
    )


async def until(predicate, timeout: float = 60.0, what: str = "condition"):
    """`predicate()` once it is truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def flush(client: LanguageClient) -> None:
    """A barrier: once it returns, everything the notifications sent before it recorded is in the journal."""
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.flush"))
    flushed = result["flushed"] if isinstance(result, dict) else result.flushed
    assert flushed, "the journal's writer did not catch up"


async def until_async(check, timeout: float = 60.0, what: str = "condition"):
    """`await check()` once it is truthy, asked again every 50 ms; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def config() -> ClientServerConfig:
    return ClientServerConfig(server_command=SERVER, server_env=ENV)


def capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(),
            completion=types.CompletionClientCapabilities(),
        ),
        workspace=types.WorkspaceClientCapabilities(configuration=True),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )


@pytest_lsp.fixture(config=config(), scope="module")
async def client(lsp_client: LanguageClient, tmp_path_factory):
    """One real server per test module (loading the model takes a moment), default settings."""
    root = tmp_path_factory.mktemp("project")
    lsp_client.root = root
    await start(lsp_client, root)
    yield
    await lsp_client.shutdown_session()


async def start(
    client: LanguageClient, root: Path, options: dict | None = None, *, status: bool = False, progress: bool = False
) -> None:
    """Initialize a session on `root`. `status`: opt in to `selftune/status` (kept in `client.statuses`);
    `progress`: the client supports work-done progress."""
    caps = capabilities()
    if status:
        client.statuses = []

        @client.feature("selftune/status")
        def on_status(params):
            client.statuses.append(params)

        caps.experimental = {"selftuneStatus": True}
    if progress:
        caps.window = types.WindowClientCapabilities(work_done_progress=True)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=caps,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(root.as_uri(), root.name)],
            # Whole lines unless a test says otherwise: a suggestion cut at a deadline depends on the machine's load.
            initialization_options={"selftune": {"lineWaitMs": 60000, **(options or {})}},
        )
    )


class Editor:
    """A document as the client holds it, with edits sent as incremental didChange."""

    def __init__(self, client: LanguageClient, path: Path, text: str, language_id: str = "python"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.client, self.doc = client, Doc(path.as_uri(), text)
        self.uri = self.doc.uri
        self.path = path
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(self.uri, language_id, 1, text))
        )

    @property
    def text(self) -> str:
        return self.doc.text

    def position(self, offset: int | None = None) -> types.Position:
        return self.doc.position(len(self.text) if offset is None else offset)

    def type(self, text: str, offset: int | None = None) -> None:
        insert(self.client, self.doc, len(self.text) if offset is None else offset, text)

    def replace(self, old: str, new: str) -> None:
        """Replace the first `old` in the document with `new`."""
        at = self.text.index(old)
        replace(self.client, self.doc, at, at + len(old), new)

    def save(self) -> None:
        """Write the document to its file and send didSave, as an editor does."""
        Path(self.path).write_text(self.text)
        self.client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(self.uri)))

    def params(self, position: types.Position | None = None) -> types.InlineCompletionParams:
        return types.InlineCompletionParams(
            context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
            text_document=types.TextDocumentIdentifier(self.uri),
            position=position or self.position(),
        )

    async def inline(self, position: types.Position | None = None) -> str:
        result = await self.client.text_document_inline_completion_async(self.params(position))
        items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
        return items[0].insert_text if items else ""


async def wait_for_message(client: LanguageClient, needle: str, timeout: float = 60.0) -> str:
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in client.messages:
            if needle in m.message:
                return m.message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no window/showMessage containing {needle!r}; got {[m.message for m in client.messages]}")
