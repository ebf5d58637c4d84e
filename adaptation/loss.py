"""The SFT loss on the CPU: the model's own causal LM loss, its 262k-wide head only where the loss is taken.

Gemma 3 270M's output head (its tied 262,144 x 640 embedding) is most of the
model's work per token. `target_loss` gathers the hidden states at the
positions whose next token is a target before the head (the model's
`logits_to_keep` with a boolean mask), so a prompt's tokens cost the layers
but not the head; the cross-entropy is the one transformers computes.

`project_vocab` goes further, as an approximation: the softmax over a
`Vocabulary`, the tokens the run's sequences use and those the model itself
likely predicts there (6,000 to 7,000 of Gemma's 262,144 on pallets/click),
so that the head costs little even where every position is a
target (code windows). It leaves out the probability the model puts on the
other tokens, which the vocabulary measures at its making (`outside`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCAN_POSITIONS = 2048  # positions whose full-vocabulary predictions add their likely tokens to a Vocabulary
SCAN_TOP = 16  # the likeliest tokens taken at each of them


def target_positions(labels):
    """(mask, targets): the positions whose next token is a target (its label is not -100), and those labels.

    Causal LM loss compares the logits at position i with the label at i + 1; this is the shift
    transformers' `ForCausalLMLoss` does (a -100 appended, the first label dropped)."""
    import torch

    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    mask = shifted != -100
    return mask, shifted[mask]


@dataclass
class Vocabulary:
    """The tokens a project-vocabulary softmax runs over (sorted ids), the head's rows for them, and the share of the
    model's probability outside them at the scanned positions (what the approximation leaves out)."""

    ids: Any  # torch.LongTensor, sorted
    weight: Any  # torch.Tensor (len(ids), hidden): the LM head's rows, frozen
    outside: float  # mean probability mass outside `ids` at the scanned positions
    scanned: int  # those positions

    @staticmethod
    def of(model, rows: list[dict], positions: int = SCAN_POSITIONS, top: int = SCAN_TOP) -> Vocabulary:
        """The tokens of `rows` (every sequence a run trains on: `input_ids`, `labels`) and the `top` likeliest at up
        to `positions` of their target positions, as the model predicts them, scanning rows in the order given (a
        run's are shuffled) through at most 4 x `positions` tokens."""
        import torch

        head = _head(model)
        vocab_size, device = head.weight.shape[0], head.weight.device
        seen = torch.zeros(vocab_size, dtype=torch.bool)
        for row in rows:
            seen[torch.as_tensor(row["input_ids"], dtype=torch.long)] = True
        mass = torch.zeros(vocab_size)  # the scanned positions' probabilities, summed per token
        taken = read = 0
        with torch.no_grad():
            for row in rows:
                if taken >= positions or read >= 4 * positions:
                    break
                mask, _ = target_positions(torch.as_tensor([row["labels"]]))
                mask &= mask.cumsum(-1) <= positions - taken  # the positions still wanted
                inputs = torch.as_tensor([row["input_ids"]], device=device)
                logits = model(input_ids=inputs, use_cache=False, logits_to_keep=mask.to(device)).logits.float()
                seen[logits.topk(min(top, vocab_size), dim=-1).indices.flatten().cpu()] = True
                mass += logits.softmax(-1).sum(0).cpu()
                taken, read = taken + len(logits), read + len(row["input_ids"])
        ids = seen.nonzero().flatten()
        outside = float(1 - mass[ids].sum() / taken) if taken else 0.0
        weight = head.weight.detach()[ids.to(device)].clone()
        return Vocabulary(ids.to(device), weight, max(0.0, outside), taken)

    def describe(self, vocab_size: int) -> str:
        return (f"the softmax over {len(self.ids):,} of {vocab_size:,} tokens (the model puts {self.outside:.1%} "
                f"of its probability elsewhere)")  # fmt: skip


