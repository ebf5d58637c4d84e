"""All training data of a workspace, split by time, with the held-out edit points.

`build` reads the journal (if there is one) and the repository, makes every
kind of example, holds out the newest groups, and picks the edit points in the
held-out files. Self-revision adds to `train` later (it needs the model).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from selftune.server.completion.prompt import PromptFormat
from selftune.server.journal.privacy import Rules

from ..config import Config
from . import Example, corpus, edits, insertions, lintseq, points, preferences, revisions, split


@dataclass
class Dataset:
    train: list[Example]
    held: list[Example]
    points: list[points.Point]
    files: dict[str, tuple[str, float]] = field(default_factory=dict)

    def counts(self) -> dict:
        return {
            "train": dict(Counter(e.kind for e in self.train)),
            "held": dict(Counter(e.kind for e in self.held)),
            "points": len(self.points),
        }


def build(root: Path, conn: sqlite3.Connection | None, fmt: PromptFormat, cfg: Config, *, rev: str = "HEAD") -> Dataset:
    files = corpus.project_files(root, rev=rev)
    examples = corpus.from_files(files, fmt, window_chars=cfg.window_chars, fim_share=cfg.fim_share, seed=cfg.seed)
    rules = Rules(root)
    prefix = ""  # the workspace may be a folder inside the repository: journal paths are relative to it
    if rules.repo is not None:
        sub = root.resolve().relative_to(Path(rules.repo.working_tree_dir).resolve()).as_posix()
        prefix = "" if sub == "." else sub + "/"
    if conn is not None:
        examples += revisions.from_journal(conn) + preferences.from_journal(conn) + edits.from_journal(conn)
        examples += insertions.from_steps(conn, rules.repo, prefix)
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
    return Dataset(train, held, points.sample(found, cfg.max_points, cfg.seed), files)
