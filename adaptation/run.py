"""`selftune adapt` and `selftune eval`: one adaptation run, from the journal to a promoted adapter.

`adapt` reads the workspace's journal and repository, builds the datasets,
lets the model in use revise failing code (SEED), trains a LoRA adapter
(train.py), exports it to GGUF, evaluates base, previous and candidate on the
held-out data through the server's own completion path, checks llama.cpp /
transformers parity, and promotes the candidate only if the gate says so:
`.selftune/adapters/<id>/` gets the PEFT adapter, `adapter.gguf` and
`meta.json`, `.selftune/adapters/current` is replaced atomically, and the run is
recorded in the journal's `adaptation_runs`. One run per workspace at a time
(a lock file); a run that fails leaves the current adapter in place and says why.
Under `accelerate launch` the other processes only train (distributed.py).

`evaluate_current` is `selftune eval`: the held-out metrics of the base model
and of the current adapter, written to `.selftune/reports/eval.json`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from selftune.server import adapters, workspace
from selftune.server.journal import catch_up_history
from selftune.server.journal.migrations import migrate
from selftune.server.journal.queries import open_readonly
from selftune.server.journal.rows import insert
from selftune.server.journal.store import connect
from selftune.server.models import Manifest, load_manifest
from selftune.server.trust import Trust, decide

from . import base, evaluate, export, lineage, selfrevise, train, wrong_first
from .answers import Answers, Memo, loss_key
from .budget import Budget
from .config import RUNS_CODE, Config
from .data import Example, dataset, split
from .distributed import Job, Team, train_only
from .progress import Pace, Reporter

PARITY_MIN = 0.9  # below this the export is wrong, whatever the metrics say


class AdaptError(RuntimeError):
    """A run that cannot go on; the message says why and what to do."""


def current_adapter(root: Path) -> tuple[str, Path] | None:
    """(id, GGUF path) of the promoted adapter, if its file is there (the server reads it the same way)."""
    found = workspace.current_adapter(root)
    return found if found and found[1].is_file() else None


def promote(root: Path, adapter_id: str) -> None:
    adapters.point_current_at(root, adapter_id)


@contextmanager
def one_run(root: Path):
    workspace.adapters_dir(root).mkdir(parents=True, exist_ok=True)
    with open(workspace.run_lock(root), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AdaptError(f"another selftune adapt is running in {root}") from None
        yield


def _catch_up_history(root: Path, cfg: Config, reporter: Reporter) -> None:
    """The journal's git history brought up to date (`history_depth`), as the server brings it when it starts."""
    if cfg.history_depth <= 0:
        return
    reporter.phase("data", "importing the git history into the journal")

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:  # about twenty messages, however deep
            reporter.phase("data", f"importing the git history: commit {done}/{total}", 0.5 * done / max(1, total))

    try:
        count = catch_up_history(root, cfg.history_depth, progress)
    except Exception as exc:  # git trouble costs the run the new commits, not the run (as in the server)
        reporter.phase("data", f"the git history could not be imported ({exc}): the run trains without it")
        return
    if count:
        reporter.phase("data", f"imported {count} git commits into the journal")


def _journal(root: Path) -> sqlite3.Connection | None:
    path = workspace.journal_path(root)
    return open_readonly(path) if path.exists() else None


@dataclasses.dataclass
class Pick:
    """Which SFT examples a run trains on: what the adapter's lineage has not seen first (some replayed) when it goes
    on from it; or, once the run has drawn its candidates and checked them (`error_driven`), those candidates in the
    order `chosen` gives. Data, so the other processes of a distributed run pick the same."""

    seen: Mapping[str, int]  # example key → how many runs of the lineage trained on it
    replay_share: float
    seed: int
    chosen: list[str] | None = None  # example keys, in the order to take them

    def __call__(self, examples: list[Example], cap: int, goes_on: bool) -> list[Example]:
        if self.chosen is not None:
            by_key = {lineage.example_key(e): e for e in examples}
            return [by_key[k] for k in self.chosen if k in by_key][:cap]
        if goes_on:
            return lineage.fresh_first(examples, self.seen, cap, self.replay_share, self.seed)
        return examples

    def candidates(self, examples: list[Example], n: int, goes_on: bool, code_share: float) -> list[Example]:
        """The `n` examples the run would train on if it trained on `n` (in a seeded random order)."""
        sft = [e for e in examples if e.kind in train.SFT_KINDS]
        return train.sample_sft(self(sft, n, goes_on), n, self.seed, code_share)


