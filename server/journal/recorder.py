"""Editor events -> journal events: documents, edits, steps and the completion lifecycle.

The LSP layer calls a `Recorder` with plain values (paths relative to the
workspace, LSP ranges as tuples); the recorder keeps its own copy of each open
document, derives what the journal needs, and hands events to the `Store`,
which writes them on its own thread. Nothing here blocks or knows about LSP.

Completion lifecycle, per suggestion returned to the editor (an *offer*):
- *shown* when it is returned;
- *accepted* when the editor runs its accept command (with a length for a
  partial acceptance);
- *rejected* when the user types something it did not say (`typed-over`), or
  nobody accepted it within `REJECT_SECONDS` (`timeout`, or `replaced` when a
  newer suggestion was shown meanwhile), or its document closed (`closed`);
  one still pending when its server was killed is rejected by the next
  server that opens the journal (`session-lost`, recovery.py).
Typing the suggestion's own next characters keeps it pending.

An accepted text is followed through later edits (its region grows, shrinks
and moves with them). `RETENTION_SECONDS` after acceptance and at the next
save, the journal gets how much of it survives and what the region holds; if
the user changed it, the pair (model's text, user's text) is a revision.

`tick` runs the time-based rules and is called by the server about four times
a second; `clock` is injectable for tests. The document events also take the
time they happened (`at`): the events recording.py held until the settings
were known are recorded later than they arrived, with the time they arrived.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..recent import SHOWN_KEPT, Recent
from . import events as ev
from . import steps as steps_
from .privacy import is_secret_file
from .store import Store
from .text import Edit, Range, Text, rebuild

log = logging.getLogger(__name__)

REJECT_SECONDS = 10.0  # a suggestion not accepted this long after it was shown is rejected
RETENTION_SECONDS = 30.0  # an accepted text is measured this long after acceptance (and at the next save)
MAX_RECORDED_CHARS = 2_000_000  # larger documents are not recorded (until they shrink again)
PREFIX_CHARS, SUFFIX_CHARS = 4000, 1000  # context kept with a revision pair
LOCATE_SLACK = 400  # how far from where it was shown an accepted text is looked for


@dataclass
class Doc:
    id: int
    uri: str
    path: str
    language: str
    text: Text
    version: int
    recording: bool
    steps: steps_.Steps = field(default_factory=steps_.Steps)
    edits: int = 0  # edits recorded under `id` (a step says how many of them its text includes)
    opened_hash: str = ""  # of the text at didOpen: the file on disk when the editor opened it


@dataclass
class Offer:
    key: str
    doc: Doc
    doc_id: int  # the journal instance it was shown in
    anchor: int  # offset where it would be inserted
    text: str
    shown: float
    typed: int = 0  # characters of it typed (or inserted) since
    newer: bool = False  # a newer suggestion was shown in its document
    resolved: bool = False
    accepted: bool = False
    accepted_length: int | None = None  # characters accepted so far when only part of it was


@dataclass
class Kept:
    """An accepted text, followed through later edits until it has been measured twice."""

    key: str
    doc: Doc
    doc_id: int
    text: str
    accepted: float
    start: int | None  # None until the accepted text is found in the document
    end: int | None
    prefix: str = ""
    suffix: str = ""
    measured_at_deadline: bool = False
    measured_at_save: bool = False
    tries: int = 0


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def follow(start: int, end: int, edit: Edit) -> tuple[int, int]:
    """The region [start, end) after `edit`: it moves with edits before it and takes in edits that touch it."""
    if edit.end <= start and not (edit.start == edit.end == start == end):
        return start + edit.delta, end + edit.delta
    if edit.start >= end:
        return start, end
    new_start = start if edit.start >= start else edit.start
    new_end = end + edit.delta if edit.end <= end else edit.start + len(edit.text)
    return new_start, max(new_start, new_end)


def survival(accepted: str, now: str) -> float:
    """The share of `accepted` still present, in order, in `now`."""
    if not accepted:
        return 1.0
    matcher = difflib.SequenceMatcher(None, accepted, now, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(accepted)


class Recorder:
    def __init__(
        self, store: Store, session_id: str, *, new_id: Callable[[], int], clock: Callable[[], float] = time.time
    ):
        self.store = store
        self.session = session_id
        self.now = clock
        self.new_id = new_id
        self.docs: dict[str, Doc] = {}
        # Pending and recently resolved suggestions, for their accept command; one never resolved is rejected
        # when it is forgotten.
        self.offers: Recent[str, Offer] = Recent(SHOWN_KEPT, on_drop=self._forgotten)
        self.kept: list[Kept] = []
        self.outside: dict[str, str] = {}  # path -> text written outside the editor, until the editor reloads it
        self.revised: dict[str, str] = {}  # accepted then edited, not yet linked to a passing test run: key -> path

    # --- documents -------------------------------------------------------------------

    def opened(self, uri: str, path: str, language: str, version: int, text: str, *, at: float | None = None) -> None:
        if is_secret_file(path):
            return
        doc = Doc(self.new_id(), uri, path, language, Text(text), version, recording=False, opened_hash=_digest(text))
        self.docs[uri] = doc
        self._resume(doc, self.now() if at is None else at)

    def _resume(self, doc: Doc, now: float) -> None:
        if len(doc.text) <= MAX_RECORDED_CHARS and "\x00" not in doc.text.text:
            doc.recording = True
            doc.edits = 0
            self.store.put(
                ev.DocumentOpened(doc.id, self.session, doc.path, doc.language, now, doc.version, doc.text.text)
            )

    def _suspend(self, doc: Doc, why: str, now: float) -> None:
        log.info("not recording %s while it %s", doc.path, why)
        self.store.put(ev.DocumentClosed(doc.id, now, None))
        doc.recording = False
        doc.id = self.new_id()
        doc.steps = steps_.Steps()

    def changed(
        self, uri: str, version: int, changes: Sequence[tuple[Range | None, str]], *, at: float | None = None
    ) -> None:
        doc = self.docs.get(uri)
        if doc is None:
            return
        now = self.now() if at is None else at
        doc.version = version
        reload = doc.path in self.outside and rebuild(doc.text.text, list(changes)) == self.outside[doc.path]
        if reload:
            self.outside.pop(doc.path)
            self._finish_step(doc, now)
        origin = "reload" if reload else "typing"
        for range_, new in changes:
            if not reload:
                for settled_at, base, before in doc.steps.change(doc.text.text, range_, new, now):
                    self._settle(doc, settled_at, base, before)
            edit = doc.text.apply(range_, new)
            if doc.recording and len(doc.text) > MAX_RECORDED_CHARS:
                self._suspend(doc, f"is over {MAX_RECORDED_CHARS} characters", now)
            elif doc.recording and "\x00" in new:
                self._suspend(doc, "holds NUL characters (binary)", now)
            elif doc.recording:
                self.store.put(ev.Edited(doc.id, now, version, range_, new, origin))
                doc.edits += 1
            self._follow(doc, edit, now)
        if not doc.recording:
            self._resume(doc, now)  # it checks the size and NUL rules itself
        if reload:
            doc.steps = steps_.Steps()

    def saved(self, uri: str, *, at: float | None = None) -> None:
        doc = self.docs.get(uri)
        if doc is None:
            return
        self._finish_step(doc, self.now() if at is None else at)
        for kept in [k for k in self.kept if k.doc is doc]:
            self._measure(kept, "save")

    def closed(self, uri: str, *, at: float | None = None) -> None:
        doc = self.docs.pop(uri, None)
        if doc is None:
            return
        now = self.now() if at is None else at
        self._finish_step(doc, now)
        for offer in [o for o in self.offers.values() if o.doc is doc and not o.resolved]:
            self._reject(offer, "closed")
        for kept in [k for k in self.kept if k.doc is doc]:
            self._measure(kept, "close")
        if doc.recording:
            self.store.put(ev.DocumentClosed(doc.id, now, doc.text.text))

    def cursor(self, uri: str, line: int, *, at: float | None = None) -> None:
        """The cursor is on `line` (a completion was asked for there): a step elsewhere is over."""
        doc = self.docs.get(uri)
        step = doc.steps.pending if doc else None
        if (
            doc is not None
            and step is not None
            and not (step.first - steps_.NEAR_LINES <= line <= step.last + steps_.NEAR_LINES)
        ):
            self._finish_step(doc, self.now() if at is None else at)

    def outside_change(self, path: str, text: str | None) -> None:
        """A file changed on disk, not through the editor; an open document showing it may reload it."""
        self.store.put(ev.FileChanged(path, self.now(), text, "outside", self.session))
        if text is not None and any(d.path == path and d.text.text != text for d in self.docs.values()):
            self.outside[path] = text

    def editor_has(self, path: str, text: str) -> bool:
        """Whether an open document holds `text` for `path` now (the editor saved it) or held it when opened
        (the file was written, or only touched, as the editor opened it)."""
        docs = [d for d in list(self.docs.values()) if d.path == path]
        return any(d.text.text == text for d in docs) or (bool(docs) and _digest(text) in {d.opened_hash for d in docs})

    def _finish_step(self, doc: Doc, now: float) -> None:
        finished = doc.steps.finish(doc.text.text)
        if finished:
            self._settle(doc, now, *finished)

    def _settle(self, doc: Doc, at: float, base: str, after: str) -> None:
        if doc.recording:
            self.store.put(ev.StepSettled(doc.id, at, base, after, doc.edits))

    # --- completions -------------------------------------------------------------------

    def shown(
        self,
        uri: str,
        item: str,
        offset: int,
        line: int,
        character: int,
        text: str,
        *,
        model: str,
        adapter: str | None,
        latency_ms: float,
        context_hash: str,
    ) -> None:
        doc = self.docs.get(uri)
        if doc is None:
            return
        now = self.now()
        for offer in self.offers.values():
            if offer.doc is doc:
                offer.newer = True
        key = f"{self.session}-{item}"
        self.offers.add(key, Offer(key, doc, doc.id, offset, text, now))
        if doc.recording:
            self.store.put(
                ev.Shown(
                    key,
                    self.session,
                    doc.id,
                    now,
                    doc.version,
                    line=line,
                    character=character,
                    offset=offset,
                    text=text,
                    model=model,
                    adapter=adapter,
                    latency_ms=latency_ms,
                    context_hash=context_hash,
                )
            )

    def accepted(self, item: str, length: int | None = None) -> bool:
        """The editor ran the accept command of suggestion `item` (`length`: characters accepted, if partial).

        An editor that accepts a suggestion word by word reports each step with the length accepted so far:
        a longer length (or the whole) after a partial acceptance is recorded as a newer outcome."""
        offer = self.offers.get(f"{self.session}-{item}")
        if offer is None:
            return False
        partial = length is not None and 0 <= length < len(offer.text)
        if offer.accepted:
            if offer.accepted_length is None or (partial and length is not None and length <= offer.accepted_length):
                return True  # the command ran twice, or nothing more was accepted
            self.kept = [k for k in self.kept if k.key != offer.key]  # follow the longer text from now on
        now = self.now()
        text = offer.text[:length] if partial else offer.text
        offer.resolved = offer.accepted = True
        offer.accepted_length = len(text) if partial else None
        self.store.put(
            ev.CompletionOutcome(
                offer.key,
                offer.doc_id,
                now,
                "partially_accepted" if partial else "accepted",
                accepted_length=len(text) if partial else None,
            )
        )
        for other in self.offers.values():
            if other.doc is offer.doc and not other.resolved:
                self._reject(other, "replaced")
        kept = Kept(offer.key, offer.doc, offer.doc_id, text, now, start=offer.anchor, end=None)
        self._locate(kept)
        self.kept.append(kept)
        if len(self.kept) > SHOWN_KEPT:  # measured at 30 s but its file never saved: stop following the oldest
            self.kept.pop(0)
        return True

    def _forgotten(self, key: str, offer: Offer) -> None:
        if not offer.resolved:
            self._reject(offer, "replaced")

    def _reject(self, offer: Offer, reason: str) -> None:
        offer.resolved = True
        self.store.put(ev.CompletionOutcome(offer.key, offer.doc_id, self.now(), "rejected", reason=reason))

    def _locate(self, kept: Kept) -> None:
        """Find the accepted text near where it was shown (the editor inserts it before or after the command)."""
        text = kept.doc.text.text
        guess = kept.start or 0
        if text.startswith(kept.text, guess):
            found = guess
        else:
            lo = max(0, guess - LOCATE_SLACK)
            found = text.find(kept.text, lo, guess + len(kept.text) + LOCATE_SLACK)
        if found < 0:
            kept.tries += 1
            return
        kept.start, kept.end = found, found + len(kept.text)
        kept.prefix = text[max(0, found - PREFIX_CHARS) : found]
        kept.suffix = text[kept.end : kept.end + SUFFIX_CHARS]

    def _follow(self, doc: Doc, edit: Edit, now: float) -> None:
        """Move pending suggestions and accepted regions of `doc` through `edit` (offsets before it)."""
        for offer in list(self.offers.values()):
            if offer.doc is not doc or offer.resolved:
                continue
            at = offer.anchor + offer.typed
            rest = offer.text[offer.typed :]
            if edit.start == edit.end == at and edit.text and rest.startswith(edit.text):
                offer.typed += len(edit.text)  # typed (or inserted) what it suggested
            elif edit.end == at and edit.start < at and edit.text.endswith(rest) and offer.typed == 0:
                offer.anchor = edit.start + len(edit.text) - len(offer.text)  # a completion item replacing the word
                offer.typed = len(offer.text)
            elif not edit.text and offer.anchor <= edit.start < edit.end == at:
                offer.typed -= edit.end - edit.start  # what was typed of it deleted again (backspace, or an
                # editor that removes the inserted label before it applies the item's text edit)
            elif edit.end <= offer.anchor and edit.start < offer.anchor:
                offer.anchor += edit.delta  # an edit before it, elsewhere
            elif edit.start > at + len(rest) or (not rest and edit.start >= at):
                pass  # an edit after it (or after all of it was typed)
            else:
                self._reject(offer, "typed-over")
        for kept in self.kept:
            if kept.doc is not doc:
                continue
            if kept.end is None or kept.start is None:
                if kept.start is not None and edit.end <= kept.start:
                    kept.start += edit.delta
                continue
            kept.start, kept.end = follow(kept.start, kept.end, edit)
        for kept in self.kept:
            if kept.doc is doc and kept.end is None and kept.tries < 8:
                self._locate(kept)

    def _measure(self, kept: Kept, trigger: str) -> None:
        if kept.end is None:
            if trigger != "save":
                self.kept.remove(kept)
            return
        region = kept.doc.text.text[kept.start : kept.end]
        self.store.put(
            ev.CompletionOutcome(
                kept.key,
                kept.doc_id,
                self.now(),
                "retention",
                reason=trigger,
                survived=survival(kept.text, region),
                region=region,
            )
        )
        if region != kept.text:
            self.store.put(
                ev.Revised(
                    kept.key,
                    kept.doc_id,
                    self.now(),
                    prefix=kept.prefix,
                    suffix=kept.suffix,
                    model_text=kept.text,
                    user_text=region,
                )
            )
            self.revised[kept.key] = kept.doc.path
            while len(self.revised) > SHOWN_KEPT:
                del self.revised[next(iter(self.revised))]
        if trigger == "save":
            kept.measured_at_save = True
        else:
            kept.measured_at_deadline = True
        if trigger == "close" or (kept.measured_at_save and kept.measured_at_deadline):
            self.kept.remove(kept)

    def forget_revised(self, keys) -> None:
        """These accepted-then-edited completions are now linked to a passing test run."""
        for key in keys:
            self.revised.pop(key, None)

    # --- time -------------------------------------------------------------------------

    def tick(self) -> None:
        now = self.now()
        for doc in self.docs.values():
            finished = doc.steps.settled(doc.text.text, now)
            if finished:
                self._settle(doc, now, *finished)
        for offer in list(self.offers.values()):
            if not offer.resolved and now - offer.shown >= REJECT_SECONDS:
                self._reject(offer, "replaced" if offer.newer else "timeout")
        for kept in list(self.kept):
            if not kept.measured_at_deadline and now - kept.accepted >= RETENTION_SECONDS:
                self._measure(kept, f"{RETENTION_SECONDS:.0f}s")

    def close(self) -> None:
        """The session ends: finish steps, measure what was accepted, and say so."""
        for uri in list(self.docs):
            self.closed(uri)
        self.store.put(ev.SessionEnded(self.session, self.now()))
