"""The LoRA recipe: SFT on revisions, edit sequences and project code, then CodeLutra on preferences.

Read top to bottom: set up (seed, threads, the base model with a peft LoRA on
the manifest's target modules), SFT, preference rounds, save. The objective on
preferences is CodeLutra's: DPO plus the likelihood (NLL) of the chosen
answer, which is TRL's `DPOTrainer` with `loss_type=["sigmoid", "sft"]`; given
a peft model and no reference model, TRL 1.16 computes the reference log-probs
with the adapter as it was when the round began (a frozen copy of the LoRA weights
only, named "ref"; for a fresh adapter that is the base model with the adapter
disabled), so there is no second copy of the model. Rounds after
the first sample fresh answers from the model trained so far and pair them
with the known good one (CodeLutra's iteration). SFT uses TRL's `SFTTrainer`
with the loss on the completion only; a prompt longer than `max_length` loses
its beginning here, because TRL only keeps the start and the target is at the end.

CUDA in bf16 when present, else the CPU: in bf16 as on CUDA where the CPU
multiplies bf16 natively (`cpu_bf16`: the frozen base weights in bf16, LoRA's
own in fp32, matrix products under autocast), else in fp32; on every core
(the process is niced by `selftune adapt`), and for SFT the same cross-entropy as the
model's own loss but with the 262k-wide LM head run only where the loss is taken,
in place of TRL's fused LM head (`TargetLossSFT`: the same loss, faster on the CPU),
by default with the softmax over the project's vocabulary (`project_vocab`: faster still, an approximation).
Seeded: the same data and config give the same adapter.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from selftune.server.cpus import usable_cpus

from .budget import Budget, shorten
from .config import Config
from .data import Example
from .distributed import local_processes, placed, world
from .loss import TargetLossSFT, Vocabulary
from .progress import Pace, Reporter
from .rounds import next_round_pairs

log = logging.getLogger(__name__)

SFT_KINDS = ("revision", "edit", "lintseq", "insertion", "code", "fim")
SERVING_KINDS = ("insertion", "code", "fim")  # plain continuation (or FIM): what the server asks of the model
WAVE = 32  # examples shuffled together in the first epoch of a run that trains what it has not seen first


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int = 0
    tokens: int = 0  # target + prompt tokens seen, all epochs and rounds
    seconds: float = 0.0
    losses: dict = field(default_factory=dict)  # phase -> every logged loss
    device: str = "cpu"
    precision: str = "fp32"  # "fp32", or "bf16" (the base's weights, and autocast over the matrix products)
    model: Any = None  # the peft model, still in memory for evaluation
    tokenizer: object = None
    trained: list[Example] = field(default_factory=list)  # the SFT examples the run trained on
    warm_from: Path | None = None  # the adapter it went on from (None: a new LoRA on the base model)
    warm_note: str = ""  # why it did not go on from the adapter it was given
    expected_rate: float | None = None  # tokens/s the last run trained at here: what the run says it will take
    processes: int = 1  # data-parallel processes (`accelerate launch`), this one among them
    rows: int = 0  # SFT sequences per epoch (examples cut to fit `max_length`)
    rows_here: int = 0  # of those, this process's share (all of them when alone)
    vocabulary: dict | None = None  # `project_vocab`: the tokens SFT's softmax ran over, and what it left out

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def setup_torch(cfg: Config):
    import torch
    from transformers import set_seed

    set_seed(cfg.seed)
    threads = cfg.threads or max(1, usable_cpus() // local_processes())  # processes on one machine split its cores
    torch.set_num_threads(threads)
    return torch


def lora_layer_indices(model, lora_layers: int) -> list[int] | None:
    """The decoder layers that get LoRA: all (None) for 0, else the last `lora_layers` of them.

    With the layers below frozen and no input gradients, autograd builds no graph under the lowest
    adapted layer, so the backward pass stops there."""
    total = model.config.get_text_config().num_hidden_layers
    if lora_layers == 0:
        return None
    if not 0 < lora_layers <= total:
        raise ValueError(f"lora_layers={lora_layers}: the model has {total} decoder layers; set 0 (all) or 1..{total}")
    return list(range(total - lora_layers, total))


def with_lora(model, cfg: Config, targets: tuple[str, ...]):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(targets),
        layers_to_transform=lora_layer_indices(model, cfg.lora_layers),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def warm_start_problem(peft_dir: Path, model, cfg: Config, targets: tuple[str, ...]) -> str | None:
    """Why the adapter saved in `peft_dir` cannot be trained further with `cfg` (None: it can). Its LoRA must
    have the shape this run would give a new one: rank, alpha, the same modules on the same layers."""
    try:
        saved = json.loads((peft_dir / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        return f"its PEFT adapter cannot be read ({exc})"
    want = {
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "target_modules": sorted(targets),
        "layers_to_transform": lora_layer_indices(model, cfg.lora_layers),
    }
    have = dict(saved, target_modules=sorted(saved.get("target_modules") or []))
    differ = [f"{k} {have.get(k)!r} (now {v!r})" for k, v in want.items() if have.get(k) != v]
    return f"its LoRA differs: {', '.join(differ)}" if differ else None


def with_warm_lora(model, peft_dir: Path):
    """The model with the adapter saved in `peft_dir` on it, trainable: a run that goes on from it."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(peft_dir), is_trainable=True)


