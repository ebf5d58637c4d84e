"""LintSeq's synthetic edit sequences of the project's own Python files.

The algorithm (arXiv 2410.02749): start from the whole file; repeatedly delete
a few sampled lines, then ask a real linter (pyflakes, plus Python's own
parser for syntax) what the deletion broke and delete those lines too, until
the program is clean again; record each clean program; stop at the empty file.
Read backwards, this is the file written as insertion-only diffs in which
every intermediate program lints clean. Several sequences per file, each from
its own seed.

"Clean" means: it parses, and pyflakes reports no undefined name (the error
class LintSeq's linter checks); unused imports and variables are warnings,
not breakage. A file that is not clean to begin with is skipped.
"""

from __future__ import annotations

import random
import re

import pyflakes.api
import pyflakes.messages
import pyflakes.reporter

from . import Example
from .edits import samples

ERRORS = (pyflakes.messages.UndefinedName, pyflakes.messages.UndefinedLocal, pyflakes.messages.UndefinedExport)
MAX_LINES = 400  # longer files are skipped: a sequence costs one lint per step
_ON_LINE = re.compile(r"on line (\d+)")


class _Collect(pyflakes.reporter.Reporter):
    def __init__(self) -> None:
        self.lines: set[int] = set()
        self.syntax = False

    def unexpectedError(self, filename, msg):  # noqa: N802 (pyflakes' API)
        self.syntax = True

    def syntaxError(self, filename, msg, lineno, offset, text):  # noqa: N802
        self.syntax = True
        # "expected an indented block after 'if' statement on line 3": the header lost its body.
        header = _ON_LINE.search(msg or "")
        self.lines.add(int(header.group(1)) if header else (lineno or 1))

    def flake(self, message):
        if isinstance(message, ERRORS):
            self.lines.add(message.lineno)


def broken_lines(lines: list[str]) -> set[int] | None:
    """1-based lines the linter blames, or None when the program is clean."""
    report = _Collect()
    pyflakes.api.check("".join(lines), "<lintseq>", report)
    if report.syntax and not report.lines:
        report.lines.add(len(lines))
    # In a file with CRLF line ends, Python puts an error at the end of the text (a `try:` that lost its
    # `except`) on the line after the last one; a blamed line must be one that can be deleted, or the
    # deletion loop would never end.
    return {min(max(n, 1), len(lines)) for n in report.lines} or None


def sequence(text: str, rng: random.Random, max_steps: int = 12) -> list[str] | None:
    """Programs from empty to `text`, each lint-clean; None if `text` itself is not."""
    kept = kept_lines(text, rng, max_steps)
    if kept is None:
        return None
    lines = _lines(text)
    return ["".join(lines[i] for i in indices) for indices in kept]


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def kept_lines(text: str, rng: random.Random, max_steps: int = 12) -> list[list[int]] | None:
    """The sequence as the indices of `text`'s lines each program keeps, from none to all."""
    lines = _lines(text)
    if broken_lines(lines) is not None:
        return None
    kept = list(range(len(lines)))
    states = [kept]
    while kept:
        # About `max_steps` deletions to empty the file, each of a few sampled lines.
        k = min(len(kept), max(1, rng.randint(1, max(1, 2 * len(kept) // max_steps))))
        drop = set(rng.sample(range(len(kept)), k))
        kept = [line for i, line in enumerate(kept) if i not in drop]
        while kept and (blamed := broken_lines([lines[i] for i in kept])) is not None:
            kept = [line for n, line in enumerate(kept, 1) if n not in blamed]
        states.append(kept)
    return states[::-1]


def insertion_diff(lines: list[str], old: list[int], new: list[int]) -> str:
    """Zero-context hunks inserting the lines of `new` missing from `old` (`old` ⊆ `new`, both ascending)."""
    present = set(old)
    out, i, before = [], 0, 0  # before: old lines preceding position i of new
    while i < len(new):
        if new[i] in present:
            before += 1
            i += 1
            continue
        j = i
        while j < len(new) and new[j] not in present:
            j += 1
        count = j - i
        out.append(f"@@ -{before},0 +{i + 1}{'' if count == 1 else f',{count}'} @@")
        out += ["+" + lines[n].rstrip("\n") for n in new[i:j]]
        i = j
    return "\n".join(out)


def insertion_diffs(text: str, kept: list[list[int]]) -> list[str]:
    lines = _lines(text)
    return [insertion_diff(lines, a, b) for a, b in zip(kept, kept[1:]) if a != b]


def from_files(
    files: dict[str, tuple[str, float]],
    *,
    per_file: int = 2,
    seed: int = 0,
    max_steps: int = 12,
    limit: int | None = None,
) -> list[Example]:
    """`files`: path → (text, time written). `per_file` sequences of each, as next-edit samples; with
    `limit`, files are taken in a seeded random order until that many samples are made (a big project
    has far more files than a run trains on, and each sequence costs a lint per step)."""
    examples: list[Example] = []
    order = sorted(files)
    if limit is not None:
        random.Random(seed).shuffle(order)
    for path in order:
        if limit is not None and len(examples) >= limit:
            break
        text, at = files[path]
        if not path.endswith(".py") or not text.strip() or text.count("\n") > MAX_LINES:
            continue
        for n in range(per_file):
            kept = kept_lines(text, random.Random(f"{seed}:{path}:{n}"), max_steps)
            if kept is None:
                break
            examples += samples(path, [(at, d) for d in insertion_diffs(text, kept)], kind="lintseq", sequence=n)
    return examples if limit is None else examples[:limit]


def apply_insertions(text: str, diff: str) -> str:
    """Apply an insertion-only zero-context diff (as `insertion_diffs` writes it) to `text`."""
    lines = text.splitlines(keepends=True)
    hunks_: list[tuple[int, list[str]]] = []
    for line in diff.splitlines():
        if line.startswith("@@"):
            old = line.split()[1]  # -a,0: insert after old line a
            hunks_.append((int(old[1:].split(",")[0]), []))
        elif line.startswith("+"):
            hunks_[-1][1].append(line[1:] + "\n")
        elif line.startswith("-"):
            raise ValueError("not an insertion-only diff")
    for after, added in reversed(hunks_):
        lines[after:after] = added
    return "".join(lines)
