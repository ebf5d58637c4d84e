"""How well does each prompt let the model predict the line really written: bits per character, beside the peer.

    python tests/benchmarks/prompt_likelihood.py --repo GIT_DIR [--repo GIT_DIR ...] [--points N]
                                                 [--contexts 2048,3072] [--adapter NAME=GGUF ...] [--json OUT]

The held-out points are quality.py's (the same seed picks the same lines).
For each, the prompt the server assembles at the cursor (every context
source, the project index as it stood before the line's commit), once per
context size in `--contexts`, and the peer's (the last 6,000 characters of
the file, cut at a line start). Each prompt is followed by the line really
written there, and the model's log-likelihood of that line gives its bits
per character: lower is better. Unlike first-line exact match, every point
tells, a little, how much a prompt helps, so a few dozen points separate two
prompts that exact match cannot. Prints the mean per repository and over
all, each configuration against the first context size (the mean of the
paired differences and its standard error, and how many points it made more
and less likely), and the prompt's median tokens: what a first suggestion
after opening a file prefills. The first line the model writes greedily from
each prompt (raw llama.cpp, no post-processing) gives exact match and edit
similarity beside it. With `--adapter NAME=GGUF` (one repository: an
adapter trained on that project up to the cut, as quality.py's `--adapt`
trains it), each context's prompt is scored again with that LoRA adapter
applied: the adapter's effect on the same lines, point by point. Asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import llama_cpp
import numpy as np
from quality import MAX_TOKENS, held_out, peer_window

from selftune.adaptation.data.timeline import Timeline
from selftune.adaptation.evaluate import similarity
from selftune.server.completion.assemble import assemble, prompt_budget
from selftune.server.completion.llama import apply_adapter
from selftune.server.models import load_manifest, resolve_weights


class Scorer:
    def __init__(self, gguf: Path, n_ctx: int):
        self.llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, verbose=False)
        self.loaded: dict[Path, object] = {}  # adapter file -> its llama_adapter_lora

    def use(self, adapter: Path | None) -> None:
        """Score with the GGUF LoRA `adapter` applied (None: the base model alone); each is loaded once."""
        if adapter is not None and adapter not in self.loaded:
            self.loaded[adapter] = llama_cpp.llama_adapter_lora_init(self.llm.model, str(adapter).encode())
            if not self.loaded[adapter]:
                raise SystemExit(f"llama.cpp refused the adapter {adapter}")
        rc = apply_adapter(self.llm.ctx, self.loaded[adapter] if adapter is not None else None)
        if rc != 0:
            raise SystemExit(f"llama.cpp could not apply the adapter {adapter} (code {rc})")
        self.llm.reset()

    def tokens(self, text: str, bos: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=bos, special=False)

    def measure(self, text: str) -> int:
        return len(self.tokens(text, bos=False))

    def score(self, prompt: str, line: str) -> tuple[float, str, int]:
        """(bits per character of `line` after `prompt`, the greedy first line, the prompt's tokens)."""
        head, whole = self.tokens(prompt), self.tokens(prompt + line + "\n")
        n = 0
        while n < min(len(head), len(whole)) and head[n] == whole[n]:
            n += 1  # the tokens at the seam may merge: score from where the two tokenizations part
        self.llm.reset()
        self.llm.eval(whole[:n])
        logprob = 0.0
        for token in whole[n:]:
            last = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
            logits = np.ctypeslib.as_array(last, shape=(self.llm.n_vocab(),)).astype(np.float64)
            top = logits.max()
            logprob += logits[token] - top - math.log(np.exp(logits - top).sum())
            self.llm.eval([token])
        chars = len(self.llm.detokenize(whole[n:]).decode("utf-8", "replace"))
        out = self.llm.create_completion(prompt, max_tokens=40, temperature=0.0, stop=["\n"])  # reuses the prefix
        return -logprob / math.log(2) / max(1, chars), out["choices"][0]["text"].split("\n")[0].strip(), len(head)


def report(rows: list[dict], configs: list[str]) -> None:
    base = configs[1]
    for repo in sorted({r["repo"] for r in rows}) + ["mean"]:
        rr = [r for r in rows if repo in ("mean", r["repo"])]
        print(f"\n{repo} ({len(rr)} points)")
        print(f"  {'':10} {'bits/char':>9} {'vs ' + base:>16} {'better/worse':>13} {'exact':>7} {'edit sim.':>9} "
              f"{'tokens':>7}")  # fmt: skip
        for c in configs:
            diff = [r[c]["bpc"] - r[base]["bpc"] for r in rr]
            se = statistics.pstdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
            better, worse = sum(d < -0.01 for d in diff), sum(d > 0.01 for d in diff)
            mean = {k: statistics.fmean(r[c][k] for r in rr) for k in ("bpc", "exact", "sim")}
            tokens = statistics.median(r[c]["tokens"] for r in rr)
            print(f"  {c:10} {mean['bpc']:9.3f} {statistics.fmean(diff):+9.3f} ± {se:.3f} {better:6}/{worse:<6} "
                  f"{mean['exact']:7.1%} {mean['sim']:9.3f} {tokens:7.0f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", action="append", required=True, help="a git repository (several: one each)")
    parser.add_argument("--points", type=int, default=20, help="held-out lines per repository (default 20)")
    parser.add_argument("--contexts", default="2048,3072", help="the server's context sizes to compare (tokens)")
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=GGUF",
        help="also score every context's prompt with this LoRA adapter (one repository)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write every point here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.contexts.split(",")]
    adapters = dict(a.split("=", 1) for a in args.adapter)
    if adapters and len(args.repo) > 1:
        parser.error("--adapter: one repository (an adapter is trained on one project)")
    manifest = load_manifest("gemma3-270m")
    scorer = Scorer(resolve_weights(manifest), n_ctx=max(sizes + [4096]) + 64)
    configs = ["peer"] + [f"ctx {n}" for n in sizes] + [f"{a} {n}" for a in adapters for n in sizes]
    rows: list[dict] = []
    started = time.perf_counter()
    for repo in map(Path, args.repo):
        commits, chosen = held_out(repo, args.points, args.seed)
        timeline = Timeline(repo, commits[int(len(commits) * 0.8) - 1])
        for done, (i, point) in enumerate(chosen, 1):
            while commits.index(timeline.at) < i - 1:
                timeline.apply(commits[commits.index(timeline.at) + 1])
            target = point.target.rstrip()
            prompts = {"peer": peer_window(point.text, point.offset)}
            for n in sizes:
                prompts[f"ctx {n}"] = assemble(manifest.prompt, point.text, point.offset,
                                               budget=prompt_budget(n, MAX_TOKENS), measure=scorer.measure,
                                               path=point.path, language_id="python",
                                               index=timeline.index).prompt  # fmt: skip
            row: dict = {"repo": repo.name if repo.name != "repo" else repo.parent.name, "path": point.path,
                         "expected": target}  # fmt: skip
            for adapter in [None, *adapters]:
                scorer.use(Path(adapters[adapter]) if adapter else None)
                for name, prompt in prompts.items():
                    if adapter is not None and name == "peer":
                        continue
                    bpc, line, tokens = scorer.score(prompt, target)
                    key = name if adapter is None else f"{adapter} {name.removeprefix('ctx ')}"
                    row[key] = {"bpc": bpc, "line": line, "tokens": tokens, "exact": line == target.strip(),
                                "sim": similarity(line, target.strip())}  # fmt: skip
            rows.append(row)
            if done % 5 == 0:
                print(f"  {row['repo']}: {done}/{len(chosen)} points", file=sys.stderr)
        timeline.close()
    report(rows, configs)
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
