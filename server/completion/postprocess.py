"""Where a suggestion ends: indentation-aware truncation of model output.

Last step of a completion (context → prompt → engine → postprocess), and pure.
`Shape` says what kind of suggestion the cursor calls for; `cut` takes the
text the model has produced so far and returns the suggestion it yields and
whether it is finished. The engine calls `cut` after every generated token, so
a request is answered the moment its stop point is reached, without waiting
for the rest of the generation.

The rules: in the middle of a line, complete the line only; at the end of a
line, complete it (or offer the next line when it is already complete); on an
empty line or after a block opener, offer the rest of the block and stop where
the indentation drops below it. Never repeat the text after the cursor, never
emit markdown fences, chat markers or prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .context import Context
from .project import SOURCE_SUFFIXES

Mode = Literal["inline", "line", "block"]

# Text a code model should never leave in a suggestion: fences and chat markers.
HARD_STOPS = (
    "```",
    "<end_of_turn>",
    "<start_of_turn>",
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "<|file_separator|>",
    "<eos>",
)
PROSE_LANGUAGES = {"markdown", "plaintext", "text", "restructuredtext", "latex", "org", "asciidoc", "git-commit"}
OPENERS = (":", "{", "(", "[")
RUN_ON = 4  # copies of one piece at a line's end that make it a run-on
LONG_PIECE = 8  # a piece this long that the budget cut off in its third copy is a run-on too
# A first line that repeats one of the next BELOW non-blank lines (of at least REPEAT_MIN characters) is code the
# file already has. Given the code after the cursor, a small model copies such a line at about 3 % of line starts;
# the line someone writes there is one of them at 0.7 % (1,800 added lines of three projects).
BELOW = 4
REPEAT_MIN = 8
CLOSERS = ")]}"
# A line that copies the labels the prompt puts on its blocks (prompt.LABELS): "# path/to/file.py" or
# "# ..., after the cursor:". The model is continuing the prompt's layout, not writing code.
_SUFFIXES = "|".join(sorted(s.lstrip(".") for s in SOURCE_SUFFIXES))
_LABEL = re.compile(rf"^[ \t]*(?:#|//|--|;) ?(?:[\w./-]+\.(?:{_SUFFIXES})|.*after the cursor:)[ \t]*$", re.MULTILINE)
_PROSE = re.compile(r"^(?:[A-Z][a-z]+|I|A)(?:[ ,][A-Za-z'’,-]+){2,}[.!?:]?$")
_LIST_ITEM = re.compile(r"^(?:\d+\.|[-*•]) +[A-Za-z]")
_KEYWORDS = {
    "False",
    "None",
    "True",
    "And",
    "As",
    "Assert",
    "Async",
    "Await",
}


@dataclass(frozen=True)
class Shape:
    mode: Mode
    line_prefix: str
    line_suffix: str
    below: tuple[str, ...]  # the first BELOW non-blank lines after the cursor's line, stripped
    prose_ok: bool  # inside a docstring, comment or a prose document

    @property
    def next_line(self) -> str:
        """The first non-blank line after the cursor's line, stripped."""
        return self.below[0] if self.below else ""