def _causal(model):
    """The causal LM under its wrappers: DistributedDataParallel's under `accelerate launch`, and peft's (LoRA sits
    inside its layers)."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _decoder(model):
    return _causal(model).get_decoder()


def _head(model):
    return _causal(model).get_output_embeddings()


def _softcap(model, logits):
    cap = getattr(_causal(model).config.get_text_config(), "final_logit_softcapping", None)
    if not cap:
        return logits
    import torch

    return torch.tanh(logits / cap) * cap


def vocabulary_loss(model, inputs: dict, vocabulary: Vocabulary, num_items_in_batch=None):
    """`target_loss` with the softmax over `vocabulary` only: the decoder's hidden states at the target positions
    times the vocabulary's rows of the head. Every target must be in it (`Vocabulary.of` the same sequences)."""
    import torch
    from transformers.modeling_outputs import CausalLMOutput

    mask, targets = target_positions(inputs["labels"])
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    # The forward goes through every wrapper (DistributedDataParallel syncs gradients only so), the head on no
    # position; the decoder's output is taken on the way.
    found = []
    hook = _decoder(model).register_forward_hook(lambda module, args, out: found.append(out.last_hidden_state))
    try:
        model(**forward, use_cache=False, logits_to_keep=torch.zeros_like(mask))
    finally:
        hook.remove()
    hidden = found[-1][mask]
    logits = _softcap(model, hidden @ vocabulary.weight.to(hidden.dtype).T)
    index = torch.searchsorted(vocabulary.ids, targets).clamp(max=len(vocabulary.ids) - 1)
    if not bool((vocabulary.ids[index] == targets).all()):
        raise ValueError("a target token outside the run's vocabulary: it was made from other sequences")
    return _cross_entropy(logits, index, num_items_in_batch), CausalLMOutput(logits=logits)


def _cross_entropy(logits, targets, num_items_in_batch):
    import torch

    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(logits.float(), targets)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss / torch.as_tensor(num_items_in_batch).to(loss.device)


def target_loss(model, inputs: dict, num_items_in_batch=None):
    """The model's own causal LM loss, with the LM head (and softcapping) applied only where the loss is taken.

    The model's `logits_to_keep` with a boolean (batch, length) mask slices the hidden states before its head, so the
    forward is the model's own; the cross-entropy is `fixed_cross_entropy`'s: summed over the targets and divided by
    `num_items_in_batch` (the target tokens of the whole accumulated batch) when given, else their mean.
    Returns (loss, outputs); the outputs' logits are (targets, vocabulary)."""
    mask, targets = target_positions(inputs["labels"])
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**forward, use_cache=False, logits_to_keep=mask)
    logits = outputs.logits
    if logits.dim() == 3:  # a forward that ignores logits_to_keep: the same loss, from every position's logits
        logits = logits[mask]
    return _cross_entropy(logits, targets, num_items_in_batch), outputs


class TargetLossSFT:
    """TRL's SFTTrainer with the model's own loss, its LM head only at the target tokens, for the CPU (built lazily).

    TRL scores the tokens through its fused LM head: the logits in chunks, recomputed in the backward pass,
    with entropy and top-1 metrics. That spares a GPU the (tokens x 262k vocabulary) logits, but on the CPU
    it doubles the head's work, and the head is most of a 270M model's. Transformers' `Trainer.compute_loss`
    (the model's own loss) runs the head once, but over every position, the prompt's included; `target_loss`
    runs it only where a label is: the same cross-entropy over the same completion tokens, and the more of an
    example is prompt, the less of the head's work is left. Unchunked: at `max_length` tokens the logits fit in
    memory, and chunking the head would save memory, not time, on a CPU. With a `vocabulary` set (`project_vocab`)
    the softmax runs over it alone (`vocabulary_loss`)."""

    @staticmethod
    def make():
        from trl import SFTTrainer

        class TargetLossSFTTrainer(SFTTrainer):
            vocabulary: Vocabulary | None = None

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                if self.vocabulary is not None:
                    loss, outputs = vocabulary_loss(model, inputs, self.vocabulary, num_items_in_batch)
                else:
                    loss, outputs = target_loss(model, inputs, num_items_in_batch)
                return (loss, outputs) if return_outputs else loss

        return TargetLossSFTTrainer
