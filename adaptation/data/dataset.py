"""All training data of a workspace, split by time, with the held-out edit points.

`build` reads the journal (if there is one) and the repository, makes every
kind of example, holds out the newest groups, and picks the edit points in the
held-out files. Self-revision adds to `train` later (it needs the model).
The examples in the server's format are assembled as the server assembles a
prompt (insertions.py); the held-out points are evaluated the same way, with
`index`: the project at HEAD without the held-out files.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from selftune.server.completion.assemble import assemble
from selftune.server.completion.project import ProjectIndex
from selftune.server.completion.prompt import PromptFormat
from selftune.server.journal.privacy import Rules

from ..config import Config
from . import Example, corpus, edits, insertions, lintseq, points, preferences, remembered, revisions, split

TARGET_ROOM = 96  # tokens of `max_length` a serving-format example keeps for its target (a block: a few lines)


@dataclass
class Dataset:
    train: list[Example]
    held: list[Example]
    points: list[points.Point]
    files: dict[str, tuple[str, float]] = field(default_factory=dict)
    index: ProjectIndex | None = None  # what the held-out points are completed with (no held-out file in it)
    remembered: bool = False  # the serving-format examples came from the last build's cache

    def counts(self) -> dict:
        return {
            "train": dict(Counter(e.kind for e in self.train)),
            "held": dict(Counter(e.kind for e in self.held)),
            "points": len(self.points),
            "remembered": self.remembered,
        }


def estimate_tokens(text: str) -> int:
    return len(text) // 3 + 1


def index_of(files: dict[str, tuple[str, float]], leave_out: frozenset[str] | set[str] = frozenset()) -> ProjectIndex:
    index = ProjectIndex()
    for path, (text, _) in files.items():
        if path not in leave_out:
            index.set_file(path, text)
    return index


def serving_prompts(fmt: PromptFormat, cfg: Config, measure: Callable[[str], int]) -> insertions.PromptFor:
    """What the server sends the model at a cursor, within `cfg.max_length` less room for the target."""

    def prompt_for(path: str, text: str, cursor: int, index: ProjectIndex | None) -> str:
        budget = max(64, cfg.max_length - TARGET_ROOM)
        return assemble(fmt, text, cursor, budget=budget, measure=measure, path=path, language_id="python",
                        index=index).prompt  # fmt: skip

    return prompt_for


def build(root: Path, conn: sqlite3.Connection | None, fmt: PromptFormat, cfg: Config, *, rev: str = "HEAD",
          measure: Callable[[str], int] = estimate_tokens, cache: Path | None = None) -> Dataset:  # fmt: skip
    """`measure`: tokens of a text in the model's vocabulary (the prompts are sized in them). `cache`: a folder
    where the serving-format examples are remembered for the next build (remembered.py)."""
    files = corpus.project_files(root, rev=rev)
    examples = corpus.from_files(files, fmt, window_chars=cfg.window_chars, fim_share=cfg.fim_share, seed=cfg.seed)
    rules = Rules(root)
    kept = False
    prefix = ""  # the workspace may be a folder inside the repository: journal paths are relative to it
    if rules.repo is not None:
        sub = root.resolve().relative_to(Path(rules.repo.working_tree_dir).resolve()).as_posix()
        prefix = "" if sub == "." else sub + "/"
    if conn is not None:
        examples += revisions.from_journal(conn) + preferences.from_journal(conn) + edits.from_journal(conn)
        settings = (fmt, cfg.max_length, TARGET_ROOM, insertions.MAX_BLOCKS, prefix)
        made, kept = remembered.examples(cache, conn, files, settings, measure, lambda: insertions.from_steps(
            conn, rules.repo, prefix, prompt_for=serving_prompts(fmt, cfg, measure), head_index=index_of(files)
        ))  # fmt: skip
        examples += made
    train, held = split.by_time(examples, cfg.held_share)
    held_paths = split.held_paths(held)
    if cfg.lintseq_per_file > 0:
        # Synthetic sequences only of files on the training side.
        train_files = {p: v for p, v in files.items() if p not in held_paths}
        cap = max(8, int(cfg.lintseq_share * len(train) / max(1e-9, 1 - cfg.lintseq_share)))
        train += lintseq.from_files(train_files, per_file=cfg.lintseq_per_file, seed=cfg.seed, limit=cap)
    found: list[points.Point] = []
    if conn is not None:
        found = points.from_steps(conn, rules.repo, held_paths, prefix)
    if not found:
        found = points.from_files(files, held_paths)
    index = index_of(files, held_paths)
    return Dataset(train, held, points.sample(found, cfg.max_points, cfg.seed), files, index, kept)
