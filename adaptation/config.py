"""The adaptation recipe's knobs, each with what it does.

A workspace can set any of them in the `[adapt]` table of its
`.selftune/config.toml` (what the server's automatic runs use; see
`from_workspace` for what an untrusted workspace may not turn on), and
`selftune adapt --set key=value` (or `selftune eval --set`) overrides one for
a single run, over the workspace's value (`override`). The defaults are the
best the adaptation benchmark has found so far; its figures are in
docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Knobs that run the project's code: only a trusted workspace may have them on.
RUNS_CODE = ("run_tests", "self_revise")


@dataclass
class Config:
    # --- data ---
    # the git history a run trains on: first the commits made since the journal's last import (the newest this many)
    # are imported, as the server does when it starts, so a workspace no server has opened has its history too; the
    # server passes its historyDepth (0 with record off); 0: none imported here
    history_depth: int = 200
    held_share: float = 0.2  # newest share of examples held out for evaluation (whole files/functions)
    window_chars: int = 2400  # project code is cut into windows of at most this many characters
    fim_share: float = 0.5  # share of code windows turned into fill-in-the-middle (FIM models only)
    lintseq_per_file: int = 1  # synthetic LintSeq sequences per project file (0: none)
    lintseq_share: float = 0.15  # at most this share of training examples are LintSeq samples
    # examples per epoch, sampled across kinds; a run with a time plan (`minutes`) and no preference rounds after SFT
    # goes on past them, wave after wave drawn the same way, while its time lasts (train.to_train)
    max_train_examples: int = 400
    # share of those taken from project code first (continuation/FIM, the serving format); the rest go round the kinds
    code_share: float = 1.0
    max_points: int = 60  # held-out edit points for next-line exact match / similarity
    # runs build on each other: go on training the adapter in use (when its LoRA has this shape), on the examples
    # its runs have not seen first, plus this share of seen ones replayed; false: every run starts from the base.
    # 5 %: one project's parts differ less than two English web corpora, where a few per cent of replay kept what was
    # learned (Ibrahim et al. 2024, arXiv 2403.08763); 25 % left 15 % of pydantic untrained after two hours
    warm_start: bool = True
    replay_share: float = 0.05
    # training where the model is wrong: the run draws this many candidates (more than max_train_examples) the way it
    # draws what it trains on, the model in use completes a line of each, and the run trains on max_train_examples of
    # them, those it got wrong first, the nearest misses first (wrong_first.py); 0: off (max_train_examples drawn)
    error_driven: int = 0
    # false: the same candidates, not checked, taken in a random order (the baseline error_driven is measured against)
    error_check: bool = True
    # --- LoRA ---
    rank: int = 16  # LoRA rank r
    alpha: int = 32  # LoRA alpha; updates are scaled by alpha / r (llama.cpp does the same)
    # LoRA dropout while training; 0 spares the CPU a random mask per adapted layer and example, a fifth of a step
    # (docs/benchmarks.md, "Training speed on the CPU")
    dropout: float = 0.0
    lora_layers: int = 0  # LoRA on the last N decoder layers only (the backward pass stops below them); 0: all
    # on the CPU, SFT's softmax over the tokens the run's sequences use and those the model likely predicts there
    # (about 6k of Gemma's 262k), not the whole vocabulary: code windows train 2.4x faster, and in the same time
    # better on click; an approximation that leaves out the model's probability on other tokens (2-3 %), which the
    # run reports (loss.py, docs/benchmarks.md); false: the exact loss
    project_vocab: bool = True
    # --- training ---
    epochs: float = 1.0  # passes over the (sampled) SFT examples
    learning_rate: float = 1e-4  # AdamW rate for the LoRA weights
    batch_size: int = 4  # examples per optimizer step
    # on the CPU, SFT's rows per forward pass (the rest of a batch by gradient accumulation), rows of like length
    # together: fewer, larger matrix products; 1: a row a pass, the least memory (docs/benchmarks.md)
    micro_batch: int = 4
    max_length: int = (
        512  # tokens per example; a longer prompt loses its beginning, a longer code window is split into pieces
    )
    warmup_ratio: float = 0.05  # share of steps with a linearly rising rate
    dpo_rounds: int = 1  # CodeLutra rounds on preference pairs (each samples rejected answers from the last round)
    dpo_beta: float = 0.1  # DPO temperature: how far the policy may move from the reference
    dpo_epochs: float = 1.0  # passes over the preference pairs per round
    samples_per_prompt: int = 2  # CodeLutra: answers sampled per prompt in rounds after the first
    # --- self-revision (SEED) ---
    # run the project's tests in scratch copies (self-revision, pass@1, round labels); trusted workspaces only;
    # the server sets it from test feedback
    run_tests: bool = True
    self_revise: bool = True  # let the model propose fixes for failing examples and keep those the tests pass
    revise_candidates: int = 3  # proposals per failing example
    revise_max_examples: int = 8  # failing examples tried per run
    revise_seconds: float = 300.0  # time bound for all self-revision of one run
    test_timeout: float = 60.0  # seconds one scratch test run may take
    # --- time ---
    # the minutes a run plans for, from its start to its verdict: the models the new adapter is compared with are
    # evaluated first, and training stops early enough for the new adapter's evaluation (0: no limit; a distributed
    # run keeps no limit)
    minutes: float = 20.0
    # --- machine ---
    device: str = "auto"  # "auto" (CUDA if present), "cuda" or "cpu"
    # on a CPU with native bf16 (AVX512-BF16, AMX), train in bf16 as on CUDA: the base's weights held in bf16,
    # LoRA's own in fp32, matrix products under autocast; faster (docs/benchmarks.md); false: plain fp32
    cpu_bf16: bool = True
    # CPU threads for torch and llama.cpp; 0: every core the process may use (its affinity and cgroup quota);
    # `selftune adapt` runs niced: the editor's server comes first
    threads: int = 0
    seed: int = 0  # makes sampling, shuffling and initialization reproducible

    def override(self, pairs: list[str]) -> Config:
        """A copy with `key=value` overrides; the error names the knob and what it takes."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        values: dict[str, Any] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                raise ValueError(f"--set {pair!r}: expected key=value with key one of {', '.join(fields)}")
            kind = type(getattr(self, key))
            try:
                values[key] = (raw.strip().lower() in ("1", "true", "yes", "on")) if kind is bool else kind(raw)
            except ValueError:
                raise ValueError(f"--set {key}={raw!r}: {key} takes a {kind.__name__}") from None
        return dataclasses.replace(self, **values)

    def from_workspace(self, root, *, trusted: bool) -> tuple[Config, list[str]]:
        """A copy with the `[adapt]` table of `root/.selftune/config.toml` applied, and notes on what was not.

        The file is the workspace's, which a repository can ship: unless the workspace is trusted it cannot
        turn on what runs the project's code (`run_tests`, `self_revise`) nor lengthen `test_timeout`, and a
        file git tracks is ignored entirely.
        """
        from pathlib import Path

        from selftune.server.workspace import read_config

        found = read_config(Path(root))
        if found.tracked and not trusted:
            return self, [
                f"{found.path} is tracked by git, so it came with the repository: it is ignored until "
                f"you trust this workspace"
            ]
        table, bad = found.table("adapt")
        if found.problems or bad:
            raise ValueError("; ".join(found.problems + tuple(bad)))
        if not table:
            return self, []
        table = dict(table)
        notes = []
        if not trusted:
            for key in RUNS_CODE:
                if key in table and str(table[key]).lower() in ("1", "true", "yes", "on"):
                    notes.append(f"{found.path}: {key} = true is ignored: the workspace is not trusted")
                    del table[key]
            if "test_timeout" in table:
                del table["test_timeout"]  # only what runs the project's code reads it, and nothing does here
        try:
            return self.override([f"{k}={v}" for k, v in table.items()]), notes
        except ValueError as exc:
            raise ValueError(f"{found.path} [adapt]: {exc}") from None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
