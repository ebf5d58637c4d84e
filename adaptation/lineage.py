"""Runs that build on each other: what the adapters behind the one in use were trained on.

A run starts from the adapter in use, or from a run ahead of it (`frontier`;
warm start, train.py), so what that adapter knows is what every run of its
lineage trained on: the adapter, the
one it started from, and so on back to one trained from the base model. The
journal records each run's examples (`trained_examples`: a key per example,
its kind, file and the file's version) and the adapter it started from
(`adaptation_runs.warm_from`). From those:

- `fresh_first` puts the examples no run of the lineage has seen first and
  adds a replayed share of seen ones, the least trained first (so that an
  idle machine covers the whole project, then keeps up with its changes and
  goes round the rest of it again, without forgetting);
- `coverage` says how much of the project as it is now the lineage has
  trained on: of the examples a run draws from it now, those a run of the
  lineage trained on (a large file gives many, so a file counts as covered
  long before all of it is), and the files whose current version gave one;
- `frontier` is where a run goes on from when that is not the adapter in
  use: the newest run the gate kept out whose held-out loss, like that of
  each kept-out run between it and the adapter in use, is below the base
  model's on the same held-out examples (the gate's own floor). The gate
  judges on 60 lines, where one line is noise; without this, an idle machine
  whose run lost by a line would train the same examples from the same start
  on every later run, and one whose run trained code unlike the newest files
  (which the held-out set is) would never cover it.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from .data import Example

MAX_CHAIN = 1000  # runs followed back (a loop in a hand-edited journal ends here)


def example_key(e: Example) -> str:
    """An example's identity across runs: its kind, file, and the text it trains on (not its time)."""
    digest = hashlib.sha1(f"{e.kind}\0{e.group}\0{e.prompt[-512:]}\0{e.target}\0{e.rejected}".encode())
    return digest.hexdigest()[:20]


def text_version(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:12]


def example_version(e: Example, files: dict[str, tuple[str, float]]) -> str | None:
    """Which version of its file an example comes from: the commit of an edit step, else the file's content now
    for code from the project's files (other kinds come from the journal and have none)."""
    if e.meta.get("commit"):
        return str(e.meta["commit"])[:12]
    if e.kind in ("code", "fim", "lintseq") and e.group in files:
        return text_version(files[e.group][0])
    return None


def chain(conn: sqlite3.Connection | None, adapter_id: str | None) -> list[str]:
    """`adapter_id` and the adapters it was warm-started from, newest first (empty for the base model)."""
    out: list[str] = []
    while adapter_id and adapter_id not in out and len(out) < MAX_CHAIN:
        out.append(adapter_id)
        if conn is None:
            break
        try:
            row = conn.execute("SELECT warm_from FROM adaptation_runs WHERE id = ?", (adapter_id,)).fetchone()
        except sqlite3.OperationalError:  # a journal from before the column: no lineage recorded
            break
        adapter_id = row[0] if row else None
    return out


def frontier(conn: sqlite3.Connection | None, in_use: str | None, base: str) -> tuple[str, float, float] | None:
    """(run, its held-out loss, the base model's on the same held-out examples) when the next run of `base` should
    go on from that run rather than from `in_use` (the adapter in use, None for the base model). The newest finished
    run goes on, through runs the gate kept out, from `in_use`; of that chain, the run is the newest that, with every
    run between it and `in_use`, kept its held-out loss below the base model's, as its run measured them. A run in
    the chain that did not ends it there: the next run goes on from the last one before it, and trains the examples
    of the runs after that again.

    The bound is the gate's floor, not the adapter in use's loss: a run that trains the project's code least like
    its newest files raises the loss on those a little, and on pydantic that bound dropped such a run (1.694 against
    the 1.674 in use, the base model's 1.871) with the 777 examples no run had trained on yet."""
    if conn is None:
        return None
    try:
        query = "SELECT id, decision, warm_from, metrics FROM adaptation_runs WHERE base = ? AND decision != 'failed'"
        runs = {r[0]: r for r in conn.execute(query + " ORDER BY started DESC", (base,)).fetchall()}
    except sqlite3.OperationalError:  # a journal from before the lineage
        return None
    ahead: list[tuple] = []  # from the newest run back to the adapter in use
    walk = next(iter(runs), None)
    while walk != in_use:
        run = runs.get(walk)
        if run is None or run[1] != "kept" or len(ahead) >= MAX_CHAIN:
            return None
        ahead.append(run)
        walk = run[2]
    found = None
    for run_id, _decision, _parent, metrics in reversed(ahead):  # from the adapter in use on
        loss, bound = _loss(metrics, "candidate"), _loss(metrics, "base")
        if loss is None or bound is None or loss >= bound:
            break
        found = (run_id, loss, bound)
    return found


def _loss(metrics: str | None, model: str) -> float | None:
    """A run's recorded held-out loss of `model` ("candidate", "base")."""
    try:
        loss = json.loads(metrics or "{}").get(model, {}).get("heldout_loss")
    except (ValueError, AttributeError):
        return None
    return float(loss) if isinstance(loss, (int, float)) else None


