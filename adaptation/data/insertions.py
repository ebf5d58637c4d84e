"""The user's settled edit steps in the server's own format: the file up to a block the step added, then the block.

edits.py gives the model the project's edit steps as LintSeq diffs; the
server, though, asks for plain continuation at the cursor. Here each block a
step added (a hunk of its zero-context diff) is one example: prompt = the file
right after the step, up to the block's first line (its end, as much as
training keeps); target = the block's lines. The file is read from the
step's commit (git history) or rebuilt from the journal (the editor), as for
the held-out edit points. These are what the project's code is turning into
now, which its files at HEAD only show as finished code.
"""

from __future__ import annotations

import sqlite3

from . import Example
from .points import hunks, step_texts

PROMPT_CHARS = 6000  # the end of the file before the block that is kept (training keeps less: max_length tokens)
MAX_BLOCK_CHARS = 3000  # a longer block (a new file, a big paste) is code the corpus has anyway


def from_steps(conn: sqlite3.Connection, repo, workspace_prefix: str = "") -> list[Example]:
    examples = []
    for path, at, text, diff in step_texts(conn, repo, None, workspace_prefix):
        if not path.endswith(".py"):
            continue
        lines = text.splitlines(keepends=True)
        for start, count in hunks(diff):
            block = "".join(lines[start : start + count])
            if not block.strip() or len(block) > MAX_BLOCK_CHARS or start + count > len(lines):
                continue
            examples.append(
                Example("insertion", tail("".join(lines[:start]), PROMPT_CHARS), block, at, path, meta={"line": start})
            )
    return examples


def tail(text: str, limit: int) -> str:
    """The end of `text`: at most `limit` characters, from the start of a line where there is one."""
    if len(text) <= limit:
        return text
    cut = text.find("\n", len(text) - limit)
    return text[cut + 1 :] if cut != -1 else text[-limit:]