def fit_prompt(tokenizer, prompt: str, target: str, max_length: int) -> tuple[str, int]:
    """`prompt` cut at a token boundary so that prompt + target fit `max_length`; and the tokens used."""
    target_tokens = len(tokenizer(target, add_special_tokens=False).input_ids)
    room = max(0, max_length - 1 - min(target_tokens, max_length - 1))
    if not prompt or room == 0:
        return ("" if room == 0 else prompt), min(max_length, target_tokens + 1)
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc.input_ids) <= room:
        return prompt, len(enc.input_ids) + target_tokens + 1
    cut = enc.offset_mapping[len(enc.input_ids) - room][0]
    return prompt[cut:], max_length


def split_to_fit(tokenizer, examples: list[Example], max_length: int) -> list[Example]:
    """Code windows longer than `max_length` tokens, cut at line boundaries into consecutive pieces that fit.

    TRL keeps the start of a sequence that is too long, so without this the end of every long window
    (a quarter of a 2400-character window at 512 tokens, half of it at 384) would never be trained on."""
    out = []
    for e in examples:
        if e.kind != "code" or e.prompt:
            out.append(e)
            continue
        text = e.target
        while text:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            if len(enc.input_ids) < max_length:
                out.append(replace(e, target=text))
                break
            end = enc.offset_mapping[max_length - 1][0]  # the first character that does not fit
            cut = text.rfind("\n", 0, end) + 1 or end or len(text)  # a line too long alone is cut inside
            out.append(replace(e, target=text[:cut]))
            text = text[cut:]
    return out


def sample_sft(
    examples: list[Example], cap: int, seed: int, code_share: float = 0.0, ordered: bool = False
) -> list[Example]:
    """At most `cap` SFT examples: every revision (rare and the most direct signal), then examples in the
    server's format (the newest blocks the edit steps inserted, and project code as continuation or FIM)
    up to `code_share` of the rest, those kinds in turn, then every kind in turn (edit steps, LintSeq,
    ...), so that no one kind crowds out the others. Shuffled; or, when `examples` are `ordered` (what to train
    first, first: lineage.fresh_first), each kind taken from the front and the choice left in that order."""
    rng = random.Random(seed)
    revisions = [e for e in examples if e.kind == "revision"]
    if not ordered:
        rng.shuffle(revisions)
    by_kind = defaultdict(list)
    for e in examples:
        if e.kind != "revision":
            by_kind[e.kind].append(e)
    queues = []
    for kind in sorted(by_kind):
        if ordered:  # taken from the end: the front first
            by_kind[kind].reverse()
        else:
            rng.shuffle(by_kind[kind])
            if kind == "insertion":  # newest last, so first taken: what the code is turning into now
                by_kind[kind].sort(key=lambda e: e.time)
        queues.append(by_kind[kind])
    chosen = revisions[:cap]
    code = [q for kind, q in sorted(by_kind.items()) if kind in SERVING_KINDS]
    wanted = len(chosen) + int(code_share * (cap - len(chosen)))
    while len(chosen) < wanted and any(code):
        for queue in code:
            if queue and len(chosen) < wanted:
                chosen.append(queue.pop())
    while len(chosen) < cap and any(queues):
        for queue in queues:
            if queue and len(chosen) < cap:
                chosen.append(queue.pop())
    if ordered:
        place = {id(e): i for i, e in enumerate(examples)}
        return sorted(chosen, key=lambda e: place[id(e)])
    rng.shuffle(chosen)
    return chosen


