"""The training recipe on the real base model, on the CPU: it learns, and the gate stops it learning garbage.

These call the adaptation code in-process (as `selftune adapt` runs it) on the
idiom project of test_adaptation.py: the base weights dequantized from the
serving GGUF, peft LoRA trained by TRL, the GGUF export, the held-out
evaluation through llama.cpp and the server's completion path.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from selftune.adaptation import base, evaluate, run, train
from selftune.adaptation.config import Config
from selftune.adaptation.data import Example, dataset
from selftune.adaptation.progress import Reporter
from selftune.server.models import load_manifest

from .test_adaptation import NAMES, OBJECTS, idiom_project, module_for


def _shop_modules(seed: int, chars: int) -> list[Example]:
    """Four code windows of the idiom project's modules, `chars` long, each under its path as the prompt."""
    rng = random.Random(seed)
    paths = [(obj, f"shop/{obj}s.py") for obj in OBJECTS[:4]]
    return [
        Example("code", f"# {path}\n", module_for(obj, rng.sample(NAMES, 6))[:chars], float(i), path)
        for i, (obj, path) in enumerate(paths)
    ]


def test_a_few_training_steps_lower_the_loss_on_their_examples(tmp_path: Path):
    manifest = load_manifest("gemma3-270m")
    location, _ = base.prepare(manifest)
    examples = _shop_modules(seed=1, chars=300)
    cfg = Config(epochs=2, learning_rate=1e-3, batch_size=2, max_length=96, dpo_rounds=0)
    result = train.train(
        location, manifest.lora_targets, examples, cfg, tmp_path, Reporter(json_lines=False, bar=False)
    )
    assert result.steps == 4 and result.tokens > 0
    after = evaluate.heldout_loss(result.model, result.tokenizer, examples, cfg.max_length)
    with result.model.disable_adapter():
        before = evaluate.heldout_loss(result.model, result.tokenizer, examples, cfg.max_length)
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "peft" / "adapter_config.json").is_file()


def test_the_cpu_loss_is_trls_loss(tmp_path: Path, monkeypatch):
    """On the CPU the SFT loss is the model's own, its head at the targets only (faster); it must be TRL's loss."""
    import trl

    manifest = load_manifest("gemma3-270m")
    location, _ = base.prepare(manifest)
    rng = random.Random(2)
    examples = [
        Example(
            "code",
            f"# shop/{obj}s.py\n" + module_for(obj, rng.sample(NAMES, 6))[:120],
            module_for(obj, rng.sample(NAMES, 6))[:200],
            float(i),
            f"shop/{obj}s.py",
        )
        for i, obj in enumerate(OBJECTS[:4])
    ]
    cfg = Config(epochs=1, learning_rate=1e-3, batch_size=2, max_length=96, dpo_rounds=0, device="cpu",
                 project_vocab=False)  # fmt: skip
    quiet = Reporter(json_lines=False, bar=False)
    ours = train.train(location, manifest.lora_targets, examples, cfg, tmp_path / "ours", quiet).losses["sft"]
    monkeypatch.setattr(train.TargetLossSFT, "make", staticmethod(lambda: trl.SFTTrainer))
    trls = train.train(location, manifest.lora_targets, examples, cfg, tmp_path / "trl", quiet).losses["sft"]
    assert len(ours) == len(trls) == 2
    for a, b in zip(ours, trls):
        assert abs(a - b) <= 0.01 * b, (ours, trls)


def test_the_held_out_loss_is_the_models_own_loss_with_the_head_at_the_targets_only(monkeypatch):
    """The gate's held-out loss runs the 262k-wide head only where the loss is taken (the prompt costs the layers
    alone); it must be the loss of the model's own forward over every position."""
    import torch

    from selftune.adaptation import loss

    location, _ = base.prepare(load_manifest("gemma3-270m"))
    model, tokenizer = base.load(location, "cpu", torch.float32)
    rng = random.Random(3)
    modules = [(f"shop/{obj}s.py", module_for(obj, rng.sample(NAMES, 6))) for obj in OBJECTS[:4]]
    examples = [Example("code", f"# {path}\n" + text[:240], text[240:360], float(i), path)
                for i, (path, text) in enumerate(modules)]  # fmt: skip
    fast = evaluate.heldout_loss(model, tokenizer, examples, 128)
    monkeypatch.setattr(
        loss, "target_loss", lambda model, inputs, num_items_in_batch=None: (model(**inputs).loss, None)
    )
    plain = evaluate.heldout_loss(model, tokenizer, examples, 128)
    assert fast is not None and abs(fast - plain) <= 1e-4 * plain, (fast, plain)


