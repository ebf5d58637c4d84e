"""What the journal records, one frozen dataclass per kind of event.

The recorder, the history import, test feedback and the journal itself make
these and hand them to `Store.put`; the store's writer thread turns each into
rows, by column name (store.py). A field in the wrong place is a type error
or a wrong keyword, not a value silently written into the wrong column of
the data the adapters learn from. Times are Unix seconds; paths are relative
to the workspace folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from .text import Range


@dataclass(frozen=True)
class SessionStarted:
    session_id: str
    started: float
    version: str  # selftune's
    model: str  # the model manifest served


@dataclass(frozen=True)
class SessionEnded:
    session_id: str
    ended: float


@dataclass(frozen=True)
class DocumentOpened:
    document_id: int
    session_id: str
    path: str
    language: str
    opened: float
    version: int
    text: str


@dataclass(frozen=True)
class DocumentClosed:
    document_id: int
    closed: float
    text: str | None  # None: recording stopped for it (too large, binary) rather than a close


@dataclass(frozen=True)
class Edited:
    document_id: int
    time: float
    version: int
    range: Range | None  # None: the whole document was replaced
    text: str
    origin: str  # typing | reload


@dataclass(frozen=True)
class StepSettled:
    document_id: int
    time: float
    before: str  # the document before the step
    after: str  # and after it
    edits: int  # how many of the document's edits `after` includes (where a recovery goes on from)


@dataclass(frozen=True)
class Shown:
    completion_id: str
    session_id: str
    document_id: int
    time: float
    version: int
    line: int
    character: int  # UTF-16
    offset: int
    text: str
    model: str
    adapter: str | None
    latency_ms: float
    context_hash: str


@dataclass(frozen=True)
class CompletionOutcome:
    completion_id: str
    document_id: int
    time: float
    kind: str  # accepted | partially_accepted | rejected | retention
    accepted_length: int | None = None
    reason: str | None = None  # why it was rejected, or what triggered a retention measure
    survived: float | None = None  # retention: the share of the accepted text still there
    region: str | None = None  # retention: what the accepted region holds now


@dataclass(frozen=True)
class Revised:
    """An accepted completion the user changed: the model's text and the user's."""

    completion_id: str
    document_id: int
    time: float
    prefix: str
    suffix: str
    model_text: str
    user_text: str


@dataclass(frozen=True)
class FileChanged:
    """A file's content on disk, changed outside the editor (None: deleted)."""

    path: str
    time: float
    text: str | None
    origin: str
    session_id: str


@dataclass(frozen=True)
class CommitImported:
    sha: str
    time: float
    author: str
    message: str
    code_and_tests: bool  # the commit changed code and tests together


@dataclass(frozen=True)
class HistoryStep:
    sha: str
    path: str
    time: float
    diff: str  # zero-context unified-diff hunks


@dataclass(frozen=True)
class MetaSet:
    key: str
    value: str


@dataclass(frozen=True)
class RunStarted:
    """A test run after a save."""

    run_id: int
    session_id: str
    started: float
    trigger: str  # the saved files, comma-separated
    scope: str
    interpreter: str


@dataclass(frozen=True)
class RunFile:
    """A file as it was when the run started (a dirty file; None: deleted)."""

    run_id: int
    path: str
    text: str | None


@dataclass(frozen=True)
class RunHead:
    run_id: int
    head: str | None  # the git commit the run's files are based on


@dataclass(frozen=True)
class RunResult:
    run_id: int
    nodeid: str
    outcome: str
    duration: float | None
    message: str | None
    path: str | None  # the deepest frame in the workspace
    line: int | None
    test_path: str | None  # the test's own failing line
    test_line: int | None


@dataclass(frozen=True)
class RunEnded:
    run_id: int
    ended: float
    status: str  # finished | cancelled | timeout | crashed | no-pytest | no-interpreter
    exit_code: int | None
    passed: int
    failed: int
    errors: int


@dataclass(frozen=True)
class Fix:
    """A function that changed while a failing test came to pass (SEED's revision, CodeLutra's pair)."""

    time: float
    failing_run: int
    passing_run: int
    path: str
    function: str
    context: str
    failing: str
    error: str
    passing: str
    tests: str  # node ids, comma-separated


@dataclass(frozen=True)
class RunCompletion:
    """An accepted, then edited, completion linked to the first passing run after it."""

    run_id: int
    completion_id: str


@dataclass(frozen=True)
class SessionRecovered:
    """What a session that never ended (its server killed) left unsettled, settled by a later server.

    Written in one transaction, and only while the session has no end yet, so that two servers starting
    at once cannot both write it; the last of `events` is the session's `SessionEnded`."""

    session_id: str
    events: tuple[Event, ...]


Event = (
    SessionStarted
    | SessionEnded
    | DocumentOpened
    | DocumentClosed
    | Edited
    | StepSettled
    | Shown
    | CompletionOutcome
    | Revised
    | FileChanged
    | CommitImported
    | HistoryStep
    | MetaSet
    | RunStarted
    | RunFile
    | RunHead
    | RunResult
    | RunEnded
    | Fix
    | RunCompletion
    | SessionRecovered
)
