"""Choosing the next tokens: sampling from logits, and drafts the model can confirm in one batch.

Pure functions used by the engine (context → prompt → engine → postprocess)
between two decode calls; they know nothing of threads, requests or the
backend. Prompt-lookup drafting guesses that text repeats: when the last few
tokens occurred earlier in the context, the tokens that followed them there are
decoded together with the next one, and every draft the model agrees with is a
token generated without a decode call of its own. `DraftLength` keeps drafting
to where it pays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

TOP_K = 40  # candidates a sampled token (temperature > 0) is drawn from
DRAFT_MAX = 8  # draft tokens checked in one batch, at most
DRAFT_NGRAMS = (3, 2)  # the lengths of the last n-gram looked up, longest first
DRAFT_PAUSE_MAX = 64  # chances to draft passed up, at most, after a batch the model refused outright


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """The most likely token at temperature 0, else one drawn from the top `TOP_K` at `temperature`."""
    if temperature <= 0:
        return int(np.argmax(logits))
    k = min(TOP_K, len(logits))
    top = np.argpartition(logits, -k)[-k:]
    z = logits[top].astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return int(top[rng.choice(len(top), p=p / p.sum())])


def bar(logits: np.ndarray, tokens: set[int]) -> np.ndarray:
    """A copy of `logits` where `tokens` cannot be chosen."""
    logits = np.array(logits, dtype=np.float32, copy=True)
    logits[list(tokens)] = -np.inf
    return logits


def margin(logits: np.ndarray, token: int) -> float:
    """How far `token`'s logit is ahead of the best other token's (negative: behind)."""
    best_other = max(
        float(np.max(logits[:token], initial=-np.inf)), float(np.max(logits[token + 1 :], initial=-np.inf))
    )
    return float(logits[token]) - best_other


def other_than_end(
    logits: np.ndarray, token: int, temperature: float, rng: np.random.Generator, is_end: Callable[[int], bool]
) -> int:
    """The token `sample` gives once `token`, an end of text, and any other end token are barred."""
    barred = {token}
    for _ in range(4):  # a vocabulary has a few end tokens (eos, eot, ...)
        token = sample(bar(logits, barred), temperature, rng)
        if not is_end(token):
            break
        barred.add(token)
    return token


def draft(history: Sequence[int], last: int, room: int) -> list[int]:
    """Up to `room` (and `DRAFT_MAX`) tokens that followed the latest earlier occurrence of the last n-gram
    of `history` + [`last`]."""
    room = min(DRAFT_MAX, room)
    if room <= 0:
        return []
    seq = np.array([*history, last], dtype=np.int32)
    # Searching the bytes is much faster than a loop over tokens; a match must sit on a token boundary.
    data = seq.tobytes()
    for n in DRAFT_NGRAMS:
        if len(seq) <= n:
            continue
        pattern = data[-4 * n :]
        end = len(data) - 4  # an occurrence must end before the last token
        while (at := data.rfind(pattern, 0, end)) != -1:
            if at % 4 == 0:
                follow = at // 4 + n
                return seq[follow : follow + room].tolist()
            end = at + 4 * n - 1
    return []


class DraftLength:
    """How many prompt-lookup drafts to check in the next batch.

    On a CPU a draft is not free: its logits cost most of a decoded token (the output head, over Gemma 3's
    262k-token vocabulary), so drafting pays only while most drafts are confirmed. Typing prose or new code,
    one in eight was (issue 21's trace), and a batch of eight cost four tokens' time. So the length doubles
    after a batch confirmed whole, falls to what was confirmed otherwise, and a batch refused outright makes
    the engine pass up the next chances to draft, twice as many each time it happens again.
    """

    def __init__(self) -> None:
        self.size = 1
        self.pause = 0  # chances to draft still to pass up
        self._backoff = 1

    def take(self, drafts: list[int]) -> list[int]:
        """The drafts to check now, of those the context offers."""
        if not drafts:
            return drafts
        if self.pause > 0:
            self.pause -= 1
            return []
        return drafts[: self.size]

    def record(self, drafted: int, accepted: int) -> None:
        """The model confirmed `accepted` of the `drafted` drafts just checked."""
        if not drafted:
            return
        if accepted == drafted:
            self.size, self._backoff = min(DRAFT_MAX, 2 * self.size), 1
        elif accepted:
            self.size, self._backoff = accepted, 1
        else:
            self.size, self.pause = 1, self._backoff
            self._backoff = min(DRAFT_PAUSE_MAX, 2 * self._backoff)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens `a` and `b` share from the start."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
