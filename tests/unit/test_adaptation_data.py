"""The datasets: pure functions of a journal and a repository (no model)."""

from __future__ import annotations

import random
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from selftune.adaptation.config import Config
from selftune.adaptation.data import (
    Example,
    corpus,
    dataset,
    edits,
    insertions,
    lintseq,
    points,
    preferences,
    revisions,
    split,
)
from selftune.adaptation.evaluate import gate, take_function
from selftune.server.completion.project import ProjectIndex
from selftune.server.completion.prompt import PromptFormat
from selftune.server.journal.migrations import migrate
from selftune.server.journal.rows import compress, text_hash

SAMPLE = Path(__file__).resolve().parents[2] / "server" / "demo" / "sample"


def journal() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    return conn


def add_fix(
    conn,
    at=100.0,
    path="inv/stock.py",
    function="Stock.add",
    context="class Stock:\n",
    failing="    def add(self, n):\n        self.n -= n\n",
    passing="    def add(self, n):\n        self.n += n\n",
):
    conn.execute(
        "INSERT INTO test_fixes (time, failing_run, passing_run, path, function, context, failing, error, "
        "passing, tests) VALUES (?, 1, 2, ?, ?, ?, ?, ?, ?, ?)",
        (
            at,
            path,
            function,
            context,
            failing,
            "assert -1 == 1\nwhere -1 = s.n",
            passing,
            "tests/test_stock.py::test_add,tests/test_stock.py::test_more",
        ),
    )


def add_revision(conn, at=50.0):
    conn.execute(
        "INSERT INTO revisions VALUES ('s-1', ?, 'inv/util.py', 'def total(xs):\n    ', '', "
        "'return sum(x for x in xs)', 'return sum(xs)')",
        (at,),
    )


def test_revisions_carry_the_error_in_the_prompt_and_the_fix_as_target():
    conn = journal()
    add_fix(conn)
    add_revision(conn)
    found = {e.meta["source"]: e for e in revisions.from_journal(conn)}
    fix = found["test_fix"]
    assert fix.prompt.startswith("class Stock:\n")
    assert "#   assert -1 == 1" in fix.prompt and fix.prompt.endswith("# Fixed version:\n")
    assert fix.target == "    def add(self, n):\n        self.n += n\n"
    assert fix.group == "inv/stock.py::Stock.add"
    assert fix.tests == ("tests/test_stock.py::test_add", "tests/test_stock.py::test_more")
    assert fix.meta["passing_run"] == 2
    rev = found["completion"]
    assert (rev.prompt, rev.target) == ("def total(xs):\n    ", "return sum(xs)")


def test_preferences_pair_passing_over_failing_and_user_over_model():
    conn = journal()
    add_fix(conn)
    add_revision(conn)
    pairs = {e.meta["source"]: e for e in preferences.from_journal(conn)}
    assert pairs["test_fix"].prompt == "class Stock:\n"
    assert "+= n" in pairs["test_fix"].target and "-= n" in pairs["test_fix"].rejected
    assert (pairs["completion"].target, pairs["completion"].rejected) == ("return sum(xs)", "return sum(x for x in xs)")


def test_edit_samples_are_lintseq_diffs_with_the_earlier_ones_in_the_prompt():
    conn = journal()
    for i, diff in enumerate(["@@ -0,0 +1 @@\n+import os", "@@ -1,0 +2,2 @@\n+\n+print(os.sep)"]):
        conn.execute("INSERT INTO steps (time, path, origin, diff) VALUES (?, 'a.py', 'editor', ?)", (i, diff))
    first, second = edits.from_journal(conn)
    assert first.prompt == "# edits of a.py\n<|diff|>\n" and first.target == "@@ -0,0 +1 @@\n+import os\n"
    assert second.prompt == "# edits of a.py\n<|diff|>\n@@ -0,0 +1 @@\n+import os\n<|diff|>\n"
    assert second.target.startswith("@@ -1,0 +2,2 @@")


