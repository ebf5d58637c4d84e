"""The journal: how the code in a workspace is really written, in `.selftune/journal.sqlite3`.

`Journal` puts the parts together for one workspace folder: the `Store`
(SQLite, WAL, one writer thread), the privacy `Rules`, the `Recorder` that
turns editor events into journal events, the `Watcher` for changes made
outside the editor, the import of git history, and, on a thread as it opens,
the recovery of what killed servers left unsettled (recovery.py). The server
owns one per workspace folder while recording is on; the CLI and the trainer
read the same file through `queries`. Nothing here knows about LSP.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..workspace import DIRNAME, journal_path
from . import events as ev
from . import history, recovery
from .privacy import Rules
from .recorder import Recorder
from .store import Store, connect
from .watcher import Watcher

log = logging.getLogger(__name__)

HISTORY_WRITE_SECONDS = 600.0  # how long `catch_up_history` waits for the writer (a deep first import)


def exclude_from_git(rules: Rules) -> None:
    """Add `.selftune/` to the repository's `.git/info/exclude` (once), so it is never committed."""
    repo = rules.repo
    if repo is None:
        return
    try:
        rel = rules.root.relative_to(Path(repo.working_tree_dir).resolve()).as_posix()
        pattern = f"/{DIRNAME}/" if rel == "." else f"/{rel}/{DIRNAME}/"
        exclude = Path(repo.common_dir) / "info" / "exclude"
        existing = exclude.read_text() if exclude.exists() else ""
        if pattern not in existing.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a") as f:
                f.write(("" if existing.endswith("\n") or not existing else "\n") + pattern + "\n")
    except (OSError, ValueError, TypeError) as exc:
        log.warning("could not add %s to .git/info/exclude: %s", DIRNAME, exc)


class Journal:
    def __init__(
        self,
        root: Path,
        *,
        version: str,
        model: str,
        on_problem: Callable[[str], None],
        call_soon: Callable[..., object],
        on_outside: Callable[[str, str | None], None] = lambda rel, text: None,
        clock: Callable[[], float] = time.time,
    ):
        self.root = root.resolve()
        self.rules = Rules(self.root)
        exclude_from_git(self.rules)
        self.path = journal_path(self.root)
        self.store = Store(self.path, rules=self.rules, on_problem=on_problem)
        self.session = uuid.uuid4().hex[:12]
        recovery.opened_here(self.session)
        self.store.put(ev.SessionStarted(self.session, clock(), version, model))
        self.recorder = Recorder(self.store, self.session, new_id=lambda: secrets.randbits(62), clock=clock)
        self._call_soon = call_soon
        self._on_outside = on_outside  # told of each outside change too (the project index reads it again)
        self.watcher: Watcher | None = None
        self._history: threading.Thread | None = None
        self._closing = threading.Event()
        self._recovery = threading.Thread(target=self._recover, name="selftune-recovery", daemon=True)
        self._recovery.start()

    def relative(self, path: str | Path) -> str | None:
        return self.rules.relative(path)

    def watch(self) -> None:
        """Start recording changes made outside the editor (on a thread: the directory walk asks git)."""

        def outside(rel: str, text: str | None) -> None:
            self._call_soon(self.recorder.outside_change, rel, text)
            self._call_soon(self._on_outside, rel, text)

        self.watcher = Watcher(self.rules, editor_has=self.recorder.editor_has, on_change=outside)
        threading.Thread(target=self.watcher.start, name="selftune-watch-start", daemon=True).start()

    def import_history(
        self,
        depth: int,
        progress: Callable[[int, int], None] = lambda done, total: None,
        done: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Import the commits made since the last import (up to `depth`) on a thread."""
        if self.rules.repo is None or depth <= 0:
            return

        def run() -> None:
            try:
                done(_import_new_commits(self.store, self.rules.repo, depth, progress))
            except Exception as exc:  # git trouble never stops the server
                log.warning("importing git history failed: %s", exc)
                done(0)

        self._history = threading.Thread(target=run, name="selftune-history", daemon=True)
        self._history.start()

    def _recover(self) -> None:
        """Settle the sessions of servers that were killed (on a thread: it reads their edits)."""
        self.store.flush()  # the file exists, with the newest schema
        try:
            conn = connect(self.path, readonly=True)
            try:
                recovery.recover(conn, self.store.put, stopping=self._closing.is_set)
            finally:
                conn.close()
        except Exception as exc:  # a journal that cannot be read now is tried again at the next start
            log.warning("settling the sessions of killed servers failed: %s", exc)

    def close(self) -> None:
        """Finish the session and commit everything (on shutdown)."""
        self._closing.set()
        if self.watcher is not None:
            self.watcher.stop()
        self.recorder.close()
        self.store.close()
        recovery.closed_here(self.session)


def catch_up_history(
    root: Path,
    depth: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
    on_problem: Callable[[str], None] = log.warning,
) -> int:
    """Import into `root`'s journal the git commits made since its last import (the newest `depth`), as the
    server does when it starts, and return when they are written: `selftune adapt` trains on the history of a
    workspace no server has opened yet. Returns how many commits; 0 outside a git repository or with `depth` 0."""
    rules = Rules(root.resolve())
    if rules.repo is None or depth <= 0:
        return 0
    exclude_from_git(rules)
    store = Store(journal_path(rules.root), rules=rules, on_problem=on_problem)
    try:
        count = _import_new_commits(store, rules.repo, depth, progress)
        store.flush(timeout=HISTORY_WRITE_SECONDS)
        return count
    finally:
        store.close()


def _import_new_commits(store: Store, repo, depth: int, progress: Callable[[int, int], None]) -> int:
    """Put the commits made since the journal's last import (the newest `depth`) into `store`; how many."""
    count, head = history.import_history(repo, store.put, depth=depth, since=_meta(store, "history_head"),
                                         progress=progress)  # fmt: skip
    if head:
        store.put(ev.MetaSet("history_head", head))
    return count


def _meta(store: Store, key: str) -> str | None:
    """A value of the journal's `meta` table, once what was put before is written."""
    store.flush()
    if not store.path.exists():
        return None
    conn = connect(store.path, readonly=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None
    finally:
        conn.close()
