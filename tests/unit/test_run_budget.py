"""A run plans for its minutes: training stops in time for the evaluation after it, its learning-rate schedule
shortened to end where it stops, and the run records only the examples it trained on whole."""

from __future__ import annotations

import io
import json

import torch
from transformers import TrainerControl, TrainerState, TrainingArguments, get_linear_schedule_with_warmup

from selftune.adaptation import budget as budget_mod
from selftune.adaptation import progress, train
from selftune.adaptation.budget import Budget, shorten
from selftune.adaptation.progress import Reporter
from selftune.adaptation.train import Row, seen


def test_the_steps_that_fit_leave_time_for_the_evaluation_and_the_loss(monkeypatch):
    monkeypatch.setattr(budget_mod.time, "monotonic", lambda: 1000.0)
    plan = Budget(deadline=1000.0 + 600)
    plan.reserve(answers_seconds=200.0, loss_tokens=0)  # the new adapter's answers: 250 s
    even = lambda a, b: (b - a) * 1000.0  # noqa: E731  steps of 1000 tokens, at 10 s a step
    # 600 - 250 - 45 (slack) = 305 s left: 30 steps of 10 s, and the 2 done
    assert plan.steps(done=2, total=30, rate=0.01, work=even) == 30
    assert plan.steps(done=2, total=60, rate=0.01, work=even) == 32
    # steps 3 to 12 twice as long: the 305 s hold those ten (200 s) and 10 more of 10 s
    uneven = lambda a, b: sum(2000.0 if 3 <= k <= 12 else 1000.0 for k in range(a + 1, b + 1))  # noqa: E731
    assert plan.steps(done=2, total=60, rate=0.01, work=uneven) == 22
    # an adapter in use whose answers took 280 s: what an adapter costs here, 30 s more than the base's 250
    plan.reserve(answers_seconds=200.0, loss_tokens=0, adapter_seconds=280.0)
    assert plan.steps(done=2, total=60, rate=0.01, work=even) == 29
    # the held-out loss of two models, over 1000 target tokens each: 2000 * 1.3 * 0.01 = 26 s less
    plan.reserve(answers_seconds=200.0, loss_tokens=2 * 1000)
    assert plan.steps(done=2, total=60, rate=0.01, work=even) == 29
    # past its time, the run takes no more steps than it has done
    assert Budget(deadline=900.0).steps(done=5, total=60, rate=0.01, work=even) == 5
    assert Budget(deadline=900.0).spent() and not plan.spent()
    assert Budget.of(0, 1000.0) is None and Budget.of(20, 1000.0).deadline == 2200.0


def test_a_shortened_schedule_still_decays_to_zero_at_its_new_end():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=100)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    before = scheduler.get_last_lr()[0]
    shorten(scheduler, 20)
    rates = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert rates[0] < before and rates == sorted(rates, reverse=True)
    assert rates[-1] == 0.0  # step 20 of 20