@pytest.mark.parametrize("name", ["inventory/stock.py", "tests/test_stock.py"])
def test_lintseq_sequences_insert_only_stay_lint_clean_and_rebuild_the_file(name):
    text = (SAMPLE / name).read_text()
    for seed in range(3):
        kept = lintseq.kept_lines(text, random.Random(seed))
        states = lintseq.sequence(text, random.Random(seed))
        assert states[0] == "" and states[-1] == text and len(states) > 3
        rebuilt = ""
        for state, diff in zip(states[1:], lintseq.insertion_diffs(text, kept)):
            assert all(line.startswith(("@@", "+")) for line in diff.splitlines()), diff
            rebuilt = lintseq.apply_insertions(rebuilt, diff)
            assert rebuilt == state
            assert lintseq.broken_lines(rebuilt.splitlines(keepends=True)) is None, rebuilt
        assert rebuilt == text
    # Different seeds give different sequences.
    assert lintseq.sequence(text, random.Random(1)) != lintseq.sequence(text, random.Random(2))


def test_lintseq_deletes_what_a_deletion_breaks():
    # Without `def helper`, the call is an undefined name: the linter's report deletes it too.
    lines = ["def helper():\n", "    return 1\n", "\n", "x = helper()\n"]
    assert lintseq.broken_lines(lines) is None
    assert lintseq.broken_lines(lines[2:]) == {2}
    assert lintseq.broken_lines(["if x:\n", "y = 1\n"]) is not None
    assert lintseq.sequence("x = undefined_name\n", random.Random(0)) is None


def test_lintseq_ends_on_windows_line_endings():
    # With CRLF lines, Python puts "expected 'except' or 'finally' block" on the line after the last one:
    # a blamed line that does not exist deleted nothing, and the deletion loop never ended.
    assert lintseq.broken_lines(["try:\r\n", "    x = 1\r\n"]) == {2}
    text = "".join(f"try:\r\n    x{i} = {i}\r\nexcept ValueError:\r\n    pass\r\n" for i in range(40))
    for seed in range(5):
        kept = lintseq.kept_lines(text, random.Random(seed))
        assert kept[0] == [] and kept[-1] == list(range(160))


def test_lintseq_with_a_limit_lints_only_the_files_it_needs(monkeypatch):
    files = {
        f"m{i}.py": (f"import os\n\n\ndef f{i}(x):\n    return os.path.join(x, 'a')\n", float(i)) for i in range(50)
    }
    linted = set()
    real = lintseq.kept_lines
    monkeypatch.setattr(lintseq, "kept_lines", lambda text, *a: linted.add(text) or real(text, *a))
    found = lintseq.from_files(files, per_file=1, seed=3, limit=6)
    assert len(found) == 6 and all(e.kind == "lintseq" for e in found)
    assert len(linted) < 10  # a sequence of one of these files is 3 to 5 samples: a few files, not fifty


def test_split_holds_out_the_newest_groups_whole():
    examples = [Example("code", "", f"v{i}", float(i), f"f{i % 5}.py") for i in range(50)]
    examples += [Example("revision", "p", "t", 49.5, "f4.py::g")]
    train, held = split.by_time(examples, 0.2)
    assert len(held) >= 0.2 * len(examples)
    assert not {e.group.split("::")[0] for e in train} & {e.group.split("::")[0] for e in held}
    assert max(e.time for e in train) < max(e.time for e in held)
    assert {e.group for e in held} == {"f4.py", "f4.py::g"}  # 11 of 51: the 20 % is reached


def test_project_code_windows_and_fim(tmp_path):
    project = tmp_path / "p"
    subprocess.run(["cp", "-r", str(SAMPLE), str(project)], check=True)
    (project / ".env").write_text("TOKEN=abc\n")
    files = corpus.project_files(project)
    assert "inventory/stock.py" in files and ".env" not in files
    text = files["inventory/stock.py"][0]
    plain = [e for e in corpus.from_files(files, PromptFormat(), window_chars=300) if e.group == "inventory/stock.py"]
    assert len(plain) > 1 and all(len(e.target) <= 300 for e in plain)
    assert "".join(e.target for e in plain) == text and all(e.prompt == "" for e in plain)
    fim_format = PromptFormat("fim", "<P>{prefix}<S>{suffix}<M>")
    fims = [e for e in corpus.from_files(files, fim_format, window_chars=300, fim_share=1.0) if e.kind == "fim"]
    assert fims
    for e in fims:
        prefix, rest = e.prompt[3:].split("<S>")
        assert e.target and prefix + e.target + rest.removesuffix("<M>") in files[e.group][0]


