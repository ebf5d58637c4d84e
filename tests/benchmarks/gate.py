"""The gate's picks over a workspace's runs, replayed, and checked on held-out points it never saw (issue 20).

    python tests/benchmarks/gate.py --workspace DIR [--models ID,ID,...] [--fresh N] [--json OUT]

DIR is a workspace where `selftune adapt` has run several times (its
`.selftune/adapters/`). The base model and each adapter (or those of
`--models`) complete the held-out points a run judges on now, one after the
other with the same generator, so that all answer alike (no remembered
answers). The gate (`evaluate.gate`) is then replayed over the runs in the
order they were made, with those answers and each run's held-out loss from
its meta.json, twice: on the lines alone (the rule before 2cd48a6: a
candidate must beat the adapter in use's edit similarity), and as it is now
(or come within the noise of the paired difference with a lower held-out
loss). With `--fresh N`, the adapters each rule ends with, and the one of
lowest held-out loss, then complete N other held-out points of the same
files, a seeded sample the gate never saw, and are compared point by point.
Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import replace
from pathlib import Path

from selftune.adaptation import evaluate, run
from selftune.adaptation.answers import point_key
from selftune.adaptation.config import Config
from selftune.adaptation.data import dataset, points
from selftune.server.models import load_manifest


def answer(gen, data, at: list, adapter: Path | None) -> dict:
    """Exact match, edit similarity and each point's similarity and line, with `adapter` (None: the base)."""
    gen.set_adapter(adapter)
    lines: list[str] = []
    metrics = evaluate.completion_metrics(gen, at, lines=lines, index=data.index)
    return metrics | {"lines": lines}


def replay(runs: list[str], figures: dict, losses: dict, lines_only: bool) -> list[tuple[str, bool, str]]:
    """Each run's verdict, in order, against the adapter in use the verdicts before it left."""
    base = figures["base"] | {"heldout_loss": losses["base"]}
    in_use, verdicts = None, []
    for name in runs:
        current = figures[in_use] | {"heldout_loss": losses[in_use]} if in_use else base
        if lines_only:
            current = {k: v for k, v in current.items() if k not in ("similarities", "heldout_loss")}
        promote, why = evaluate.gate(figures[name] | {"heldout_loss": losses[name]}, current, base)
        verdicts.append((name, promote, why))
        in_use = name if promote else in_use
    return verdicts


def paired(a: dict, b: dict, targets: list[str]) -> str:
    """`b` against `a` on the same points: exact lines gained and lost, and the edit similarity's difference."""
    gained = sum(y == t != x for x, y, t in zip(a["lines"], b["lines"], targets))
    lost = sum(x == t != y for x, y, t in zip(a["lines"], b["lines"], targets))
    spread = evaluate.noise(b, a) or 0.0
    change = b["edit_similarity"] - a["edit_similarity"]
    return f"{gained} exact gained, {lost} lost; edit similarity {change:+.3f} ± {spread:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", required=True, type=Path, help="a workspace with several runs' adapters")
    parser.add_argument("--models", default="", help="adapter ids to replay, comma-separated (default: all)")
    parser.add_argument("--fresh", type=int, default=100, help="held-out points the gate never saw (0: none)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures here")
    args = parser.parse_args()
    root = args.workspace.resolve()
    folder = root / ".selftune" / "adapters"
    metas = {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("*/meta.json"))}
    runs = [m for m in args.models.split(",") if m] or sorted(metas)
    losses = {name: metas[name]["compare"]["candidate"].get("heldout_loss") for name in runs}
    losses["base"] = metas[runs[0]]["compare"]["base"].get("heldout_loss")

    cfg = Config().from_workspace(root, trusted=False)[0]
    manifest = load_manifest("gemma3-270m")
    measure = run.token_counter(manifest, "")
    # Every held-out point once; the gate's are the run's own sample of them (as dataset.build draws it).
    every = dataset.build(root, run._journal(root), manifest.prompt, replace(cfg, max_points=10**9), measure=measure)
    gate_points = points.sample(every.points, cfg.max_points, cfg.seed)
    gen = run._generator(manifest, "", cfg)
    out: dict = {"points": len(gate_points), "models": {}, "replay": {}, "fresh": {}}
    try:
        figures = {}
        for name in ["base", *runs]:
            figures[name] = answer(gen, every, gate_points, None if name == "base" else folder / name / "adapter.gguf")
            print(f"{name}: exact match {figures[name]['exact_match']:.1%}, edit similarity "
                  f"{figures[name]['edit_similarity']:.3f}, held-out loss {losses[name]}", flush=True)  # fmt: skip
        out["models"] = {k: {m: v[m] for m in ("exact_match", "edit_similarity")} for k, v in figures.items()}
        ends = {}
        for label, lines_only in (("the lines alone", True), ("the gate now", False)):
            verdicts = replay(runs, figures, losses, lines_only)
            print(f"\n{label}:")
            for name, promote, why in verdicts:
                print(f"  {name}: {'promoted' if promote else 'kept'}: {why}")
            ends[label] = next((n for n, p, _ in reversed(verdicts) if p), "base")
            print(f"  in use after the last run: {ends[label]}")
            out["replay"][label] = [{"id": n, "promoted": p, "why": w} for n, p, w in verdicts]
        if args.fresh > 0:
            lowest = min(runs, key=lambda n: losses[n] if losses[n] is not None else math.inf)
            chosen = list(dict.fromkeys([*ends.values(), lowest]))
            seen = {point_key(p) for p in gate_points}
            rest = [p for p in every.points if point_key(p) not in seen]
            fresh = sorted(random.Random(1).sample(rest, min(args.fresh, len(rest))),
                           key=lambda p: (p.time, p.path, p.offset))  # fmt: skip
            targets = [p.target.rstrip() for p in fresh]
            print(f"\n{len(fresh)} held-out points the gate never saw ({len(rest)} outside its {len(seen)}):")
            answers = {n: answer(gen, every, fresh, None if n == "base" else folder / n / "adapter.gguf")
                       for n in chosen}  # fmt: skip
            first = answers[chosen[0]]
            for name in chosen:
                a = answers[name]
                against = "" if name == chosen[0] else f"; against {chosen[0]}: {paired(first, a, targets)}"
                print(f"  {name}: exact match {a['exact_match']:.1%}, edit similarity {a['edit_similarity']:.3f}"
                      f"{against}")  # fmt: skip
                out["fresh"][name] = {m: a[m] for m in ("exact_match", "edit_similarity")}
    finally:
        gen.close()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
