"""The server's side of the journal: one `Journal` per workspace folder, fed from LSP events.

`Recording` finds the workspace folder a document belongs to, turns LSP
params into the plain values the recorder takes, runs the recorder's clock
(`tick`) on the event loop, and shows the git-history import as `$/progress`.
Recording starts once the settings are known (after `workspace/configuration`),
so that with `record: false` nothing is ever written; turning the setting off
later closes the journals, turning it on opens them. The editor events that
arrive before then (a document opened and typed into while the client takes
its time to answer) are held, with the time each arrived, and recorded as they
happened once recording starts; with `record: false` they are dropped, and so
they are if there are too many (the documents are then recorded as they are
when recording starts).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from . import __version__
from .background import Background
from .documents import Document
from .host import Host
from .journal import Journal
from .journal.recorder import Recorder
from .journal.text import Range
from .progress import Progress
from .workspace import locate

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
LOCATED_KEPT = 10_000  # documents whose workspace folder is remembered
HELD_EVENTS = 20_000  # editor events held until the settings are known; more, and they are dropped
HELD_CHARS = 50_000_000  # and characters of text in them


def workspace_roots(params: types.InitializeParams) -> list[Path]:
    """The workspace folders the client opened, most specific first."""
    uris = [f.uri for f in params.workspace_folders or []] or ([params.root_uri] if params.root_uri else [])
    roots = [Path(p) for p in (to_fs_path(u) for u in uris) if p]
    if not roots and params.root_path:
        roots = [Path(params.root_path)]
    return sorted({r.resolve() for r in roots if r.is_dir()}, key=lambda r: len(r.parts), reverse=True)


def lsp_range(change: types.TextDocumentContentChangeEvent) -> Range | None:
    r = getattr(change, "range", None)
    if r is None:
        return None
    return (r.start.line, r.start.character), (r.end.line, r.end.character)


@dataclass(frozen=True)
class Held:
    """An editor event that arrived before recording started, and how to record it later."""

    at: float  # when it arrived
    uri: str
    record: Callable[[Recorder, str, float], None]  # (the recorder of its journal, its path there, `at`)
    chars: int = 0  # text it holds


class Recording:
    def __init__(self, host: Host, *, documents: Callable[[], Iterable[Document]],
                 outside: Callable[[Path, str, str | None], None] = lambda root, rel, text: None,
                 clock: Callable[[], float] = time.time):  # fmt: skip
        """`documents`: the documents open now (recorded as opened when recording starts); `outside`: told of each
        file that changed outside the editor (folder, path, its text or None), on the event loop."""
        self.host = host
        self.documents = documents
        self.outside = outside
        self.clock = clock
        self.roots: list[Path] = []
        self.journals: dict[Path, Journal] = {}
        self._located: dict[str, tuple[Journal, str] | None] = {}
        self._background = Background()
        # Editor events before the settings are known (None once they are, or when too many arrived), and the
        # documents opened meanwhile.
        self._held: list[Held] | None = []
        self._held_chars = 0
        self._held_opened: set[str] = set()

    def for_uri(self, uri: str) -> tuple[Journal, str] | None:
        """The journal of the workspace folder holding `uri`, and the path relative to it."""
        if not self.journals:
            return None
        if uri not in self._located:  # resolving a path costs system calls: once per document
            if len(self._located) > LOCATED_KEPT:
                self._located.clear()
            found = locate(uri, self.journals)
            self._located[uri] = (self.journals[found[0]], found[1]) if found else None
        return self._located[uri]

    # --- starting and stopping -------------------------------------------------------

    def update(self) -> None:
        """Open or close the journals to match the `record` setting (the first call: the settings are known)."""
        settings = self.host.settings
        held, opened = self._held or [], self._held_opened
        self._held, self._held_chars, self._held_opened = None, 0, set()
        if settings.record and not self.journals:
            self.start(held, opened)
        elif not settings.record and self.journals:
            log.info("recording turned off")
            self.stop()

    def start(self, held: Iterable[Held] = (), opened: Collection[str] = ()) -> None:
        """Open the journals; record the documents open now, and what the editor did before (`held`, which
        opens the documents in `opened`), each event at its own time."""
        self._located.clear()
        loop = asyncio.get_running_loop()
        for root in self.roots:
            try:
                journal = Journal(
                    root,
                    on_outside=functools.partial(self.outside, root),
                    version=__version__,
                    model=self.host.settings.model,
                    on_problem=self._problem(loop),
                    call_soon=loop.call_soon_threadsafe,
                )
            except OSError as exc:
                self.host.say(f"selftune: cannot record in {root}: {exc}", types.MessageType.Warning)
                continue
            self.journals[root] = journal
            log.info("recording in %s", journal.path)
            journal.watch()
            self._import_history(journal)
        for doc in list(self.documents()):
            if doc.uri not in opened:
                self.opened(doc.uri, doc.language_id or "", doc.version or 0, doc.source)
        for event in held:
            self._record(event)
        if self.journals and not len(self._background):
            self._background.start(self._tick())

    def stop(self) -> None:
        self._located.clear()
        journals, self.journals = self.journals, {}
        for journal in journals.values():
            journal.close()
        self._background.cancel()

    def _problem(self, loop: asyncio.AbstractEventLoop) -> Callable[[str], None]:
        def say(message: str) -> None:
            loop.call_soon_threadsafe(self.host.say, message, types.MessageType.Warning)

        return say

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for journal in list(self.journals.values()):
                try:
                    journal.recorder.tick()
                except Exception:  # a bug in one rule must not stop recording
                    log.exception("journal tick failed")

    def _import_history(self, journal: Journal) -> None:
        progress = HistoryProgress(self.host)
        journal.import_history(
            self.host.settings.history_depth, progress.update, lambda count: progress.finish(count, journal.path)
        )

    # --- events ---------------------------------------------------------------------

    def opened(self, uri: str, language: str, version: int, text: str) -> None:
        def record(recorder: Recorder, rel: str, at: float) -> None:
            recorder.opened(uri, rel, language, version, text, at=at)

        if self._held is not None:
            self._held_opened.add(uri)
        self._record(Held(self.clock(), uri, record, len(text)))

    def changed(self, params: types.DidChangeTextDocumentParams) -> None:
        uri, version = params.text_document.uri, params.text_document.version
        changes = [(lsp_range(c), c.text) for c in params.content_changes]

        def record(recorder: Recorder, rel: str, at: float) -> None:
            recorder.changed(uri, version, changes, at=at)

        self._record(Held(self.clock(), uri, record, sum(len(text) for _, text in changes)))

    def saved(self, uri: str) -> None:
        self._record(Held(self.clock(), uri, lambda recorder, rel, at: recorder.saved(uri, at=at)))

    def closed(self, uri: str) -> None:
        self._record(Held(self.clock(), uri, lambda recorder, rel, at: recorder.closed(uri, at=at)))

    def cursor(self, uri: str, line: int) -> None:
        self._record(Held(self.clock(), uri, lambda recorder, rel, at: recorder.cursor(uri, line, at=at)))

    def _record(self, event: Held) -> None:
        """Hand a document event to the recorder of its journal, or hold it until the settings are known."""
        if self._held is not None:
            self._held.append(event)
            self._held_chars += event.chars
            if len(self._held) > HELD_EVENTS or self._held_chars > HELD_CHARS:
                log.warning(
                    "%d editor events (%d characters) before the settings arrived: too many to keep; the documents "
                    "are recorded as they are when recording starts",
                    len(self._held),
                    self._held_chars,
                )
                self._held, self._held_opened = None, set()
            return
        if found := self.for_uri(event.uri):
            journal, rel = found
            event.record(journal.recorder, rel, event.at)

    def shown(self, uri: str, item: str, **details) -> None:
        if found := self.for_uri(uri):
            found[0].recorder.shown(uri, item, **details)

    def accepted(self, uri: str, item: str, length: int | None) -> bool:
        found = self.for_uri(uri)
        return found is not None and found[0].recorder.accepted(item, length)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is committed in every journal (a barrier, off the event loop)."""
        return all(journal.store.flush(timeout) for journal in list(self.journals.values()))


class HistoryProgress:
    """The git-history import as `$/progress` (called from the import thread)."""

    def __init__(self, host: Host):
        self.host = host
        self.progress: Progress | None = None
        self.percent = -1

    def update(self, done: int, total: int) -> None:
        percent = int(100 * done / max(1, total))
        if percent == self.percent:
            return
        self.percent = percent
        if self.progress is None:
            self.progress = self.host.start_progress("selftune: importing git history", kind="history")
        self.progress.report(f"{done}/{total} commits", percent)

    def finish(self, count: int, where: Path) -> None:
        log.info("imported %d commits of git history into %s", count, where)
        if self.progress is not None:
            self.progress.end(f"{count} commits imported")
