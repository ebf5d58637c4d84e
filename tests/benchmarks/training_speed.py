"""How fast adaptation trains on this machine, against what its matrix units can do.

    python tests/benchmarks/training_speed.py [--repo PATH] [--examples 16] [--max-length 512] [--threads N]

First the machine's own matmul throughput (torch, 2048^3, fp32 and bf16, on
the threads training uses). Then SFT steps as `selftune adapt` takes them
(TRL's trainer, LoRA r=16, the recipe's precision) on two kinds of examples
from a real project's files at HEAD:

- code windows: the whole text is the target (every position takes the loss);
- serving-format examples: the prompt the server would assemble at the start
  of a block (project blocks, the lines after the cursor, the window before
  it), the block as the target: most positions are prompt.

Each in the same run as the recipe was before issue 20 (the LM head at every
position, the model's own loss; LoRA dropout 0.05; the base weights in fp32,
cast to bf16 at every product where the CPU has it; one row per forward pass),
with the head at the targets only (loss.py), then without dropout, then with
the base weights held in the recipe's dtype (bf16 where the CPU multiplies it
natively, as on CUDA; elsewhere the same as the row before), then with 4 rows
of like length per forward pass (`micro_batch`); the serving kind also with
LoRA on the last 12 and the last 6 of 18 layers (`lora_layers`); and both
kinds with the softmax over the project's vocabulary (`project_vocab`, the
default), with 4 rows a pass and with one. Prints tokens/s of the training
steps, target tokens/s, the model FLOP/s those imply (about 4 x the block
weights per token: forward, and the backward pass through frozen weights; 4 x
the head's weights per position whose logits are computed) and that as a
share of the matmul throughput, the speed-up of the steps, and apart the
trainer's making (once a run, whatever its length: TRL's setup, and the
project vocabulary's scan) with the speed-up counting it in. Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from selftune.adaptation import base, run, train
from selftune.adaptation.config import Config
from selftune.adaptation.data import Example, corpus, dataset, insertions
from selftune.server.models import load_manifest

# the recipe before issue 20: LoRA dropout 0.05 on every adapted layer, one row per forward pass
BEFORE = {"dropout": 0.05, "micro_batch": 1}
ONE_ROW = {"micro_batch": 1}
# (name, the LM head at every position, the recipe's changes from its defaults, the base weights in the recipe's
# precision: bf16 where the CPU multiplies it natively; False: in fp32, as before, cast at every product)
VARIANTS = {
    "code windows": [
        ("head everywhere (before)", True, BEFORE, False),
        ("head at targets", False, BEFORE, False),
        ("head at targets, no dropout", False, ONE_ROW, False),
        ("that, the base in the recipe's dtype", False, ONE_ROW, True),
        ("that, 4 rows a pass", False, {}, True),
        ("that, project vocab (default)", False, {"project_vocab": True}, True),
        ("project vocab, 1 row a pass", False, {"project_vocab": True} | ONE_ROW, True),
    ],
    "serving format": [
        ("head everywhere (before)", True, BEFORE, False),
        ("head at targets", False, BEFORE, False),
        ("head at targets, no dropout", False, ONE_ROW, False),
        ("that, the base in the recipe's dtype", False, ONE_ROW, True),
        ("that, 4 rows a pass (same loss)", False, {}, True),
        ("that, LoRA on the last 12", False, {"lora_layers": 12}, True),
        ("that, LoRA on the last 6", False, {"lora_layers": 6}, True),
        ("that, project vocab (default)", False, {"project_vocab": True}, True),
        ("project vocab, 1 row a pass", False, {"project_vocab": True} | ONE_ROW, True),
    ],
}


def matmul_gflops(torch, dtype, size: int = 2048, reps: int = 5, device: str = "cpu") -> float:
    """The median of `reps` size^3 matrix products after a warm-up (on CUDA, timed between synchronizations)."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    a @ b  # warm-up
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def serving_examples(files: dict, cfg: Config, measure, fmt, count: int, rng: random.Random) -> list[Example]:
    """Blocks of 1-4 lines at random places, each with the prompt the server would send there."""
    index = dataset.index_of(files)
    prompt_for = dataset.serving_prompts(fmt, cfg, measure)
    paths = sorted(p for p, (text, _) in files.items() if text.count("\n") > 20)
    out: list[Example] = []
    while len(out) < count:
        path = rng.choice(paths)
        text = files[path][0]
        lines = text.count("\n")
        found = insertions.at_block(text, rng.randrange(5, lines - 4), rng.randint(1, 4))
        if found is None:
            continue
        document, cursor, block = found
        out.append(Example("insertion", prompt_for(path, document, cursor, index), block, 0.0, path))
    return out


