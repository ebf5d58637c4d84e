"""The workspace state a test run ran on: git HEAD plus the text of every dirty file.

`capture` asks git (``git status``) which files differ from HEAD, tracked or
untracked but not ignored, and reads them; a workspace that is not a git
repository is captured as the text of all its Python files. `State.text`
gives a file's text in that state (the snapshot, else the file at HEAD), and
`changed_paths` the files whose text differs between two states. Files the
privacy rules refuse, binary or non-UTF-8 files and files over 1 MB are left out
(the journal's own rule for a file's text, `watcher.read_text`).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..journal.watcher import read_text
from .related import SKIP_DIRS

log = logging.getLogger(__name__)

MAX_FILES = 500  # snapshots per state; more dirty files than this are left out (and logged)
GIT_TIMEOUT = 10.0


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("git %s in %s: %s", args[0], root, exc)
        return None
    if done.returncode != 0:
        log.debug(
            "git %s in %s: exit status %d: %s",
            " ".join(args),
            root,
            done.returncode,
            done.stderr.decode("utf-8", "replace").strip(),
        )
        return None
    return done.stdout


@dataclass
class State:
    root: Path
    head: str | None  # None: not a git repository (or no commit yet)
    files: dict[str, str | None] = field(default_factory=dict)  # dirty path -> text (None: deleted)
    _at_head: dict[str, str | None] = field(default_factory=dict, repr=False)

    def text(self, path: str) -> str | None:
        if path in self.files:
            return self.files[path]
        if self.head is None:
            return None
        if path not in self._at_head:
            data = _git(self.root, "show", f"{self.head}:./{path}")  # ./: relative to the workspace
            self._at_head[path] = None if data is None or b"\x00" in data else data.decode("utf-8", "replace")
        return self._at_head[path]


def _python_files(root: Path, rel: str) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root / rel):
        if "pyvenv.cfg" in filenames or len(found) > MAX_FILES:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
        found += [
            Path(os.path.normpath(os.path.join(dirpath, f))).relative_to(root).as_posix()
            for f in filenames
            if f.endswith(".py")
        ]
    return found


def capture(root: Path, allows: Callable[[Path], bool] = lambda p: True) -> State:
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal", "--no-renames", ".")
    if status is None:  # not a git repository: every Python file is "dirty"
        paths = sorted(_python_files(root, "."))
        state = State(root, None)
    else:
        prefix = _git(root, "rev-parse", "--show-prefix") or b""
        prefix_text = prefix.decode().strip()
        paths = []
        for entry in status.decode("utf-8", "replace").split("\0"):
            if len(entry) > 3:
                rel = entry[3:]
                rel = rel[len(prefix_text) :] if prefix_text and rel.startswith(prefix_text) else rel
                if rel.endswith("/"):  # an untracked folder: its Python files, unless it is an environment
                    paths += _python_files(root, rel.rstrip("/"))
                else:
                    paths.append(rel)
        state = State(root, head.decode().strip() if head else None)
    if len(paths) > MAX_FILES:
        log.info("%d dirty files; the test run's state keeps the first %d", len(paths), MAX_FILES)
        paths = paths[:MAX_FILES]
    for rel in paths:
        path = root / rel
        if not allows(path):
            continue
        state.files[rel] = read_text(path) if path.exists() else None
    log.debug("workspace state: HEAD %s, dirty: %s", state.head, ", ".join(state.files) or "none")
    return state


def changed_paths(old: State, new: State) -> list[str]:
    """Paths whose text differs between two states of one workspace."""
    candidates = set(old.files) | set(new.files)
    if old.head and new.head and old.head != new.head:
        diff = _git(new.root, "diff", "--name-only", "-z", "--no-renames", "--relative", old.head, new.head)
        if diff:
            candidates.update(p for p in diff.decode("utf-8", "replace").split("\0") if p)
    return sorted(p for p in candidates if old.text(p) != new.text(p))