def indent_of(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def shape_of(ctx: Context, *, multiline: bool = True, language_id: str = "") -> Shape:
    tail = ctx.line_prefix.rstrip()
    if ctx.line_suffix.strip():
        mode: Mode = "inline"
    elif multiline and (not tail or tail.endswith(OPENERS)):
        mode = "block"
    else:
        mode = "line"
    below = tuple(line.strip() for line in ctx.suffix.split("\n")[1:] if line.strip())[:BELOW]
    in_comment = "#" in ctx.line_prefix or "//" in ctx.line_prefix
    prose_ok = language_id in PROSE_LANGUAGES or ctx.in_docstring or in_comment
    return Shape(mode, ctx.line_prefix, ctx.line_suffix, below, prose_ok)


def is_prose(line: str) -> bool:
    """A line of English or markdown where code should be."""
    s = line.strip()
    if not s or s.startswith(("#", "//", "/*", "*", '"', "'")) and not _LIST_ITEM.match(s):
        return False
    if _LIST_ITEM.match(s) or s.startswith("**"):
        return True
    first = s.split(" ", 1)[0]
    return bool(_PROSE.match(s)) and first not in _KEYWORDS and not any(c in s for c in "=()[]{}<>")


def _trim_line_suffix(line: str, suffix: str) -> str:
    """Drop from a one-line suggestion what the rest of the line already says."""
    rest = suffix.strip()
    if rest and len(rest) >= 2:
        at = line.find(rest)
        if at != -1:
            return line[:at]
    # Closing brackets and quotes the editor already put after the cursor.
    closing = len(suffix) - len(suffix.lstrip(")]}'\"`;, "))
    for k in range(min(closing, len(line)), 0, -1):
        if line.endswith(suffix[:k]):
            return line[:-k]
    return line


def _hard_stop(text: str) -> tuple[str, bool]:
    cuts = [i for i in (text.find(m) for m in HARD_STOPS) if i != -1]
    label = _LABEL.search(text)
    if label:
        cuts.append(label.start())
    if cuts:
        return text[: min(cuts)], True
    return text, False


def _depth(text: str) -> int:
    return sum(text.count(c) for c in "([{") - sum(text.count(c) for c in CLOSERS)


def cut(
    shape: Shape, text: str, *, final: bool = False, exhausted: bool = False, hurry: bool = False
) -> tuple[str, bool]:
    """(suggestion, finished) for model output `text` at this point.

    `final`: the model stopped (end of text, stop string or token budget);
    `exhausted`: it stopped because the token budget ran out, so its last line
    may be cut short; `hurry`: the request has waited long enough, so a block
    may be offered as the whole lines written so far, and a line as its whole
    words so far (the generation goes on, and the next request, once the user
    accepts or types them, is answered from it).
    """
    text, stopped = _hard_stop(text)
    final = final or stopped
    lines = text.split("\n")
    # The last line is still being written unless the generation has ended.
    complete = len(lines) if final else len(lines) - 1
    if shape.mode != "inline" and not shape.line_prefix.strip() and not lines[0].strip():
        # The cursor waits on an empty line (indented or not), and the model began with a line break: what it
        # writes next is this line's code, not a blank line and then code.
        blank = next((i for i, line in enumerate(lines[:complete]) if line.strip()), None)
        if blank is None:
            return "", final
        if indent_of(lines[blank]) < indent_of(shape.line_prefix):
            return "", True  # it ends the block here: nothing belongs on the cursor's line
        lines = [lines[blank].lstrip(), *lines[blank + 1 :]]
        complete -= blank

    if shape.mode == "inline" or (shape.mode == "line" and lines[0].strip()):
        repeats = run_on(lines[0], strict=not (final and exhausted))
        if repeats is not None:  # the model is stuck repeating itself: the line ends where it began to
            return _finish_line(shape, lines[0][:repeats]), True
        if complete < 1:
            if hurry:  # the pause is ending: the whole words so far now, the rest on the next request
                words = whole_words(lines[0])
                if words.strip():
                    return _finish_line(shape, words), True
            return _finish_line(shape, lines[0]), False
        return _finish_line(shape, lines[0]), True

    if shape.mode == "line":
        # The line is already complete; offer the next one.
        if complete < 2:
            words = whole_words(lines[1]) if hurry and len(lines) > 1 else ""
            if not words.strip() or (not shape.prose_ok and is_prose(words)):
                return "", final
            return "\n" + words, True  # the pause is ending: the next line's whole words so far, the rest later
        nxt = lines[1]
        if not nxt.strip() or (not shape.prose_ok and is_prose(nxt)) or nxt.strip() == shape.next_line:
            return "", True
        return "\n" + nxt.rstrip(), True

    return _block(shape, lines, complete, final, exhausted, hurry)


def _finish_line(shape: Shape, line: str) -> str:
    if not shape.prose_ok and not shape.line_prefix.strip() and is_prose(line):
        return ""
    if shape.line_prefix and not shape.line_prefix.strip():
        line = line.lstrip()  # the cursor stands at the line's indentation already: no second one
    return _trim_line_suffix(line, shape.line_suffix).rstrip()


def repeats_below(shape: Shape, suggestion: str) -> bool:
    """Whether the line `suggestion` writes (the cursor's line, or the next one when it begins with a line break)
    is one of the lines just below the cursor: the completer's veto (the engine redoes the line)."""
    if "\n" not in suggestion:
        line = shape.line_prefix + suggestion + shape.line_suffix
    else:
        line = (shape.line_prefix + suggestion).split("\n")[1 if suggestion.startswith("\n") else 0]
    line = line.strip()
    return len(line) >= REPEAT_MIN and line in shape.below


def whole_words(line: str) -> str:
    """`line` up to the end of its last finished word (an identifier or number the model may still be writing
    is left out, with what it began after)."""
    end = len(line)
    while end and (line[end - 1].isalnum() or line[end - 1] == "_"):
        end -= 1
    return line[:end].rstrip()


def run_on(line: str, *, strict: bool = True) -> int | None:
    """Where `line` ends if it is stuck repeating itself: the end of the first of `RUN_ON` or more copies of the
    same piece at its end (`part_part_part_part_`), else None. A piece holds a letter or digit; `strict`: four
    copies of three characters or more, otherwise (the token budget ran out) three of two or more, or two of
    `LONG_PIECE` or more with the line stopping inside a third that begins like them
    (`is_real_or_not_is_real_or_not_is_reb`)."""
    copies, shortest = (RUN_ON, 3) if strict else (RUN_ON - 1, 2)
    n = len(line)
    for unit in range(shortest, n // copies + 1):
        piece = line[n - unit :]
        if not any(c.isalnum() for c in piece):
            continue
        count = 1
        while line[n - unit * (count + 1) : n - unit * count] == piece:
            count += 1
        if count >= copies:
            return n - unit * count + unit
    if strict:
        return None
    for unit in range(LONG_PIECE, n // 2 + 1):
        # two copies side by side, and the line stops inside a third that begins like them
        for i in range(max(0, n - 3 * unit + 1), n - 2 * unit - 2):
            piece, third = line[i : i + unit], line[i + 2 * unit :]
            if piece == line[i + unit : i + 2 * unit] and third[:3] == piece[:3] and any(c.isalnum() for c in piece):
                return i + unit
    return None


def _block(
    shape: Shape, lines: list[str], complete: int, final: bool, exhausted: bool, hurry: bool
) -> tuple[str, bool]:
    cursor_indent = (
        indent_of(shape.line_prefix) if not shape.line_prefix.strip() else indent_of(shape.line_prefix + "x")
    )
    opener = bool(shape.line_prefix.strip())
    base: int | None = None
    if not opener and lines[0].strip():
        base = indent_of(shape.line_prefix + lines[0])
        if not shape.prose_ok and is_prose(lines[0]):
            return "", True
    kept = [lines[0]]
    depth = _depth(shape.line_prefix + lines[0])
    decorated = (shape.line_prefix + lines[0]).strip().startswith("@")
    blanks = 0
    for i in range(1, complete):
        line = lines[i]
        if not line.strip():
            blanks += 1
            if blanks >= 2:
                return _join(kept), True
            kept.append(line)
            continue
        blanks = 0
        indent = indent_of(line)
        stripped = line.strip()
        closes = stripped[0] in CLOSERS and depth > 0
        if base is None:
            # First line of the block: it must sit deeper than an opener line.
            if opener and indent <= cursor_indent and not closes:
                return _join(kept), True
            if not opener and indent < cursor_indent:
                return _join(kept), True
            base = indent
        elif not closes and (indent < base or (base == 0 and indent == 0 and not decorated)):
            return _join(kept), True
        if stripped == shape.next_line and len(stripped) > 3:
            return _join(kept), True
        if not shape.prose_ok and is_prose(line):
            return _join(kept), True
        kept.append(line)
        decorated = stripped.startswith("@")
        depth += _depth(line)
        if closes and depth <= 0 and shape.line_prefix.rstrip().endswith(("(", "[", "{")):
            return _join(kept), True  # the bracket opened on the cursor's line is closed
    if not final:
        whole = _join(kept)  # complete lines only: lines[complete] is still being written
        return whole, hurry and complete >= 1 and bool(whole.strip())
    if exhausted and complete > 1 and len(kept) == complete:
        # The budget ran out mid-line: keep whole lines only.
        kept = kept[:-1]
    return _join(kept), True


def _join(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in lines)
    return text.rstrip() if text.strip() else ""
