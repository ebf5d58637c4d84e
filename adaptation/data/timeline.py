"""A repository's history replayed commit by commit, with the project index as it was before each commit.

Training examples in the serving format (data/context.py) and the quality
benchmark both need, for a line a commit added, the context the server would
have shown while that line was being written: the project as it was just
before the commit (nothing from the future), through the same project index
the server keeps (`selftune.server.completion.project`). `Timeline` builds
the index at a starting commit from git's objects (no checkout) and then
applies each later commit's changes, noting the lines it added as recent
edits, so walking the whole history costs one parse per changed file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from selftune.server.completion.project import MAX_FILE_CHARS, SOURCE_SUFFIXES, ProjectIndex
from selftune.server.journal.privacy import is_secret_file

from .points import added_lines, hunks


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          errors="replace").stdout  # fmt: skip


def wanted(path: str) -> bool:
    return PurePosixPath(path).suffix in SOURCE_SUFFIXES and not is_secret_file(path)


class Blobs:
    """Reads files out of git's object store through one `git cat-file --batch` process."""

    def __init__(self, repo: Path):
        self.proc = subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)  # fmt: skip

    def read(self, spec: str) -> str | None:
        """The text of `spec` (`sha:path` or a blob sha); None if missing, too large or not UTF-8."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(spec.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) < 3 or header[1] != b"blob":
            return None
        size = int(header[2])
        data = self.proc.stdout.read(size + 1)[:size]
        if size > MAX_FILE_CHARS * 4:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


@dataclass(frozen=True)
class Commit:
    sha: str
    time: float
    parent: str | None


def first_parent_commits(repo: Path, head: str = "HEAD") -> list[Commit]:
    """The first-parent history of `head`, oldest first."""
    rows = git(repo, "log", "--first-parent", "--reverse", "--format=%H %ct %P", head).splitlines()
    out = []
    for row in rows:
        sha, at, *parents = row.split()
        out.append(Commit(sha, float(at), parents[0] if parents else None))
    return out


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's, for a commit without a parent


def changed_between(repo: Path, old: str, new: str) -> list[tuple[str, str]]:
    """(status, path) of the source files that differ from `old` to `new` (A, M or D)."""
    out = git(repo, "diff-tree", "-r", "-z", "--no-renames", "--name-status", old, new).split("\0")
    pairs = list(zip(out[0::2], out[1::2]))
    return [(status, path) for status, path in pairs if status in ("A", "M", "D") and wanted(path)]


def changed(repo: Path, commit: Commit) -> list[tuple[str, str]]:
    """(status, path) of the source files `commit` changed, against its first parent."""
    return changed_between(repo, commit.parent or EMPTY_TREE, commit.sha)


def added(repo: Path, commit: Commit, path: str) -> list[int]:
    """0-based lines of `path` (as `commit` left it) that `commit` added."""
    return added_lines(git(repo, "diff", "-U0", "--no-color", commit.parent or EMPTY_TREE, commit.sha, "--", path))


def files_added(repo: Path, blobs: Blobs, commit: Commit) -> Iterator[tuple[str, str, list[int]]]:
    """(path, the file as `commit` left it, the 0-based lines it added) for each Python file it changed."""
    for status, path in changed(repo, commit):
        if status == "D" or not path.endswith(".py"):
            continue
        text = blobs.read(f"{commit.sha}:{path}")
        if text is not None:
            yield path, text, added(repo, commit, path)


class Timeline:
    def __init__(self, repo: Path, start: Commit, *, under: str = ""):
        """The project index as `start` left the repository; `under`: a folder of it that is the workspace
        (its files, with paths relative to it)."""
        self.repo = repo
        self.under = under
        self.blobs = Blobs(repo)
        self.index = ProjectIndex()
        for row in git(repo, "ls-tree", "-r", "-z", start.sha).split("\0"):
            meta, _, path = row.partition("\t")
            if path.startswith(under) and wanted(path) and meta.split()[1:2] == ["blob"]:
                text = self.blobs.read(meta.split()[2])
                if text is not None:
                    self.index.set_file(path[len(under) :], text)
        self.at = start

    def apply(self, commit: Commit) -> None:
        """Move the index to the state `commit` left; what changed since is the latest edit of each file."""
        for status, path in changed_between(self.repo, self.at.sha, commit.sha):
            if not path.startswith(self.under):
                continue
            rel = path[len(self.under) :]
            text = None if status == "D" else self.blobs.read(f"{commit.sha}:{path}")
            if text is None:
                self.index.remove_file(rel)
                continue
            self.index.set_file(rel, text)
            diff = git(self.repo, "diff", "-U0", "--no-color", self.at.sha, commit.sha, "--", path)
            for first, count in hunks(diff):
                self.index.edited(rel, first, first + count - 1, at=commit.time)
        self.at = commit

    def apply_to_parent_of(self, commit: Commit) -> None:
        """Move the index to the state just before `commit` (its first parent)."""
        if commit.parent is None:
            return
        at = float(git(self.repo, "log", "-1", "--format=%ct", commit.parent).strip() or 0)
        self.apply(Commit(commit.parent, at, None))

    def close(self) -> None:
        self.blobs.close()