def test_insertions_are_the_blocks_a_step_added_in_the_servers_format(tmp_path):
    """Each block a commit added is an example: the prompt the server would have assembled at the block's first
    line (the rest of the file after it), with the project index as it was before the commit."""
    import git

    repo = git.Repo.init(tmp_path)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "t").set_value("user", "email", "t@t")
    first = "import os\n\n\ndef a():\n    return 1\n"
    (tmp_path / "m.py").write_text(first)
    (tmp_path / "util.py").write_text("def helper_one(x):\n    return x\n")
    repo.index.add(["m.py", "util.py"])
    repo.index.commit("a")
    second = "import os\nimport sys\n\n\ndef a():\n    return 1\n\n\ndef b():\n    return helper_one(sys.argv)\n"
    (tmp_path / "m.py").write_text(second)
    (tmp_path / "util.py").write_text("def helper_one(x):\n    return x\n\n\ndef helper_two(y):\n    return y\n")
    repo.index.add(["m.py", "util.py"])
    sha = repo.index.commit("b").hexsha
    diff = "@@ -1,0 +2 @@\n+import sys\n@@ -5,0 +7,4 @@\n+\n+\n+def b():\n+    return helper_one(sys.argv)\n"
    conn = journal()
    conn.execute(
        "INSERT INTO steps (time, path, origin, commit_sha, diff) VALUES (5, 'm.py', 'history', ?, ?)", (sha, diff)
    )
    conn.execute(
        "INSERT INTO steps (time, path, origin, commit_sha, diff) VALUES (6, 'README.md', 'history', ?, ?)",
        (sha, "@@ -0,0 +1 @@\n+# m\n"),
    )
    seen = []

    def prompt_for(path, document, cursor, index):
        seen.append((path, document, cursor, sorted(index.files), index.definitions("helper_two")))
        return f"PROMPT {len(seen)}"

    found = insertions.from_steps(conn, repo, prompt_for=prompt_for)
    assert [(e.prompt, e.target) for e in found] == [
        ("PROMPT 1", "import sys\n"),
        ("PROMPT 2", "\n\ndef b():\n    return helper_one(sys.argv)\n"),
    ]
    assert all(e.kind == "insertion" and e.group == "m.py" and e.time == 5 for e in found)
    path, document, cursor, files, later = seen[0]
    rest = "\n\n\ndef a():\n    return 1\n\n\ndef b():\n    return helper_one(sys.argv)\n"  # the cursor's line, then
    assert (path, document[:cursor], document[cursor:]) == ("m.py", "import os\n", rest)
    assert files == ["m.py", "util.py"] and later == []  # the project before the commit: nothing it added
    # With the server's own assembly, the prompt holds the code after the cursor, then the window before it.
    from selftune.adaptation.data.dataset import serving_prompts
    from selftune.server.completion.prompt import PromptFormat

    real = insertions.from_steps(
        conn, repo, prompt_for=serving_prompts(PromptFormat(), Config(), lambda t: len(t) // 4)
    )
    prompt = real[0].prompt
    assert prompt.startswith("# m.py, after the cursor:\ndef a():\n    return 1\n\n\ndef b():\n")
    assert prompt.endswith("\n# m.py\nimport os\n") and real[0].target == "import sys\n"


def test_insertions_from_editor_steps_read_the_document_as_it_was_at_each_step():
    conn = journal()
    snapshot = "x = 1\n"
    conn.execute("INSERT INTO blobs VALUES (?, ?, ?)", (text_hash(snapshot), len(snapshot), compress(snapshot)))
    conn.execute(
        "INSERT INTO documents (id, session_id, path, opened, snapshot) VALUES (1, 's', 'a.py', 0, ?)",
        (text_hash(snapshot),),
    )
    for at, line, text in [(1, 1, "y = 2\n"), (3, 2, "z = x + y\n")]:
        conn.execute(
            "INSERT INTO edits (document_id, time, start_line, start_char, end_line, end_char, text, origin) "
            "VALUES (1, ?, ?, 0, ?, 0, ?, 'typing')",
            (at, line, line, text),
        )
    conn.execute(
        "INSERT INTO steps (time, path, origin, document_id, diff) VALUES (2, 'a.py', 'editor', 1, ?)",
        ("@@ -1,0 +2 @@\n+y = 2\n",),
    )
    conn.execute(
        "INSERT INTO steps (time, path, origin, document_id, diff) VALUES (4, 'a.py', 'editor', 1, ?)",
        ("@@ -2,0 +3 @@\n+z = x + y\n",),
    )
    head = ProjectIndex()
    found = insertions.from_steps(conn, None, prompt_for=lambda path, doc, cursor, index: (doc[:cursor], index),
                                  head_index=head)  # fmt: skip
    assert [(e.prompt, e.target, e.time) for e in found] == [
        (("x = 1\n", head), "y = 2\n", 2),
        (("x = 1\ny = 2\n", head), "z = x + y\n", 4),
    ]


def test_the_serving_format_examples_are_remembered_until_what_makes_them_changes(tmp_path):
    import git

    project, cache = tmp_path / "p", tmp_path / "cache"
    repo = git.Repo.init(project)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "t").set_value("user", "email", "t@t")
    (project / "m.py").write_text("import os\n")
    repo.index.add(["m.py"])
    repo.index.commit("a")
    (project / "m.py").write_text("import os\nimport sys\n")
    repo.index.add(["m.py"])
    sha = repo.index.commit("b").hexsha
    conn = journal()
    step = "INSERT INTO steps (time, path, origin, commit_sha, diff) VALUES (?, ?, 'history', ?, ?)"
    conn.execute(step, (5, "m.py", sha, "@@ -1,0 +2 @@\n+import sys\n"))
    calls = []

    def measure(text):
        calls.append(text)
        return len(text) // 4 + 1

    def build():
        calls.clear()
        return dataset.build(project, conn, PromptFormat(), Config(lintseq_per_file=0), measure=measure, cache=cache)

    def blocks(data):
        return [e.to_json() for e in data.train + data.held if e.kind == "insertion"]

    first = build()
    assert not first.remembered and calls and blocks(first)
    again = build()
    assert again.remembered and not calls and blocks(again) == blocks(first)  # nothing assembled again
    assert dataset.build(project, conn, PromptFormat(), Config(lintseq_per_file=0), measure=measure).remembered is False

    (project / "util.py").write_text("def helper(x):\n    return x\n")  # the project's files change
    repo.index.add(["util.py"])
    later = repo.index.commit("c").hexsha
    assert not build().remembered and build().remembered
    conn.execute(step, (6, "util.py", later, "@@ -0,0 +1,2 @@\n+def helper(x):\n+    return x\n"))  # a step more
    changed = build()
    assert not changed.remembered and len(blocks(changed)) == len(blocks(first)) + 1
    assert not dataset.build(project, conn, PromptFormat(), Config(lintseq_per_file=0, max_length=300),
                             measure=measure, cache=cache).remembered  # prompts sized otherwise  # fmt: skip
    (cache / "insertions.json").write_text("{not json")
    damaged = build()
    assert not damaged.remembered and blocks(damaged) == blocks(changed)


