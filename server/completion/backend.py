"""What the engine needs from a model runtime: one model, one context, one KV sequence.

Sits under the engine (context → prompt → engine → postprocess): the engine
(engine.py) and its KV-cache bookkeeping (kvcache.py) drive a `Backend` token
by token. llama.py implements it over llama.cpp; the unit tests script one.
Only the engine thread calls into a backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Backend(Protocol):
    n_ctx: int
    bos: int  # the begin-of-text token, kept when a prompt is cut from the left
    prefill_chunk: int  # prompt tokens per decode call; a newer request can interrupt between chunks

    def tokenize(self, text: str, *, special: bool = False, bos: bool = True) -> list[int]: ...
    def piece(self, token: int) -> bytes: ...
    def is_end(self, token: int) -> bool: ...
    def decode(self, tokens: list[int], *, all_logits: bool = False) -> None: ...
    def truncate(self, n: int) -> None: ...
    def clear(self) -> None: ...
    def logits(self, i: int = -1) -> np.ndarray: ...  # after the i-th token of the last decode
    def save(self) -> bytes: ...
    def restore(self, data: bytes, n_tokens: int) -> bool: ...
    def set_adapter(self, path: Path | None) -> None: ...  # raises with a message if the adapter is refused
    def close(self) -> None: ...
