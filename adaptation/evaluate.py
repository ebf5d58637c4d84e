"""Held-out metrics and the promotion gate.

Completion quality is measured the way the server completes: the same
`Completer` (context → prompt → llama.cpp engine → post-processing) on the
serving GGUF, with the adapter applied through llama.cpp's adapter API, at
held-out edit points (data/points.py): next-line exact match, and edit
similarity (difflib's ratio of the suggested line to the written one).
pass@1: for held-out revision examples whose tests can run, the greedy
function is written into a scratch copy of the run's state and its tests are
run. Held-out loss: mean token NLL of the held-out targets in transformers.
Parity: llama.cpp with the GGUF adapter and transformers with the PEFT adapter
agree on the top-1 next token.

The gate promotes a candidate only if it beats the current adapter (or the
base model) on completion quality (higher edit similarity, or one within
the noise of the paired difference with a lower held-out loss; exact match
not lower) without lowering pass@1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import math
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from selftune.server.completion.completer import Completer
from selftune.server.completion.project import ProjectIndex
from selftune.server.completion.request import Outcome
from selftune.server.completion.sources import Sources
from selftune.server.settings import Settings

from . import scratch
from .answers import Memo
from .data import Example
from .data.points import Point

PARITY_TOKENS = 384  # per held-out text compared
# target tokens the held-out loss is taken over, per model: a forward pass over every position of a 262k-wide
# head costs seconds per example on a CPU, and past a few thousand tokens the paired difference barely moves
LOSS_TOKENS = 6144
WHOLE = 10**9  # ms a held-out suggestion may wait for its line or block to end: no deadline, however busy the CPU


class Generator:
    """The server's completion path on one model; adapters are switched without reloading it."""

    def __init__(self, model: str, model_path: str = "", *, context_size: int = 2048, threads: int = 0):
        self.settings = Settings(
            model=model,
            model_path=model_path,
            context_size=context_size,
            threads=threads,
            multiline=False,
            max_tokens=48,
            block_wait_ms=WHOLE,
            line_wait_ms=WHOLE,  # held-out lines are measured whole
            cached_documents=0,
            cold_start_tokens=0,  # measured with the whole prompt, however long its prefill
        )
        self.completer = Completer(self.settings)
        self.completer.engine.loaded.wait()
        if self.completer.engine.load_error:
            raise RuntimeError(self.completer.engine.load_error)
        self._n = 0

    def set_adapter(self, path: Path | None) -> None:
        done = asyncio.run(self._set_adapter(path))
        if done:
            raise RuntimeError(done)

    async def _set_adapter(self, path: Path | None) -> str | None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.completer.engine.set_adapter(path, lambda error: loop.call_soon_threadsafe(future.set_result, error))
        return await future

    def complete(self, text: str, offset: int, *, multiline: bool = False, max_tokens: int = 48,
                 temperature: float = 0.0, path: str = "", index: ProjectIndex | None = None,
                 sources: Sources | None = None) -> str:  # fmt: skip
        return self.outcome(text, offset, multiline=multiline, max_tokens=max_tokens, temperature=temperature,
                            path=path, index=index, sources=sources).text or ""  # fmt: skip

    def outcome(self, text: str, offset: int, *, multiline: bool = False, max_tokens: int = 48,
                temperature: float = 0.0, path: str = "", index: ProjectIndex | None = None,
                sources: Sources | None = None, cold_start: int = 0) -> Outcome:  # fmt: skip
        """The server's answer at `offset` in `text` (the file `path`, with its project `index`), as a first
        suggestion after opening the file: nothing of it is in the model's cache. `cold_start`: the server's
        `coldStartTokens` (0: the whole prompt, however long its prefill)."""
        sources = sources or Sources()
        settings = dataclasses.replace(self.settings, multiline=multiline, max_tokens=max_tokens,
                                       temperature=temperature, context_definitions=sources.definitions,
                                       context_similar=sources.similar, context_recent=sources.recent,
                                       context_after_cursor=sources.after, cold_start_tokens=cold_start,
                                       cached_documents=1 if cold_start else 0)  # fmt: skip
        if settings != self.completer.settings:
            self.completer.update_settings(settings)
        self._n += 1  # a fresh key each time: points are unrelated documents
        key = f"eval-{self._n}"
        try:
            return asyncio.run(self.completer.complete(key, text, offset, language_id="python", path=path,
                                                       index=index))  # fmt: skip
        finally:
            self.completer.forget(key)  # no whole prompt evaluated behind the next measurement

    def close(self) -> None:
        self.completer.close()


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def completion_metrics(gen: Generator, points: list[Point], progress=lambda done, total: None,
                       lines: list[str] | None = None, index: ProjectIndex | None = None,
                       memo: Memo | None = None) -> dict:  # fmt: skip
    """Next-line exact match and edit similarity at `points`, completed with the project `index` as the server
    completes them, or as `memo` remembers this model completed them; each completed line is appended to `lines`.
    `eval_seconds`: what the answers took when they were computed (remembered ones included)."""
    exact, sims, seconds, remembered = [], [], 0.0, 0
    for i, p in enumerate(points):
        known = memo.get(p) if memo is not None else None
        if known is not None:
            (line, took), remembered = known, remembered + 1
        else:
            started = time.perf_counter()
            line = gen.complete(p.text, p.offset, path=p.path, index=index).split("\n", 1)[0].rstrip()
            took = time.perf_counter() - started
            if memo is not None:
                memo.put(p, line, took)
        exact.append(line == p.target.rstrip())
        sims.append(similarity(line, p.target.rstrip()))
        seconds += took
        if lines is not None:
            lines.append(line)
        progress(i + 1, len(points))
    if memo is not None and remembered < len(points):
        memo.save()
    if not points:
        return {"points": 0}
    return {"points": len(points), "exact_match": sum(exact) / len(points), "edit_similarity": statistics.fmean(sims),
            "similarities": [round(s, 4) for s in sims], "eval_seconds": round(seconds, 1),
            "remembered": remembered}  # fmt: skip