def test_points_are_added_lines_with_the_cursor_after_the_indentation():
    assert points.added_lines("@@ -3,0 +4,2 @@\n+a\n+b\n@@ -9 +11 @@\n-c\n+d") == [3, 4, 10]
    text = "def f():\n    return compute(1)\n\nx = f()\n"
    p = points.point_at("a.py", text, 1, 0.0)
    assert p.text == "def f():\n    \n\nx = f()\n" and p.offset == len("def f():\n    ")
    assert p.target == "return compute(1)"
    a, b = points.points_at("a.py", text, [0, 2, 3], 0.0)  # the blank line has nothing to predict
    assert (a.target, b.target) == ("def f():", "x = f()") and a.source is b.source  # one copy of the file
    assert points.point_at("a.py", text, 5, 0.0) is None


def test_dataset_of_a_fresh_repository_trains_on_old_files_and_evaluates_on_new(tmp_path):
    project = tmp_path / "p"
    subprocess.run(["cp", "-r", str(SAMPLE), str(project)], check=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run(
        [*git, "commit", "-qm", "a", "--date=2020-01-01T00:00:00"],
        cwd=project,
        check=True,
        env={"GIT_COMMITTER_DATE": "2020-01-01T00:00:00", "PATH": "/usr/bin:/bin"},
    )
    (project / "inventory" / "report.py").write_text("def summary(stock):\n    return sorted(stock.items)\n")
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "b"], cwd=project, check=True)
    data = dataset.build(project, None, PromptFormat(), Config(held_share=0.1, lintseq_per_file=1))
    assert {e.group for e in data.held} == {"inventory/report.py"}
    assert "inventory/report.py" not in {e.group for e in data.train}
    assert {p.path for p in data.points} == {"inventory/report.py"}
    assert any(e.kind == "lintseq" for e in data.train)


