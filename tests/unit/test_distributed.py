"""A run's processes under `accelerate launch`, read from torchrun's environment; alone, nothing waits."""

from __future__ import annotations

import pickle

from selftune.adaptation import distributed
from selftune.adaptation.config import Config
from selftune.adaptation.data import Example
from selftune.adaptation.lineage import example_key
from selftune.adaptation.run import Pick


def test_the_rank_and_the_processes_come_from_torchruns_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == (0, 1) and distributed.local_processes() == 1
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.world() == (1, 4) and distributed.local_processes() == 2
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.placed("cuda") == "cuda:1" and distributed.placed("cpu") == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "two")  # a broken environment: alone, rather than a crash
    assert distributed.world() == (0, 1) and distributed.placed("cuda") == "cuda"


def test_alone_a_team_hands_back_what_it_makes_and_release_sends_nothing(monkeypatch):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    team = distributed.Team()
    assert team.main and team.size == 1
    assert team.share(lambda: [1, 2]) == [1, 2]
    team.release()  # no process group: nothing to send, nothing raised


def test_what_the_main_process_sends_survives_the_trip_and_picks_the_same():
    examples = [Example("code", "", f"x = {i}\n", float(i), f"m{i}.py") for i in range(6)]
    pick = Pick(seen={}, replay_share=0.25, seed=0)
    pick.chosen = [example_key(e) for e in examples[::-1]]  # an order the main process chose (error_driven)
    job = distributed.Job("base", ("q_proj",), examples, Config(), None, pick)
    copy = pickle.loads(pickle.dumps(job))  # what broadcast_object_list does
    assert copy.pick(copy.examples, 4, False) == job.pick(examples, 4, False) == examples[:1:-1]
    assert copy.cfg == job.cfg and copy.targets == ("q_proj",)