def record(root: Path, row: dict, trained: Sequence[dict] = ()) -> None:
    """The run in the journal's adaptation_runs, and the examples it trained on (the server may be writing too:
    WAL, busy timeout). A workspace the server never recorded in gets a journal holding only its runs: without
    it the next run would not know what this one trained on, nor go on from it."""
    path = workspace.journal_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        insert(conn, "adaptation_runs", row, verb="INSERT OR REPLACE")
        for example in trained:
            insert(conn, "trained_examples", example, verb="INSERT OR IGNORE")
        conn.execute("COMMIT")
    finally:
        conn.close()


def token_counter(manifest: Manifest, model_path: str):
    """Tokens of a text in the serving model's vocabulary: training prompts are sized as the server sizes them."""
    from selftune.server.completion.llama import TokenCounter
    from selftune.server.models import resolve_weights

    return TokenCounter(resolve_weights(manifest, model_path))


def _generator(manifest: Manifest, model_path: str, cfg: Config) -> evaluate.Generator:
    # The gate compares base and adapted on the same prompts; at most 2048 tokens of context keeps its two passes
    # over the held-out points affordable on a CPU (the server may use more: the manifest's size).
    return evaluate.Generator(
        manifest.name, model_path, context_size=min(2048, manifest.context_size), threads=cfg.threads
    )


def _measure(gen: evaluate.Generator, adapter: Path | None, data, root: Path, conn, cfg: Config,
             progress=lambda done, total: None, memo: Memo | None = None) -> dict:  # fmt: skip
    gen.set_adapter(adapter)
    metrics = evaluate.completion_metrics(gen, data.points, progress, index=data.index, memo=memo)
    if cfg.run_tests:
        started = time.monotonic()
        metrics |= evaluate.pass_at_1(gen, root, conn, data.held, cfg.test_timeout)
        metrics["pass_seconds"] = round(time.monotonic() - started, 1)
    return metrics


def _answers(root: Path, manifest: Manifest, model_path: str, data, gen: evaluate.Generator) -> Answers:
    from selftune.server.models import resolve_weights

    return Answers(root, data.files, gen.settings, resolve_weights(manifest, model_path))


def _evaluation_progress(reporter: Reporter, names: list[str], phase: str = "evaluate"):
    """`progress(name)`: the held-out evaluation's progress callback for the model `name`, one model after
    another over the same points, with the time left for all of them."""
    pace = Pace()
    labels = {"base": "the base model", "previous": "the adapter in use", "candidate": "the new adapter"}

    def progress(name: str):
        before = names.index(name)

        def report(done: int, total: int) -> None:
            step, steps = before * total + done, len(names) * total
            left = pace.left(step, steps)
            message = f"held-out evaluation, {labels.get(name, name)}: {done}/{total}"
            reporter.phase(phase, message + (f", {left} left" if left else ""), step / steps)

        return report

    return progress


def within_trust(root: Path, cfg: Config, trust: Trust | None, reporter: Reporter) -> tuple[Config, dict]:
    """`cfg` with everything that runs the project's code turned off unless the workspace is trusted, and what
    the run's report says about it."""
    trust = trust or decide(root, None)
    if trust.trusted:
        return cfg, {"trusted": True, "why": trust.why()}
    off = [key for key in RUNS_CODE if getattr(cfg, key)]
    note = {"trusted": False, "why": trust.why(), "off": off, "how": trust.how()}
    if off:
        reporter.phase("data", f"the project's code does not run ({', '.join(off)} off): {trust.why()}")
    return dataclasses.replace(cfg, run_tests=False, self_revise=False), note


