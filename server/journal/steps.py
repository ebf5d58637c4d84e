"""Raw edits grouped into settled edit steps, stored as zero-context diffs.

Keystrokes are too fine to learn from and whole saves too coarse; LintSeq
trains on a program written as a sequence of diffs. A step here is what the
user did in one place before pausing: it starts at the first edit, grows while
the edits stay within a couple of lines of it, and ends after a pause of
`SETTLE_SECONDS` or when an edit lands elsewhere in the file (the cursor left
the region). `change` applies these rules to one LSP content change; the
recorder calls it as the editor types, and a recovery (recovery.py) calls it
on the recorded edits of a server that was killed, with their times, so both
settle the same steps. A finished step is the pair (text before, text after), turned by
`hunks` into unified-diff hunks with no context lines and no file header --
the format LintSeq's released data uses for its edit sequences.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass

from .text import Range

SETTLE_SECONDS = 2.0  # a pause this long ends a step
NEAR_LINES = 2  # an edit further than this from the step's lines ends it


def hunks(before: str, after: str) -> str:
    """Zero-context unified-diff hunks from `before` to `after`, without the ---/+++ header."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), n=0, lineterm="")
    return "\n".join(itertools.islice(lines, 2, None))


@dataclass
class Step:
    base: str  # the text when the step began
    first: int  # lines the step touched, in the current text
    last: int
    last_edit: float


class Steps:
    """The pending step of one document."""

    def __init__(self) -> None:
        self.pending: Step | None = None

    def edit(self, before: str, first: int, last: int, added_lines: int, now: float) -> tuple[str, str] | None:
        """Account for an edit of lines `first..last` of `before` that adds `added_lines` newlines
        (minus those it removes). Returns the step this edit ends, as (base, before), if any."""
        finished = None
        step = self.pending
        if step is not None and (last < step.first - NEAR_LINES or first > step.last + NEAR_LINES):
            finished = (step.base, before)
            step = None
        if step is None:
            self.pending = Step(before, first, max(first, last + added_lines), now)
            return finished
        if last < step.first:
            step.first += added_lines
            step.last += added_lines
        elif first <= step.last:
            step.last += added_lines
        step.first = min(step.first, first)
        step.last = max(step.last, last + added_lines, first)
        step.last_edit = now
        return finished

    def change(self, before: str, range_: Range | None, new: str, now: float) -> list[tuple[float, str, str]]:
        """Account for one content change (`range_` None: the whole text replaced) made at `now` to `before`.
        Returns the steps it ends, as (time, base, before): the pending step if the user paused long enough
        before it (settled when the pause reached `SETTLE_SECONDS`), or the one it lands away from."""
        ended = []
        step = self.pending
        if step is not None and now - step.last_edit >= SETTLE_SECONDS:
            self.pending = None
            ended.append((step.last_edit + SETTLE_SECONDS, step.base, before))
        first, last = (0, before.count("\n") + 1) if range_ is None else (range_[0][0], range_[1][0])
        finished = self.edit(before, first, last, new.count("\n") - (last - first), now)
        if finished:
            ended.append((now, *finished))
        return ended

    def settled(self, text: str, now: float) -> tuple[str, str] | None:
        """The pending step as (base, text) if the user paused long enough."""
        if self.pending is not None and now - self.pending.last_edit >= SETTLE_SECONDS:
            return self.finish(text)
        return None

    def finish(self, text: str) -> tuple[str, str] | None:
        step, self.pending = self.pending, None
        return (step.base, text) if step is not None else None
