import json
import re
from pathlib import Path

import pytest

from selftune.server.adapters import listed as adapters
from selftune.server.report import adapter_table, coverage_lines, metric_chart


def write_meta(root: Path, adapter_id: str, meta: object) -> None:
    folder = root / ".selftune" / "adapters" / adapter_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta) if not isinstance(meta, str) else meta)


def test_held_out_chart_plots_each_adapter_next_to_the_base_model(tmp_path: Path):
    write_meta(
        tmp_path,
        "20260101-000000-aaaa",
        {
            "created": "2026-01-01 00:00:00",
            "decision": "kept",
            "metrics": {
                "edit_similarity": 0.40,
                "base_edit_similarity": 0.45,
                "exact_match": 0.1,
                "base_exact_match": 0.1,
            },
        },
    )
    write_meta(
        tmp_path,
        "20260102-000000-bbbb",
        {
            "created": "2026-01-02 00:00:00",
            "decision": "promoted",
            "metrics": {
                "edit_similarity": 0.60,
                "base_edit_similarity": 0.45,
                "exact_match": 0.3,
                "base_exact_match": 0.1,
            },
        },
    )
    write_meta(tmp_path, "20260103-000000-cccc", "{not json")
    (tmp_path / ".selftune" / "adapters" / "current").write_text("20260102-000000-bbbb\n")
    found = adapters(tmp_path)
    assert [d["id"][-4:] for d in found] == ["cccc", "aaaa", "bbbb"]  # unreadable (no date) first, then by date
    assert [d["current"] for d in found] == [False, False, True]

    svg = metric_chart(found, height=220)
    assert svg.count("<polyline") == 4  # similarity and exact match, adapter and base
    # the promoted adapter's similarity is drawn higher (smaller y) than the base's on the same data
    sims = [float(v) for v in re.findall(r'cy="([\d.]+)" r="3" fill="#36c"', svg)]
    base = [float(v) for v in re.findall(r'cy="([\d.]+)" r="3" fill="#fff" stroke="#36c"', svg)]
    assert len(sims) == 2 and len(base) == 2 and sims[1] < base[1] < sims[0]
    assert "★ 01-02 00:00" in svg

    table = adapter_table(found)
    assert "unreadable meta.json" in table and "(current)" in table


def test_held_out_chart_without_evaluated_adapters(tmp_path: Path):
    assert "no adapter has been evaluated" in metric_chart(adapters(tmp_path))


def test_the_learning_curve_runs_along_the_training_tokens_behind_each_adapter(tmp_path: Path):
    """Runs that went on from each other: each adapter sits at its lineage's cumulative tokens, in that order,
    and the page says how much of the project the adapter in use has covered."""
    for name, tokens, sim, current in (("b", 3000, 0.5, False), ("a", 1000, 0.4, False), ("c", 6000, 0.7, True)):
        write_meta(tmp_path, f"2026010{ord(name) - 96}-000000-{name * 4}", {
            "created": f"2026-01-0{4 - (ord(name) - 96)} 00:00:00",  # made in another order than trained
            "decision": "promoted",
            "metrics": {"edit_similarity": sim, "base_edit_similarity": 0.3},
            "lineage": {"runs": ord(name) - 96, "tokens": tokens},
            "coverage": {"summary": "trained on 3 of 4 project files as they are now (80% of the code)"},
        })  # fmt: skip
        if current:
            (tmp_path / ".selftune" / "adapters" / "current").write_text(f"2026010{ord(name) - 96}-000000-{name * 4}")
    found = adapters(tmp_path)
    svg = metric_chart(found)
    xs = [float(x) for x in re.findall(r'cx="([\d.]+)" cy="[\d.]+" r="3" fill="#36c"', svg)]
    ys = [float(y) for y in re.findall(r'cy="([\d.]+)" r="3" fill="#36c"', svg)]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # by tokens: 1k, 3k, 6k; similarity rising
    assert (xs[1] - xs[0]) / (xs[2] - xs[1]) == pytest.approx(2 / 3, rel=0.01)  # spaced by tokens, not by rank
    assert "1.0k" in svg and "6.0k" in svg and "training tokens behind the adapter" in svg
    assert "over 3 runs: trained on 3 of 4 project files" in " ".join(coverage_lines(found))


def test_the_report_names_the_kept_out_run_the_next_one_goes_on_from(tmp_path: Path):
    import sqlite3

    from selftune.server.journal.migrations import migrate
    from selftune.server.journal.rows import insert

    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for i, (run, loss) in enumerate((("k1", 1.8), ("k2", 1.7))):
        write_meta(
            tmp_path,
            run,
            {
                "created": f"2026-01-0{i + 1} 00:00:00",
                "base": "m",
                "decision": "kept",
                "lineage": {"runs": i + 1},
                "coverage": {"summary": f"trained on {i + 1} of 4 project files as they are now"},
            },
        )
        metrics = {"base": {"heldout_loss": 2.0}, "candidate": {"heldout_loss": loss}}
        insert(
            conn,
            "adaptation_runs",
            {
                "id": run,
                "started": i,
                "ended": i,
                "base": "m",
                "decision": "kept",
                "metrics": json.dumps(metrics),
                "warm_from": "k1" if i else None,
            },
        )
    line = " ".join(coverage_lines(adapters(tmp_path), conn))
    assert "adapter in use" not in line  # the base model is in use
    ahead = "The next run goes on from k2, kept out by its gate with a held-out loss below the base model's, over 2"
    assert ahead + " runs" in line
    assert "trained on 2 of 4 project files" in line


def test_the_command_line_report_says_how_much_of_the_project_the_adapter_in_use_covers(tmp_path: Path, capsys):
    import sqlite3

    from selftune.server.cli import main
    from selftune.server.journal.migrations import migrate
    from selftune.server.workspace import journal_path

    summary = "trained on 924 of the 1,478 examples the project gives now (63%), from 161 of its 268 files"
    write_meta(tmp_path, "r1", {"created": "2026-01-01 00:00:00", "decision": "promoted", "base": "m",
                                "lineage": {"runs": 3}, "coverage": {"summary": summary}})  # fmt: skip
    (tmp_path / ".selftune" / "adapters" / "current").write_text("r1")
    journal_path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(journal_path(tmp_path), isolation_level=None)
    migrate(conn)
    conn.close()

    assert main(["report", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("report.html") and Path(out[0]).is_file()
    assert out[1] == f"The adapter in use, over 3 runs: {summary}."