def adapt(
    root: Path,
    *,
    model: str = "gemma3-270m",
    model_path: str = "",
    cfg: Config | None = None,
    reporter: Reporter | None = None,
    trust: Trust | None = None,
) -> dict:
    """One adaptation run; returns what meta.json holds. Raises AdaptError when it cannot run.

    `trust`: whether the project's code may run (tests in scratch copies, self-revision); by default the user's
    trust list decides (server/trust.py)."""
    cfg = cfg or Config()
    reporter = reporter or Reporter()
    team = Team()
    if not team.main:
        return train_only(team)
    try:
        return _main_process(root, model, model_path, cfg, reporter, trust, team)
    finally:
        team.release()


def _main_process(
    root: Path, model: str, model_path: str, cfg: Config, reporter: Reporter, trust: Trust | None, team: Team
) -> dict:
    root = root.resolve()
    cfg, trusted = within_trust(root, cfg, trust, reporter)
    manifest = load_manifest(model)
    with one_run(root):
        started = time.time()
        adapter_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(started)) + "-" + secrets.token_hex(2)
        out = workspace.adapters_dir(root) / adapter_id
        out.mkdir(parents=True)
        trained: list[dict] = []
        meta = {
            "id": adapter_id,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            "base": manifest.name,
            "base_sha256": manifest.weights.get("sha256"),
            "config": cfg.to_json(),
            "trust": trusted,
        }
        try:
            meta |= _adapt(root, manifest, model_path, cfg, reporter, out, meta, trained, team)
        except Exception as exc:
            meta |= {"decision": "failed", "error": f"{type(exc).__name__}: {exc}"}
            raise
        finally:
            meta["seconds"] = round(time.time() - started, 1)
            (out / "meta.json").write_text(json.dumps(meta, indent=2))
            record(
                root,
                {
                    "id": adapter_id,
                    "started": started,
                    "ended": time.time(),
                    "base": manifest.name,
                    "decision": meta.get("decision", "failed"),
                    "reason": meta.get("reason") or meta.get("error"),
                    "examples": meta.get("examples"),
                    "metrics": json.dumps(meta.get("compare", {})),
                    "warm_from": meta.get("warm_from"),
                    "tokens": (meta.get("training") or {}).get("tokens"),
                },
                trained if meta.get("decision") in ("promoted", "kept") else [],
            )
            reporter.close()
        return meta


# the knobs that set how fast a run trains: a run with other values says little about this one's pace
PACE_KNOBS = ("device", "cpu_bf16", "threads", "project_vocab", "lora_layers", "rank", "max_length")


def last_rate(root: Path, cfg: Config) -> float | None:
    """The training tokens/s of the newest run here that recorded it with the same pace knobs as `cfg` (the same
    machine, most likely): after `--set project_vocab=false`, say, the last default run's pace would be 2× off."""
    wanted = {k: v for k, v in cfg.to_json().items() if k in PACE_KNOBS}
    for adapter in reversed(adapters.listed(root)):
        recipe = adapter.get("config") or {}
        if any(recipe.get(k, v) != v for k, v in wanted.items()):
            continue
        rate = (adapter.get("metrics") or {}).get("train_tokens_per_s")
        if isinstance(rate, (int, float)) and rate > 0:
            return float(rate)
    return None


