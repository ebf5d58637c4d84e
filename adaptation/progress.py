"""Progress of `selftune adapt` as JSON lines on stdout, and a bar on stderr for people.

Each line is one object with `event` ("progress", "result" or "error"),
`phase` and `message`, and for progress `percent` (of the whole run). The
server's scheduler reads these lines and turns them into `$/progress`; a
person at a terminal sees tqdm's bar.
"""

from __future__ import annotations

import json
import sys
import time

from tqdm import tqdm

# Share of a run's wall time each phase takes (roughly), for one overall percentage.
PHASES = {
    "data": (0, 2),
    "base": (2, 4),
    "revise": (4, 10),
    "check": (10, 12),
    "reference": (12, 35),  # the models the new adapter is compared with, on the held-out points
    "sft": (35, 68),
    "dpo": (68, 75),
    "export": (75, 77),
    "evaluate": (77, 100),
}


def time_left(elapsed: float, steps: float, remaining: float) -> str:
    """How long `remaining` steps (or units of work) will take at the pace of `steps` that took `elapsed` seconds
    ("about 12 min"); "" with no pace yet or nothing left."""
    if steps < 1 or remaining < 1:
        return ""
    seconds = elapsed / steps * remaining
    return f"about {round(seconds / 60)} min" if seconds >= 90 else f"about {max(1, round(seconds))} s"


class Pace:
    """The time left of a run of steps, from the pace of those after the first (which also loads and warms up).

    `work`: how much each step has to do, cumulative (`work[k]`: the first k steps together; for training, their
    tokens), so that a long step ahead counts as long; without it every step counts the same."""

    def __init__(self, work: list[float] | None = None) -> None:
        self.first: tuple[int, float] | None = None  # (step, time) at the end of the first step seen
        self.work = work

    def _at(self, step: int) -> float:
        return self.work[min(step, len(self.work) - 1)] if self.work else float(step)

    def left(self, done: int, total: int) -> str:
        now = time.monotonic()
        self.first = self.first or (done, now)
        return time_left(now - self.first[1], self.between(self.first[0], done), self.between(done, total))

    def rate(self, done: int) -> float | None:
        """Seconds per unit of work (per step, without `work`) since the first step; None before a second."""
        if self.first is None or done <= self.first[0]:
            return None
        return (time.monotonic() - self.first[1]) / max(self.between(self.first[0], done), 1e-9)

    def between(self, start: int, end: int) -> float:
        """The work of steps `start` + 1 to `end`."""
        return self._at(end) - self._at(start)


class Reporter:
    def __init__(self, *, json_lines: bool = True, bar: bool = True, stream=None):
        self.json_lines = json_lines
        self.stream = stream or sys.stdout
        self.bar = tqdm(total=100, unit="%", file=sys.stderr, disable=not bar, bar_format="{l_bar}{bar}| {elapsed}")
        self.percent = 0

    def emit(self, event: str, **fields) -> None:
        if self.json_lines:
            print(json.dumps({"event": event, "time": time.time(), **fields}), file=self.stream, flush=True)

    def phase(self, phase: str, message: str, fraction: float = 0.0) -> None:
        lo, hi = PHASES.get(phase, (self.percent, self.percent))
        percent = max(self.percent, int(lo + (hi - lo) * min(1.0, max(0.0, fraction))))
        self.bar.update(percent - self.percent)
        self.bar.set_description_str(message[:60])
        self.percent = percent
        self.emit("progress", phase=phase, message=message, percent=percent)

    def close(self) -> None:
        self.bar.close()
