"""`selftune adapt` under `accelerate launch`: data-parallel training, everything else on the main process.

`accelerate launch --multi_gpu --num_processes N -m selftune.server adapt ...`
(on a machine without CUDA, torch's gloo over the CPU) starts N copies of the
command, each told its rank by torchrun's environment. The main process
(rank 0) does the whole run as it does alone: the lock, the datasets, the
self-revision, the export, the evaluation, the gate, the journal. The others
only train: they wait for the main process to send what to train on
(`Team.share`), then join the trainer, which splits each batch between the
processes and averages their gradients (DDP through Accelerate), and exit.
A run that ends before training sends nothing to train on, so the others
exit too instead of waiting for a broadcast that never comes.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from .config import Config
from .data import Example

WAIT = timedelta(hours=6)  # the others wait this long for the main process's datasets and self-revision


def world() -> tuple[int, int]:
    """(this process's rank, how many processes) as torchrun (and so `accelerate launch`) sets them; (0, 1) alone."""
    try:
        return int(os.environ.get("RANK", "0")), max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 0, 1


def local_processes() -> int:
    """How many of the run's processes share this machine (its cores are split between them)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def placed(device: str) -> str:
    """Where this process loads the model: on CUDA, its own GPU (torchrun's LOCAL_RANK) when there are several."""
    if device != "cuda" or world()[1] == 1:
        return device
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"


class Team:
    """The run's processes. Alone (no `accelerate launch`), `share` hands back what it is given and nothing waits."""

    def __init__(self) -> None:
        self.rank, self.size = world()
        self.main = self.rank == 0
        self._sent = False
        if self.size > 1:
            import torch
            from accelerate import PartialState

            # Brings up the process group; PartialState is shared, so the trainer's Accelerator finds it up.
            PartialState(cpu=not torch.cuda.is_available(), timeout=WAIT)

    def share(self, make: Callable[[], Any]) -> Any:
        """On the main process `make()`, sent to the others; on the others, what the main process sent (None: the
        run ended before training). `make` is not called on the others."""
        if self.size == 1:
            return make()
        import torch.distributed as dist

        box = [make() if self.main else None]
        dist.broadcast_object_list(box, src=0)
        self._sent = True
        return box[0]

    def release(self) -> None:
        """The main process, at the end of a run: if it never sent what to train on, it sends nothing, so the others
        stop waiting and exit."""
        if self.size > 1 and self.main and not self._sent:
            self.share(lambda: None)


@dataclasses.dataclass
class Job:
    """What every process of a run trains on: the arguments of `train.train`, sent by the main process."""

    location: str
    targets: tuple[str, ...]
    examples: list[Example]
    cfg: Config
    warm: Path | None
    pick: Callable[[list[Example], int, bool], list[Example]]  # picklable (run.Pick)


def train_only(team: Team) -> dict:
    """A process other than the main one under `accelerate launch`: train on what the main process sends, with it,
    and keep nothing (the main process saves, exports, evaluates and records)."""
    job = team.share(lambda: None)
    if job is None:
        return {"rank": team.rank, "decision": "none", "reason": "the main process ended the run before training"}
    from . import train
    from .progress import Reporter

    with tempfile.TemporaryDirectory(prefix=f"selftune-rank{team.rank}-") as tmp:
        quiet = Reporter(json_lines=False, bar=False)
        result = train.train(job.location, job.targets, job.examples, job.cfg, Path(tmp), quiet, warm=job.warm,
                             pick=job.pick, share=team.share)  # fmt: skip
    print(
        f"selftune adapt: process {team.rank} of {team.size} trained on {result.rows_here} of the {result.rows} "
        "sequences per epoch",
        file=sys.stderr,
    )
    return {"rank": team.rank, "decision": "trained", "rows": result.rows_here}
