"""Runs that build on each other: the lineage of the adapter in use, what it has seen, what to train next."""

import json
import sqlite3

from selftune.adaptation import lineage
from selftune.adaptation.data import Example
from selftune.server.journal.migrations import migrate
from selftune.server.journal.rows import insert


def code(path: str, target: str, at: float = 0.0) -> Example:
    return Example("code", "", target, at, path)


def journal_with_runs(*runs: tuple[str, str | None, list[tuple[str, str, str]]]) -> sqlite3.Connection:
    """(run id, the adapter it went on from, [(key, path, version)]) per run."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for i, (run, warm_from, rows) in enumerate(runs):
        insert(conn, "adaptation_runs", {"id": run, "started": i, "ended": i, "base": "m", "decision": "promoted",
                                         "metrics": "{}", "warm_from": warm_from, "tokens": 100 * (i + 1)})  # fmt: skip
        for key, path, version in rows:
            insert(conn, "trained_examples", {"run_id": run, "key": key, "kind": "code", "path": path,
                                              "version": version})  # fmt: skip
    return conn


def test_an_example_is_the_same_across_runs_whatever_its_time_and_differs_by_its_text():
    assert lineage.example_key(code("a.py", "x = 1\n", 1.0)) == lineage.example_key(code("a.py", "x = 1\n", 9.0))
    assert lineage.example_key(code("a.py", "x = 1\n")) != lineage.example_key(code("a.py", "x = 2\n"))
    assert lineage.example_key(code("a.py", "x = 1\n")) != lineage.example_key(code("b.py", "x = 1\n"))


def test_the_lineage_follows_the_adapters_each_run_went_on_from_and_survives_a_loop():
    conn = journal_with_runs(("a", None, []), ("b", "a", []), ("c", "b", []), ("other", None, []))
    assert lineage.chain(conn, "c") == ["c", "b", "a"]
    assert lineage.chain(conn, None) == []
    conn.execute("UPDATE adaptation_runs SET warm_from = 'c' WHERE id = 'a'")  # a hand-edited journal
    assert lineage.chain(conn, "c") == ["c", "b", "a"]
    assert lineage.chain(None, "c") == ["c"]
    assert lineage.tokens(conn, ["c", "b", "a"]) == 600 and lineage.tokens(conn, []) == 0


def test_what_the_lineage_has_not_seen_comes_first_with_a_replayed_share_of_the_rest():
    old = [code(f"old{i}.py", f"x = {i}\n", at=i) for i in range(20)]
    new = [code(f"new{i}.py", f"y = {i}\n", at=100 + i) for i in range(6)]
    seen = {lineage.example_key(e): 1 for e in old}
    chosen = lineage.fresh_first(old + new, seen, cap=10, replay_share=0.2, seed=0)
    assert len(chosen) == 10
    assert sum(e in new for e in chosen) == 6  # every new one
    assert sum(e in old for e in chosen) == 4  # the rest of the cap replayed (more than 20 %: room was left)
    many = [code(f"n{i}.py", f"z = {i}\n", at=i) for i in range(30)]
    chosen = lineage.fresh_first(old + many, seen, cap=10, replay_share=0.2, seed=0)
    assert sum(e in old for e in chosen) == 2  # 20 % replay
    assert {e.time for e in chosen if e in many} == set(range(22, 30))  # the newest of the new ones
    # Nothing new: the run keeps up by replaying what it has seen.
    assert len(lineage.fresh_first(old, seen, cap=10, replay_share=0.2, seed=0)) == 10


def test_once_everything_is_seen_successive_runs_go_round_the_project_instead_of_replaying_one_sample():
    """On pydantic, two runs after the project was covered trained the same 400 of its 1,478 examples: the replay
    was one seeded sample. The least trained come first."""
    examples = [code(f"f{i}.py", f"x = {i}\n", at=i) for i in range(25)]
    seen = {lineage.example_key(e): 1 for e in examples}
    trained: list[set[str]] = []
    for _run in range(5):
        chosen = lineage.fresh_first(examples, seen, cap=10, replay_share=0.25, seed=0)
        keys = {lineage.example_key(e) for e in chosen}
        assert len(keys) == 10 and min(seen[k] for k in keys) == min(seen.values())
        assert max(seen[k] for k in keys) <= min(seen.values()) + 1  # never one trained twice more than another
        trained.append(keys)
        for k in keys:
            seen[k] += 1
    assert not trained[0] & trained[1]  # the second run takes 10 others
    assert len(trained[0] | trained[1] | trained[2]) == 25  # the third finishes the round
    assert max(seen.values()) - min(seen.values()) <= 1


def test_a_run_stopped_early_has_trained_mostly_on_what_its_lineage_had_not_seen():
    """The list is the order to train in: new ones first with the replay share spread among them, the seen ones
    that fill the rest of the cap after them."""
    old = [code(f"old{i}.py", f"x = {i}\n", at=i) for i in range(40)]
    new = [code(f"new{i}.py", f"y = {i}\n", at=100 + i) for i in range(12)]
    seen = {lineage.example_key(e): 1 for e in old}
    chosen = lineage.fresh_first(old + new, seen, cap=30, replay_share=0.25, seed=0)
    assert len(chosen) == 30 and sum(e in new for e in chosen) == 12
    front = chosen[:16]  # 12 new and their 4 replayed, whatever the rest
    assert sum(e in new for e in front) == 12 and [e.time for e in front if e in new] == list(range(111, 99, -1))
    assert all(sum(e in old for e in front[:k]) <= k // 4 + 1 for k in range(1, 17))  # spread, not bunched
    # A run that draws everything (its time decides how far it gets) has the share at its front, not thinned out
    # over the whole list: 10 seen and 90 new, a quarter replayed, are 10 seen among the first 40.
    old, new = old[:10], [code(f"n{i}.py", f"z = {i}\n", at=100 + i) for i in range(90)]
    chosen = lineage.fresh_first(old + new, seen, cap=100, replay_share=0.25, seed=0)
    assert len(chosen) == 100 and sum(e in old for e in chosen[:40]) == 10
    assert all(abs(sum(e in old for e in chosen[:k]) - k / 4) <= 1 for k in range(1, 41))


def test_coverage_counts_the_files_trained_on_as_they_are_now():
    files = {"a.py": ("x = 1\n", 0.0), "b.py": ("y = 2\n", 0.0), "c.py": ("z = 3\n" * 10, 0.0)}
    conn = journal_with_runs(
        ("r1", None, [("k1", "a.py", lineage.text_version("x = 1\n")), ("k2", "b.py", lineage.text_version("old"))]),
        ("r2", "r1", [("k3", "c.py", lineage.text_version("z = 3\n" * 10))]),
    )
    rows = lineage.trained_rows(conn, lineage.chain(conn, "r2"))
    covered = lineage.coverage(rows, files)
    assert (covered.files, covered.trained, covered.older) == (3, 2, 1)
    assert covered.to_json()["share"] == round(66 / 72, 4)
    assert covered.describe().startswith("trained on 2 of 3 project files as they are now (92% of the code), 1 more")
    only_r1 = lineage.coverage(lineage.trained_rows(conn, ["r1"]), files)
    assert only_r1.trained == 1
    # With the newest file held out for evaluation: what is left to train on is what the summary ends with.
    files["d.py"] = ("w = 4\n", 1.0)
    files["e/__init__.py"] = ("", 0.0)  # nothing to train on
    held_out = lineage.coverage(rows, files, held={"d.py"})
    assert (held_out.held, held_out.left) == (1, 1)  # b.py, trained on only at an older version
    assert held_out.describe().endswith("; 1 held out for evaluation, 1 still to train on")


def test_coverage_counts_the_examples_of_a_large_file_not_only_the_file():
    """One window of a file makes the file trained on as it is now; the examples say how much of it was."""
    text = "".join(f"v{i} = {i}\n" for i in range(40))
    files = {"big.py": (text, 0.0), "small.py": ("x = 1\n", 0.0)}
    windows = [code("big.py", text[i : i + 60]) for i in range(0, len(text), 60)] + [code("small.py", "x = 1\n")]
    version = lineage.text_version(text)
    rows = [("r1", lineage.example_key(windows[0]), "big.py", version)]
    covered = lineage.coverage(rows, files, examples=windows)
    assert (covered.trained, covered.examples, covered.trained_examples) == (1, len(windows), 1)
    assert covered.describe().startswith(f"trained on 1 of the {len(windows)} examples the project gives now (")
    assert "from 1 of its 2 files as they are now" in covered.describe()
    everything = [("r1", lineage.example_key(e), e.group, lineage.text_version(files[e.group][0])) for e in windows]
    whole = lineage.coverage(everything, files, examples=windows).describe()
    assert whole.startswith(f"trained on {len(windows)} of the {len(windows)} examples the project gives now (100%)")
    assert "from 2 of its 2 files" in whole
    # An example a run trained on that the project no longer gives does not count.
    gone = rows + [("r1", "gone-key", "big.py", "old")]
    assert lineage.coverage(gone, files, examples=windows).trained_examples == 1


def journal_with_verdicts(*runs: tuple[str, str | None, str, float | None]) -> sqlite3.Connection:
    """(run id, the adapter it went on from, the gate's decision, its held-out loss) per run, oldest first; the
    base model's held-out loss is 2.0 in every run."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for i, (run, warm_from, decision, loss) in enumerate(runs):
        metrics = {"base": {"heldout_loss": 2.0}, "candidate": {"heldout_loss": loss}}
        insert(conn, "adaptation_runs", {"id": run, "started": i, "ended": i, "base": "m", "decision": decision,
                                         "metrics": json.dumps(metrics), "warm_from": warm_from})  # fmt: skip
    return conn


def test_a_run_goes_on_from_a_kept_out_run_whose_held_out_loss_is_below_the_base_models():
    # The gate kept the first run out (a line fewer in 60) though it learned: the next goes on from it.
    assert lineage.frontier(journal_with_verdicts(("k1", None, "kept", 1.8)), None, "m") == ("k1", 1.8, 2.0)
    # ... and from a chain of such runs back to the adapter in use, the newest first.
    conn = journal_with_verdicts(("p", None, "promoted", 1.9), ("k1", "p", "kept", 1.8), ("k2", "k1", "kept", 1.7),
                                 ("bad", "k2", "failed", None))  # fmt: skip
    assert lineage.frontier(conn, "p", "m") == ("k2", 1.7, 2.0)
    assert lineage.frontier(conn, "p", "other model") is None
    # Runs that trained the project's code least like its newest files and raised the loss on those above the
    # adapter in use's, still below the base model's: on from the newest (on pydantic, a bound at the adapter in
    # use's threw the last one's training away).
    conn = journal_with_verdicts(("p", None, "promoted", 1.674), ("k4", "p", "kept", 1.641),
                                 ("k5", "k4", "kept", 1.694), ("k6", "k5", "kept", 1.9))  # fmt: skip
    assert lineage.frontier(conn, "p", "m") == ("k6", 1.9, 2.0)
    # A run at or above it ends the chain there: on from the last run before it.
    conn = journal_with_verdicts(("k1", None, "kept", 1.8), ("k2", "k1", "kept", 2.0), ("k3", "k2", "kept", 1.7))
    assert lineage.frontier(conn, None, "m") == ("k1", 1.8, 2.0)
    conn = journal_with_verdicts(("p", None, "promoted", 1.7), ("k1", "p", "kept", 2.1), ("k2", "k1", "kept", 1.6))
    assert lineage.frontier(conn, "p", "m") is None
    # Each run against the base model as that run measured it (the held-out set moves with the project).
    conn = journal_with_verdicts(("k1", None, "kept", 1.8), ("k2", "k1", "kept", 1.9))
    conn.execute("""UPDATE adaptation_runs SET metrics = '{"base": {"heldout_loss": 1.85},"""
                 """ "candidate": {"heldout_loss": 1.9}}' WHERE id = 'k2'""")  # fmt: skip
    assert lineage.frontier(conn, None, "m") == ("k1", 1.8, 2.0)
    # Not from a run not below it, one without its losses, one the newest run was not built on, nor past the one
    # in use.
    assert lineage.frontier(journal_with_verdicts(("k1", None, "kept", 2.0)), None, "m") is None
    assert lineage.frontier(journal_with_verdicts(("k1", None, "kept", None)), None, "m") is None
    assert lineage.frontier(journal_with_verdicts(("p", None, "promoted", 1.9), ("k1", None, "kept", 1.8)), "p",
                            "m") is None  # fmt: skip
    assert lineage.frontier(journal_with_verdicts(("p", None, "promoted", 1.9)), "p", "m") is None
    # The user went back to the base model after a promotion: a new lineage, not the promoted one's.
    assert lineage.frontier(journal_with_verdicts(("p", None, "promoted", 1.9), ("k", "p", "kept", 1.8)), None,
                            "m") is None  # fmt: skip


def test_warm_start_takes_the_run_ahead_of_the_adapter_in_use_when_its_files_are_there(tmp_path):
    from selftune.adaptation.config import Config
    from selftune.adaptation.run import warm_start
    from selftune.server.models import load_manifest
    from selftune.server.workspace import adapters_dir

    manifest = load_manifest("gemma3-270m")
    conn = journal_with_verdicts(("p", None, "promoted", 1.9), ("k", "p", "kept", 1.8))
    conn.execute("UPDATE adaptation_runs SET base = ?", (manifest.name,))
    for run in ("p", "k"):
        (adapters_dir(tmp_path) / run / "peft").mkdir(parents=True)
        (adapters_dir(tmp_path) / run / "meta.json").write_text(json.dumps({"base": manifest.name}))
    (adapters_dir(tmp_path) / "current").write_text("p\n")
    cfg = Config()
    # k's PEFT files are missing: the adapter in use's are not either, so a new adapter.
    none = "adapter p has no PEFT files to go on from: a new one"
    assert warm_start(tmp_path, manifest, cfg, conn) == (None, [], none)
    for run in ("p", "k"):
        (adapters_dir(tmp_path) / run / "peft" / "adapter_config.json").write_text("{}")
    peft, chain, note = warm_start(tmp_path, manifest, cfg, conn)
    assert peft == adapters_dir(tmp_path) / "k" / "peft" and chain == ["k", "p"]
    assert note == "went on from k: the gate kept it out, but its held-out loss 1.800 is below 2.000, the base model's"
    assert warm_start(tmp_path, manifest, cfg.override(["warm_start=false"]), conn)[0] is None