def test_bf16_on_the_cpu_holds_the_base_in_bf16_and_trains_the_same_loss(tmp_path: Path, monkeypatch):
    """Where the CPU multiplies bf16 natively, training holds the base's weights in bf16 as on CUDA (LoRA's own
    stay fp32) instead of casting fp32 weights at every product: the training losses stay those of fp32 to within
    bf16's rounding. Elsewhere bf16 is emulated: slower, the same numbers."""
    import torch

    manifest = load_manifest("gemma3-270m")
    location, _ = base.prepare(manifest)
    examples = _shop_modules(seed=2, chars=200)
    cfg = Config(epochs=1, learning_rate=1e-3, batch_size=2, max_length=96, dpo_rounds=0, device="cpu",
                 project_vocab=False, cpu_bf16=False)  # fmt: skip
    quiet = Reporter(json_lines=False, bar=False)
    fp32 = train.train(location, manifest.lora_targets, examples, cfg, tmp_path / "fp32", quiet)
    monkeypatch.setattr(base, "cpu_has_bf16", lambda: True)
    bf16 = train.train(location, manifest.lora_targets, examples, replace(cfg, cpu_bf16=True), tmp_path / "bf16", quiet)

    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    frozen = {p.dtype for p in bf16.model.parameters() if not p.requires_grad}
    lora = {p.dtype for p in bf16.model.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and lora == {torch.float32}
    ours, exact = bf16.losses["sft"], fp32.losses["sft"]
    assert len(ours) == len(exact) == 2
    for a, b in zip(ours, exact):
        assert abs(a - b) <= 0.02 * b, (ours, exact)


def _lora_grads(model) -> dict:
    """name -> a copy of the gradient of every trainable (LoRA) weight."""
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _lora_batch(tmp_path: Path, project_vocab: bool, seed: int):
    """(a LoRA model whose B weights are not zero, the CPU's SFT trainer, one padded batch): prompts of different
    lengths and a code window with none, in fp32."""
    import torch

    manifest = load_manifest("gemma3-270m")
    location, _ = base.prepare(manifest)
    model, tokenizer = base.load(location, "cpu", torch.float32)
    cfg = Config(max_length=96, cpu_bf16=False, device="cpu", dpo_rounds=0, project_vocab=project_vocab)
    model = train.with_lora(model, cfg, manifest.lora_targets)
    torch.manual_seed(seed)
    with torch.no_grad():  # LoRA's B starts at zero, which would leave every A without a gradient
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.02)
    rng = random.Random(seed)
    examples = [
        Example(
            "code", module_for(obj, rng.sample(NAMES, 6))[:chars], module_for(obj, rng.sample(NAMES, 6))[:80], 0.0, obj
        )
        for obj, chars in (("order", 200), ("invoice", 40))
    ]
    examples.append(Example("code", "", module_for("ticket", rng.sample(NAMES, 6))[:150], 0.0, "ticket"))
    trainer, _ = train.sft_trainer(model, tokenizer, examples, cfg, tmp_path, "cpu")
    return model, trainer, dict(trainer.data_collator([trainer.train_dataset[i] for i in range(len(examples))]))


