"""Train an adapter on saved examples, as `selftune adapt` trains it: the half of the adaptation benchmark that
runs on a GPU machine.

    python tests/benchmarks/train_examples.py --examples FILE --out DIR [--gguf PATH] [--set key=value ...]

`tests/benchmarks/adaptation.py --save-examples FILE` writes a project's training examples (one JSON object per
line); this trains on them with `train.train`, on CUDA when torch sees a GPU (bf16, TRL's trainer), else on the
CPU, from the base weights dequantized from the serving GGUF (`--gguf` when the model package is not installed,
as on a machine with no package index). It writes the PEFT adapter to DIR, which `adaptation.py --trained DIR`
then exports and evaluates on the held-out commits through llama.cpp. Prints the examples, steps, tokens,
seconds, tokens/s, the device, its peak memory and its bf16 matmul throughput, so the rate can be read against
what the device can do. `--tiny DIR` trains a tiny random model of the same architecture (written to DIR, with
a small word-level tokenizer) instead: a check of the whole training path on a new machine that needs no weights.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

from training_speed import matmul_gflops  # beside this script

from selftune.adaptation import base, train
from selftune.adaptation.config import Config
from selftune.adaptation.data import Example
from selftune.adaptation.progress import Reporter
from selftune.server.models import load_manifest


def tiny_model(folder: Path, examples: list[Example]) -> str:
    """A two-layer Gemma 3 with 64-wide states and a word-level tokenizer over the examples' words, saved."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    words = sorted({w for e in examples for w in (e.prompt + e.target).split()})[:4000]
    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "<eos>", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    config = Gemma3TextConfig(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, pad_token_id=1, eos_token_id=2, bos_token_id=2,
    )  # fmt: skip
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", required=True, help="JSON lines from adaptation.py --save-examples (or .gz)")
    parser.add_argument("--out", required=True, help="where the PEFT adapter goes")
    parser.add_argument("--gguf", default="", help="the serving GGUF, where the model package is not installed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides")
    parser.add_argument("--tiny", metavar="DIR", help="train a tiny random model (written here) instead")
    args = parser.parse_args()
    import torch

    cfg = Config(held_share=0.0).override(args.set)
    manifest = load_manifest("gemma3-270m")
    opener = gzip.open if args.examples.endswith(".gz") else open
    with opener(args.examples, "rt", encoding="utf-8") as lines:
        examples = [Example(**json.loads(line)) for line in lines if line.strip()]
    wall = time.perf_counter()
    if args.tiny:
        location = tiny_model(Path(args.tiny), examples)
    else:
        location, _ = base.prepare(manifest, args.gguf)
    prepared = time.perf_counter() - wall
    out = Path(args.out)
    result = train.train(location, manifest.lora_targets, examples, cfg, out / "run", Reporter(json_lines=False))
    device = result.device
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    shutil.copytree(result.adapter_dir, out / "peft", dirs_exist_ok=True)
    figures = {
        "examples": len(examples),
        "trained": len(result.trained),
        "rows": result.rows,
        "steps": result.steps,
        "tokens": result.tokens,
        "seconds": result.seconds,
        "tokens_per_second": result.tokens_per_second,
        "device": name,
        "precision": result.precision,
        "peak_gib": peak,
        # bf16 at 8192^3 on CUDA; fp32 at 2048^3 on the CPU, as training_speed.py measures it
        "matmul_tflops": (
            matmul_gflops(torch, torch.bfloat16, 8192, 10, "cuda")
            if device == "cuda"
            else matmul_gflops(torch, torch.float32)
        )
        / 1000,
        "prepare_seconds": prepared,
        "losses": {k: [v[0], v[-1]] for k, v in result.losses.items() if v},
        "config": cfg.to_json(),
    }
    (out / "train.json").write_text(json.dumps(figures, indent=2))
    print(
        f"{figures['trained']} of {len(examples)} examples ({result.rows} rows), {result.steps} steps, "
        f"{result.tokens} tokens in {result.seconds:.0f} s on {name} ({result.precision}): "
        f"{result.tokens_per_second:.0f} tokens/s; peak {peak:.1f} GiB; matmul {figures['matmul_tflops']:.1f} "
        f"TFLOP/s; base prepared in {prepared:.0f} s; losses {figures['losses']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