def warm_start(root: Path, manifest: Manifest, cfg: Config, conn) -> tuple[Path | None, list[str], str]:
    """(the PEFT adapter to go on from, the lineage behind it, a note on the choice) for a run: the adapter in use,
    when it was trained on this base model and its PEFT files are there, or the newest run that went on from it
    with a held-out loss below the base model's although the gate kept it out (`lineage.frontier`)."""
    found = workspace.current_adapter(root)
    adapter_id: str | None = found[0] if found else None
    ahead = lineage.frontier(conn, adapter_id, manifest.name) if cfg.warm_start else None
    note = ""
    if ahead is not None and (workspace.adapters_dir(root) / ahead[0] / "peft" / "adapter_config.json").is_file():
        adapter_id, loss, before = ahead
        note = (f"went on from {adapter_id}: the gate kept it out, but its held-out loss {loss:.3f} is below"
                f" {before:.3f}, the base model's")  # fmt: skip
    if not cfg.warm_start or not adapter_id:
        return None, [], "" if adapter_id else "no adapter in use: a new one from the base model"
    folder = workspace.adapters_dir(root) / adapter_id
    try:
        base_name = json.loads((folder / "meta.json").read_text()).get("base")
    except (OSError, ValueError, AttributeError):
        base_name = None
    if base_name != manifest.name:
        return None, [], f"adapter {adapter_id} is not one of {manifest.name}'s: a new one"
    if not (folder / "peft" / "adapter_config.json").is_file():
        return None, [], f"adapter {adapter_id} has no PEFT files to go on from: a new one"
    return folder / "peft", lineage.chain(conn, adapter_id), note