def step_through(location: str, targets, examples: list[Example], cfg: Config, plain: bool, recipe_dtype: bool) -> dict:
    """SFT over `examples` (one epoch), timed; the head everywhere (`plain`) or at the targets only; the base
    weights in the recipe's dtype (`recipe_dtype`, as `selftune adapt` loads them) or in fp32."""
    from transformers import Trainer
    from trl import SFTTrainer

    kind = train.precision(cfg, "cpu") if recipe_dtype else "fp32"
    model, tokenizer = base.load(location, "cpu", train.torch_dtype(kind))
    params = sum(p.numel() for p in model.parameters())
    model = train.with_lora(model, cfg, targets)

    class PlainLoss(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    real = train.TargetLossSFT.make
    if plain:
        train.TargetLossSFT.make = staticmethod(lambda: PlainLoss)  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()  # the trainer's making, once a run: a project vocabulary is made there
            trainer, rows = train.sft_trainer(model, tokenizer, examples, cfg, Path(out), "cpu")
            making = time.perf_counter() - start
            trainer.train()
            seconds = time.perf_counter() - start - making
            tokens = sum(r.tokens for r in rows)
            batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
            target_tokens = int((batch["labels"] != -100).sum())
            vocabulary = getattr(trainer, "vocabulary", None)
    finally:
        train.TargetLossSFT.make = real  # type: ignore[method-assign]
    del model
    return {"tokens": tokens, "targets": target_tokens, "seconds": seconds, "making": making, "params": params,
            "vocabulary": None if vocabulary is None else (len(vocabulary.ids), vocabulary.outside)}  # fmt: skip


def model_gflop(location: str, params: int, tokens: int, heads: int, lora_layers: int, vocab: int | None) -> float:
    """FLOPs of a LoRA training pass: 2 x block weights per token forward, 2 x those backward through the
    adapted layers; 4 x the head's weights (its `vocab` rows, when not all) per position whose logits are
    computed."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location).get_text_config()
    head = config.vocab_size * config.hidden_size
    used = (vocab or config.vocab_size) * config.hidden_size
    layers = config.num_hidden_layers
    per_layer = (params - head) / layers
    backward_layers = lora_layers or layers
    return (2 * per_layer * layers * tokens + 2 * per_layer * backward_layers * tokens + 4 * used * heads) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2], help="a project's folder")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    # the rows before the project's vocabulary take the whole one; those named for it turn it on
    cfg = Config(max_length=args.max_length, threads=args.threads, epochs=1.0, device="cpu", dpo_rounds=0,
                 project_vocab=False)  # fmt: skip
    torch = train.setup_torch(cfg)
    threads = torch.get_num_threads()
    bf16 = train.uses_bf16(cfg, "cpu")
    fp32_peak = matmul_gflops(torch, torch.float32)
    bf16_peak = matmul_gflops(torch, torch.bfloat16)
    peak = bf16_peak if bf16 else fp32_peak
    print(f"{threads} threads; matmul 2048^3: fp32 {fp32_peak:.0f} GFLOP/s, bf16 {bf16_peak:.0f} GFLOP/s; "
          f"training {'under bf16 autocast, the recipe with the base in bf16' if bf16 else 'in fp32'}")  # fmt: skip

    manifest = load_manifest("gemma3-270m")
    location, _ = base.prepare(manifest, progress=lambda m: None)
    files = corpus.project_files(args.repo)
    rng = random.Random(0)
    windows = corpus.from_files(files, manifest.prompt, window_chars=cfg.window_chars, fim_share=0.0, seed=0)
    code = rng.sample([e for e in windows if e.kind == "code"], args.examples)
    serving = serving_examples(files, cfg, run.token_counter(manifest, ""), manifest.prompt, args.examples, rng)
    print(f"{len(code)} code windows and {len(serving)} serving-format examples from {args.repo}, "
          f"max_length {cfg.max_length}\n")  # fmt: skip

    rows = []
    for kind, examples in (("code windows", code), ("serving format", serving)):
        for name, plain, changes, recipe_dtype in VARIANTS[kind]:
            recipe = replace(cfg, **changes)
            got = step_through(location, manifest.lora_targets, examples, recipe, plain, recipe_dtype)
            heads = got["tokens"] if plain else got["targets"]
            vocab = got["vocabulary"][0] if got["vocabulary"] else None
            gflop = model_gflop(location, got["params"], got["tokens"], heads, recipe.lora_layers, vocab)
            rows.append((kind, name, got, gflop / got["seconds"]))

    print(f"{'examples':16}{'loss':38}{'tokens/s':>10}{'targets/s':>11}{'GFLOP/s':>9}{'of peak':>9}{'speed-up':>10}"
          f"{'making':>8}{'with it':>9}")  # fmt: skip
    for kind, name, got, gflops in rows:
        first = next(r for r in rows if r[0] == kind)[2]
        speedup = first["seconds"] / got["seconds"]
        whole = (first["seconds"] + first["making"]) / (got["seconds"] + got["making"])
        print(f"{kind:16}{name:38}{got['tokens'] / got['seconds']:>10.0f}{got['targets'] / got['seconds']:>11.0f}"
              f"{gflops:>9.0f}{gflops / peak:>9.0%}{speedup:>9.2f}x{got['making']:>7.1f}s{whole:>8.2f}x")  # fmt: skip
    for kind, name, got, _ in rows:
        if got["vocabulary"]:
            size, outside = got["vocabulary"]
            print(f"{kind}, {name}: the softmax over {size:,} tokens; the base model's probability outside them "
                  f"{outside:.1%}")  # fmt: skip
    print(
        "\ntarget: 3x the tokens/s of the head everywhere, on the examples a run trains on. The speed-up is the"
        "\nsteps'; 'making' is the trainer's, once a run (a project vocabulary is made there); 'with it' counts it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
