"""Token healing: let the model re-choose the token the cursor cut in half.

A prompt typed up to the cursor usually ends inside what the model would
write as one token or a few: after `return ` (tokenizers attach a space to the word
that follows it) or in the middle of a word (`sorted(ite`). Shown such a
boundary, rare in its training data, a model continues badly (often with a
newline). So the engine removes the prompt's last token (with the tokens of
the partial word it ends) and constrains the next tokens to spell out the
removed text, then lets the model go on freely.

`choose` picks the constrained token from the model's top candidates,
preferring one that spells all of the removed text, or else the first token
of the text still to spell.
`prompt_tokens` is a prompt as the engine evaluates it. Pure given the
backend's tokenizer; used by engine.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .backend import Backend

CANDIDATES = 256  # the model's best tokens searched for one that fits

# A prompt as the engine evaluates it (`prompt_tokens`): the prompt less the partial word, the tokens of that,
# the partial word's tokens, the partial word.
Prepared = tuple[str, list[int], list[int], str]


def rest(heal: str, piece: str) -> str:
    """What is left to spell of `heal` after a token with text `piece`."""
    return heal[len(piece) :] if heal.startswith(piece) else ""


def choose(logits: np.ndarray, heal: str, piece: Callable[[int], str], fallback: Callable[[str], int]) -> int:
    """The most likely of the top candidates that spells all of `heal` (and maybe more).

    Only when none does, the most likely that spells a part of it: taking a part when a
    whole is on offer lets the model turn `counts` into `count` + `sets`. When no
    candidate fits at all, `fallback(heal)` gives the first token of `heal` itself.
    """
    k = min(CANDIDATES, len(logits))
    top = np.argpartition(logits, -k)[-k:]
    partial = None
    for token in top[np.argsort(logits[top])[::-1]]:
        text = piece(int(token))
        if text.startswith(heal):
            return int(token)
        if partial is None and text and heal.startswith(text):
            partial = int(token)
    return partial if partial is not None else fallback(heal)


MAX_HEALED = 4  # tokens backed up at most


def _wordy(c: str) -> bool:
    return c.isalnum() or c == "_"


def split_partial_word(
    prompt: str, tokens: list[int], piece: Callable[[int], str], bos: int
) -> tuple[str, list[int], str]:
    """(prompt without its trailing partial word's tokens, those tokens, the removed text).

    Backs up over the last token, and over earlier ones while the removed text
    starts inside a word: `sorted(ite` may be tokenized `... "(", "it", "e"`, and
    healing only "e" would leave the model at the same odd boundary. Returns the
    prompt unchanged when nothing can be healed.
    """
    removed, n = "", 0
    while n < MAX_HEALED and len(tokens) - n > 1:
        token = tokens[-1 - n]
        text = piece(token)
        if token == bos or not text or not prompt.endswith(text + removed):
            break
        removed, n = text + removed, n + 1
        before = piece(tokens[-1 - n]) if len(tokens) - n > 1 else ""
        if not (_wordy(removed[0]) and before and _wordy(before[-1])):
            break
    if not n:
        return prompt, tokens, ""
    return prompt[: -len(removed)], tokens[:-n], removed


def prompt_tokens(backend: Backend, prompt: str, *, special: bool, max_tokens: int,
                  piece: Callable[[int], str]) -> Prepared:  # fmt: skip
    """`prompt` as the engine evaluates it: (the prompt less the partial word healing spells again, the tokens
    of that, within the context, the partial word's tokens, the partial word)."""
    tokens = backend.tokenize(prompt, special=special)
    room = max(backend.n_ctx // 2, backend.n_ctx - max_tokens - 1)  # maxTokens may exceed the context
    if len(tokens) > room:
        # The context builder keeps prompts within budget; this guards odd tokenizations.
        head = tokens[:1] if tokens and tokens[0] == backend.bos else []
        tokens = head + tokens[len(tokens) - room + len(head) :]
    healed, kept, heal = split_partial_word(prompt, tokens, piece, backend.bos)
    return healed, kept, tokens[len(kept) :], heal