def _adapt(
    root: Path,
    manifest: Manifest,
    model_path: str,
    cfg: Config,
    reporter: Reporter,
    out: Path,
    meta: dict,
    trained: list[dict],
    team: Team,
) -> dict:
    budget = Budget.of(cfg.minutes, time.monotonic())
    _catch_up_history(root, cfg, reporter)
    conn = _journal(root)
    reporter.phase("data", "building datasets from the journal and the repository")
    data = dataset.build(root, conn, manifest.prompt, cfg, measure=token_counter(manifest, model_path),
                         cache=workspace.data_cache(root))  # fmt: skip
    if budget is not None and team.size == 1:
        reporter.phase("data", f"the run plans for {cfg.minutes:g} min: its verdict by {budget.until()}")
    else:
        budget = None
    if not data.train:
        raise AdaptError("nothing to train on: no Python files in the repository and nothing in the journal")
    location, gguf = base.prepare(manifest, model_path, progress=lambda m: reporter.phase("base", m))
    previous = current_adapter(root)
    warm, chain, warm_why = warm_start(root, manifest, cfg, conn)
    before = lineage.trained_rows(conn, chain)
    seen = Counter(key for _run, key, _path, _version in before)

    scores: dict[str, float] = {}  # each checked candidate's line: how close the model in use came
    gen = _generator(manifest, model_path, cfg)
    try:
        revised: dict = {}
        if cfg.self_revise and cfg.run_tests and conn is not None and evaluate.runnable(data.train):
            reporter.phase("revise", "self-revision: the model fixes failing code, the tests decide")
            gen.set_adapter(previous[1] if previous else None)
            found, revised = selfrevise.revise(
                gen,
                root,
                conn,
                data.train,
                cfg,
                progress=lambda d, t: reporter.phase("revise", f"self-revision {d}/{t}", d / t),
            )
            data.train += found

        pick = Pick(seen, cfg.replay_share, cfg.seed)
        checked = 0
        if cfg.error_driven > 0:
            drawn = pick.candidates(data.train, cfg.error_driven, warm is not None, cfg.code_share)
            if cfg.error_check:
                reporter.phase("check", "what the model in use already completes right")
                gen.set_adapter(previous[1] if previous else None)
                scores, checked = wrong_first.check(
                    lambda text: gen.complete(text, len(text), sources=wrong_first.NO_BLOCKS),
                    drawn,
                    cfg.seed,
                    progress=lambda d, t: reporter.phase("check", f"checked {d}/{t}", d / t),
                )
            pick.chosen = wrong_first.wrong_first(drawn, scores)

        # The models the new adapter is compared with, first: their answers, remembered or measured now, say what
        # the new adapter's evaluation will take, and training takes what the run's time leaves.
        answers = _answers(root, manifest, model_path, data, gen)
        incumbents = {"base": None} | ({"previous": previous} if previous else {})
        progress = _evaluation_progress(reporter, list(incumbents), "reference")
        compare = {}
        for name, incumbent in incumbents.items():
            adapter_id, path = incumbent or (None, None)
            compare[name] = _measure(gen, path, data, root, conn, cfg, progress(name), answers.of(adapter_id))
        kind = train.precision(cfg, base.training_device(cfg.device))
        base_memo, held_key = answers.of(None), loss_key(data.held, cfg.max_length, kind)
        base_loss = base_memo.loss(held_key)
        if budget is not None:
            base_m = compare["base"]
            models = 1 if base_loss is not None else 2  # the new adapter's held-out loss, and the base's if not known

            def answers_took(m: dict) -> float:
                return m.get("eval_seconds", 0.0) + m.get("pass_seconds", 0.0)

            adapter_m = compare.get("previous")  # its answers say what an adapter's take on this machine
            budget.reserve(answers_took(base_m), models * evaluate.LOSS_TOKENS,
                           answers_took(adapter_m) if adapter_m else None)  # fmt: skip

        def judge(e, answer):  # CodeLutra rounds: the tests label sampled answers where they can run
            if not (cfg.run_tests and conn and e.tests):
                return None
            return evaluate.check_function(root, conn, e, answer, cfg.test_timeout)

        job = Job(location, manifest.lora_targets, data.train, cfg, warm, pick)
        team.share(lambda: job)  # the other processes of a distributed run train on the same
        result = train.train(job.location, job.targets, job.examples, cfg, out, reporter, judge=judge, warm=warm,
                             pick=job.pick, expected_rate=last_rate(root, cfg), share=team.share,
                             budget=budget)  # fmt: skip
        if result.warm_from is None:
            chain, before, seen = [], [], Counter()
        for e in result.trained:
            trained.append({"run_id": out.name, "key": lineage.example_key(e), "kind": e.kind, "path": e.group,
                            "version": lineage.example_version(e, data.files)})  # fmt: skip
        reporter.phase("export", "exporting the adapter to GGUF")
        adapter_gguf = export.export(result.adapter_dir, gguf, out / export.ADAPTER_FILE)

        reporter.phase("evaluate", f"held-out evaluation at {len(data.points)} edit points")
        progress = _evaluation_progress(reporter, ["candidate"])
        new_memo = answers.of(out.name)
        compare["candidate"] = _measure(gen, adapter_gguf, data, root, conn, cfg, progress("candidate"), new_memo)
        model = result.model
        texts = [e.target for e in data.held if e.kind == "code"][:3] or [e.target for e in data.train][:3]
        compare["candidate"]["parity_top1"] = evaluate.parity(gen.completer.engine, model, result.tokenizer, texts)
        compare["candidate"]["heldout_loss"] = evaluate.heldout_loss(model, result.tokenizer, data.held, cfg.max_length)
        if compare["candidate"]["heldout_loss"] is not None:  # kept for the next run's gate, if this one is promoted
            new_memo.put_loss(held_key, compare["candidate"]["heldout_loss"])
            new_memo.save()
        if previous:  # the adapter in use's, as it was measured when it was new, on the same held-out examples
            compare["previous"]["heldout_loss"] = answers.of(previous[0]).loss(held_key)
        if base_loss is None:
            with model.disable_adapter():
                base_loss = evaluate.heldout_loss(model, result.tokenizer, data.held, cfg.max_length)
            if base_loss is not None:
                base_memo.put_loss(held_key, base_loss)
                base_memo.save()
        compare["base"]["heldout_loss"] = base_loss
    finally:
        gen.close()

    reference = compare.get("previous", compare["base"])
    promote_it, reason = evaluate.gate(compare["candidate"], reference, compare["base"])
    parity = compare["candidate"].get("parity_top1")
    if promote_it and parity is not None and parity < PARITY_MIN:
        promote_it, reason = (
            False,
            f"llama.cpp and transformers agree on only {parity:.1%} of top-1 tokens: export is suspect",
        )
    if promote_it:
        promote(root, out.name)
    in_use = current_adapter(root)
    answers.prune(in_use[0] if in_use else None)
    cand = compare["candidate"]
    metrics = {k: v for k, v in cand.items() if isinstance(v, (int, float))}
    metrics |= {
        f"base_{k}": v
        for k, v in compare["base"].items()
        if k in ("exact_match", "edit_similarity", "pass_at_1", "heldout_loss")
    }
    metrics |= {"train_tokens_per_s": round(result.tokens_per_second, 1), "train_seconds": round(result.seconds, 1)}
    earlier_tokens = lineage.tokens(conn, chain)
    rows = before + [(out.name, t["key"], t["path"], t["version"]) for t in trained]
    drawn_from = [e for e in data.train if e.kind in train.SFT_KINDS]  # what a run picks its examples from
    covered = lineage.coverage(rows, data.files, split.held_paths(data.held), drawn_from)
    new_examples = sum(t["key"] not in seen for t in trained)
    result_meta = {
        "decision": "promoted" if promote_it else "kept",
        "reason": reason,
        "previous": previous[0] if previous else None,
        "warm_from": chain[0] if chain else None,
        "lineage": {
            "runs": len(chain) + 1,
            "tokens": earlier_tokens + result.tokens,  # training tokens of this run and those it went on from
            "new_examples": new_examples,
            "replayed_examples": len(trained) - new_examples,
            "note": result.warm_note or warm_why,
        },
        "error_driven": {
            "candidates": cfg.error_driven,
            "checked": checked,
            "already_right": len(wrong_first.right(scores)),
            "near_misses": sum(0.5 <= s < 1.0 for s in scores.values()),  # missed, at an edit similarity of 0.5 or more
        },
        "coverage": covered.to_json() | {"summary": covered.describe()},
        "examples": len(data.train),
        "data": data.counts()
        | {
            "self_revision": revised,
            "newest_trained": max((e.time for e in data.train), default=None),
            "newest_held": max((e.time for e in data.held), default=None),
        },
        "training": {
            "steps": result.steps,
            "tokens": result.tokens,
            "seconds": round(result.seconds, 1),
            "device": result.device,
            "precision": result.precision,
            "processes": result.processes,
            "sequences": result.rows,
            "sequences_per_process": result.rows_here,
            "vocabulary": result.vocabulary,
            "losses": result.losses,
        },
        "compare": compare,
        "metrics": metrics,
    }
    reporter.emit(
        "result", **{k: result_meta[k] for k in ("decision", "reason", "metrics")}, id=out.name, trust=meta["trust"]
    )
    return result_meta


