"""Changes made outside the editor: watchdog on the workspace.

A `git checkout`, a formatter run from a terminal or another editor changes
files without a `didChange`. The watcher sees them and hands each changed
file's new text to `on_change` (on its own thread; the server passes it on
to the recorder's event loop), which records it as a snapshot with origin
`outside`, never as typing.

Directories are watched one by one (not recursively) so that git-ignored
trees such as `.venv/` or `node_modules/` cost no inotify watches; `.git/` and
`.selftune/` are never watched. Events are debounced (`SETTLE_SECONDS`) so a
checkout of many files is read once per file. A write the editor itself made
(a save) is recognised by its text, which an open document already holds, and
skipped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .privacy import NEVER_DIRS, Rules

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.3
MAX_FILE_BYTES = 1_000_000  # larger files are not snapshotted
MAX_DIRECTORIES = 5000
SKIP_DIRS = NEVER_DIRS | {
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".eggs",
    ".idea",
    ".vscode",
}


def read_text(path: Path) -> str | None:
    """The file's text, or None when it is missing, too large, binary or not UTF-8."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Watcher(FileSystemEventHandler):
    def __init__(
        self, rules: Rules, *, editor_has: Callable[[str, str], bool], on_change: Callable[[str, str | None], None]
    ):
        self.rules = rules
        self.root = rules.root
        self.editor_has = editor_has
        self.on_change = on_change
        self._observer = Observer()
        self._observer.daemon = True
        self._watched: set[str] = set()
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._drain, name="selftune-watcher", daemon=True)

    def start(self) -> None:
        self._watch_tree(self.root)
        self._observer.start()
        self._thread.start()
        log.info("watching %d directories of %s for changes made outside the editor", len(self._watched), self.root)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        try:
            self._observer.stop()
            self._observer.join(timeout=2)
        except Exception:  # stopping a half-started observer
            pass

    def _watch_tree(self, top: Path) -> None:
        """Watch `top` and every directory below it that git does not ignore, level by level."""
        level = [top]
        while level and len(self._watched) < MAX_DIRECTORIES:
            for directory in level:
                try:
                    self._observer.schedule(self, str(directory), recursive=False)
                    self._watched.add(str(directory))
                except OSError as exc:  # vanished, or out of inotify watches
                    log.warning("cannot watch %s: %s", directory, exc)
            children = []
            for directory in level:
                try:
                    with os.scandir(directory) as entries:
                        children += [
                            Path(e.path) for e in entries if e.is_dir(follow_symlinks=False) and e.name not in SKIP_DIRS
                        ]
                except OSError:
                    continue
            level = [c for c in children if not self._ignored_dir(c)]
        if len(self._watched) >= MAX_DIRECTORIES:
            log.warning("watching only the first %d directories of %s", MAX_DIRECTORIES, self.root)

    def _ignored_dir(self, directory: Path) -> bool:
        rel = self.rules.relative(directory)
        return rel is None or self.rules.git_ignores(rel)

    # --- watchdog's thread -------------------------------------------------------

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write", "attrib"):
            return
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                target = Path(os.fsdecode(event.dest_path if event.event_type == "moved" else event.src_path))
                if target.name not in SKIP_DIRS and not self._ignored_dir(target):
                    self._watch_tree(target)
            return
        paths = [event.src_path] + ([event.dest_path] if event.event_type == "moved" else [])
        with self._lock:
            for path in paths:
                self._pending[os.fsdecode(path)] = time.monotonic()
        self._wake.set()

    # --- the watcher's own thread ---------------------------------------------------

    def _drain(self) -> None:
        while not self._stopped:
            self._wake.wait(SETTLE_SECONDS)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                ready = [p for p, t in self._pending.items() if now - t >= SETTLE_SECONDS]
                for p in ready:
                    del self._pending[p]
            for path in ready:
                try:
                    self._changed(Path(path))
                except Exception:  # one bad file never stops the watcher
                    log.exception("recording an outside change to %s failed", path)

    def _changed(self, path: Path) -> None:
        rel = self.rules.relative(path)
        if rel is None or not self.rules.allows(path):
            return
        if path.name == ".gitignore":
            self.rules.forget_ignore_cache()
        text = read_text(path) if path.exists() else None
        if text is None and path.exists():
            return  # too large, binary or not UTF-8: not recorded
        if text is not None and self.editor_has(rel, text):
            return  # the editor saved it
        self.on_change(rel, text)
