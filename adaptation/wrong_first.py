"""Training where the model is wrong (SEED's error-driven idea, on the project's own code).

Before a run trains, the model in use (the base model, or the adapter it goes
on from) completes one line of each of a sample of training examples through
llama.cpp, as the server would: the first line of an inserted block after the
prompt the server assembled there, or a line inside a code window after the
window's text before it. An example whose line it already writes exactly is
one the run has little to learn from: those go last, and are the ones left
out when there are more examples than the run trains on.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from selftune.server.completion.sources import Sources

from .data import Example
from .lineage import example_key

NO_BLOCKS = Sources(definitions=False, similar=False, recent=False, after=False)
FIRST_LINE = 4  # a code window's line checked is at least this far into it (some text to go on)


def line_point(e: Example, rng: random.Random) -> tuple[str, str] | None:
    """(the text before the cursor, the line the model should write there) for one example, or None."""
    if e.kind == "insertion" and e.prompt:
        line = e.target.split("\n", 1)[0].strip()
        return (e.prompt, line) if line else None
    if e.kind == "code" and not e.prompt:
        lines = e.target.split("\n")
        candidates = [i for i in range(FIRST_LINE, len(lines)) if len(lines[i].strip()) > 3]
        if not candidates:
            return None
        i = rng.choice(candidates)
        line = lines[i]
        before = "\n".join(lines[:i]) + "\n" + line[: len(line) - len(line.lstrip())]
        return before, line.strip()
    return None


def already_right(complete: Callable[[str], str], examples: list[Example], limit: int, seed: int,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[set[str], int]:  # fmt: skip
    """(keys of the examples whose line `complete(text)` writes exactly, how many were checked) over a sample
    of at most `limit` of `examples`."""
    rng = random.Random(seed)
    pool = [e for e in examples if e.kind in ("insertion", "code")]
    sample = rng.sample(pool, min(limit, len(pool)))
    right: set[str] = set()
    checked = 0
    for i, e in enumerate(sample):
        point = line_point(e, rng)
        if point is not None:
            text, line = point
            checked += 1
            if complete(text).split("\n", 1)[0].strip() == line:
                right.add(example_key(e))
        progress(i + 1, len(sample))
    return right, checked


def wrong_first(examples: list[Example], right: set[str], cap: int) -> list[Example]:
    """`examples` with those the model already gets right last, and left out beyond `cap`."""
    if not right:
        return examples
    wrong: list[Example] = []
    known: list[Example] = []
    for e in examples:
        (known if example_key(e) in right else wrong).append(e)
    return wrong + known[: max(0, cap - len(wrong))]