def test_gate_promotes_only_a_better_adapter():
    base = {"points": 10, "exact_match": 0.1, "edit_similarity": 0.5, "pass_at_1": 0.5}
    assert gate({**base, "edit_similarity": 0.6}, base)[0]
    assert not gate({**base, "edit_similarity": 0.5}, base)[0]
    assert not gate({**base, "edit_similarity": 0.6, "exact_match": 0.0}, base)[0]
    assert not gate({**base, "edit_similarity": 0.6, "pass_at_1": 0.4}, base)[0]
    assert not gate({"points": 0}, base)[0]
    # a held-out loss above the base model's is refused first, whatever the lines say; equal or lower is fine
    better = {**base, "edit_similarity": 0.6, "heldout_loss": 1.9}
    refused = gate(better, base, {**base, "heldout_loss": 1.8})
    assert refused == (False, "held-out loss 1.900 is above the base model's 1.800")
    assert gate(better, base, {**base, "heldout_loss": 1.9})[0]
    assert gate(better, base, base)[0]  # no base loss known: the lines decide


def test_gate_lets_a_lower_loss_in_when_the_lines_fall_short_by_less_than_their_noise():
    base = {"points": 4, "exact_match": 0.25, "edit_similarity": 0.5, "heldout_loss": 2.0}
    in_use = {"points": 4, "exact_match": 0.25, "edit_similarity": 0.55, "heldout_loss": 1.8,
              "similarities": [1.0, 0.6, 0.4, 0.2]}  # fmt: skip
    # 0.01 lower on the mean; the per-point differences (0, -0.2, +0.2, -0.04) spread far wider
    near = {**in_use, "edit_similarity": 0.54, "similarities": [1.0, 0.4, 0.6, 0.16], "heldout_loss": 1.7}
    promoted, why = gate(near, in_use, base)
    assert promoted
    assert why.startswith("held-out loss 1.800 → 1.700; edit similarity 0.550 → 0.540")
    assert not gate({**near, "heldout_loss": 1.8}, in_use, base)[0]  # not a lower loss: the lines decide
    assert not gate({**near, "heldout_loss": 1.7, "exact_match": 0.0}, in_use, base)[0]  # exact match still holds
    unknown = {k: v for k, v in in_use.items() if k != "heldout_loss"}  # the adapter in use's loss not kept
    assert not gate(near, unknown, base)[0]
    assert not gate({k: v for k, v in near.items() if k != "similarities"}, in_use, base)[0]
    # lower on every point alike: no noise to hide in, however much lower the loss
    steady = {**in_use, "edit_similarity": 0.54, "similarities": [0.99, 0.59, 0.39, 0.19], "heldout_loss": 1.0}
    promoted, why = gate(steady, in_use, base)
    assert not promoted
    assert why == ("edit similarity 0.540 does not beat 0.550, and is lower by more than its noise (±0.000) for the "
                   "lower held-out loss to count")  # fmt: skip


def test_take_function_stops_at_the_dedent():
    assert take_function("def f():\n    return 1\n\ndef g():\n    pass\n") == "def f():\n    return 1\n"
    assert (
        take_function("    def m(self):\n        x = (\n    )\n    def n(self): pass\n")
        == "    def m(self):\n        x = (\n    )\n"
    )


def test_sft_sample_takes_every_revision_then_reserves_a_share_for_code():
    from selftune.adaptation.train import sample_sft

    def make(kind: str, n: int) -> list[Example]:
        return [Example(kind, f"{kind}{i}", f"t{i}", float(i), f"{kind}{i}.py") for i in range(n)]

    pool = make("revision", 2) + make("code", 30) + make("edit", 30) + make("lintseq", 30)
    kinds = Counter(e.kind for e in sample_sft(pool, 22, seed=0, code_share=0.5))
    assert kinds == {"revision": 2, "code": 10 + 4, "edit": 3, "lintseq": 3}  # 2, then 10 code, then 10 in turn
    assert Counter(e.kind for e in sample_sft(pool, 22, seed=0))["code"] == 7  # no share: strictly in turn
    assert len(sample_sft(make("code", 3), 22, seed=0, code_share=0.9)) == 3  # never more than there is
    # The edit steps' inserted blocks share the server's format with code, and go newest first.
    pool += make("insertion", 30)
    chosen = [e for e in sample_sft(pool, 22, seed=0, code_share=0.5) if e.kind == "insertion"]
    assert sorted(e.time for e in chosen) == [float(i) for i in range(23, 30)]
    # A list in the order to train (the lineage's new examples first): each kind from its front, order kept.
    ordered = sample_sft(pool, 22, seed=0, code_share=0.5, ordered=True)
    assert [pool.index(e) for e in ordered] == sorted(pool.index(e) for e in ordered)
    assert [e.target for e in ordered if e.kind == "edit"] == ["t0", "t1", "t2"]


