"""Typing into a real `selftune serve` over LSP, the way an editor does.

Used by `selftune demo` and by the latency benchmark, so that both measure the
same thing. A `Session` starts the server as a subprocess and speaks LSP to it
with pygls's client. `type_text` replays keystrokes on a schedule (characters
50 ms apart, pauses at word ends and line ends): every keystroke sends a
`didChange` and an inline-completion request and cancels the previous
request, as VS Code does. The typist keeps the schedule, as a user does: at a
pause it waits for the last keystroke's answer only until its next key is
due, and an answer that comes later was never seen (recorded as a miss, its
time as never shown).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from ..journal.text import utf16_len

CHAR_GAP = 0.050  # seconds between keystrokes
WORD_PAUSE = 0.250  # after the last character of a word
LINE_PAUSE = 0.600  # after the last character of a line


@dataclass(frozen=True)
class Keystroke:
    char: str
    pause: str  # "", "word" or "line": the typist pauses after this key
    gap: float  # seconds until the next key


def keystrokes(text: str) -> list[Keystroke]:
    """The typing schedule for `text`."""

    def wordy(c: str) -> bool:
        return c.isalnum() or c == "_"

    keys = []
    for i, c in enumerate(text):
        nxt = text[i + 1] if i + 1 < len(text) else "\n"
        if c != "\n" and nxt == "\n" and text[: i + 1].rsplit("\n", 1)[-1].strip():
            keys.append(Keystroke(c, "line", LINE_PAUSE))
        elif wordy(c) and not wordy(nxt):
            keys.append(Keystroke(c, "word", WORD_PAUSE))
        else:
            keys.append(Keystroke(c, "", CHAR_GAP))
    return keys


@dataclass
class Pause:
    kind: str  # "word" or "line"
    line: str  # the cursor's line at the pause
    suggestion: str | None  # None: no answer before the next key was due (or the request failed)
    seconds: float  # from the last keystroke to the answer; inf where it was never seen
    expected: str  # what the file really says next (rest of the line, or the next line)


def useful_chars(suggestion: str, expected: str) -> int:
    """Characters of `suggestion` that match what was really written next."""
    n = 0
    for a, b in zip(suggestion, expected):
        if a != b:
            break
        n += 1
    return n


@dataclass
class Doc:
    uri: str
    text: str
    version: int = 1

    def position(self, offset: int) -> types.Position:
        line = self.text.count("\n", 0, offset)
        start = self.text.rfind("\n", 0, offset) + 1
        return types.Position(line, utf16_len(self.text[start:offset]))


def insert(client: LanguageClient, doc: Doc, offset: int, text: str) -> None:
    """Type `text` at `offset`: update `doc` and send the incremental didChange an editor sends."""
    replace(client, doc, offset, offset, text)


def replace(client: LanguageClient, doc: Doc, start: int, end: int, text: str) -> None:
    """Replace `doc.text[start:end]` with `text`, as one incremental didChange."""
    first, last = doc.position(start), doc.position(end)
    doc.text = doc.text[:start] + text + doc.text[end:]
    doc.version += 1
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(doc.version, doc.uri),
            [types.TextDocumentContentChangePartial(range=types.Range(first, last), text=text)],
        )
    )


@dataclass
class Session:
    client: LanguageClient
    root: Path
    messages: list[str] = field(default_factory=list)  # window/showMessage texts
    diagnostics: dict[str, list[types.Diagnostic]] = field(default_factory=dict)  # uri -> the latest published
    published: list[tuple[float, str, list[types.Diagnostic]]] = field(default_factory=list)  # (perf_counter, uri, ...)
    progress: list[tuple[float, str, object]] = field(default_factory=list)  # (perf_counter, token, $/progress value)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    async def start(
        cls, root: Path, init_options: dict | None = None, *, log: Path | None = None, command: list[str] | None = None
    ) -> Session:
        client = LanguageClient("selftune-replay", "1")
        session = cls(client, root)

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params: types.ShowMessageParams) -> None:
            session.messages.append(params.message)

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(params: types.LogMessageParams) -> None:
            pass

        @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def publish_diagnostics(params: types.PublishDiagnosticsParams) -> None:
            session.diagnostics[params.uri] = list(params.diagnostics)
            session.published.append((time.perf_counter(), params.uri, list(params.diagnostics)))

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create_progress(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @client.feature(types.PROGRESS)
        def progress(params: types.ProgressParams) -> None:
            session.progress.append((time.perf_counter(), str(params.token), params.value))

        cmd = command or [sys.executable, "-m", "selftune.server", "serve"]
        await client.start_io(*cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert client._server is not None  # started just above
        session._tasks.append(asyncio.create_task(_drain(client._server.stderr, log)))
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(
                    text_document=types.TextDocumentClientCapabilities(
                        inline_completion=types.InlineCompletionClientCapabilities(),
                    ),
                    window=types.WindowClientCapabilities(work_done_progress=True),
                ),
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(root.as_uri(), root.name)],
                initialization_options={"selftune": init_options or {}},
            )
        )
        client.initialized(types.InitializedParams())
        return session

    def open(self, path: Path, text: str, language_id: str = "python") -> Doc:
        doc = Doc(path.resolve().as_uri(), text)
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(doc.uri, language_id, doc.version, text))
        )
        return doc

    def insert(self, doc: Doc, offset: int, text: str) -> None:
        insert(self.client, doc, offset, text)

    def save(self, path: Path, doc: Doc) -> float:
        """Write `doc` to `path` and send didSave, as an editor does; returns when (perf_counter)."""
        path.write_text(doc.text)
        at = time.perf_counter()
        self.client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(doc.uri)))
        return at

    def request_inline(self, doc: Doc, offset: int) -> tuple[str, asyncio.Future]:
        msg_id = str(uuid.uuid4())
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
            text_document=types.TextDocumentIdentifier(doc.uri),
            position=doc.position(offset),
        )
        future = asyncio.wrap_future(
            self.client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        )
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # errors are read where awaited
        return msg_id, future

    def cancel(self, msg_id: str) -> None:
        self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))

    async def inline(self, doc: Doc, offset: int) -> tuple[str | None, float]:
        start = time.perf_counter()
        _, future = self.request_inline(doc, offset)
        result = await future
        return _text_of(result), time.perf_counter() - start

    async def execute(self, command: types.Command) -> object:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=command.command, arguments=command.arguments)
        )

    async def flush(self) -> bool:
        """A barrier: True once everything the notifications sent before it recorded is in the journal."""
        result = await self.execute(types.Command("flush", "selftune.flush"))
        return bool(result["flushed"] if isinstance(result, dict) else getattr(result, "flushed", False))

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 10)
            self.client.exit(None)
        except (TimeoutError, Exception):
            pass
        try:
            await asyncio.wait_for(self.client.stop(), 10)
        except TimeoutError:
            if self.client._server is not None:
                self.client._server.kill()
        for task in self._tasks:
            task.cancel()


def _text_of(result: object) -> str | None:
    if isinstance(result, types.InlineCompletionList):
        items = result.items
    elif isinstance(result, list):
        items = result
    else:
        return None
    if not items:
        return ""
    text = items[0].insert_text
    return text if isinstance(text, str) else text.value


async def _drain(stream: asyncio.StreamReader | None, log: Path | None) -> None:
    """Read the server's stderr so that its pipe never fills; keep it in `log` if given."""
    if stream is None:
        return
    out = log.open("ab") if log else None
    try:
        while chunk := await stream.read(65536):
            if out:
                out.write(chunk)
                out.flush()
    finally:
        if out:
            out.close()