def test_the_target_only_head_gives_the_models_own_loss_and_gradients(tmp_path: Path):
    """The CPU's SFT loss runs the LM head only where a label is: on one padded batch (prompts of different lengths,
    a code window with none) it must equal the model's own loss over every position, with the same LoRA gradients,
    in fp32 on the same weights."""
    import torch
    from transformers import Trainer

    model, trainer, batch = _lora_batch(tmp_path, project_vocab=False, seed=3)
    targets = int((batch["labels"][..., 1:] != -100).sum())
    assert 0 < targets < batch["attention_mask"].sum() - len(batch["labels"])  # the prompts' and padding's are left out

    for num_items in (targets, None):  # the accumulated batch's count, as training passes it; and none: the mean
        model.zero_grad()
        plain = Trainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=num_items)
        plain.backward()
        plain_grads = _lora_grads(model)
        model.zero_grad()
        fast, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True, num_items_in_batch=num_items)
        fast.backward()
        fast_grads = _lora_grads(model)

        assert outputs.logits.shape == (targets, model.config.vocab_size)
        assert abs(fast.item() - plain.item()) <= 1e-4 * plain.item(), (fast.item(), plain.item())
        assert any("lora_A" in name for name in plain_grads)
        assert all(grad.abs().max() > 0 for grad in plain_grads.values())  # every LoRA weight has a gradient to compare
        torch.testing.assert_close(fast_grads, plain_grads, rtol=1e-3, atol=1e-6)


def test_rows_padded_into_one_pass_train_as_they_do_one_at_a_time(tmp_path: Path):
    """On the CPU a step's rows share forward passes (`micro_batch`), padded to the longest: the loss and the LoRA
    gradients of one padded pass must be those of the same rows one per pass, accumulated as gradient accumulation
    does (each pass's loss over the step's target count), in fp32 on the same weights."""
    import torch

    model, trainer, batch = _lora_batch(tmp_path, project_vocab=False, seed=4)
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert len(set(lengths)) == len(lengths)  # each row padded differently
    targets = int((batch["labels"][..., 1:] != -100).sum())

    model.zero_grad()
    together = trainer.compute_loss(model, dict(batch), num_items_in_batch=targets)
    together.backward()
    together_grads = _lora_grads(model)
    model.zero_grad()
    apart = 0.0
    for i in range(len(lengths)):
        row = {k: v[i : i + 1, : lengths[i]] for k, v in batch.items()}  # the row alone, unpadded
        loss = trainer.compute_loss(model, row, num_items_in_batch=targets)
        loss.backward()
        apart += loss.item()
    apart_grads = _lora_grads(model)

    assert abs(together.item() - apart) <= 1e-4 * apart, (together.item(), apart)
    assert all(grad.abs().max() > 0 for grad in together_grads.values())
    torch.testing.assert_close(together_grads, apart_grads, rtol=1e-3, atol=1e-6)


def test_lora_on_the_last_layers_only_adapts_those_and_backpropagates_no_further(tmp_path: Path):
    """`lora_layers=N` puts LoRA on the last N decoder layers, and in SFT's training step no gradient is taken
    below them (the point of it: the backward pass stops early); a value the model cannot have is refused."""
    import pytest
    import torch

    manifest = load_manifest("gemma3-270m")
    location, _ = base.prepare(manifest)
    model, tokenizer = base.load(location, "cpu", torch.float32)
    with pytest.raises(ValueError, match="lora_layers=19: the model has 18 decoder layers"):
        train.with_lora(model, Config(lora_layers=19), manifest.lora_targets)
    cfg = Config(lora_layers=4, max_length=64, cpu_bf16=False, device="cpu")
    model = train.with_lora(model, cfg, manifest.lora_targets)
    adapted = {int(name.split(".layers.")[1].split(".")[0]) for name, _ in model.named_parameters() if "lora_" in name}
    assert adapted == {14, 15, 16, 17}

    example = Example("code", "def load(order):\n", "    return dict(order)\n", 0.0, "shop/orders.py")
    trainer, _ = train.sft_trainer(model, tokenizer, [example], cfg, tmp_path, "cpu")
    needs_grad: dict[int, bool] = {}
    layers = model.base_model.model.model.layers
    hooks = [
        layers[i].register_forward_hook(lambda m, a, out, i=i: needs_grad.__setitem__(i, out.requires_grad))
        for i in (12, 13, 14)
    ]
    trainer.compute_loss(model, trainer.data_collator([trainer.train_dataset[0]])).backward()
    for hook in hooks:
        hook.remove()
    assert needs_grad == {12: False, 13: False, 14: True}


