"""The project index of each workspace folder, built in the background and kept current.

`Indexing` gives every workspace folder a `completion.project.ProjectIndex`.
At start, a thread of its own (at a lower CPU priority than completions)
reads the files git tracks (or, outside git, the folder's files, skipping
what git would ignore and virtual environments), shown as `$/progress`; a
completion never waits for it, it simply sees what is indexed so far. Then
the index follows the editor: a document's text replaces the file's on open,
after a pause in typing and on save; each change marks its lines as a
recent edit; a close reads the file back from disk; a file changed outside
the editor (the journal's watcher) is read again. Secret files and files
over the index's size limit are never read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .background import Background
from .completion.project import MAX_FILE_CHARS, MAX_FILES, SOURCE_SUFFIXES, ProjectIndex
from .host import Host
from .journal.privacy import is_secret_file
from .journal.watcher import SKIP_DIRS
from .workspace import locate

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0  # a document is indexed again after this long without typing
NICE = 10


def project_files(root: Path) -> list[str]:
    """The source files of `root` to index, relative POSIX paths: those git tracks, else those on disk."""
    try:
        done = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached"], capture_output=True,
                              timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        listed = done.stdout.decode("utf-8", "replace").split("\0") if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        listed = None
    if listed is None:
        listed = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
            rel = Path(folder).relative_to(root)
            listed += [(rel / name).as_posix() for name in files]
            if len(listed) > 20 * MAX_FILES:
                break
    wanted = [p for p in listed if p and Path(p).suffix in SOURCE_SUFFIXES and not is_secret_file(p)]
    return wanted[:MAX_FILES]


def read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_CHARS * 4:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


class Indexing:
    def __init__(self, host: Host, *, roots: Callable[[], list[Path]]):
        """`roots`: the workspace folders, most specific first."""
        self.host = host
        self.roots = roots
        self.indexes: dict[Path, ProjectIndex] = {}
        self.in_editor: dict[Path, set[str]] = {}  # per folder, the files open in the editor (their text wins)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="selftune-index", initializer=_lower_priority)
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._background = Background()
        self.ready = threading.Event()  # the first build of every folder is done

    def start(self) -> None:
        for root in self.roots():
            self.indexes.setdefault(root, ProjectIndex())
            self.in_editor.setdefault(root, set())
        loop = asyncio.get_running_loop()
        self._background.start(loop.run_in_executor(self._worker, self._build_all))

    def _build_all(self) -> None:
        for root, index in list(self.indexes.items()):
            try:
                self._build(root, index)
            except Exception:  # a broken file system or git must not stop completions
                log.exception("indexing %s failed", root)
        self.ready.set()

    def _build(self, root: Path, index: ProjectIndex) -> None:
        files = project_files(root)
        if not files:
            return
        progress = self.host.start_progress("selftune: indexing the project", f"{len(files)} files", kind="index")
        done = 0
        for rel in files:
            if rel not in self.in_editor.get(root, ()):
                text = read(root / rel)
                if text is not None:
                    index.set_file(rel, text)
            done += 1
            if done % 50 == 0:
                progress.report(f"{done}/{len(files)} files", 100 * done // len(files))
        progress.end(f"{len(index.files)} files indexed")
        log.info("indexed %d files of %s", len(index.files), root)

    def for_uri(self, uri: str) -> tuple[ProjectIndex, str] | None:
        found = locate(uri, self.indexes)
        return (self.indexes[found[0]], found[1]) if found else None

    # --- the editor's documents --------------------------------------------------------

    def opened(self, uri: str, text: str) -> None:
        found = locate(uri, self.indexes)
        if found is not None:
            self.in_editor[found[0]].add(found[1])
            self._refresh(uri, text)

    def changed(self, uri: str, lines: list[tuple[int, int]], text: Callable[[], str | None]) -> None:
        """The document changed `lines` (first, last); its text is read when it is indexed again."""
        found = self.for_uri(uri)
        if found is None:
            return
        index, rel = found
        for first, last in lines:
            index.edited(rel, first, last)
        pending = self._pending.pop(uri, None)
        if pending is not None:
            pending.cancel()
        loop = asyncio.get_running_loop()
        self._pending[uri] = loop.call_later(REFRESH_SECONDS, lambda: self._refresh(uri, text()))

    def saved(self, uri: str, text: str | None) -> None:
        self._refresh(uri, text)

    def closed(self, uri: str) -> None:
        found = locate(uri, self.indexes)
        if found is None:
            return
        root, rel = found
        self.in_editor[root].discard(rel)
        self._refresh(uri, read(root / rel))  # what is on disk now: the editor may not have saved

    def outside_change(self, root: Path, rel: str, text: str | None) -> None:
        """A file changed on disk, not through the editor (the journal's watcher saw it)."""
        index = self.indexes.get(root)
        if index is None or rel in self.in_editor.get(root, ()) or Path(rel).suffix not in SOURCE_SUFFIXES:
            return
        loop = asyncio.get_running_loop()
        if text is None:
            self._background.start(loop.run_in_executor(self._worker, index.remove_file, rel))
        else:
            self._background.start(loop.run_in_executor(self._worker, index.set_file, rel, text))

    def _refresh(self, uri: str, text: str | None) -> None:
        pending = self._pending.pop(uri, None)
        if pending is not None:
            pending.cancel()
        found = self.for_uri(uri)
        if found is None or text is None:
            return
        index, rel = found
        if Path(rel).suffix in SOURCE_SUFFIXES and not is_secret_file(rel):
            self._background.start(asyncio.get_running_loop().run_in_executor(self._worker, index.set_file, rel, text))

    def stop(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        self._background.cancel()
        self._worker.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    """The indexing thread yields the CPU to completions (Linux sets priorities per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (OSError, AttributeError):
        pass
