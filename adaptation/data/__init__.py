"""Training data: pure functions of the journal and the repository.

Every builder returns `Example`s; `build` collects them all and `split.by_time`
holds out the newest 20 %. What each kind is, and the paper it comes from:

- ``revision`` (SEED): the code before a function or region, plus the test's
  error when one failed → the code as it was revised (revisions.py);
- ``preference`` (CodeLutra): (prompt, chosen, rejected) from fail→pass pairs,
  from accepted completions the user rewrote, and from self-revision
  (preferences.py, ../selfrevise.py);
- ``edit`` and ``lintseq`` (LintSeq): next-edit samples in LintSeq's text
  format, from the user's settled edit steps and from synthetic lint-clean
  insertion sequences of the project's own files (edits.py, lintseq.py);
- ``insertion``: the same settled edit steps in the server's own format,
  the file up to a block a step added → the block (insertions.py);
- ``code`` and ``fim``: the project's files as plain continuation, and as
  fill-in-the-middle where the model has FIM tokens (corpus.py).

`group` names what must not be split across training and held-out data: a
file (`path`) or a function (`path::Class.method`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    kind: str  # revision | preference | edit | lintseq | insertion | code | fim
    prompt: str  # no loss is taken on it
    target: str  # what the model learns to write (the chosen answer, for a preference)
    time: float  # when it was written: the split holds out the newest
    group: str  # a file or function; never on both sides of the split
    rejected: str = ""  # preferences: the failing / rewritten answer
    tests: tuple[str, ...] = ()  # node ids that check a revision (pass@1, self-revise)
    meta: dict = field(default_factory=dict, compare=False)  # where it came from (run ids, commit, ...)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "prompt": self.prompt,
            "target": self.target,
            "time": self.time,
            "group": self.group,
            "rejected": self.rejected,
            "tests": list(self.tests),
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict) -> Example:
        return cls(d["kind"], d["prompt"], d["target"], d["time"], d["group"], d.get("rejected", ""),
                   tuple(d.get("tests", ())), d.get("meta") or {})  # fmt: skip
