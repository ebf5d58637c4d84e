"""`selftune adapt` under `accelerate launch`, data-parallel over two CPU processes (torch's gloo).

The command a team runs on a bigger box, unchanged: Accelerate starts two
copies of `selftune adapt`; the main one builds the data, sends it to the
other, both train (each on its half of every batch, gradients averaged), and
the main one alone exports, evaluates, gates and records. The adapter must
be valid (llama.cpp loads it and agrees with transformers), the data must
really have been split, and only the main process may speak.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import ENV
from .test_adaptation import idiom_project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_adapt_under_accelerate_launch_trains_on_two_cpu_processes(tmp_path: Path):
    project = idiom_project(tmp_path / "idiom")
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate is one of the adapt extra's packages"
    # --multi_gpu is Accelerate's data-parallel launcher (torchrun); without CUDA it runs on the CPU over gloo.
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]  # fmt: skip
    recipe = ["--set", "epochs=1", "--set", "max_points=3", "--set", "error_driven=0"]
    done = subprocess.run(
        [*launch, "-m", "selftune.server", "adapt", "--workspace", str(project), "--json", *recipe],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    events = [json.loads(line) for line in done.stdout.splitlines()]  # --json: nothing but JSON lines on stdout
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 1, done.stdout[-2000:]  # one report: the main process's
    adapter_id = results[0]["id"]
    meta = json.loads((project / ".selftune" / "adapters" / adapter_id / "meta.json").read_text())
    assert meta["decision"] in ("promoted", "kept"), meta.get("error")
    training = meta["training"]
    assert training["processes"] == 2
    # Each process took half of every batch: half of the sequences, and the other one the rest.
    assert training["sequences"] >= 4
    assert training["sequences_per_process"] == -(-training["sequences"] // 2)
    assert f"process 1 of 2 trained on {training['sequences_per_process']} of the {training['sequences']}" in (
        done.stderr
    )
    # The batch stays the recipe's (2 sequences): as many optimizer steps as one process would take.
    assert training["steps"] == training["sequences_per_process"]
    # A valid adapter: the GGUF export loads in llama.cpp, which agrees with transformers on the top-1 tokens.
    assert (project / ".selftune" / "adapters" / adapter_id / "adapter.gguf").stat().st_size > 0
    assert meta["compare"]["candidate"]["parity_top1"] >= 0.9
