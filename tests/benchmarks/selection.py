"""Training where the model is wrong, against random selection, at the same budget (issue 20.3).

    python tests/benchmarks/selection.py --repo GIT_DIR [--repo GIT_DIR ...] [--candidates N] [--examples N]
                                         [--points N] [--variants random,wrong first] [--set key=value ...]
                                         [--json OUT]

For each repository (a real one nobody here wrote, e.g. a clone of
pallets/click), two fresh clones at its head, their journals holding the
history as `selftune serve` imports it on first use, are adapted by
`selftune adapt`, one after the other, with the same recipe and seed: both draw the same
`--candidates` examples the way a run draws what it trains on, and both
train on `--examples` of them. One lets the base model complete a line of
each candidate first and trains on those it got wrong first
(`error_driven`), the near misses first; the other takes them at random
(`error_check = false`).
The held-out points (the newest 20 % of the project) and the base model's
answers are the same for both (the second clone reuses the first's).
Prints, per repository and variant, held-out exact match, edit similarity
and loss, what the check found, and the run's wall time. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selftune.server.journal import catch_up_history

VARIANTS = {
    "random": ["--set", "error_check=false"],
    "wrong first": [],
}


def adapt(workspace: Path, recipe: list[str]) -> dict:
    """Run `selftune adapt` on `workspace` and return the new adapter's meta.json."""
    before = set((workspace / ".selftune" / "adapters").glob("*/meta.json"))
    cmd = [sys.executable, "-m", "selftune.server", "adapt", "--workspace", str(workspace), *recipe]
    subprocess.run(cmd, check=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    (meta,) = set((workspace / ".selftune" / "adapters").glob("*/meta.json")) - before
    return json.loads(meta.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", action="append", required=True, help="a git repository with history (repeatable)")
    parser.add_argument("--candidates", type=int, default=128, help="examples drawn, then checked (default 128)")
    parser.add_argument("--examples", type=int, default=64, help="of those, examples trained on (default 64)")
    parser.add_argument("--points", type=int, default=60, help="held-out line completions (default 60)")
    parser.add_argument("--depth", type=int, default=400, help="commits of history in the journal (default 400)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more recipe overrides")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"which selections, of {', '.join(VARIANTS)}")
    parser.add_argument("--json", metavar="OUT", help="also write the figures here")
    args = parser.parse_args()
    variants = {v: VARIANTS[v] for v in args.variants.split(",")}

    recipe = [f"max_train_examples={args.examples}", f"error_driven={args.candidates}", f"max_points={args.points}",
              "minutes=0", "run_tests=false", *args.set]  # fmt: skip
    recipe_args = [a for kv in recipe for a in ("--set", kv)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="selftune-selection-") as tmp:
        for repo in args.repo:
            name = Path(repo).resolve().name if Path(repo).name not in ("repo", ".git") else Path(repo).parent.name
            heldout: Path | None = None
            for variant, extra in variants.items():
                clone = Path(tmp) / f"{name}-{variant.replace(' ', '-')}"
                subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
                catch_up_history(clone, args.depth)  # deeper than `selftune adapt`'s default
                if heldout is not None:  # the base model's answers on the same points, from the first run
                    shutil.copytree(heldout, clone / ".selftune" / "heldout")
                print(f"\n== {name}: {variant}", flush=True)
                started = time.perf_counter()
                meta = adapt(clone, recipe_args + extra)
                wall = time.perf_counter() - started
                heldout = clone / ".selftune" / "heldout"
                compare, check = meta["compare"], meta.get("error_driven", {})
                rows.append({"repo": name, "variant": variant, "wall_s": round(wall),
                             "trained": meta["training"].get("sequences"), "tokens": meta["training"].get("tokens"),
                             "checked": check.get("checked"), "already_right": check.get("already_right"),
                             "base": compare["base"], "adapted": compare["candidate"]})  # fmt: skip
                if args.json:  # after each run: a long benchmark stopped midway keeps what it measured
                    Path(args.json).write_text(json.dumps({"recipe": recipe, "rows": rows}, indent=2))

    print(f"\nrecipe: {' '.join(recipe)}")
    w = max([len("repository")] + [len(r["repo"]) for r in rows]) + 2
    print(f"{'repository':<{w}}{'selection':<13}{'exact match':>13}{'edit sim.':>11}{'loss':>8}"
          f"{'right/checked':>15}{'sequences':>10}{'wall':>8}")  # fmt: skip
    for repo in dict.fromkeys(r["repo"] for r in rows):
        base = next(r for r in rows if r["repo"] == repo)["base"]
        print(f"{repo:<{w}}{'base model':<13}{base['exact_match']:>12.1%} {base['edit_similarity']:>10.3f}"
              f"{base.get('heldout_loss') or 0:>8.3f}")  # fmt: skip
        for r in (r for r in rows if r["repo"] == repo):
            m = r["adapted"]
            check = f"{r['already_right']}/{r['checked']}" if r["checked"] else "-"
            print(f"{'':<{w}}{r['variant']:<13}{m['exact_match']:>12.1%} {m['edit_similarity']:>10.3f}"
                  f"{m.get('heldout_loss') or 0:>8.3f}{check:>15}{r['trained'] or 0:>10}{r['wall_s']:>7}s")  # fmt: skip


if __name__ == "__main__":
    main()
