"""Held-out answers, remembered: a model completes a held-out point once while nothing that decides its answer
changes.

Every run compares the new adapter with the base model and with the adapter in use, at the same held-out points;
the last run already completed those points with both (the adapter in use was its new adapter). Their answers are
kept per model in `.selftune/heldout/`, under a key that holds everything that decides an answer: the point (its
file, text and cursor), the project's files as the run reads them (the context sources are built from them), the
code of the completion path and of this evaluation, the generator's settings, and the model (the base weights'
digest, the adapter's id). Anything else changed, and the answer is computed again. An answer keeps the seconds it
took, so a run can plan how long its evaluation will take before it starts (run.py). The base model's held-out loss
is kept beside its answers, under a key of its own (`loss_key`): the next run with the same held-out examples reads
it back instead of running the model over them again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from selftune.server import workspace

from .data.points import Point
from .fingerprint import code, completion_path, digest, installed, listing


def code_fingerprint() -> str:
    """The completion path's and this evaluation's source, and llama.cpp's version."""
    return code(completion_path() + [Path(__file__).parent / "evaluate.py"])


def context_key(files: dict[str, tuple[str, float]], settings: object) -> str:
    """What every answer of a run shares: the project's files, the code, the generator's settings."""
    return digest(code_fingerprint(), repr(settings), *listing(files))


def point_key(p: Point) -> str:
    return digest(p.path, p.text, str(p.offset))


def loss_key(examples, max_length: int, precision: str) -> str:
    """What decides a model's held-out loss besides the model: the held-out examples as the loss takes them, the
    length they are cut to, the precision of the weights (train.precision), the packages that compute it and this
    evaluation's code."""
    parts = (f"{e.kind}\0{e.group}\0{digest(e.prompt, e.target)}" for e in examples)
    source = (Path(__file__).parent / "evaluate.py").read_text(encoding="utf-8", errors="replace")
    return digest(installed("torch"), installed("transformers"), digest(source), str(max_length), precision, *parts)


class Memo:
    """One model's remembered answers in one context: `get` and `put` by point, `save` to keep them; and its
    held-out loss (`loss`, `put_loss`), by `loss_key`."""

    def __init__(self, path: Path, context: str):
        self.path, self.context = path, context
        self.answers: dict[str, list] = {}
        self.losses: dict[str, float] = {}
        try:
            stored = json.loads(path.read_text())
            if stored.get("context") == context:
                self.answers = {k: v for k, v in stored["answers"].items() if _valid(v)}
            losses = stored.get("losses", {})  # their key holds all that decides them: the project's files do not
            self.losses = {k: float(v) for k, v in losses.items() if isinstance(v, (int, float))}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            pass  # none yet, or unreadable: computed again

    def get(self, p: Point) -> tuple[str, float] | None:
        found = self.answers.get(point_key(p))
        return (found[0], found[1]) if found else None

    def put(self, p: Point, line: str, seconds: float) -> None:
        self.answers[point_key(p)] = [line, round(seconds, 3)]

    def loss(self, key: str) -> float | None:
        return self.losses.get(key)

    def put_loss(self, key: str, value: float) -> None:
        self.losses = {key: value}  # only the newest held-out examples' loss is ever asked for again

    def save(self) -> None:
        """Replace the stored answers with these (written whole, then renamed: a crash leaves the old file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"context": self.context, "answers": self.answers, "losses": self.losses}))
        tmp.replace(self.path)


def _valid(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], (int, float))


class Answers:
    """The remembered answers of a workspace's models, for one run's held-out context."""

    def __init__(self, root: Path, files: dict[str, tuple[str, float]], settings: object, weights: Path):
        self.folder = workspace.heldout_dir(root)
        self.context = context_key(files, settings)
        try:
            stat = weights.stat()
            found = f"{weights.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        except OSError:
            found = str(weights)
        self.base = "base-" + digest(found)[:16]  # the weights file as it is: another file, other answers

    def of(self, adapter_id: str | None) -> Memo:
        """The memo of an adapter (None: the base model alone)."""
        name = adapter_id or self.base
        return Memo(self.folder / f"{name}.json", self.context)

    def prune(self, in_use: str | None) -> None:
        """Forget every model's answers but the base model's and the adapter in use's: the only ones a later run
        compares with (an adapter switched to by hand answers again)."""
        keep = {f"{self.base}.json", f"{in_use}.json"}
        for found in self.folder.glob("*.json"):
            if found.name not in keep:
                found.unlink(missing_ok=True)
