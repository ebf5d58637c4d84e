"""SEED's self-revision: the model fixes its own failing code, and the tests decide.

For a failing example on the training side (a function that failed tests
and was later fixed), the current model -- the serving GGUF with the adapter
in use -- is shown the code before the function, the failing function and the
error, and samples `revise_candidates` revisions. Each is written into a
scratch copy of the state in which the fix passed, and the same tests are run.
A passing revision becomes a revision target and a chosen answer against the
failing code; a failing one becomes a rejected answer against the user's fix.
Bounded in examples (`revise_max_examples`) and in time (`revise_seconds`).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from .config import Config
from .data import Example
from .data.revisions import error_comment
from .evaluate import Generator, check_function, generate_function, runnable


def prompt_for(e: Example) -> str:
    context = e.meta["context"].rstrip("\n")
    failing = e.meta["failing"].rstrip("\n")
    return (context + "\n\n" if context else "") + failing + "\n\n" + error_comment(e.meta["error"])


def revise(
    gen: Generator,
    root: Path,
    conn: sqlite3.Connection,
    examples: list[Example],
    cfg: Config,
    progress=lambda done, total: None,
) -> tuple[list[Example], dict]:
    """New examples from self-revision of the failing `examples`, and what happened."""
    todo = runnable(examples)[: cfg.revise_max_examples]
    deadline = time.monotonic() + cfg.revise_seconds
    found: list[Example] = []
    stats = {"tried": 0, "candidates": 0, "passed": 0}
    for i, e in enumerate(todo):
        if time.monotonic() > deadline:
            break
        stats["tried"] += 1
        prompt = prompt_for(e)
        for _ in range(cfg.revise_candidates):
            if time.monotonic() > deadline:
                break
            candidate = generate_function(gen, prompt, temperature=0.8)
            if not candidate.strip() or candidate.strip() == e.meta["failing"].strip():
                continue
            stats["candidates"] += 1
            ok = check_function(root, conn, e, candidate, cfg.test_timeout)
            if ok is None:
                break  # the state cannot be rebuilt: no point in more candidates
            meta = {**e.meta, "source": "self-revision"}
            if ok:
                stats["passed"] += 1
                found.append(Example("revision", e.prompt, candidate, e.time, e.group, tests=e.tests, meta=meta))
                found.append(
                    Example(
                        "preference",
                        e.meta["context"],
                        candidate,
                        e.time,
                        e.group,
                        rejected=e.meta["failing"],
                        tests=e.tests,
                        meta=meta,
                    )
                )
            else:
                found.append(
                    Example(
                        "preference",
                        e.meta["context"],
                        e.target,
                        e.time,
                        e.group,
                        rejected=candidate,
                        tests=e.tests,
                        meta=meta,
                    )
                )
        progress(i + 1, len(todo))
    return found, stats
