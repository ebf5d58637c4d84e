"""A map that keeps only its newest entries: the suggestions the editor may still accept.

The server remembers each suggestion it returned (for its accept command),
and each journal the same suggestions with their lifecycle; both keep the
newest `SHOWN_KEPT` and let older ones go, the journal rejecting those that
were never resolved.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

SHOWN_KEPT = 256  # suggestions remembered for their accept command


class Recent(OrderedDict[K, V], Generic[K, V]):
    def __init__(self, limit: int = SHOWN_KEPT, on_drop: Callable[[K, V], None] | None = None):
        super().__init__()
        self.limit = limit
        self.on_drop = on_drop

    def add(self, key: K, value: V) -> None:
        """Remember `value` as the newest; the oldest beyond the limit are dropped."""
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            old_key, old = self.popitem(last=False)
            if self.on_drop is not None:
                self.on_drop(old_key, old)
