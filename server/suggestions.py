"""A position in an open document to a suggestion, and an acceptance back to the journal.

The LSP handlers for `textDocument/inlineCompletion`, `textDocument/completion`
and the `selftune.accept` command (lsp.py) come here. `Suggestions.at` checks
the position (a clear `InvalidParams` error outside the document), asks the
completer with the document's path and its folder's project index, and
remembers what it offered (the newest `recent.SHOWN_KEPT`) for the accept
command, which the journal records with the accepted length.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from .completion.request import Outcome
from .documents import Document
from .errors import RequestFailed
from .host import Host
from .journal.text import utf16_column_to_index, utf16_len
from .recent import Recent

if TYPE_CHECKING:
    from .completion.completer import Completer
    from .indexing import Indexing
    from .recording import Recording
    from .scheduler import Scheduler

log = logging.getLogger(__name__)


@dataclass
class Shown:
    uri: str
    version: int
    position: types.Position  # clamped to the document
    offset: int  # of the position in the document's text
    text: str
    outcome: Outcome
    model: str  # the manifest that made it


def locate(doc: Document | None, uri: str, position: types.Position) -> tuple[Document, int, types.Position]:
    """The open document, the offset of `position` in it and the position clamped to its line, or a clear
    InvalidParams error. Costs one line's length, not the document's."""
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


class Suggestions:
    def __init__(self, host: Host, *, documents: Callable[[str], Document | None],
                 completer: Callable[[], Completer | None], recording: Recording, indexing: Indexing,
                 scheduler: Scheduler):  # fmt: skip
        """`documents`: the open document at a URI; `completer`: the model's, once there is one."""
        self.host = host
        self.documents = documents
        self.completer = completer
        self.recording = recording
        self.indexing = indexing
        self.scheduler = scheduler
        self.shown: Recent[str, Shown] = Recent()
        self._ids = itertools.count(1)

    def completable(self, doc: Document) -> bool:
        if "\x00" in doc.source:
            self.host.say(f"selftune: {doc.uri} looks binary (it contains NUL characters); no completions for it",
                          types.MessageType.Warning, once=True)  # fmt: skip
            return False
        return True

    async def at(self, params: types.InlineCompletionParams | types.CompletionParams) -> tuple[Shown, str] | None:
        """The suggestion at a position, with an id for its accept command; None when there is none."""
        uri = params.text_document.uri
        doc, offset, position = locate(self.documents(unquote(uri)), uri, params.position)
        self.recording.cursor(uri, position.line)
        completer = self.completer()
        if completer is None or not self.completable(doc):
            return None
        version = doc.version
        project = self.indexing.for_uri(doc.uri)
        index, path = project if project is not None else (None, "")
        outcome = await completer.complete(doc.uri, doc.source, offset, language_id=doc.language_id or "",
                                           path=path, index=index)  # fmt: skip
        if outcome.error:
            raise RequestFailed(f"selftune: {outcome.error}")
        if not outcome.text or doc.version != version:
            why = "superseded" if outcome.text is None else "document changed" if outcome.text else "nothing to offer"
            log.debug("no suggestion at %s:%s: %s", doc.uri, offset, why)
            return None
        shown = Shown(uri, version or 0, position, offset, outcome.text, outcome, completer.manifest.name)
        item_id = f"c{next(self._ids)}"
        self.shown.add(item_id, shown)
        self.recording.shown(uri, item_id, offset=offset, line=position.line, character=position.character,
                             text=outcome.text, model=shown.model, adapter=self.scheduler.serving,
                             latency_ms=round(outcome.seconds * 1000, 1),
                             context_hash=outcome.context_hash)  # fmt: skip
        log.debug("suggestion %s after %.0f ms (%s)", item_id, outcome.seconds * 1000,
                  ("reused" if outcome.reused else f"{outcome.prefill_tokens} prefill tokens")
                  + (", the cold start's short prompt" if outcome.quick else ""))  # fmt: skip
        return shown, item_id

    def prompt_at(self, uri: str, position: types.Position) -> dict:
        """What the model would be shown for a completion at `position`: the prompt, and the blocks in it."""
        doc, offset, position = locate(self.documents(unquote(uri)), uri, position)
        completer = self.completer()
        if completer is None:
            raise RequestFailed("selftune: no model is loaded")
        project = self.indexing.for_uri(doc.uri)
        index, path = project if project is not None else (None, "")
        assembled = completer.assemble(doc.uri, doc.source, offset, language_id=doc.language_id or "", path=path,
                                       index=index)  # fmt: skip
        return {"prompt": assembled.prompt, "tokens": completer.measure(assembled.prompt),
                "blocks": [{"kind": b.kind, "path": b.path} for b in assembled.blocks]}  # fmt: skip

    def accept(self, item_id: object, length: object, command: str) -> bool:
        """The editor accepted suggestion `item_id`, wholly or `length` UTF-16 code units of it."""
        if not isinstance(item_id, str) or item_id not in self.shown:
            log.info("accept for an unknown suggestion %r", item_id)
            return False
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
            raise JsonRpcInvalidParams(f"{command}: the accepted length must be a whole number >= 0, got {length!r}")
        log.info("suggestion %s accepted%s", item_id, "" if length is None else f" ({length} characters)")
        shown = self.shown[item_id]
        chars = None if length is None else utf16_column_to_index(shown.text, length)
        self.recording.accepted(shown.uri, item_id, chars)
        return True
