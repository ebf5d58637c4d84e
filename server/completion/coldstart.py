"""A cold prompt answered from a short one first, the whole prompt evaluated while the user reads on.

Part of the engine (context → prompt → engine → postprocess). On a 2-core
machine llama.cpp evaluates about 300 prompt tokens a second, so a whole
prompt (3,000 tokens) evaluated from nothing takes ten seconds: a file just
opened, or a jump to another region of it, would show no suggestion for that
long. A request may therefore carry a short `quick` prompt besides its whole
one (the last few hundred tokens before the cursor, no blocks). When the whole
prompt needs more than the request's `quick_limit` tokens evaluated past what
the model holds for the document, the engine serves the quick prompt, in a KV
state of the document's own (its key + `QUICK`) that typing keeps reusing, and keeps
the whole prompt here as the document's `Warmup`. Between requests it
evaluates that prompt a chunk at a time in the document's state; a key pressed
meanwhile waits for one chunk at most. Once the whole prompt is in, the
document's requests are served from it again, at the cost of the keys typed
since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import healing
from .backend import Backend
from .decoding import common_prefix
from .kvcache import KVCache
from .request import Request

QUICK = "\x00quick"  # appended to a document's key: the KV state its quick prompts are served in
CHUNK = 64  # tokens evaluated per step of a warm-up: about 0.2 s on a 2-core machine, the most a key waits


@dataclass(frozen=True)
class Warmup:
    """The whole prompt of the document `key`, to be evaluated in idle time."""

    key: str
    tokens: list[int]


def serve(
    backend: Backend, cache: KVCache, req: Request, piece: Callable[[int], str]
) -> tuple[healing.Prepared, Warmup | None]:
    """The prompt `req` is served from, as the engine evaluates it, and the warm-up that leaves (None: none).

    Its quick prompt (then `req.prompt` and `req.state` become that prompt and its KV state) while the whole
    one needs more than `req.quick_limit` tokens evaluated past what the model holds for the document."""
    whole = healing.prompt_tokens(backend, req.prompt, special=req.special, max_tokens=req.max_tokens, piece=piece)
    if req.quick is None or cache.capacity == 0:  # no parked state for the whole prompt: the two would evict each other
        return whole, None
    tokens = whole[1]
    if len(tokens) - common_prefix(cache.held(req.key), tokens) <= req.quick_limit:
        return whole, None
    req.prompt, req.state = req.quick, req.key + QUICK
    quick = healing.prompt_tokens(backend, req.prompt, special=req.special, max_tokens=req.max_tokens, piece=piece)
    return quick, Warmup(req.key, tokens)
