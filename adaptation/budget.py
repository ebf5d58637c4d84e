"""A run's time, planned: training stops early enough for the evaluation that follows it.

`selftune adapt` plans for `minutes` (config.py), from its start to its verdict. The models the new adapter is
compared with are evaluated first (or remembered: answers.py), which also measures what the new adapter's evaluation
will take; training then has what is left, less that and the held-out loss. The plan is kept step by step: from the
second step on (the first also loads and warms up), training's pace says how many of its steps still fit, and the
learning-rate schedule is shortened to end there, so a shortened run still decays to zero as a shorter one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

LORA_SLOWER = 1.25  # a new adapter's answers take up to this much longer than the base's (llama.cpp adds the LoRA
# product beside each weight): 1.06 to 1.26 in nine runs on jd/tenacity and pydantic (2 cores)
# the held-out loss's time per target token against a training step's per token: the loss runs the whole 262k-wide
# head at nearly every position (its examples are mostly code windows), training mostly at few (the serving
# format's targets) or over the project's vocabulary: about 25 s for 6,144 targets at 0.0031 s per training token
# in a default run on jd/tenacity, 1.3 (0.45 and 0.58 before training ran its head at the targets only)
FORWARD_SHARE = 1.3
SLACK = 45.0  # seconds for the export, the parity check (both models over 3 texts) and saving
STOP_SHARE = 0.9  # a run its caller stops after N minutes plans for at most this share of them


def within(minutes: float, stop_after: float) -> float:
    """The minutes a run plans for (0: no limit) when its caller stops it after `stop_after` minutes (0: never),
    as the server does after `adaptMaxMinutes`: its own `minutes`, or fewer, so that its verdict comes first."""
    if stop_after <= 0:
        return minutes
    cap = stop_after * STOP_SHARE
    return cap if minutes <= 0 else min(minutes, cap)


@dataclass
class Budget:
    deadline: float  # time.monotonic() by which the run should be over
    after: float = 0.0  # seconds the new adapter's held-out answers will take
    loss_tokens: int = 0  # tokens the held-out loss will run forward over, every model's together

    @classmethod
    def of(cls, minutes: float, started: float) -> Budget | None:
        """The plan of a run that began at `started` (time.monotonic()); None when `minutes` is 0 (no limit)."""
        return cls(started + minutes * 60) if minutes > 0 else None

    def reserve(self, answers_seconds: float, loss_tokens: int, adapter_seconds: float | None = None) -> None:
        """Keep time for the new adapter's answers, from what the same answers took the base model
        (`answers_seconds`) and, when there is one, an adapter (`adapter_seconds`: the adapter in use's, which is
        what an adapter costs on this machine), and for the held-out loss over `loss_tokens` target tokens (the new
        adapter's, and the base model's unless it is remembered)."""
        self.after = max(answers_seconds * LORA_SLOWER, adapter_seconds or 0.0)
        self.loss_tokens = loss_tokens

    def steps(self, done: int, total: int, rate: float, work: Callable[[int, int], float]) -> int:
        """How many of `total` training steps the run can take, `done` of them done, at `rate` seconds per token,
        `work(a, b)` being the tokens of steps a + 1 to b: never fewer than `done`, never more than `total`."""
        room = self.deadline - time.monotonic() - self.after - self.loss_tokens * FORWARD_SHARE * rate - SLACK
        fits = done
        while fits < total and work(done, fits + 1) * rate <= room:
            fits += 1
        return fits

    def spent(self) -> bool:
        """No time left for more training."""
        return time.monotonic() >= self.deadline - self.after - SLACK

    def until(self) -> str:
        """The wall-clock time the run plans to be over by ("18:42")."""
        return time.strftime("%H:%M", time.localtime(time.time() + self.deadline - time.monotonic()))


def shorten(scheduler, total: int) -> None:
    """Make a transformers schedule (a LambdaLR over `partial(..., num_training_steps=N)`) end at `total` steps, its
    warmup (`num_warmup_steps`) the same share of them as in the first plan."""
    for i, rule in enumerate(getattr(scheduler, "lr_lambdas", [])):
        if isinstance(rule, partial) and "num_training_steps" in rule.keywords:
            keywords = rule.keywords | {"num_training_steps": total}
            first = rule.keywords.get("num_warmup_steps", 0) / max(1, rule.keywords["num_training_steps"])
            share = getattr(rule, "warmup_share", first)  # kept, however often the plan changes
            if "num_warmup_steps" in keywords:
                keywords["num_warmup_steps"] = math.ceil(share * total)
            scheduler.lr_lambdas[i] = partial(rule.func, *rule.args, **keywords)
            scheduler.lr_lambdas[i].warmup_share = share