def test_the_gate_refuses_an_adapter_trained_on_garbage_targets(tmp_path: Path, monkeypatch):
    root = idiom_project(tmp_path / "idiom", functions=6)  # the base model copies the idiom from the file above
    real_build = dataset.build

    def garbage(*args, **kwargs) -> dataset.Dataset:
        """The real data, every line of each training target replaced by one wrong statement at its indentation
        (the held-out side untouched): garbage the model learns. Random letters, which it cannot learn, leave
        the adapter near the base model, and at 8 points the gate then decides on noise (an empty line against
        a line of random letters: 0.845 -> 0.887 in one run); shuffled words still teach the project's names."""
        data = real_build(*args, **kwargs)

        def noise(text: str) -> str:
            return re.sub(r"(?m)^([ \t]*)\S.*$", r"\1zq = qz", text)

        data.train = [Example(e.kind, e.prompt, noise(e.target), e.time, e.group) for e in data.train]
        return data

    monkeypatch.setattr(run.dataset, "build", garbage)
    cfg = Config().from_workspace(root, trusted=False)[0]  # the recipe's two epochs
    meta = run.adapt(root, cfg=cfg, reporter=Reporter(json_lines=False, bar=False))
    compare = meta["compare"]
    # It learned the garbage: its held-out loss is above the base model's, and that alone keeps it out. Its 8
    # greedy lines may or may not show it (0.739 against the base's 0.854 in one run, 0.856 in another, its
    # weights trained in bf16): the lines alone once let it through.
    assert compare["candidate"]["heldout_loss"] > compare["base"]["heldout_loss"]
    assert meta["decision"] == "kept", meta["reason"]
    assert meta["reason"].startswith("held-out loss"), meta["reason"]
    assert run.current_adapter(root) is None  # nothing promoted: the server keeps the base model
    assert (root / ".selftune" / "adapters" / meta["id"] / "meta.json").is_file()
    # Nor does the next run go on from it: kept out, and its held-out loss is no better than the base model's.
    assert run.warm_start(root, run.load_manifest("gemma3-270m"), cfg, run._journal(root)) == (
        None, [], "no adapter in use: a new one from the base model")  # fmt: skip


