"""Training where the model is wrong (SEED's error-driven idea, on the project's own code).

With `error_driven = N`, a run draws N candidate examples the way it would
draw what it trains on, and the model in use (the base model, or the adapter
it goes on from) completes one line of each through llama.cpp, as the server
would: the first line of an inserted block after the prompt the server
assembled there, or a line inside a code window after the window's text
before it. An example whose line it already writes exactly is one the run
has little to learn from: the run trains on `max_train_examples` of the
candidates, those it got wrong first, and of those the near misses first:
the lines the model came closest to (edit similarity), whose correction it
can take up, as SEED trains on revisions close to the model's own attempt;
a line it missed by far is often one nothing in its context predicts. With
the check off (`error_check = false`) the run trains on the same number of
the same candidates, drawn at random: the baseline the check is measured
against.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from selftune.server.completion.sources import Sources

from .data import Example
from .evaluate import similarity
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


def check(complete: Callable[[str], str], candidates: list[Example], seed: int,
          progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[dict[str, float], int]:  # fmt: skip
    """(each checked candidate's key: how close the line `complete(text)` writes is to its line, 1.0 when it is
    that line; how many candidates had a line to check)."""
    rng = random.Random(seed)
    scores: dict[str, float] = {}
    checked = 0
    for i, e in enumerate(candidates):
        point = line_point(e, rng)
        if point is not None:
            text, line = point
            checked += 1
            written = complete(text).split("\n", 1)[0].strip()
            scores[example_key(e)] = similarity(written, line)  # 1.0 only when it is that line
        progress(i + 1, len(candidates))
    return scores, checked


def right(scores: dict[str, float]) -> set[str]:
    """The keys of the candidates whose line the model already writes exactly."""
    return {k for k, s in scores.items() if s == 1.0}


def wrong_first(candidates: list[Example], scores: dict[str, float]) -> list[str]:
    """The candidates' keys (each once), those the model already gets right last; the lines it missed by least, the
    near misses, take the first of the places the missed ones hold, and unchecked candidates keep theirs."""
    keys = list(dict.fromkeys(example_key(e) for e in candidates))
    missed = sorted((k for k in keys if scores.get(k, 1.0) < 1.0), key=lambda k: -scores[k])
    order = iter(missed)
    wrong = [next(order) if k in scores else k for k in keys if scores.get(k, 0.0) < 1.0]
    return wrong + [k for k in keys if scores.get(k) == 1.0]
