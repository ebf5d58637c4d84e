"""The user's settled edit steps in the server's own format: what the server would have shown, then the block.

edits.py gives the model the project's edit steps as LintSeq diffs; the
server, though, asks for plain continuation at the cursor, after a prompt
(server/completion/assemble.py) that holds the project's blocks, the lines
after the cursor and the window before it. Here each block a step added (a
hunk of its zero-context diff) is one example: the cursor at the first
line's indentation, the rest of the file after it (the block itself not yet
written); prompt = the prompt the server would assemble there, with the
project index as it was before the step (for a commit, the repository at its
parent: data/timeline.py; for the editor, the project at HEAD); target = the
block. These are what the project's code is turning into now, which its files
at HEAD only show as finished code.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from selftune.server.completion.project import ProjectIndex

from . import Example
from .points import hunks, steps_with_commits
from .timeline import Commit, Timeline, git

log = logging.getLogger(__name__)

MAX_BLOCK_CHARS = 3000  # a longer block (a new file, a big paste) is code the corpus has anyway
MAX_BLOCKS = 3000  # the newest blocks kept: each costs a prompt assembled against the index

# (path, the document, the cursor, the project index) -> the prompt the server would send the model there
PromptFor = Callable[[str, str, int, ProjectIndex | None], str]


def at_block(text: str, start: int, count: int) -> tuple[str, int, str] | None:
    """(the document while the block of `count` lines at line `start` is being written, the cursor, the
    block): the cursor at its first line's indentation, the lines after it present. None for an empty block."""
    lines = text.splitlines(keepends=True)
    if start + count > len(lines):
        return None
    block = "".join(lines[start : start + count])
    if not block.strip() or len(block) > MAX_BLOCK_CHARS:
        return None
    indent = block[: len(block) - len(block.lstrip(" \t"))]
    before = "".join(lines[:start])
    after = "".join(lines[start + count :])
    return before + indent + "\n" + after, len(before) + len(indent), block[len(indent) :]


class HistoryIndexes:
    """The project index before each commit of the journal's history, moved forward commit by commit."""

    def __init__(self, repo_dir: Path, under: str):
        self.repo_dir = repo_dir
        self.under = under
        self.timeline: Timeline | None = None

    def before(self, sha: str) -> ProjectIndex | None:
        commit = _commit(self.repo_dir, sha)
        if commit is None:
            return None
        if self.timeline is None:
            start = _commit(self.repo_dir, commit.parent) if commit.parent else None
            if start is None:
                return None
            self.timeline = Timeline(self.repo_dir, start, under=self.under)
        if self.timeline.at.sha != (commit.parent or ""):
            self.timeline.apply_to_parent_of(commit)
        return self.timeline.index

    def after(self, sha: str) -> None:
        commit = _commit(self.repo_dir, sha)
        if self.timeline is not None and commit is not None and self.timeline.at.sha != sha:
            self.timeline.apply(commit)

    def close(self) -> None:
        if self.timeline is not None:
            self.timeline.close()


def _commit(repo_dir: Path, sha: str | None) -> Commit | None:
    if not sha:
        return None
    try:
        full, at, *parents = git(repo_dir, "log", "-1", "--format=%H %ct %P", sha).split()
    except Exception:  # gone from the repository (rewritten history)
        return None
    return Commit(full, float(at), parents[0] if parents else None)


def from_steps(conn: sqlite3.Connection, repo, workspace_prefix: str = "", *, prompt_for: PromptFor,
               head_index: ProjectIndex | None = None) -> list[Example]:  # fmt: skip
    """One example per block the steps added: `prompt_for` makes its prompt, with the index as it was (the
    history's) or `head_index` (the editor's steps)."""
    steps = list(steps_with_commits(conn, repo, None, workspace_prefix))
    blocks = [(path, at, text, start, count, sha) for path, at, text, diff, sha in steps if path.endswith(".py")
              for start, count in hunks(diff)]  # fmt: skip
    blocks = blocks[-MAX_BLOCKS:]
    history = HistoryIndexes(Path(repo.working_tree_dir), workspace_prefix) if repo is not None else None
    examples = []
    try:
        for path, at, text, start, count, sha in blocks:
            found = at_block(text, start, count)
            if found is None:
                continue
            document, cursor, block = found
            index = history.before(sha) if sha and history is not None else head_index
            prompt = prompt_for(path, document, cursor, index)
            examples.append(Example("insertion", prompt, block, at, path, meta={"line": start, "commit": sha}))
    finally:
        if history is not None:
            history.close()
    return examples
