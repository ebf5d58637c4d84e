"""CodeLutra's later rounds: answers sampled from the model as it is after a round, judged, paired.

After each DPO round (train.py) the policy has moved; the next round's
rejected answers are its own samples for the same prompts, judged by the
project's tests where they can run (`judge`), else by whether they are the
known good answer. A sample that is right is not a rejected answer.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import Config
from .data import Example


def sample_answers(model, tokenizer, prompt: str, n: int, max_new_tokens: int, device: str) -> list[str]:
    import torch

    ids = tokenizer(prompt[-4000:], return_tensors="pt").to(device)
    with torch.no_grad():
        out = model.generate(
            **ids,
            do_sample=True,
            temperature=0.8,
            top_p=0.95,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id,
        )
    return [tokenizer.decode(o[ids.input_ids.shape[1] :], skip_special_tokens=True) for o in out]


def next_round_pairs(
    model, tokenizer, pairs: list[Example], cfg: Config, device: str, judge: Callable[[Example, str], bool | None]
) -> list[Example]:
    """CodeLutra's next round: answers sampled from the current model, judged, paired with a correct one."""
    fresh = []
    for e in pairs:
        lines = max(1, e.target.count("\n"))
        for answer in sample_answers(model, tokenizer, e.prompt, cfg.samples_per_prompt, 24 * lines + 16, device):
            answer = "\n".join(answer.splitlines()[: lines + 2]) + ("\n" if e.target.endswith("\n") else "")
            verdict = judge(e, answer)
            if verdict is None:  # no tests to ask: anything but the known good answer counts as worse
                verdict = answer.strip() == e.target.strip()
            if verdict:
                continue
            fresh.append(
                Example(
                    "preference",
                    e.prompt,
                    e.target,
                    e.time,
                    e.group,
                    rejected=answer,
                    tests=e.tests,
                    meta={**e.meta, "source": "sampled"},
                )
            )
    return fresh
