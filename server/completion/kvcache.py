"""What the model's context holds, token for token, and the states parked for other documents.

The engine's bookkeeping of llama.cpp's KV cache (context → prompt → engine →
postprocess). The context holds the state of one document (`key`) at a time;
`tokens` mirrors it, so a new prompt is evaluated only past the prefix it
shares with them. The states of the few most recently used other documents are
parked in memory (`backend.save()`), each with whatever the engine was running
on it (its generation), so switching back to a file does not pay the full
prefill. The logits after the last prompt are kept too: a prompt that ends where
the last one did (typing within a word, which token healing cuts back to the
word's start) starts generating at once. Used only on the engine thread; the
backend is passed in by the engine, which owns its lifetime.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

import numpy as np

from .backend import Backend
from .decoding import common_prefix

T = TypeVar("T")  # what is parked with a document's state: the engine's generation


class KVCache(Generic[T]):
    def __init__(self, capacity: int):
        self.capacity = capacity  # documents whose state is parked (0: none)
        self.key: str | None = None  # the document whose state the context holds
        self.tokens: list[int] = []  # what the context holds
        self._parked: OrderedDict[str, tuple[list[int], bytes, T | None]] = OrderedDict()
        # The logits after the first n tokens, kept from the end of the last prompt: a new prompt that ends there
        # (typing within a word: token healing cuts each prompt back to the word's start) needs no decode at all.
        self._after: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def switch(self, backend: Backend, key: str, running: T | None) -> T | None:
        """Park the current document's state with `running`; bring back `key`'s and what was parked with it.

        Returns None when `key` had nothing parked (the context is then empty).
        """
        if self.key is not None and self.tokens and self.capacity > 0:
            self._parked[self.key] = (list(self.tokens), backend.save(), running)
            self._parked.move_to_end(self.key)
            while len(self._parked) > self.capacity:
                self._parked.popitem(last=False)
        parked = self._parked.pop(key, None)
        self.key = key
        self._after = None
        if parked is not None and backend.restore(parked[1], len(parked[0])):
            self.tokens = parked[0]
            return parked[2]
        backend.clear()
        self.tokens = []
        return None

    def held(self, key: str) -> list[int]:
        """The tokens the context or a parked state holds for `key` (none: nothing)."""
        if key == self.key:
            return self.tokens
        parked = self._parked.get(key)
        return parked[0] if parked is not None else []

    def discard(self, key: str) -> None:
        """Drop the state parked for `key`, if any (it will not be needed again)."""
        self._parked.pop(key, None)

    def fill(self, backend: Backend, tokens: list[int], chunk: int) -> bool:
        """Evaluate up to `chunk` more of `tokens` past the prefix the context shares with them; True when it
        holds them all."""
        self.truncate(backend, common_prefix(self.tokens, tokens))
        n = len(self.tokens)
        if n < len(tokens):
            self.decode(backend, tokens[n : n + chunk])
        return len(self.tokens) >= len(tokens)

    def reuse(self, backend: Backend, tokens: list[int]) -> int:
        """Cut the context back to the prefix it shares with `tokens`; how many of them it holds now.

        All of them only when the logits after them were kept (`logits_after`); otherwise the last one is
        decoded again for the logits that follow it.
        """
        keep = common_prefix(self.tokens, tokens)
        if keep == len(tokens) and self.logits_after(keep) is None:
            keep -= 1
        self.truncate(backend, keep)
        return keep

    def keep_logits(self, backend: Backend) -> np.ndarray:
        """Keep (a copy of) the logits after everything the context holds, which the last decode produced."""
        logits = np.array(backend.logits(-1), dtype=np.float32, copy=True)
        self._after = (len(self.tokens), logits)
        return logits

    def logits_after(self, n: int) -> np.ndarray | None:
        """The kept logits after the first `n` tokens, if those are what was kept."""
        return self._after[1] if self._after is not None and self._after[0] == n else None

    def decode(self, backend: Backend, tokens: list[int], *, all_logits: bool = False) -> None:
        """Evaluate `tokens` after what the context holds."""
        backend.decode(tokens, all_logits=all_logits)
        self.tokens.extend(tokens)

    def truncate(self, backend: Backend, n: int) -> None:
        """Keep the first `n` tokens (drop a rejected draft, or what a new prompt does not share)."""
        if n < len(self.tokens):
            backend.truncate(n)
            del self.tokens[n:]
        if self._after is not None and n < self._after[0]:
            self._after = None

    def rewind(self, backend: Backend, n: int) -> None:
        """Keep the first `n` tokens, the last of them evaluated again for the logits that follow it."""
        last = self.tokens[n - 1]
        self.truncate(backend, n - 1)
        self.decode(backend, [last])

    def reset(self, backend: Backend | None, *, keep_parked: bool = False) -> None:
        """Forget what the context holds and clear it (None: there is no backend to clear).

        The parked states go too, unless `keep_parked`: a failed decode puts only the context in doubt.
        """
        if backend is not None:
            backend.clear()
        self.key = None
        self.tokens = []
        self._after = None
        if not keep_parked:
            self._parked.clear()
