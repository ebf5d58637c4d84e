"""A run says how long it has still to go, from the pace of its own steps: training, then the held-out
evaluation, whose share of the progress comes after the export."""

from __future__ import annotations

import io
import itertools
import json

from transformers import TrainerControl, TrainerState, TrainingArguments

from selftune.adaptation import progress, run, train
from selftune.adaptation.progress import Reporter


def events(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_time_left_comes_from_the_pace_of_the_steps_done():
    assert progress.time_left(40.0, 2, 98) == "about 33 min"  # 20 s a step
    assert progress.time_left(40.0, 20, 2) == "about 4 s"
    assert progress.time_left(0.0, 0, 98) == ""  # no pace yet
    assert progress.time_left(40.0, 22, 0) == ""


def test_each_step_reports_the_time_left_at_the_pace_of_the_steps_after_the_first(monkeypatch, tmp_path):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    callback = train._Progress.make(Reporter(bar=False, stream=out), "sft", "training", [])
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl()
    state = TrainerState(max_steps=30)
    callback.on_train_begin(args, state, control)
    for step, seconds in ((1, 60.0), (2, 12.0), (3, 12.0)):  # the first step also loads and warms up
        now[0] += seconds
        state.global_step = step
        callback.on_step_end(args, state, control)
    assert [e["message"] for e in events(out)] == [
        "training: step 1/30",
        "training: step 2/30, about 6 min left",  # 28 steps at 12 s
        "training: step 3/30, about 5 min left",  # 27 steps at 12 s
    ]


def test_the_time_left_counts_the_tokens_each_step_still_has(monkeypatch, tmp_path):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    callback = train._Progress.make(Reporter(bar=False, stream=out), "sft", "training", [])
    tokens = [900, 300] + [600] * 8  # step 2 is short: its 12 s say 25 tokens a second
    callback.pace = progress.Pace(list(itertools.accumulate(tokens, initial=0)))
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl()
    state = TrainerState(max_steps=10)
    for step, seconds in ((1, 60.0), (2, 12.0), (3, 24.0)):
        now[0] += seconds
        state.global_step = step
        callback.on_step_end(args, state, control)
    assert [e["message"] for e in events(out)][1:] == [
        "training: step 2/10, about 3 min left",  # 4800 tokens at 25 a second: 192 s, not 8 steps of 12 s
        "training: step 3/10, about 3 min left",  # 4200 tokens: 168 s
    ]


def test_the_evaluation_reports_each_model_in_turn_and_the_time_left_for_all(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    reporter = Reporter(bar=False, stream=out)
    reporter.phase("export", "exporting the adapter to GGUF")
    report = run._evaluation_progress(reporter, ["base", "candidate"])
    for name in ("base", "candidate"):
        for done in (1, 2, 3, 4):
            now[0] += 30.0  # 30 s a point
            report(name)(done, 4)
    got = events(out)[1:]
    assert got[1]["message"] == "held-out evaluation, the base model: 2/4, about 3 min left"  # 6 points at 30 s
    assert got[5]["message"] == "held-out evaluation, the new adapter: 2/4, about 60 s left"
    assert got[-1]["message"] == "held-out evaluation, the new adapter: 4/4"
    percents = [events(out)[0]["percent"]] + [e["percent"] for e in got]
    assert percents == sorted(percents) and percents[0] < percents[1] and percents[-1] == 100