def in_waves(
    examples: list[Example], wave: int, seed: int, code_share: float = 0.0, limit: int | None = None
) -> list[Example]:
    """Up to `limit` (all) of `examples`: `sample_sft`'s `wave` of them, then its `wave` of the rest, and so on, each
    wave drawn by the same rules (and the first the one a run of `wave` examples trains on): a run with time to
    spare goes on where such a run would stop."""
    limit = len(examples) if limit is None else limit
    chosen: list[Example] = []
    rest = examples
    while rest and len(chosen) < limit:
        drawn = sample_sft(rest, min(wave, limit - len(chosen)), seed + len(chosen), code_share)
        if not drawn:
            break
        chosen += drawn
        taken = {id(e) for e in drawn}
        rest = [e for e in rest if id(e) not in taken]
    return chosen


def to_train(
    examples: list[Example],
    cfg: Config,
    pick: Callable[[list[Example], int, bool], list[Example]] | None,
    warm: bool,
    fill: bool,
) -> list[Example]:
    """The SFT examples a run trains on, in the order it takes them: `max_train_examples` of `pick`'s choice (or of
    all), sampled across kinds; with `fill` (a time plan), all of them, those first and then wave after wave, as
    many as the run's time will allow. In `pick`'s order when the run goes on from a `warm` adapter."""
    cap = len(examples) if fill else cfg.max_train_examples
    if pick is not None:
        examples = pick(examples, cap, warm)
    if pick is not None and warm:
        return sample_sft(examples, cap, cfg.seed, cfg.code_share, ordered=True)
    return in_waves(examples, cfg.max_train_examples, cfg.seed, cfg.code_share, limit=cap)


class _Progress:
    """A transformers TrainerCallback (built lazily: transformers is imported only when training)."""

    @staticmethod
    def make(reporter: Reporter, phase: str, label: str, losses: list, budget: Budget | None = None):
        """`budget`: the run's time plan, kept step by step. Set `pace` to a `Pace` over the steps' tokens, so that
        the time left counts what each step still has to do."""
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            pace = Pace()
            planned = 0  # the steps the trainer planned, before the budget shortened them
            cut = False  # the budget has held training to fewer steps than planned at some step

            def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
                if not state.max_steps:
                    return
                self.planned = self.planned or state.max_steps
                done = state.global_step
                left = self.pace.left(done, state.max_steps)
                rate = self.pace.rate(done)
                if budget is not None and rate is not None:
                    fits = budget.steps(done, self.planned, rate, self.pace.between)
                    if fits != state.max_steps:
                        shorten(lr_scheduler, fits)
                        state.max_steps = fits
                        left = self.pace.left(done, fits)
                    if done >= state.max_steps:
                        control.should_training_stop = True
                self.cut = self.cut or state.max_steps < self.planned
                held = f" ({state.max_steps} of {self.planned} fit the run's time)" if self.cut else ""
                reporter.phase(
                    phase,
                    f"{label}: step {done}/{state.max_steps}" + (f", {left} left" if left else "") + held,
                    done / state.max_steps,
                )

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    losses.append(float(logs["loss"]))

        return Callback()


def uses_bf16(cfg: Config, device: str) -> bool:
    """Training in bf16 (the frozen base weights in bf16, LoRA's own in fp32, matrix products under autocast):
    always on CUDA; on the CPU where it multiplies bf16 natively."""
    from . import base

    return device == "cuda" or (cfg.cpu_bf16 and base.cpu_has_bf16())


def torch_dtype(kind: str):
    import torch

    return torch.bfloat16 if kind == "bf16" else torch.float32


def precision(cfg: Config, device: str) -> str:
    """The precision `uses_bf16` says, "bf16" or "fp32": as a run reports it, and its held-out loss is keyed by."""
    return "bf16" if uses_bf16(cfg, device) else "fp32"


