"""Next-edit samples in LintSeq's text format, from the user's own settled edit steps.

A program is written as a sequence of diffs: each diff is zero-context
unified-diff hunks without file headers (the format the journal stores steps
in), and diffs are joined by a `<|diff|>` line, as in LintSeq's released
data. A sample's prompt is the file's name and its newest earlier diffs (as
many as fit in `HISTORY_CHARS`); its target is the next diff. Steps from git
history and from the editor are both used; each path is one group.
"""

from __future__ import annotations

import sqlite3

from selftune.server.journal.queries import export

from . import Example

SEPARATOR = "<|diff|>\n"
HISTORY_CHARS = 3000  # earlier diffs kept in a prompt, newest first
MAX_DIFF_CHARS = 4000  # a longer step (a big paste, a vendored file) is not a useful sample


def prompt_for(path: str, earlier: list[str]) -> str:
    kept, size = [], 0
    for diff in reversed(earlier):
        if size + len(diff) > HISTORY_CHARS:
            break
        kept.append(diff)
        size += len(diff)
    return f"# edits of {path}\n" + "".join(SEPARATOR + d.rstrip("\n") + "\n" for d in reversed(kept)) + SEPARATOR


def samples(path: str, diffs: list[tuple[float, str]], kind: str = "edit", **meta) -> list[Example]:
    """One sample per diff of one file's sequence (oldest first)."""
    out: list[Example] = []
    earlier: list[str] = []
    for at, diff in diffs:
        if diff.strip() and len(diff) <= MAX_DIFF_CHARS:
            out.append(Example(kind, prompt_for(path, earlier), diff.rstrip("\n") + "\n", at, path, meta=dict(meta)))
        earlier.append(diff)
    return out


def from_journal(conn: sqlite3.Connection) -> list[Example]:
    examples = []
    for record in export(conn):
        if record["type"] == "edit_sequence" and record["path"].endswith(".py"):
            examples += samples(record["path"], [(s["time"], s["diff"]) for s in record["steps"]], origin="journal")
    return examples