async def type_text(
    session: Session,
    doc: Doc,
    offset: int,
    text: str,
    *,
    on_pause: Callable[[Pause], Awaitable[None] | None] | None = None,
    rest_of_file: str = "",
) -> list[Pause]:
    """Type `text` into `doc` at `offset`, one keystroke at a time; return what each pause saw.

    `rest_of_file` is what follows the typed text in the real file, so that a
    pause at the end of the text still knows what was written next.
    """
    pauses: list[Pause] = []
    outstanding: str | None = None
    full = text + rest_of_file
    next_at = time.perf_counter()
    for i, key in enumerate(keystrokes(text)):
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        session.insert(doc, offset, key.char)
        offset += 1
        if outstanding is not None:
            session.cancel(outstanding)
        pressed = time.perf_counter()
        outstanding, future = session.request_inline(doc, offset)
        if key.pause:
            suggestion, seconds = None, math.inf
            try:  # until the next key is due; what comes after it was never seen
                left = max(0.0, pressed + key.gap - time.perf_counter())
                result = await asyncio.wait_for(asyncio.shield(future), left)
                suggestion, seconds = _text_of(result), time.perf_counter() - pressed
            except TimeoutError:
                pass
            except Exception as exc:  # an LSP error is a failed suggestion, recorded as such
                session.messages.append(f"request failed: {exc}")
            line = doc.text[doc.text.rfind("\n", 0, offset) + 1 : offset]
            pause = Pause(key.pause, line, suggestion, seconds, _expected(full, i + 1, key.pause))
            pauses.append(pause)
            if suggestion is not None:
                outstanding = None  # answered; a late one stays outstanding and the next key cancels it
            if on_pause is not None:
                maybe = on_pause(pause)
                if asyncio.iscoroutine(maybe):
                    await maybe
        next_at = max(pressed + key.gap, time.perf_counter())
    return pauses


def _expected(full: str, at: int, kind: str) -> str:
    """What follows position `at` of the typed text: the rest of the line, or at a line end the next line."""
    end = full.find("\n", at)
    end = len(full) if end == -1 else end
    if kind == "line" and end == at:
        nxt = full.find("\n", at + 1)
        return full[at : len(full) if nxt == -1 else nxt]
    return full[at:end]