def test_a_run_short_of_time_trains_less_and_the_next_run_remembers_what_the_models_answered(tmp_path: Path):
    """Planned for three seconds, a run still evaluates, trains its first two steps (the pace is known only then)
    and stops there, counting only what it trained on; the next run, on the same project, takes the base model's
    and the adapter in use's held-out answers (and its held-out loss) from the first run instead of computing them
    again.
    With a time plan it draws past `max_train_examples`, for as long as its time would last."""
    root = idiom_project(tmp_path / "idiom")
    cfg = replace(Config().from_workspace(root, trusted=False)[0], minutes=0.05, error_driven=0, max_train_examples=2)
    first = run.adapt(root, cfg=cfg, reporter=Reporter(json_lines=False, bar=False))
    # no server ever opened the workspace: the run imported its git history first, so the commits' blocks are
    # examples in the server's format
    assert first["data"]["train"].get("insertion", 0) > 0
    training = first["training"]
    assert training["sequences"] > cfg.max_train_examples
    planned = -(-training["sequences"] // cfg.batch_size) * int(cfg.epochs)
    assert training["steps"] == 2 < planned
    assert first["lineage"]["new_examples"] <= 2 * cfg.batch_size
    assert first["compare"]["base"]["remembered"] == 0 and first["compare"]["candidate"]["remembered"] == 0
    assert first["data"]["remembered"] is False

    run.promote(root, first["id"])  # as `selftune adapters use` does
    second = run.adapt(root, cfg=cfg, reporter=Reporter(json_lines=False, bar=False))
    points = first["data"]["points"]
    assert points >= 4
    # nothing changed: the examples in the server's format are read back, not assembled again
    assert second["data"]["remembered"] is True
    assert {k: second["data"][k] for k in ("train", "held", "points")} == {
        k: first["data"][k] for k in ("train", "held", "points")
    }
    assert second["compare"]["base"]["remembered"] == points
    assert second["compare"]["previous"]["remembered"] == points
    for metric in ("exact_match", "edit_similarity", "similarities"):
        assert second["compare"]["base"][metric] == first["compare"]["base"][metric]
        assert second["compare"]["previous"][metric] == first["compare"]["candidate"][metric]
    # and the adapter in use's held-out loss, measured when it was new, for the gate (the same held-out examples)
    assert second["compare"]["previous"]["heldout_loss"] == first["compare"]["candidate"]["heldout_loss"] is not None
    assert second["compare"]["candidate"]["remembered"] == 0  # a new adapter answers for itself
    # the base model's held-out loss is kept beside its answers, and read back
    (stored,) = (root / ".selftune" / "heldout").glob("base-*.json")
    assert list(json.loads(stored.read_text())["losses"].values()) == [first["compare"]["base"]["heldout_loss"]]
    assert second["compare"]["base"]["heldout_loss"] == first["compare"]["base"]["heldout_loss"]
    # the first run's adapter answered again, after two runs' other models and in the reverse order: the same answers
    manifest = load_manifest("gemma3-270m")
    data = dataset.build(root, run._journal(root), manifest.prompt, cfg, measure=run.token_counter(manifest, ""))
    gen = run._generator(manifest, "", cfg)
    try:
        adapter = root / ".selftune" / "adapters" / first["id"] / "adapter.gguf"
        again = run._measure(gen, adapter, replace(data, points=data.points[::-1]), root, None, cfg)
    finally:
        gen.close()
    assert again["similarities"][::-1] == first["compare"]["candidate"]["similarities"]


def test_the_project_vocabulary_softmax_is_the_restricted_cross_entropy(tmp_path: Path):
    """`project_vocab`: the softmax runs over the tokens of the run's rows and the model's likely ones at their
    targets. Over the whole vocabulary it is the model's own loss, with the same LoRA gradients; over the project's
    it is the cross-entropy of the full logits restricted to those tokens; and it reports the probability it left
    out at the positions it scanned."""
    import torch

    from selftune.adaptation import loss

    model, trainer, batch = _lora_batch(tmp_path, project_vocab=True, seed=4)
    vocabulary = trainer.vocabulary
    rows = list(trainer.train_dataset.select_columns(["input_ids", "labels"]))
    used = {t for row in rows for t in row["input_ids"]}
    assert used < set(vocabulary.ids.tolist()) and len(vocabulary.ids) < model.config.vocab_size // 100

    # what it leaves out, at the same positions it scanned (all the targets: fewer than its bound)
    mask, targets = loss.target_positions(batch["labels"])
    with torch.no_grad():
        model.eval()
        full = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[mask].float()
        model.train()
    outside = 1 - full.softmax(-1)[:, vocabulary.ids].sum(-1).mean().item()
    assert vocabulary.scanned == len(targets) and 0 < vocabulary.outside < 0.5
    assert abs(vocabulary.outside - outside) < 1e-3, (vocabulary.outside, outside)

    # over the project's tokens: the full logits' cross-entropy restricted to them
    got, outputs = loss.vocabulary_loss(model, batch, vocabulary)
    restricted = torch.nn.functional.cross_entropy(full[:, vocabulary.ids], torch.searchsorted(vocabulary.ids, targets))
    assert outputs.logits.shape == (len(targets), len(vocabulary.ids))
    assert abs(got.item() - restricted.item()) <= 1e-4 * restricted.item(), (got.item(), restricted.item())
    plain, _ = loss.target_loss(model, batch)
    assert got.item() < plain.item()  # leaving probability out can only make the loss lower

    # over the whole vocabulary: the model's own loss and gradients
    head = model.get_output_embeddings().weight
    whole = loss.Vocabulary(torch.arange(head.shape[0]), head.detach().clone(), 0.0, 0)
    for num_items in (len(targets), None):
        model.zero_grad()
        plain, _ = loss.target_loss(model, batch, num_items)
        plain.backward()
        plain_grads = _lora_grads(model)
        model.zero_grad()
        fast, _ = loss.vocabulary_loss(model, batch, whole, num_items)
        fast.backward()
        assert abs(fast.item() - plain.item()) <= 1e-4 * plain.item(), (fast.item(), plain.item())
        torch.testing.assert_close(_lora_grads(model), plain_grads, rtol=1e-3, atol=1e-6)

    bad = loss.Vocabulary(vocabulary.ids[vocabulary.ids != targets[0]], head[:1], 0.0, 0)
    with pytest.raises(ValueError, match="outside the run's vocabulary"):
        loss.vocabulary_loss(model, batch, replace(bad, weight=head.detach()[bad.ids]))
