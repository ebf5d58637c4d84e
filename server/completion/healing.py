"""Token healing: let the model re-choose the token the cursor cut in half.

A prompt typed up to the cursor usually ends inside what the model would
write as one token: after `return ` (tokenizers attach a space to the word
that follows it) or in the middle of a word (`sorted(ite`). Shown such a
boundary, rare in its training data, a model continues badly (often with a
newline). So the engine removes the prompt's last token and constrains the
next tokens to spell out the removed text, then lets the model go on freely.

`choose` picks the constrained token from the model's top candidates; the
removed token itself is always consistent, so there is always an answer.
Pure; used by engine.py.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

CANDIDATES = 256  # the model's best tokens searched for one that fits


def consistent(piece: str, heal: str) -> bool:
    """`piece` spells the start of `heal`, or all of it and more."""
    return bool(piece) and (piece.startswith(heal) or heal.startswith(piece))


def choose(logits: np.ndarray, heal: str, piece: Callable[[int], str], fallback: int) -> int:
    """The most likely token among the top candidates that is consistent with `heal`."""
    k = min(CANDIDATES, len(logits))
    top = np.argpartition(logits, -k)[-k:]
    for token in top[np.argsort(logits[top])[::-1]]:
        if consistent(piece(int(token)), heal):
            return int(token)
    return fallback


def split_last_token(prompt: str, tokens: list[int], piece: str, bos: int) -> tuple[str, list[int], str]:
    """(prompt without its last token, those tokens, the removed text), or no change when it cannot be healed."""
    if len(tokens) < 2 or tokens[-1] == bos or not piece or not prompt.endswith(piece):
        return prompt, tokens, ""
    return prompt[: -len(piece)], tokens[:-1], piece
