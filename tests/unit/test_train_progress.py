"""Training says how long it has still to go, from the pace of its own steps."""

from __future__ import annotations

import io
import json

from transformers import TrainerControl, TrainerState, TrainingArguments

from selftune.adaptation import train
from selftune.adaptation.progress import Reporter


def test_the_time_left_comes_from_the_pace_of_the_steps_done():
    assert train.time_left(40.0, 2, 98) == "about 33 min"  # 20 s a step
    assert train.time_left(40.0, 20, 2) == "about 4 s"
    assert train.time_left(0.0, 0, 98) == ""  # no pace yet
    assert train.time_left(40.0, 22, 0) == ""


def test_each_step_reports_the_time_left_at_the_pace_of_the_steps_after_the_first(monkeypatch, tmp_path):
    now = [1000.0]
    monkeypatch.setattr(train.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    reporter = Reporter(bar=False, stream=out)
    callback = train._Progress.make(reporter, "sft", "training", [])
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl()
    state = TrainerState(max_steps=30)
    callback.on_train_begin(args, state, control)
    for step, seconds in ((1, 60.0), (2, 12.0), (3, 12.0)):  # the first step also loads and warms up
        now[0] += seconds
        state.global_step = step
        callback.on_step_end(args, state, control)
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert messages == [
        "training: step 1/30",
        "training: step 2/30, about 6 min left",  # 28 steps at 12 s
        "training: step 3/30, about 5 min left",  # 27 steps at 12 s
    ]