def quiet(trainer):
    """The trainer without the callback that prints each logged loss as a dict on stdout, where `selftune adapt
    --json` writes its JSON lines (the losses reach the reporter through `_Progress`)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def _args(cls, cfg: Config, out: Path, device: str, epochs: float, per_pass: int = 1, **extra):
    """Transformers' training arguments for the recipe. Each process takes its share of a batch under `accelerate
    launch` (the batch stays `batch_size` examples): on CUDA in one forward pass, on the CPU `per_pass` rows at a
    time (`micro_batch`) and the rest by gradient accumulation."""
    # No activation (gradient) checkpointing, which TRL turns on: at these lengths the activations of a
    # small model fit, and recomputing them cost 5-10 % of the CPU's time here.
    extra.setdefault("activation_checkpointing", False)
    share = -(-cfg.batch_size // world()[1])
    # rows a forward pass: the largest divisor of the share up to `per_pass`, so every step takes the same rows
    passes = share if device == "cuda" else max(d for d in range(1, max(per_pass, 1) + 1) if share % d == 0)
    return cls(
        output_dir=str(out),
        num_train_epochs=epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=passes,
        gradient_accumulation_steps=share // passes,
        lr_scheduler_type="linear",
        warmup_steps=cfg.warmup_ratio,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=uses_bf16(cfg, device),
        use_cpu=device == "cpu",
        max_length=cfg.max_length,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
        **extra,
    )


def sft_trainer(
    model, tokenizer, examples: list[Example], cfg: Config, out: Path, device: str, callbacks=(), ordered: bool = False
):
    """(TRL's SFT trainer, its rows): the completion-only loss, TRL's fused head on CUDA and `TargetLossSFT` on the
    CPU, over `examples` cut and fitted to `cfg.max_length`. The rows of all epochs are laid out here, each epoch
    shuffled (seeded), and trained on in that order in one pass, so that a run stopped early knows which it
    trained on (`seen`). When `examples` are `ordered` (the front first), the first epoch is shuffled only within
    waves of `WAVE` examples: a run its time stops early has trained on the front."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    epoch = []
    for i, e in enumerate(examples):
        for k, piece in enumerate(split_to_fit(tokenizer, [e], cfg.max_length)):
            prompt, n = fit_prompt(tokenizer, piece.prompt, piece.target, cfg.max_length)
            epoch.append(({"prompt": prompt, "completion": piece.target}, Row(i, k, n)))
    args = _args(SFTConfig, cfg, out / "sft", device, 1.0, per_pass=cfg.micro_batch, completion_only_loss=True,
                 train_sampling_strategy="sequential")  # fmt: skip
    stream = laid_out(epoch, cfg.epochs, cfg.seed, ordered)
    per_step = rows_per_step(args)
    if per_step > 1:  # a step's rows of like length: little padded where they share a forward pass
        stream = by_length(stream, per_step, cfg.seed)
    trainer_class = SFTTrainer if device == "cuda" else TargetLossSFT.make()
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([row for row, _ in stream]),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    if cfg.project_vocab and device != "cuda":
        trainer.vocabulary = project_vocabulary(model, trainer.train_dataset)
    return quiet(trainer), [row for _, row in stream]


def laid_out(epoch: list[tuple[dict, Row]], epochs: float, seed: int, ordered: bool) -> list[tuple[dict, Row]]:
    """The rows of `epochs` passes over `epoch` in training order, each pass shuffled; the first only within waves
    of `WAVE` examples when the examples are `ordered`."""
    rng = random.Random(seed)
    stream: list[tuple[dict, Row]] = []
    for n in range(math.ceil(epochs)):
        if ordered and n == 0:
            wave = [(row.example // WAVE, rng.random()) for _, row in epoch]
            stream += [epoch[i] for i in sorted(range(len(epoch)), key=wave.__getitem__)]
        else:
            stream += rng.sample(epoch, len(epoch))
    return stream[: round(len(epoch) * epochs)]


def by_length(stream: list[tuple[dict, Row]], per_step: int, seed: int) -> list[tuple[dict, Row]]:
    """`stream` with the rows of each `WAVE` in a run of steps of like length, those steps in a seeded random order:
    rows that share a forward pass are padded to the longest, so little is padded. The rows stay in their wave (an
    ordered run still trains its front first) and a step's rows come from one wave."""
    rng = random.Random(seed)
    size = WAVE * per_step // math.gcd(WAVE, per_step)  # whole steps
    out: list[tuple[dict, Row]] = []
    for start in range(0, len(stream), size):
        wave = sorted(stream[start : start + size], key=lambda item: item[1].tokens)
        steps = [wave[i : i + per_step] for i in range(0, len(wave), per_step)]
        rng.shuffle(steps)
        out += [item for step in steps for item in step]
    return out


def project_vocabulary(model, dataset) -> Vocabulary:
    """The tokens of every row the trainer will take, and those the model likely predicts at its targets (in eval
    mode: no LoRA dropout)."""
    was_training = model.training
    model.eval()
    try:
        return Vocabulary.of(model, list(dataset.select_columns(["input_ids", "labels"])))
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Row:
    example: int  # index of the example this sequence is (a piece) of
    piece: int  # which piece of it
    tokens: int


def rows_per_step(args) -> int:
    """Sequences an optimizer step takes, over all processes."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * world()[1]


def work(rows: list[Row], per_step: int, per_pass: int = 1) -> list[float]:
    """The tokens of the first k optimizer steps of `per_step` rows, for every k (from 0 to the last step), a forward
    pass of `per_pass` rows counted as that many of its longest (the rest is padding): on the CPU a step's time
    goes with them."""
    passes = [rows[i : i + per_pass] for i in range(0, len(rows), per_pass)]
    padded = [len(p) * max(r.tokens for r in p) for p in passes]
    each = per_step // per_pass
    return list(itertools.accumulate((sum(padded[i : i + each]) for i in range(0, len(padded), each)), initial=0.0))


def seen(rows: list[Row], steps: int, per_step: int) -> tuple[set[int], int]:
    """(the examples every piece of which the first `steps` optimizer steps of `per_step` rows reached, the
    tokens those steps took)."""
    taken = rows[: steps * per_step]
    pieces = {(r.example, r.piece) for r in taken}
    cut = {r.example for r in rows if (r.example, r.piece) not in pieces}
    return {r.example for r in taken} - cut, sum(r.tokens for r in taken)


def sft(
    model,
    tokenizer,
    examples: list[Example],
    cfg: Config,
    out: Path,
    device: str,
    reporter: Reporter,
    result: TrainResult,
    budget: Budget | None = None,
    ordered: bool = False,
    upto: bool = False,
) -> list[Example]:
    """Train on `examples` (`ordered`: the front first, sft_trainer); returns those trained on (all of them, unless
    the run's time stopped it early). `upto`: as many of them as the run's time allows, the front first."""
    losses: list[float] = []
    progress = _Progress.make(reporter, "sft", "training", losses, budget)
    trainer, rows = sft_trainer(model, tokenizer, examples, cfg, out, device, [progress], ordered or upto)
    per_step = rows_per_step(trainer.args)
    total = sum(r.tokens for r in rows)
    progress.pace = Pace(work(rows, per_step, trainer.args.per_device_train_batch_size))
    rate = result.expected_rate
    about = f": about {max(1, round(total / rate / 60))} min at the last run's {rate:.0f} tokens/s" if rate else ""
    if budget is not None and upto:
        about = f", as many as the run's time allows (it ends by {budget.until()}, its {cfg.minutes:g} min)"
    elif budget is not None:
        about += f"; the run ends by {budget.until()} (its {cfg.minutes:g} min), training stopping early if need be"
    vocabulary = getattr(trainer, "vocabulary", None)
    if vocabulary is not None:
        size = model.get_output_embeddings().weight.shape[0]
        result.vocabulary = {"tokens": len(vocabulary.ids), "of": size, "outside": round(vocabulary.outside, 4),
                             "scanned": vocabulary.scanned}  # fmt: skip
        about += f"; {vocabulary.describe(size)}"
    reporter.phase("sft", f"training on {'up to ' if upto else ''}{len(examples):,} examples, {total:,} tokens{about}")
    result.rows = len({(r.example, r.piece) for r in rows})  # sequences an epoch
    result.rows_here = math.ceil(
        len(trainer.get_train_dataloader()) * trainer.args.per_device_train_batch_size / max(cfg.epochs, 1e-9)
    )
    trainer.train()
    done, tokens = seen(rows, trainer.state.global_step, per_step)
    result.steps += trainer.state.global_step
    result.tokens += tokens
    result.losses["sft"] = losses
    return [e for i, e in enumerate(examples) if i in done]


def dpo_round(
    model,
    tokenizer,
    pairs: list[Example],
    cfg: Config,
    out: Path,
    device: str,
    reporter: Reporter,
    result: TrainResult,
    round_no: int,
) -> None:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    rows, tokens = [], 0
    for e in pairs:
        prompt, n = fit_prompt(tokenizer, e.prompt, max(e.target, e.rejected, key=len), cfg.max_length)
        rows.append({"prompt": prompt, "chosen": e.target, "rejected": e.rejected})
        tokens += 2 * n
    losses: list[float] = []
    args = _args(
        DPOConfig, cfg, out / f"dpo{round_no}", device, cfg.dpo_epochs, loss_type=["sigmoid", "sft"], beta=cfg.dpo_beta
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[_Progress.make(reporter, "dpo", f"preferences, round {round_no}", losses)],
    )
    quiet(trainer).train()
    # TRL kept the adapter as it was at the round's start as the frozen reference ("ref"): a copy of
    # the LoRA weights only. The next round's reference is this round's result, so drop it.
    if "ref" in model.peft_config:
        model.delete_adapter("ref")
    result.steps += trainer.state.global_step
    result.tokens += int(tokens * cfg.dpo_epochs)
    result.losses[f"dpo{round_no}"] = losses


def train(
    location: str,
    targets: tuple[str, ...],
    examples: list[Example],
    cfg: Config,
    out: Path,
    reporter: Reporter,
    judge: Callable[[Example, str], bool | None] = lambda e, a: None,
    warm: Path | None = None,
    pick: Callable[[list[Example], int, bool], list[Example]] | None = None,
    expected_rate: float | None = None,
    share: Callable[[Callable[[], Any]], Any] = lambda make: make(),
    budget: Budget | None = None,
) -> TrainResult:
    """`warm`: a saved PEFT adapter to go on training (run.warm_start's), when its LoRA has this run's shape;
    `pick(examples, cap, warm)`: which SFT examples to train on, `warm` saying whether the run goes on from
    `warm` (then: what the adapter has not seen first); of those, or of all without `pick`, `max_train_examples`,
    sampled across kinds, and with a `budget` and no preference pairs to train after them, more while the run's
    time lasts (`to_train`). `share(make)`: `make()` on the main process, the same value on the others of a
    distributed run (distributed.Team.share): what every process must agree on and only the main
    process can make (the next preference round's pairs, which its tests judge). `budget`: the run's time plan;
    SFT stops in time for it, and preference rounds are left out once it is spent (a distributed run has none: its
    processes would each judge the time differently, run.py)."""
    from . import base

    # --- setup ---
    setup_torch(cfg)
    device = base.training_device(cfg.device)
    kind = precision(cfg, device)  # bf16 on a CPU too: the base held in bf16, not cast at every product
    reporter.phase("base", f"loading the base model on {device} ({kind})")
    model, tokenizer = base.load(location, placed(device), torch_dtype(kind))
    result = TrainResult(out / "peft", device=device, precision=kind, tokenizer=tokenizer, processes=world()[1])
    result.expected_rate = expected_rate
    problem = warm_start_problem(warm, model, cfg, targets) if warm is not None else None
    if warm is not None and problem is None:
        reporter.phase("base", f"going on from adapter {warm.parent.name}")
        model, result.warm_from = with_warm_lora(model, warm), warm
    else:
        if problem and warm is not None:
            result.warm_note = f"a new adapter, not going on from {warm.parent.name}: {problem}"
        model = with_lora(model, cfg, targets)
    started = time.perf_counter()

    # --- SFT: revisions, edit sequences, project code ---
    pairs = [e for e in examples if e.kind == "preference" and e.rejected.strip()]
    # A run with a time plan and nothing to train after SFT goes on past `max_train_examples` while its time lasts.
    fill = budget is not None and not (pairs and cfg.dpo_rounds > 0)
    ordered = pick is not None and result.warm_from is not None  # the lineage's new examples first
    chosen = to_train([e for e in examples if e.kind in SFT_KINDS], cfg, pick, result.warm_from is not None, fill)
    if chosen:  # sft says how many examples and tokens, and about how long
        result.trained = sft(model, tokenizer, chosen, cfg, out, device, reporter, result, budget, ordered,
                             upto=len(chosen) > cfg.max_train_examples)  # fmt: skip

    # --- CodeLutra: DPO + NLL on preference pairs, a few rounds ---
    for round_no in range(1, cfg.dpo_rounds + 1):
        if not pairs:
            break
        if budget is not None and budget.spent():
            reporter.phase("dpo", f"preference rounds left out: the run's {cfg.minutes:g} min are spent")
            break
        reporter.phase("dpo", f"preferences, round {round_no}: {len(pairs)} pairs")
        dpo_round(model, tokenizer, pairs, cfg, out, device, reporter, result, round_no)
        if round_no < cfg.dpo_rounds:
            by_prompt = defaultdict(list)
            for e in pairs:
                by_prompt[(e.prompt, e.target)].append(e)
            pairs = share(partial(next_round_pairs, model, tokenizer, [v[0] for v in by_prompt.values()], cfg, device,
                                  judge)) or []  # fmt: skip

    # --- save ---
    result.seconds = time.perf_counter() - started
    model.save_pretrained(result.adapter_dir)
    result.model = model
    return result