def test_a_run_with_time_to_spare_goes_on_past_its_first_wave_drawn_by_the_same_rules():
    """With a time plan (`fill`), a run takes every example in the order to train them: first the
    `max_train_examples` a run without one trains on (the same draw), then wave after wave drawn the same way from
    the rest; a run that goes on from its lineage takes them in the lineage's order."""
    from selftune.adaptation import lineage
    from selftune.adaptation.config import Config
    from selftune.adaptation.train import sample_sft, to_train

    def make(kind: str, n: int) -> list[Example]:
        return [Example(kind, f"{kind}{i}", f"t{i}", float(i), f"{kind}{i}.py") for i in range(n)]

    pool = make("code", 20) + make("insertion", 20) + make("edit", 20) + make("lintseq", 10)
    cfg = Config(max_train_examples=16, code_share=1.0)
    alone = to_train(pool, cfg, None, warm=False, fill=False)
    assert alone == sample_sft(pool, 16, cfg.seed, cfg.code_share)
    filled = to_train(pool, cfg, None, warm=False, fill=True)
    assert filled[:16] == alone and sorted(map(id, filled)) == sorted(map(id, pool))  # all of them, once
    # each wave the serving format first, as the first is: the other kinds only in the wave where its 40 run out
    assert {e.kind for e in filled[:32]} == {"code", "insertion"}
    assert {e.kind for e in filled[48:]} == {"edit", "lintseq"}

    seen = {lineage.example_key(e): 1 for e in pool[:30]}

    def pick(examples, cap, warm):
        return lineage.fresh_first(examples, seen, cap, 0.25, 0) if warm else examples

    ordered = to_train(pool, cfg, pick, warm=True, fill=True)
    assert ordered == pick(pool, len(pool), True) and len(ordered) == len(pool)
    assert to_train(pool, cfg, pick, warm=True, fill=False) == pick(pool, 16, True)


def test_the_rows_of_an_ordered_run_come_wave_by_wave_and_shuffled_within_each():
    from selftune.adaptation.train import WAVE, Row, laid_out

    epoch = [({"n": i}, Row(i // 2, i % 2, 10)) for i in range(6 * WAVE)]  # 3 waves of examples, 2 pieces each
    stream = laid_out(epoch, 1.5, seed=0, ordered=True)
    first = [row.example // WAVE for _, row in stream[: len(epoch)]]
    assert first == sorted(first) and len(stream) == len(epoch) * 3 // 2
    assert [row.example for _, row in stream[:WAVE]] != sorted(row.example for _, row in stream[:WAVE])
    shuffled = [row.example // WAVE for _, row in laid_out(epoch, 1, seed=0, ordered=False)]
    assert shuffled != sorted(shuffled)  # a run that goes on from nothing: one shuffle over the epoch


def test_a_steps_rows_are_of_like_length_and_stay_in_their_wave():
    from selftune.adaptation.train import WAVE, Row, by_length, laid_out

    rng = random.Random(1)
    epoch = [({"n": i}, Row(i, 0, rng.randrange(20, 500))) for i in range(3 * WAVE + 8)]
    stream = laid_out(epoch, 1, seed=0, ordered=True)
    grouped = by_length(stream, per_step=4, seed=0)
    assert sorted(r.example for _, r in grouped) == sorted(r.example for _, r in stream)  # the same rows
    for start in range(0, len(stream), WAVE):  # each wave keeps its rows: an ordered run still trains its front first
        wave = slice(start, start + WAVE)
        assert {r.example for _, r in grouped[wave]} == {r.example for _, r in stream[wave]}
    steps = [[r.tokens for _, r in grouped[i : i + 4]] for i in range(0, len(grouped), 4)]
    padding = sum(len(s) * max(s) - sum(s) for s in steps)
    as_drawn = [[r.tokens for _, r in stream[i : i + 4]] for i in range(0, len(stream), 4)]
    assert padding * 4 < sum(len(s) * max(s) - sum(s) for s in as_drawn)  # far less padded than as drawn
    assert steps != sorted(steps)  # the steps of a wave in a random order, not shortest first
    assert by_length(stream, per_step=4, seed=0) == grouped  # seeded