def test_a_shortened_schedule_keeps_its_warmup_share_however_often_it_changes():
    """A run that drew more examples than its time holds plans many steps at first; its warmup shrinks with them."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=47, num_training_steps=937)
    for total in (170, 171, 169, 171):
        shorten(scheduler, total)
    assert scheduler.lr_lambdas[0].keywords == {"num_warmup_steps": 9, "num_training_steps": 171}  # ceil(171 * 47/937)
    optimizer.step()
    scheduler.step()
    rates = []
    for _ in range(12):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:9] == sorted(rates[:9]) and rates[9] < rates[8]  # rising for 9 steps, then decaying


def test_the_trainer_stops_at_the_steps_that_fit_and_says_so(monkeypatch, tmp_path):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(budget_mod.time, "monotonic", lambda: now[0])
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=1, num_training_steps=30)
    plan = Budget(deadline=1000.0 + 60 + 12 * 5 + budget_mod.SLACK)  # the first step, then five of 12 s
    out = io.StringIO()
    callback = train._Progress.make(Reporter(bar=False, stream=out), "sft", "training", [], plan)
    callback.pace = progress.Pace([500.0 * k for k in range(31)])  # 500 tokens a step
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl()
    state = TrainerState(max_steps=30)
    step = 0
    while not control.should_training_stop and step < 30:
        step += 1
        now[0] += 60.0 if step == 1 else 12.0
        optimizer.step()
        scheduler.step()
        state.global_step = step
        callback.on_step_end(args, state, control, lr_scheduler=scheduler)
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert step == 6 and state.max_steps == 6
    assert messages[1] == "training: step 2/6, about 48 s left (6 of 30 fit the run's time)"
    assert messages[-1] == "training: step 6/6 (6 of 30 fit the run's time)"
    assert scheduler.get_last_lr()[0] == 0.0  # the rate came down to zero where training stopped


def test_an_example_counts_as_trained_only_when_every_piece_of_it_was():
    # example 1 in two pieces; two epochs, each in its own order, 3 steps of 2 rows an epoch
    rows = [Row(0, 0, 100), Row(1, 1, 50), Row(2, 0, 10), Row(1, 0, 50), Row(3, 0, 20)]
    rows += [Row(3, 0, 20), Row(1, 1, 50), Row(1, 0, 50), Row(0, 0, 100), Row(2, 0, 10)]
    assert seen(rows, steps=1, per_step=2) == ({0}, 150)  # example 1's first piece not yet
    assert seen(rows, steps=2, per_step=2) == ({0, 1, 2}, 210)
    assert seen(rows, steps=3, per_step=2) == ({0, 1, 2, 3}, 250)  # into the second epoch
    assert seen(rows, steps=5, per_step=2) == ({0, 1, 2, 3}, 460)  # all of it
    assert seen(rows, steps=9, per_step=2) == ({0, 1, 2, 3}, 460)
    assert seen([], steps=3, per_step=2) == (set(), 0)
    assert train.work(rows, per_step=2) == [0, 150, 210, 250, 350, 460]
    # two rows a forward pass: a pass costs as much as two of its longest row
    assert train.work(rows, per_step=2, per_pass=2) == [0, 200, 300, 340, 440, 640]


def test_the_cpu_takes_a_batch_in_passes_of_micro_batch_rows_and_accumulates_the_rest(tmp_path):
    from trl import SFTConfig

    from selftune.adaptation.config import Config

    def passes(micro: int, batch: int = 4) -> tuple[int, int]:
        args = train._args(SFTConfig, Config(batch_size=batch), tmp_path, "cpu", 1.0, per_pass=micro)
        return args.per_device_train_batch_size, args.gradient_accumulation_steps

    assert passes(4) == (4, 1)
    assert passes(1) == (1, 4)
    assert passes(3) == (2, 2)  # rows per pass divide the batch: every step the same rows
    assert passes(8) == (4, 1)
    assert passes(0) == (1, 4)  # a setting below one: one row a pass
    assert passes(4, batch=6) == (3, 2)


def test_a_run_held_to_fewer_steps_still_says_so_once_its_pace_lets_them_all_fit(monkeypatch, tmp_path):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(budget_mod.time, "monotonic", lambda: now[0])
    plan = Budget(deadline=1000.0 + 10 + 200 + budget_mod.SLACK)
    out = io.StringIO()
    callback = train._Progress.make(Reporter(bar=False, stream=out), "sft", "training", [], plan)
    callback.pace = progress.Pace([100.0 * k for k in range(11)])
    args, control, state = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl(), TrainerState()
    state.max_steps = 10
    for step, seconds in ((1, 10.0), (2, 60.0), (3, 1.0), (4, 1.0), (5, 1.0)):  # slow at first, then fast
        now[0] += seconds
        state.global_step = step
        callback.on_step_end(args, state, control)
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert messages[1] == "training: step 2/4, about 2 min left (4 of 10 fit the run's time)"
    assert messages[-1].startswith("training: step 5/10") and messages[-1].endswith("(10 of 10 fit the run's time)")
