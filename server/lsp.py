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
import itertools
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from . import __version__
from .background import Background
from .checking import Checking
from .commands import register as register_commands
from .completion.completer import Completer
from .completion.engine import Outcome
from .documents import Document, DocumentWorkspace
from .errors import RequestFailed
from .journal.text import utf16_column_to_index, utf16_len
from .logs import LogForwarder
from .models import ModelUnavailable
from .progress import Progress
from .protocol import SelftuneProtocol
from .recent import Recent
from .recording import Recording, workspace_roots
from .scheduler import Scheduler
from .settings import MODEL_KEYS, Settings, parse
from .status import NOTIFICATION, Status

log = logging.getLogger(__name__)

ACCEPT_COMMAND = "selftune.accept"


@dataclass
class Shown:
    uri: str
    version: int
    position: types.Position  # clamped to the document
    offset: int  # of the position in the document's text
    text: str
    outcome: Outcome
    model: str  # the manifest that made it


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
        self.shown: Recent[str, Shown] = Recent()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.recording = Recording(self, documents=lambda: self.workspace.text_documents.values())
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
        self.settled = False  # settings from workspace/configuration have arrived (or will not)
        self.background = Background()
        self._ids = itertools.count(1)
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
            self.scheduler.apply_current()
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

    # --- documents --------------------------------------------------------------

    def locate(self, uri: str, position: types.Position) -> tuple[Document, int, types.Position]:
        """The open document, the offset of `position` in it and the position clamped to its line,
        or a clear InvalidParams error. Costs one line's length, not the document's."""
        doc = self.workspace.text_documents.get(unquote(uri))
        if doc is None:
            raise JsonRpcInvalidParams(f"document {uri} is not open: send textDocument/didOpen first")
        if position.line < 0 or position.character < 0:
            raise JsonRpcInvalidParams(f"position {position.line}:{position.character} is negative")
        lines = doc.line_count
        if position.line > lines or (position.line == lines and position.character > 0):
            raise JsonRpcInvalidParams(
                f"position {position.line}:{position.character} is outside {uri}, which has {lines} lines"
            )
        # LSP: a character past the end of the line means the end of the line.
        units = utf16_len(doc.line_text(position.line)) if position.line < lines else 0
        if position.character > units:
            position = types.Position(position.line, units)
        return doc, doc.offset_of(position), position

    def documentation(self, code: str) -> types.MarkupContent | str:
        """`code` as Markdown where the client renders it, else as a plain string."""
        caps = self.client_capabilities.text_document
        item = caps.completion.completion_item if caps and caps.completion else None
        if item and item.documentation_format and types.MarkupKind.Markdown in item.documentation_format:
            return types.MarkupContent(types.MarkupKind.Markdown, f"```\n{code}\n```")
        return code

    def completable(self, doc: Document) -> bool:
        if "\x00" in doc.source:
            self.say(
                f"selftune: {doc.uri} looks binary (it contains NUL characters); no completions for it",
                types.MessageType.Warning,
                once=True,
            )
            return False
        return True

    async def suggest(self, params: types.InlineCompletionParams | types.CompletionParams) -> tuple[Shown, str] | None:
        """The suggestion at a position, with an id for its accept command; None when there is none."""
        doc, offset, position = self.locate(params.text_document.uri, params.position)
        self.recording.cursor(params.text_document.uri, position.line)
        completer = self.completer
        if completer is None or not self.completable(doc):
            return None
        version = doc.version
        outcome = await completer.complete(doc.uri, doc.source, offset, language_id=doc.language_id or "")
        if outcome.error:
            raise RequestFailed(f"selftune: {outcome.error}")
        if not outcome.text or doc.version != version:
            log.debug(
                "no suggestion at %s:%s: %s",
                doc.uri,
                offset,
                "superseded" if outcome.text is None else "document changed" if outcome.text else "nothing to offer",
            )
            return None
        shown = Shown(
            params.text_document.uri, version or 0, position, offset, outcome.text, outcome, completer.manifest.name
        )
        item_id = f"c{next(self._ids)}"
        self.shown.add(item_id, shown)
        self.recording.shown(
            shown.uri,
            item_id,
            offset=offset,
            line=position.line,
            character=position.character,
            text=outcome.text,
            model=shown.model,
            adapter=self.scheduler.serving,
            latency_ms=round(outcome.seconds * 1000, 1),
            context_hash=outcome.context_hash,
        )
        log.debug(
            "suggestion %s after %.0f ms (%s)",
            item_id,
            outcome.seconds * 1000,
            "reused" if outcome.reused else f"{outcome.prefill_tokens} prefill tokens",
        )
        return shown, item_id


def forward_logs(server: SelftuneServer) -> None:
    handler = LogForwarder(server.window_log_message)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    server.log_forwarder = handler
    logging.getLogger("selftune").addHandler(handler)


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

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SelftuneServer, params: types.DidChangeTextDocumentParams) -> None:
        if ls.completer is not None:
            ls.completer.engine.supersede(unquote(params.text_document.uri))
        ls.scheduler.typing()
        ls.recording.changed(params)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: SelftuneServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.recording.saved(params.text_document.uri)
        ls.checking.saved(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SelftuneServer, params: types.DidCloseTextDocumentParams) -> None:
        if ls.completer is not None:
            ls.completer.forget(unquote(params.text_document.uri))
        ls.recording.closed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: SelftuneServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        if not ls.settings.inline_completion:
            return None
        found = await ls.suggest(params)
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
        found = await ls.suggest(params)
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
        item_id = args[0] if args else None
        length = args[1] if len(args) > 1 else None
        if not isinstance(item_id, str) or item_id not in ls.shown:
            log.info("accept for an unknown suggestion %r", item_id)
            return False
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
            raise JsonRpcInvalidParams(
                f"{ACCEPT_COMMAND}: the accepted length must be a whole number >= 0, got {length!r}"
            )
        log.info("suggestion %s accepted%s", item_id, "" if length is None else f" ({length} characters)")
        shown = ls.shown[item_id]
        if length is not None:  # the editor counts UTF-16 code units
            length = utf16_column_to_index(shown.text, length)
        ls.recording.accepted(shown.uri, item_id, length)
        return True

    register_commands(
        server,
        host=server,
        recording=server.recording,
        checking=server.checking,
        status=server.status,
        scheduler=server.scheduler,
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
