"""The language server: a pygls `LanguageServer` subclass and thin handlers.

Handlers unpack LSP params, call the completion pipeline (completion/), and
return `lsprotocol.types` objects. State lives on `SelftuneServer`. The event
loop never waits on the model: completions are computed on the engine thread
and awaited as futures, so `didChange`, `$/cancelRequest` and newer requests
are handled while a generation runs.

Bad input never stops the server: a position outside the document or a
document that was never opened is an `InvalidParams` error that says so; a
model that cannot be loaded is shown once with `window/showMessage` (with what
to install or set) and every completion request then fails with that message;
a bad setting is shown, naming the key and the default used instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from . import __version__
from .background import Background
from .checking import Checking
from .commands import register as register_commands
from .completion.completer import Completer
from .documents import Document, DocumentWorkspace
from .indexing import Indexing
from .journal.text import utf16_len
from .logs import LogForwarder
from .models import ModelUnavailable
from .progress import Progress
from .protocol import SelftuneProtocol
from .recording import Recording, workspace_roots
from .scheduler import Scheduler
from .settings import MODEL_KEYS, Settings, parse
from .status import NOTIFICATION, Status
from .suggestions import Suggestions

log = logging.getLogger(__name__)

ACCEPT_COMMAND = "selftune.accept"


class SelftuneServer(LanguageServer):
    """The one place that knows every part of the server and wires them together (their `Host`)."""

    def __init__(self) -> None:
        super().__init__(
            "selftune",
            __version__,
            protocol_cls=SelftuneProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.settings = Settings()
        self.completer: Completer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.indexing = Indexing(self, roots=lambda: self.recording.roots)
        self.recording = Recording(self, documents=lambda: self.workspace.text_documents.values(),
                                   outside=self.indexing.outside_change)  # fmt: skip
        self.checking = Checking(
            self, recording=self.recording, publish=self.text_document_publish_diagnostics, open_text=self.open_text
        )
        self.scheduler = Scheduler(
            self,
            recording=self.recording,
            checking=self.checking,
            completer=lambda: self.completer,
            changed=lambda: self.status.changed(),
        )
        self.status = Status(
            completer=lambda: self.completer,
            recording=self.recording,
            checking=self.checking,
            scheduler=self.scheduler,
            wanted=self.wants_status,
            send=lambda snapshot: self.protocol.notify(NOTIFICATION, snapshot),
        )
        self.suggestions = Suggestions(self, documents=self.workspace_document, completer=lambda: self.completer,
                                       recording=self.recording, indexing=self.indexing,
                                       scheduler=self.scheduler)  # fmt: skip
        self.settled = False  # settings from workspace/configuration have arrived (or will not)
        self.background = Background()
        self._warned: set[str] = set()
        self.log_forwarder: LogForwarder | None = None

    # --- what the parts ask of the server (host.Host) -------------------------------

    def start_progress(self, title: str, message: str = "", *, kind: str = "work") -> Progress:
        window = self.client_capabilities.window
        work_done = self.work_done_progress if window and window.work_done_progress else None
        assert self.loop is not None, "progress before initialize"
        return Progress(work_done, self.loop, self.status, title, message, kind=kind)

    def stop_parts(self) -> None:
        """Stop the adaptation run and the test runs, and commit what was recorded (safe to call twice)."""
        self.scheduler.stop()
        self.checking.stop()
        self.recording.stop()
        self.indexing.stop()

    def workspace_document(self, uri: str) -> Document | None:
        doc = self.workspace.text_documents.get(uri)
        return doc if isinstance(doc, Document) else None

    def open_text(self, uri: str) -> str | None:
        doc = self.workspace.text_documents.get(uri)
        return doc.source if doc is not None else None

    def wants_status(self) -> bool:
        experimental: Any = self.client_capabilities.experimental
        return isinstance(experimental, dict) and bool(experimental.get("selftuneStatus"))

    # --- settings ---------------------------------------------------------------

    def apply_settings(self, raw: object) -> None:
        settings, problems = parse(raw, self.settings)
        for problem in problems:
            self.say(problem, types.MessageType.Warning)
        self.settings = settings
        if self.settled:
            self.recording.update()
            self.checking.update()
            self.status.changed()
        if self.completer is None:
            return
        reload = settings.differs_in(self.completer.settings, MODEL_KEYS)
        try:
            self.completer.update_settings(settings)
        except ModelUnavailable as exc:
            self.say(f"selftune: {exc}", types.MessageType.Error)
            return
        if reload:  # otherwise the load in progress (or done) is already reported
            self.background.start(self.report_model_load())

    def start_model(self) -> None:
        try:
            self.completer = Completer(self.settings)
        except ModelUnavailable as exc:
            # The manifest itself is bad: fall back to the default model and say so.
            self.say(f"selftune: {exc}; using the default model instead", types.MessageType.Error)
            self.settings = dataclasses.replace(self.settings, model=Settings().model, model_path="")
            self.completer = Completer(self.settings)

    async def report_model_load(self) -> None:
        """Once the model has loaded (or failed to), tell the user if it failed."""
        completer = self.completer
        if completer is None:
            return
        engine = completer.engine
        await asyncio.get_running_loop().run_in_executor(None, engine.loaded.wait)
        if engine.load_error:
            self.say(f"selftune: no completions: {engine.load_error}", types.MessageType.Error)
        else:
            log.info("model %s loaded", completer.manifest.name)
            self.scheduler.apply_current(force=True)
        self.status.changed()

    def say(self, message: str, kind: types.MessageType = types.MessageType.Info, *, once: bool = False) -> None:
        if once:
            if message in self._warned:
                return
            self._warned.add(message)
        if kind <= types.MessageType.Warning:
            log.warning(message)
        else:
            log.info(message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def documentation(self, code: str) -> types.MarkupContent | str:
        """`code` as Markdown where the client renders it, else as a plain string."""
        caps = self.client_capabilities.text_document
        item = caps.completion.completion_item if caps and caps.completion else None
        if item and item.documentation_format and types.MarkupKind.Markdown in item.documentation_format:
            return types.MarkupContent(types.MarkupKind.Markdown, f"```\n{code}\n```")
        return code


def forward_logs(server: SelftuneServer) -> None:
    handler = LogForwarder(server.window_log_message)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    server.log_forwarder = handler
    logging.getLogger("selftune").addHandler(handler)


def changed_lines(changes: Sequence[types.TextDocumentContentChangeEvent]) -> list[tuple[int, int]]:
    """The lines (first, last) each change touches, in the text after it (a whole-document change: line 0)."""
    out = []
    for change in changes:
        r = getattr(change, "range", None)
        first = r.start.line if r is not None else 0
        out.append((first, first + change.text.count("\n")))
    return out


def accept_command(item_id: str) -> types.Command:
    return types.Command(title="selftune: accept", command=ACCEPT_COMMAND, arguments=[item_id])


def create_server() -> SelftuneServer:
    server = SelftuneServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: SelftuneServer, params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_running_loop()
        if ls.log_forwarder is not None:
            ls.log_forwarder.loop = ls.loop
        ls.protocol._workspace = DocumentWorkspace.like(ls.workspace)  # no document is open yet
        ls.apply_settings(params.initialization_options)
        ls.recording.roots = workspace_roots(params)
        ls.start_model()

    @server.feature(types.INITIALIZED)
    async def initialized(ls: SelftuneServer, params: types.InitializedParams) -> None:
        ls.background.start(ls.report_model_load())
        workspace_caps = ls.client_capabilities.workspace
        if workspace_caps is not None and workspace_caps.configuration:
            try:
                config = await ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section="selftune")])
                )
                if config and config[0] is not None:
                    ls.apply_settings(config[0])
            except Exception as exc:  # a client that advertises but fails: keep what we have
                log.warning("workspace/configuration failed: %s", exc)
        # Only now is it known whether to record: with `record: false` nothing may be written.
        ls.settled = ls.checking.settled = True
        ls.recording.update()
        ls.checking.update()
        ls.status.changed()
        ls.scheduler.start()
        ls.indexing.start()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: SelftuneServer, params: types.DidChangeConfigurationParams) -> None:
        if params.settings:
            ls.apply_settings(params.settings)
            return
        workspace_caps = ls.client_capabilities.workspace
        if workspace_caps is not None and workspace_caps.configuration:
            config = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="selftune")])
            )
            if config and config[0] is not None:
                ls.apply_settings(config[0])

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: SelftuneServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        ls.recording.opened(doc.uri, doc.language_id, doc.version, doc.text)
        ls.indexing.opened(doc.uri, doc.text)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SelftuneServer, params: types.DidChangeTextDocumentParams) -> None:
        if ls.completer is not None:
            ls.completer.engine.supersede(unquote(params.text_document.uri))
        ls.scheduler.typing()
        ls.recording.changed(params)
        uri = params.text_document.uri
        ls.indexing.changed(uri, changed_lines(params.content_changes), lambda: ls.open_text(uri))

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: SelftuneServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.recording.saved(params.text_document.uri)
        ls.checking.saved(params.text_document.uri)
        ls.indexing.saved(params.text_document.uri, ls.open_text(params.text_document.uri))

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SelftuneServer, params: types.DidCloseTextDocumentParams) -> None:
        if ls.completer is not None:
            ls.completer.forget(unquote(params.text_document.uri))
        ls.recording.closed(params.text_document.uri)
        ls.indexing.closed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: SelftuneServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        if not ls.settings.inline_completion:
            return None
        found = await ls.suggestions.at(params)
        if found is None:
            return types.InlineCompletionList(items=[])
        shown, item_id = found
        return types.InlineCompletionList(
            items=[
                types.InlineCompletionItem(
                    insert_text=shown.text,
                    range=types.Range(shown.position, shown.position),
                    command=accept_command(item_id),
                )
            ]
        )

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " "]))
    async def completion(ls: SelftuneServer, params: types.CompletionParams) -> types.CompletionList | None:
        if not ls.settings.completion:
            return None
        found = await ls.suggestions.at(params)
        if found is None:
            return types.CompletionList(is_incomplete=True, items=[])
        shown, item_id = found
        # Replace the word being typed so that the client's filtering matches the item.
        source = ls.workspace.get_text_document(params.text_document.uri).source
        start = shown.offset
        while start > 0 and (source[start - 1].isalnum() or source[start - 1] == "_"):
            start -= 1
        word = source[start : shown.offset]
        word_start = types.Position(shown.position.line, shown.position.character - utf16_len(word))
        first = shown.text.split("\n", 1)[0] if shown.text.strip("\n") else shown.text.strip()
        label = (word + first).strip() or shown.text.strip().split("\n", 1)[0]
        return types.CompletionList(
            is_incomplete=True,
            items=[
                types.CompletionItem(
                    label=label[:80],
                    kind=types.CompletionItemKind.Snippet,
                    detail=f"selftune · {shown.model}",
                    documentation=ls.documentation(word + shown.text),
                    filter_text=word + shown.text,
                    sort_text="0",
                    preselect=True,
                    insert_text_format=types.InsertTextFormat.PlainText,
                    text_edit=types.TextEdit(
                        range=types.Range(word_start, shown.position),
                        new_text=word + shown.text,
                    ),
                    command=accept_command(item_id),
                )
            ],
        )

    @server.command(ACCEPT_COMMAND)
    def accept(ls: SelftuneServer, *args: object) -> bool:
        """Arguments: the item id, and optionally how many characters of it were accepted (partial acceptance)."""
        return ls.suggestions.accept(args[0] if args else None, args[1] if len(args) > 1 else None, ACCEPT_COMMAND)

    register_commands(
        server,
        host=server,
        recording=server.recording,
        checking=server.checking,
        status=server.status,
        scheduler=server.scheduler,
        suggestions=server.suggestions,
    )

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: SelftuneServer, params: None) -> None:
        ls.background.cancel()
        ls.stop_parts()
        if ls.completer is not None:
            ls.completer.close()

    @server.feature(types.EXIT)
    def exit_(ls: SelftuneServer, params: None) -> None:
        ls.stop_parts()  # an exit without shutdown still commits what was recorded

    return server