def evaluate_current(
    root: Path,
    *,
    model: str = "gemma3-270m",
    model_path: str = "",
    cfg: Config | None = None,
    reporter: Reporter | None = None,
    trust: Trust | None = None,
) -> dict:
    """Held-out metrics of the base model and of the current adapter (`selftune eval`)."""
    cfg = cfg or Config()
    reporter = reporter or Reporter()
    root = root.resolve()
    cfg, trusted = within_trust(root, cfg, trust, reporter)
    manifest = load_manifest(model)
    _catch_up_history(root, cfg, reporter)
    conn = _journal(root)
    reporter.phase("data", "building the held-out data")
    data = dataset.build(root, conn, manifest.prompt, cfg, measure=token_counter(manifest, model_path),
                         cache=workspace.data_cache(root))  # fmt: skip
    gen = _generator(manifest, model_path, cfg)
    previous = current_adapter(root)
    answers = _answers(root, manifest, model_path, data, gen)
    try:
        reporter.phase("evaluate", f"held-out evaluation at {len(data.points)} edit points")
        progress = _evaluation_progress(reporter, ["base", "previous"] if previous else ["base"])
        report = {"base": _measure(gen, None, data, root, conn, cfg, progress("base"), answers.of(None)),
                  "points": len(data.points), "trust": trusted}  # fmt: skip
        if previous:
            current = _measure(gen, previous[1], data, root, conn, cfg, progress("previous"), answers.of(previous[0]))
            report["current"] = current | {"id": previous[0]}
    finally:
        gen.close()
        reporter.close()
    out = workspace.reports_dir(root) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    report["written"] = str(out)
    return report