def trained_rows(conn: sqlite3.Connection | None, runs: list[str]) -> list[tuple[str, str, str, str | None]]:
    """(run, key, path, version) of every example the `runs` trained on."""
    if conn is None or not runs:
        return []
    marks = ",".join("?" * len(runs))
    try:
        query = f"SELECT run_id, key, path, version FROM trained_examples WHERE run_id IN ({marks})"
        return conn.execute(query, runs).fetchall()
    except sqlite3.OperationalError:  # no such table yet
        return []


def tokens(conn: sqlite3.Connection | None, runs: list[str]) -> int:
    """Training tokens of the `runs`, together."""
    if conn is None or not runs:
        return 0
    marks = ",".join("?" * len(runs))
    try:
        row = conn.execute(f"SELECT SUM(tokens) FROM adaptation_runs WHERE id IN ({marks})", runs).fetchone()
    except sqlite3.OperationalError:  # a journal from before the column
        return 0
    return int(row[0] or 0)


def fresh_first(
    examples: list[Example], seen: Mapping[str, int], cap: int, replay_share: float, seed: int
) -> list[Example]:
    """At most `cap` of `examples`, in the order to train them: every one not `seen` yet (newest first when there
    are more) with a `replay_share` of seen ones spread evenly among them, then more seen ones when there are not
    enough new ones. `seen`: example key → how many runs of the lineage trained on it; those replayed are the
    least trained (at random among equals), so that once the project is covered, successive runs go round all
    of it instead of training the same sample again. A run its time stops early has trained on the front of the
    list, so what it trains is mostly new, and successive runs cover the project."""
    rng = random.Random(seed)
    fresh: list[Example] = []
    old: list[Example] = []
    for e in examples:
        (old if example_key(e) in seen else fresh).append(e)
    fresh.sort(key=lambda e: -e.time)
    replay = min(len(old), max(int(round(cap * replay_share)), cap - len(fresh)))
    rng.shuffle(old)
    old.sort(key=lambda e: seen[example_key(e)])  # stable: at random among the equally trained
    fresh, replayed = fresh[: cap - replay], old[:replay]
    # Among the new ones, seen ones at the replay share from the front (where a run its time stops trains), so
    # that a list longer than the run gets through holds the share too; the rest of them after the new ones.
    among = min(replay, round(len(fresh) * replay_share / max(1e-9, 1 - replay_share)))
    front = min(len(fresh), round(among * (1 - replay_share) / replay_share)) if among else 0
    return _spread(fresh[:front], replayed[:among]) + fresh[front:] + replayed[among:]


def _spread(items: list, extra: list) -> list:
    """`items` in their order with `extra` spread evenly among them (every first part holds its share)."""
    at = [((k + 1) / (len(items) + 1), 0, x) for k, x in enumerate(items)]
    at += [((k + 1) / (len(extra) + 1), 1, x) for k, x in enumerate(extra)]
    return [x for *_, x in sorted(at, key=lambda a: a[:2])]


@dataclass
class Coverage:
    files: int  # project files now
    trained: int  # of those, trained on as they are now (at least one example from that version)
    older: int  # trained on only at an older version
    chars: int
    trained_chars: int
    held: int = 0  # held out for evaluation (the newest): no run trains on them while they are
    left: int = 0  # on the training side and not trained on as they are now
    examples: int = 0  # the training examples the project gives now (what a run draws from)
    trained_examples: int = 0  # of those, trained on by a run of the lineage

    def to_json(self) -> dict:
        return {
            "files": self.files,
            "trained": self.trained,
            "older": self.older,
            "held": self.held,
            "left": self.left,
            "share": round(self.trained_chars / self.chars, 4) if self.chars else 0.0,
            "examples": self.examples,
            "trained_examples": self.trained_examples,
        }

    def describe(self) -> str:
        if not self.files:
            return "no project files"
        older = f", {self.older} more at an older version" if self.older else ""
        rest = f"; {self.held} held out for evaluation, {self.left} still to train on" if self.held else ""
        if self.examples:
            share = self.trained_examples / self.examples
            return (
                f"trained on {self.trained_examples:,} of the {self.examples:,} examples the project gives now "
                f"({share:.0%}), from {self.trained} of its {self.files} files as they are now{older}{rest}"
            )
        share = self.trained_chars / self.chars if self.chars else 0.0
        now = f"{self.trained} of {self.files} project files as they are now"
        return f"trained on {now} ({share:.0%} of the code){older}{rest}"


def coverage(
    rows, files: dict[str, tuple[str, float]], held: AbstractSet[str] = frozenset(), examples: Sequence[Example] = ()
) -> Coverage:
    """How much of `files` (the project now) the examples in `rows` (`trained_rows`) cover; `held`: the paths
    held out for evaluation; `examples`: the training examples the project gives now, of which those in `rows`
    are counted."""
    keys = {key for _run, key, _path, _version in rows}
    now = {example_key(e) for e in examples}
    versions: dict[str, set[str]] = {}
    for _run, _key, path, version in rows:
        if path:
            versions.setdefault(path, set()).add(version or "")
    trained = older = chars = trained_chars = left = 0
    for path, (text, _) in files.items():
        chars += len(text)
        seen = versions.get(path)
        if seen and text_version(text) in seen:
            trained += 1
            trained_chars += len(text)
            continue
        if seen:
            older += 1
        if path not in held and text.strip():  # an empty file has nothing to train on
            left += 1
    return Coverage(
        len(files), trained, older, chars, trained_chars, len(held & files.keys()), left, len(now), len(now & keys)
    )
