"""What the model sees of a document: a bounded window around the cursor.

First step of a completion (context → prompt → engine → postprocess). Pure
functions of the document text and a cursor offset. The window before the
cursor starts at a line boundary and is *anchored*: while the cursor stays in
reach of the previous window start, the start does not move, so consecutive
prompts share their beginning and the engine can reuse its KV cache. When the
text outgrows the budget, the start jumps forward to leave room to grow, which
costs one new prefill every few hundred lines of typing rather than on every
keystroke. A huge document therefore never makes the prompt unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass

# After a jump the window holds this share of its budget, leaving room to type.
REFILL_SHARE = 0.6


@dataclass(frozen=True)
class Context:
    prefix: str  # window text before the cursor, starting at a line boundary
    suffix: str  # window text after the cursor, ending at a line boundary
    line_prefix: str  # the cursor's line, before the cursor
    line_suffix: str  # the cursor's line, after the cursor
    window_start: int  # offset in the document where `prefix` begins
    in_docstring: bool = False  # inside a triple-quoted string (counted from the top of the document)


def line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def window_start(text: str, offset: int, budget: int, previous: int | None = None) -> int:
    """Offset of the line where the window before `offset` starts.

    Keeps `previous` while it is still a line start within `budget` characters
    before the cursor; otherwise starts at the first line boundary that leaves
    the window at about `REFILL_SHARE` of the budget.
    """
    if offset <= budget:
        return 0
    if (
        previous is not None
        and 0 <= previous <= offset
        and offset - previous <= budget
        and (previous == 0 or text[previous - 1] == "\n")
    ):
        return previous
    target = offset - int(budget * REFILL_SHARE)
    newline = text.find("\n", target, offset)
    if newline == -1:
        # One line longer than the budget: cut inside it rather than send it whole.
        return offset - int(budget * REFILL_SHARE)
    return newline + 1


def build(
    text: str,
    offset: int,
    *,
    prefix_chars: int,
    suffix_chars: int,
    previous_start: int | None = None,
) -> Context:
    """The completion context at `offset` (0 ≤ offset ≤ len(text))."""
    if not 0 <= offset <= len(text):
        raise ValueError(f"offset {offset} is outside the document (0..{len(text)})")
    start = window_start(text, offset, prefix_chars, previous_start)
    line_end = text.find("\n", offset)
    if line_end == -1:
        line_end = len(text)
    end = min(len(text), offset + suffix_chars)
    if end > line_end:
        cut = text.rfind("\n", line_end, end)
        end = cut + 1 if cut > line_end else max(line_end, end)
    return Context(
        prefix=text[start:offset],
        suffix=text[offset:end],
        line_prefix=text[line_start(text, offset) : offset],
        line_suffix=text[offset:line_end],
        window_start=start,
        # From the top, not the window: the window may start inside a docstring.
        in_docstring=(text.count('"""', 0, offset) + text.count("'''", 0, offset)) % 2 == 1,
    )
