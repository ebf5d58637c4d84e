"""The SFT loss on the CPU: the model's own causal LM loss, its 262k-wide head only where the loss is taken.

Gemma 3 270M's output head (its tied 262,144 x 640 embedding) is most of the
model's work per token. `target_loss` gathers the hidden states at the
positions whose next token is a target before the head (the model's
`logits_to_keep` with a boolean mask), so a prompt's tokens cost the layers
but not the head; the cross-entropy is the one transformers computes.
"""

from __future__ import annotations


def target_positions(labels):
    """(mask, targets): the positions whose next token is a target (its label is not -100), and those labels.

    Causal LM loss compares the logits at position i with the label at i + 1; this is the shift
    transformers' `ForCausalLMLoss` does (a -100 appended, the first label dropped)."""
    import torch

    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    mask = shifted != -100
    return mask, shifted[mask]


def target_loss(model, inputs: dict, num_items_in_batch=None):
    """The model's own causal LM loss, with the LM head (and softcapping) applied only where the loss is taken.

    The model's `logits_to_keep` with a boolean (batch, length) mask slices the hidden states before its head, so the
    forward is the model's own; the cross-entropy is `fixed_cross_entropy`'s: summed over the targets and divided by
    `num_items_in_batch` (the target tokens of the whole accumulated batch) when given, else their mean.
    Returns (loss, outputs); the outputs' logits are (targets, vocabulary)."""
    import torch

    mask, targets = target_positions(inputs["labels"])
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**forward, use_cache=False, logits_to_keep=mask)
    logits = outputs.logits
    if logits.dim() == 3:  # a forward that ignores logits_to_keep: the same loss, from every position's logits
        logits = logits[mask]
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(logits.float(), targets), outputs
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss / torch.as_tensor(num_items_in_batch).to(loss.device), outputs


class TargetLossSFT:
    """TRL's SFTTrainer with the model's own loss, its LM head only at the target tokens, for the CPU (built lazily).

    TRL scores the tokens through its fused LM head: the logits in chunks, recomputed in the backward pass,
    with entropy and top-1 metrics. That spares a GPU the (tokens x 262k vocabulary) logits, but on the CPU
    it doubles the head's work, and the head is most of a 270M model's. Transformers' `Trainer.compute_loss`
    (the model's own loss) runs the head once, but over every position, the prompt's included; `target_loss`
    runs it only where a label is: the same cross-entropy over the same completion tokens, and the more of an
    example is prompt, the less of the head's work is left. Unchunked: at `max_length` tokens the logits fit in
    memory, and chunking the head would save memory, not time, on a CPU."""

    @staticmethod
    def make():
        from trl import SFTTrainer

        class TargetLossSFTTrainer(SFTTrainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                loss, outputs = target_loss(model, inputs, num_items_in_batch)
                return (loss, outputs) if return_outputs else loss

        return TargetLossSFTTrainer