def take_function(text: str) -> str:
    """The first function of generated text: its header line and the lines indented under it."""
    lines = text.splitlines()
    if not lines:
        return ""
    indent = len(lines[0]) - len(lines[0].lstrip())
    out = [lines[0]]
    for line in lines[1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent and not line.lstrip().startswith((")", "]", "}")):
            break
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def runnable(examples: list[Example]) -> list[Example]:
    return [e for e in examples if e.kind == "revision" and e.tests and e.meta.get("source") == "test_fix"]


def check_function(root: Path, conn: sqlite3.Connection, e: Example, candidate: str, timeout: float) -> bool | None:
    """Do `e`'s tests pass with `candidate` in place of its function? None: the state cannot be rebuilt."""
    with tempfile.TemporaryDirectory(prefix="selftune-check-") as tmp:
        where = scratch.materialize(root, conn, e.meta["passing_run"], Path(tmp) / "ws")
        target = where / e.meta["path"]
        if not target.is_file():
            return None
        text = scratch.replace_function(target.read_text(encoding="utf-8"), e.meta["function"], candidate)
        if text is None:
            return False  # the candidate does not parse in place
        target.write_text(text, encoding="utf-8")
        passed, _ = scratch.run_tests(where, list(e.tests), scratch.interpreter(root), timeout)
        return passed


def generate_function(gen: Generator, prompt: str, temperature: float = 0.0) -> str:
    return take_function(gen.complete(prompt, len(prompt), multiline=True, max_tokens=320, temperature=temperature))


def pass_at_1(
    gen: Generator, root: Path, conn: sqlite3.Connection | None, examples: list[Example], timeout: float
) -> dict:
    if conn is None:
        return {"pass_examples": 0}
    results = []
    for e in runnable(examples):
        ok = check_function(root, conn, e, generate_function(gen, e.prompt), timeout)
        if ok is not None:
            results.append(ok)
    if not results:
        return {"pass_examples": 0}
    return {"pass_examples": len(results), "pass_at_1": sum(results) / len(results)}


def heldout_loss(model, tokenizer, examples: list[Example], max_length: int, budget: int = LOSS_TOKENS) -> float | None:
    """Mean NLL per target token of held-out examples (the model as it is set up now), over about `budget` target
    tokens taken round the held-out files in turn: the same tokens on every call with the same examples, so two
    models' losses are paired."""
    import torch

    from .loss import target_loss
    from .train import fit_prompt

    total, count = 0.0, 0
    model.eval()
    for e in round_the_groups([e for e in examples if e.kind != "preference"]):
        if count >= budget:
            break
        prompt, _ = fit_prompt(tokenizer, e.prompt, e.target, max_length)
        p = tokenizer(prompt, add_special_tokens=True).input_ids if prompt else [tokenizer.bos_token_id]
        t = tokenizer(e.target, add_special_tokens=False).input_ids[: max_length - len(p)]
        if not t:
            continue
        ids = torch.tensor([p + t], device=model.device)
        labels = ids.clone()
        labels[0, : len(p)] = -100
        with torch.no_grad():  # the head only where the loss is taken: the prompt costs the layers alone
            loss, _ = target_loss(model, {"input_ids": ids, "labels": labels})
        total += float(loss) * len(t)
        count += len(t)
    return total / count if count else None


def round_the_groups(examples: list[Example]) -> list[Example]:
    """`examples` reordered to take one of each group (file or function) in turn, in their first-seen order."""
    by_group: dict[str, list[Example]] = {}
    for e in examples:
        by_group.setdefault(e.group, []).append(e)
    queues = list(by_group.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def parity(engine, model, tokenizer, texts: list[str]) -> float | None:
    """Share of positions where llama.cpp (as set up now) and transformers agree on the top-1 token.

    llama.cpp runs on the engine's own thread (`Engine.exclusive`): a generation may still be going on
    there after its request was answered, and two threads in one llama.cpp context crash it."""
    import numpy as np
    import torch

    token_lists, theirs = [], []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids[:, :PARITY_TOKENS]
        with torch.no_grad():
            theirs.append(model(ids.to(model.device)).logits[0].argmax(-1).cpu().numpy())
        token_lists.append(ids[0].tolist())

    def top1(backend) -> list[list[int]]:
        out = []
        for tokens in token_lists:
            backend.clear()
            ours = []
            for start in range(0, len(tokens), backend.prefill_chunk):
                part = tokens[start : start + backend.prefill_chunk]
                backend.decode(part, all_logits=True)
                ours += [int(np.argmax(backend.logits(i))) for i in range(len(part))]
            out.append(ours)
        return out

    ours = engine.exclusive(top1)
    agree = sum(int((np.array(o) == t).sum()) for o, t in zip(ours, theirs))
    total = sum(len(t) for t in token_lists)
    return agree / total if total else None


def noise(candidate: dict, current: dict) -> float | None:
    """The standard error of the candidate's edit similarity less the adapter in use's, point by point over the
    same held-out points (None without both models' per-point figures)."""
    a, b = candidate.get("similarities") or [], current.get("similarities") or []
    if len(a) != len(b) or len(a) < 2:
        return None
    return statistics.stdev(x - y for x, y in zip(a, b)) / math.sqrt(len(a))


def gate(candidate: dict, current: dict, base: dict | None = None) -> tuple[bool, str]:
    """(promote?, why) comparing held-out metrics of the candidate with the adapter in use (or the base). First, a
    candidate whose held-out loss is above the `base` model's on the same examples predicts the project's newest
    code worse than no adapter: it is refused, whatever a few dozen greedy lines say (the steadiest of the
    measures; an adapter trained on garbage once won on 8 points by 0.002 of edit similarity).

    Then the candidate must beat the adapter in use's edit similarity, or come within its noise of it (one standard
    error of the per-point difference) with a lower held-out loss on the same examples; and its exact match and
    pass@1 must not be lower. The second way in is for the adapter in use that won on these very points: its score
    there is the best of several draws, and later runs that learned more (a lower loss) would otherwise have to
    beat its luck, not it."""
    if not candidate.get("points"):
        return False, "no held-out edit points to judge completion quality on"
    c_loss, b_loss = candidate.get("heldout_loss"), (base or {}).get("heldout_loss")
    if c_loss is not None and b_loss is not None and c_loss > b_loss:
        return False, f"held-out loss {c_loss:.3f} is above the base model's {b_loss:.3f}"
    c_sim, o_sim = candidate["edit_similarity"], current.get("edit_similarity", 0.0)
    c_em, o_em = candidate["exact_match"], current.get("exact_match", 0.0)
    o_loss, spread = current.get("heldout_loss"), noise(candidate, current)
    learned = c_loss is not None and o_loss is not None and c_loss < o_loss
    within = learned and spread is not None and o_sim - c_sim < spread
    if c_sim <= o_sim and not within:
        why = f"edit similarity {c_sim:.3f} does not beat {o_sim:.3f}"
        if learned and spread is not None:
            why += f", and is lower by more than its noise (±{spread:.3f}) for the lower held-out loss to count"
        return False, why
    if c_em < o_em:
        return False, f"exact match {c_em:.1%} is below {o_em:.1%}"
    if "pass_at_1" in candidate and "pass_at_1" in current and candidate["pass_at_1"] < current["pass_at_1"]:
        return False, f"pass@1 {candidate['pass_at_1']:.1%} is below {current['pass_at_1']:.1%}"
    why = f"edit similarity {o_sim:.3f} → {c_sim:.3f}, exact match {o_em:.1%} → {c_em:.1%}"
    if c_sim <= o_sim:
        why = f"held-out loss {o_loss:.3f} → {c_loss:.3f}; {why}, within its noise (±{spread:.3f})"
    return True, why
