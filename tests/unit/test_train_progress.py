"""Training says how long it has still to go, from the pace of its own steps."""

from __future__ import annotations

import io
import json

from transformers import TrainerControl, TrainerState, TrainingArguments

from selftune.adaptation import train
from selftune.adaptation.progress import Reporter


def test_the_time_left_comes_from_the_steps_done_once_there_are_two():
    assert train.time_left(40.0, 1, 100) == ""  # the first step also loads and warms up
    assert train.time_left(40.0, 2, 100) == "about 33 min"  # 20 s a step, 98 to go
    assert train.time_left(40.0, 20, 22) == "about 4 s"
    assert train.time_left(40.0, 22, 22) == ""


def test_each_step_reports_the_time_left_in_its_progress_message(monkeypatch, tmp_path):
    now = [1000.0]
    monkeypatch.setattr(train.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    reporter = Reporter(bar=False, stream=out)
    callback = train._Progress.make(reporter, "sft", "training", [])
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl()
    state = TrainerState(max_steps=30)
    callback.on_train_begin(args, state, control)
    for step in (1, 2, 3):
        now[0] += 12.0  # 12 s a step
        state.global_step = step
        callback.on_step_end(args, state, control)
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert messages == [
        "training: step 1/30",
        "training: step 2/30, about 6 min left",
        "training: step 3/30, about 5 min left",
    ]
