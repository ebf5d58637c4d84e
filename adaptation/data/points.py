"""Held-out edit points: where a line was written, for next-line completion metrics.

A point is a file as it was right after an edit step, but with one line the
step added cut back to its indentation: the cursor is there, and the line's
text is the target.
Steps come from git history (the file read from that commit) and from the
editor (the document rebuilt from the journal up to the step). Where the
held-out files have no steps (no history, nothing recorded yet), lines of the
files themselves are the points. Only lines with something to predict count:
not blank, not a lone bracket, at least `MIN_CHARS` long.
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from selftune.server.journal.queries import blob
from selftune.server.journal.text import rebuild

MIN_CHARS = 6
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class Point:
    path: str
    source: str  # the file as the step left it, the line included (one string shared by the step's points)
    offset: int  # the cursor: after the line's indentation
    end: int  # where the line ends in `source`
    target: str  # the rest of the line
    time: float

    @property
    def text(self) -> str:
        """The document at the cursor: `source` without the rest of the line (it is not written yet)."""
        return self.source[: self.offset] + self.source[self.end :]


def hunks(diff: str) -> list[tuple[int, int]]:
    """(0-based first line, line count), in the new text, of each block a zero-context diff adds."""
    out = []
    for line in diff.splitlines():
        m = _HUNK.match(line)
        if m:
            count = int(m.group(2) or 1)
            if count:
                out.append((int(m.group(1)) - 1, count))
    return out


def added_lines(diff: str) -> list[int]:
    """0-based line numbers, in the new text, of the lines a zero-context diff adds."""
    return [n for start, count in hunks(diff) for n in range(start, start + count)]


def points_at(path: str, text: str, line_nos: list[int], at: float) -> list[Point]:
    """Points at the 0-based lines `line_nos` of `text` that have something to predict."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out = []
    for n in line_nos:
        if not 0 <= n < len(lines):
            continue
        line = lines[n].rstrip("\r\n")
        target = line.strip()
        if len(target) < MIN_CHARS or target.startswith("#"):
            continue
        cursor = starts[n] + len(line) - len(line.lstrip())
        # `text` itself, not a copy without the line: a big commit adds thousands of lines to big files.
        out.append(Point(path, text, cursor, starts[n] + len(line), target, at))
    return out


def point_at(path: str, text: str, line_no: int, at: float) -> Point | None:
    found = points_at(path, text, [line_no], at)
    return found[0] if found else None


class _EditorTexts:
    """Editor documents rebuilt from the journal up to a time. Steps come in time order, so each document
    is carried forward from where the last step left it, not replayed from its snapshot every time."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.known: dict[int, tuple[str, int]] = {}  # document id -> (text, id of the last edit applied)

    def at(self, document_id: int, until: float) -> str | None:
        if document_id not in self.known:
            row = self.conn.execute("SELECT snapshot FROM documents WHERE id = ?", (document_id,)).fetchone()
            if row is None:
                return None
            self.known[document_id] = (blob(self.conn, row[0]), 0)
        text, last = self.known[document_id]
        edits = self.conn.execute(
            "SELECT id, start_line, start_char, end_line, end_char, text FROM edits "
            "WHERE document_id = ? AND id > ? AND time <= ? ORDER BY id",
            (document_id, last, until),
        ).fetchall()
        if edits:
            text = rebuild(text, [(None if sl is None else ((sl, sc), (el, ec)), t) for _, sl, sc, el, ec, t in edits])
            self.known[document_id] = (text, edits[-1][0])
        return text


def step_texts(
    conn: sqlite3.Connection, repo, paths: set[str] | None = None, workspace_prefix: str = ""
) -> Iterator[tuple[str, float, str, str]]:
    """(path, time, the file right after the step, the step's diff) for each settled step of `paths` (every
    path if None) whose file can be read back: from its commit, or rebuilt from the editor's journal.
    `workspace_prefix` maps journal paths into the repository."""
    for path, at, text, diff, _ in steps_with_commits(conn, repo, paths, workspace_prefix):
        yield path, at, text, diff


def steps_with_commits(
    conn: sqlite3.Connection, repo, paths: set[str] | None = None, workspace_prefix: str = ""
) -> Iterator[tuple[str, float, str, str, str | None]]:
    """`step_texts`, with the commit of each step from git history (None for the editor's steps)."""
    documents = _EditorTexts(conn)
    for path, at, origin, diff, sha, document_id in conn.execute(
        "SELECT path, time, origin, diff, commit_sha, document_id FROM steps ORDER BY time, id"
    ).fetchall():
        if paths is not None and path not in paths:
            continue
        text = None
        if origin == "history" and sha and repo is not None:
            try:
                text = repo.commit(sha).tree[workspace_prefix + path].data_stream.read().decode("utf-8")
            except (KeyError, ValueError, UnicodeDecodeError):
                text = None
        elif document_id is not None:
            text = documents.at(document_id, at)
        if text is not None:
            yield path, at, text, diff, sha if origin == "history" else None


def from_steps(conn: sqlite3.Connection, repo, paths: set[str], workspace_prefix: str = "") -> list[Point]:
    """Points at the steps of `paths` (journal paths; `workspace_prefix` maps them into the repository)."""
    points = []
    for path, at, text, diff in step_texts(conn, repo, paths, workspace_prefix):
        points += points_at(path, text, added_lines(diff), at)
    return points


def from_files(files: dict[str, tuple[str, float]], paths: set[str]) -> list[Point]:
    points = []
    for path in sorted(paths & files.keys()):
        text, at = files[path]
        points += points_at(path, text, list(range(text.count("\n") + 1)), at)
    return points


def sample(points: list[Point], n: int, seed: int = 0) -> list[Point]:
    """At most `n` points, spread over files and time, reproducibly."""
    if len(points) <= n:
        return points
    return sorted(random.Random(seed).sample(points, n), key=lambda p: (p.time, p.path, p.offset))
