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

from selftune.server.journal.steps import hunks

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
    return report.lines or None


def sequence(text: str, rng: random.Random, max_steps: int = 12) -> list[str] | None:
    """Programs from empty to `text`, each lint-clean; None if `text` itself is not."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if broken_lines(lines) is not None:
        return None
    states = ["".join(lines)]
    while lines:
        # About `max_steps` deletions to empty the file, each of a few sampled lines.
        k = min(len(lines), max(1, rng.randint(1, max(1, 2 * len(lines) // max_steps))))
        drop = set(rng.sample(range(len(lines)), k))
        lines = [line for i, line in enumerate(lines) if i not in drop]
        while lines and (blamed := broken_lines(lines)) is not None:
            lines = [line for i, line in enumerate(lines, 1) if i not in blamed]
        states.append("".join(lines))
    return states[::-1]


def insertion_diffs(states: list[str]) -> list[str]:
    return [hunks(a, b) for a, b in zip(states, states[1:]) if a != b]


def from_files(files: dict[str, tuple[str, float]], *, per_file: int = 2, seed: int = 0,
               max_steps: int = 12) -> list[Example]:
    """`files`: path → (text, time written). `per_file` sequences of each, as next-edit samples."""
    examples = []
    for path in sorted(files):
        text, at = files[path]
        if not path.endswith(".py") or not text.strip() or text.count("\n") > MAX_LINES:
            continue
        for n in range(per_file):
            states = sequence(text, random.Random(f"{seed}:{path}:{n}"), max_steps)
            if states is None:
                break
            examples += samples(path, [(at, d) for d in insertion_diffs(states)], kind="lintseq", sequence=n)
    return examples
