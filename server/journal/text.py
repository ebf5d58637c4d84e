"""A document's text as the journal follows it, edit by edit.

The recorder keeps its own copy of every open document (`Text`) and applies
each `didChange` to it, because it needs the text *before* an edit (for edit
steps and for following accepted completions) and pygls has already applied
the edit when a handler runs. The same `apply` rebuilds a document from its
journal (snapshot + edits), so the recorder and the rebuild cannot disagree.

Positions are LSP positions: a line and a column in UTF-16 code units.
Line starts are kept in a numpy array so that an edit costs O(1) Python work
plus a vectorised shift, however long the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Position = tuple[int, int]  # (line, UTF-16 column)
Range = tuple[Position, Position]


def _line_starts(text: str) -> np.ndarray:
    if not text:
        return np.zeros(1, dtype=np.int64)
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return np.concatenate(([0], np.flatnonzero(codes == 10) + 1)).astype(np.int64)


def utf16_len(text: str) -> int:
    """The length of `text` in UTF-16 code units (LSP's columns)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


def utf16_column_to_index(line: str, column: int) -> int:
    """The index in `line` of UTF-16 column `column`, clamped to the line (as LSP specifies)."""
    if line.isascii():
        return min(column, len(line))
    units = 0
    for i, ch in enumerate(line):
        if units >= column:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


@dataclass(frozen=True)
class Edit:
    """One applied change, in offsets of the text before it."""

    start: int
    end: int
    text: str

    @property
    def delta(self) -> int:
        return len(self.text) - (self.end - self.start)


class Text:
    """A document's text with its line starts, updated one LSP change at a time."""

    def __init__(self, text: str = ""):
        self.text = text
        self._starts = _line_starts(text)

    def __len__(self) -> int:
        return len(self.text)

    @property
    def line_count(self) -> int:
        return len(self._starts)

    def line_of(self, offset: int) -> int:
        return int(np.searchsorted(self._starts, offset, side="right")) - 1

    def offset(self, position: Position) -> int:
        """The offset of an LSP position; past the last line means the end, past a line's end its end."""
        line, column = position
        if line < 0:
            return 0
        if line >= len(self._starts):
            return len(self.text)
        start = int(self._starts[line])
        end = int(self._starts[line + 1]) - 1 if line + 1 < len(self._starts) else len(self.text)
        if self.text[start:end].endswith("\r"):
            end -= 1
        return start + utf16_column_to_index(self.text[start:end], column)

    def apply(self, range_: Range | None, new: str) -> Edit:
        """Apply one change (`range_` None replaces the whole text) and return it in offsets."""
        if range_ is None:
            edit = Edit(0, len(self.text), new)
            self.text = new
            self._starts = _line_starts(new)
            return edit
        start, end = self.offset(range_[0]), self.offset(range_[1])
        if end < start:
            start, end = end, start
        edit = Edit(start, end, new)
        removed_lines = self.text.count("\n", start, end)
        self.text = self.text[:start] + new + self.text[end:]
        first = self.line_of(start)
        delta = edit.delta
        if removed_lines == 0 and "\n" not in new:
            self._starts[first + 1 :] += delta
        else:
            added = _line_starts(new)[1:] + start
            tail = self._starts[first + 1 + removed_lines :] + delta
            self._starts = np.concatenate((self._starts[: first + 1], added, tail))
        return edit


def rebuild(snapshot: str, changes: list[tuple[Range | None, str]]) -> str:
    """The text after applying `changes` (as recorded) to `snapshot`."""
    text = Text(snapshot)
    for range_, new in changes:
        text.apply(range_, new)
    return text.text
