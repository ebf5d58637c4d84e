"""The training recipe on the real base model, on the CPU: it learns, and the gate stops it learning garbage.

These call the adaptation code in-process (as `selftune adapt` runs it) on the
idiom project of test_adaptation.py: the base weights dequantized from the
serving GGUF, peft LoRA trained by TRL, the GGUF export, the held-out
evaluation through llama.cpp and the server's completion path.
"""

from __future__ import annotations

import random
from pathlib import Path

from selftune.adaptation import base, evaluate, run, train
from selftune.adaptation.config import Config
from selftune.adaptation.data import Example, dataset
from selftune.adaptation.progress import Reporter
from selftune.server.models import load_manifest

from .test_adaptation import OBJECTS, idiom_project, module_for


def test_a_few_training_steps_lower_the_loss_on_their_examples(tmp_path: Path):
    manifest = load_manifest("gemma3-270m")
    location, _ = base.prepare(manifest)
    rng = random.Random(1)
    examples = [
        Example("code", f"# shop/{obj}s.py\n", module_for(obj, rng)[:300], float(i), f"shop/{obj}s.py")
        for i, obj in enumerate(OBJECTS[:4])
    ]
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
    """On the CPU the SFT loss is the model's own (faster); it must be the loss TRL's fused head computes."""
    import trl

    manifest = load_manifest("gemma3-270m")
    location, _ = base.prepare(manifest)
    rng = random.Random(2)
    examples = [
        Example(
            "code",
            f"# shop/{obj}s.py\n" + module_for(obj, rng)[:120],
            module_for(obj, rng)[:200],
            float(i),
            f"shop/{obj}s.py",
        )
        for i, obj in enumerate(OBJECTS[:4])
    ]
    cfg = Config(epochs=1, learning_rate=1e-3, batch_size=2, max_length=96, dpo_rounds=0, device="cpu")
    quiet = Reporter(json_lines=False, bar=False)
    ours = train.train(location, manifest.lora_targets, examples, cfg, tmp_path / "ours", quiet).losses["sft"]
    monkeypatch.setattr(train._PlainLossSFT, "make", staticmethod(lambda: trl.SFTTrainer))
    trls = train.train(location, manifest.lora_targets, examples, cfg, tmp_path / "trl", quiet).losses["sft"]
    assert len(ours) == len(trls) == 2
    for a, b in zip(ours, trls):
        assert abs(a - b) <= 0.01 * b, (ours, trls)


def test_the_gate_refuses_an_adapter_trained_on_shuffled_targets(tmp_path: Path, monkeypatch):
    root = idiom_project(tmp_path / "idiom")
    real_build = dataset.build

    def shuffled(*args, **kwargs) -> dataset.Dataset:
        """The real data, each training target's words in random order (the held-out side untouched)."""
        data = real_build(*args, **kwargs)
        rng = random.Random(0)
        data.train = [
            Example(e.kind, e.prompt, " ".join(rng.sample(e.target.split(), len(e.target.split()))), e.time, e.group)
            for e in data.train
        ]
        return data

    monkeypatch.setattr(run.dataset, "build", shuffled)
    meta = run.adapt(
        root, cfg=Config().from_workspace(root, trusted=False)[0], reporter=Reporter(json_lines=False, bar=False)
    )
    compare = meta["compare"]
    assert meta["decision"] == "kept", meta["reason"]
    assert compare["candidate"]["edit_similarity"] < compare["base"]["edit_similarity"]
    assert "does not beat" in meta["reason"]
    assert run.current_adapter(root) is None  # nothing promoted: the server keeps the base model
    assert (root / ".selftune" / "adapters" / meta["id"] / "meta.json").is_file()
