"""What a completion asks of the engine and what it gets back.

The interface between the completer and the engine (context → prompt → engine
→ postprocess). A `Request` carries the prompt and a `finish` callback: the
post-processing step, which the engine shows the text generated so far (a
`Partial`) after every token and which says whether the suggestion is complete.
Every request is answered once, with an `Outcome`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Partial:
    """What a generation has produced for a request so far, as the request's `finish` sees it."""

    text: str  # the model's output from where the request's suggestion starts
    final: bool  # the generation ended: end of text, stop string, token budget or a full context
    exhausted: bool  # it ended at the token budget or a full context, so its last line may be cut short
    hurry: bool  # the request has waited longer than its patience


Finish = Callable[[Partial], tuple[str, bool]]  # -> (suggestion, done)


@dataclass
class Outcome:
    """How a request was answered. `text` is None when it was superseded or cancelled."""

    text: str | None
    error: str | None = None
    reused: bool = False  # served from a generation already running
    prefill_tokens: int = 0  # prompt tokens evaluated for it
    cached_tokens: int = 0  # prompt tokens found in the KV cache
    generated_tokens: int = 0
    drafted: int = 0  # prompt-lookup draft tokens checked
    accepted: int = 0  # of which the model confirmed
    seconds: float = 0.0
    context_hash: str = ""  # of the prompt, set by the completer (the journal records it)
    quick: bool = False  # served from the request's short `quick` prompt: the whole one was not evaluated yet


@dataclass(eq=False)
class Request:
    key: str  # the document (its URI): a change to it supersedes the request
    prompt: str
    finish: Finish
    on_done: Callable[[Outcome], None]
    max_tokens: int = 64
    temperature: float = 0.0
    special: bool = False  # the prompt holds special tokens (FIM)
    stop: tuple[str, ...] = ()
    patience: float = float("inf")  # seconds after which `finish` is asked to hurry
    # A finished suggestion this says no to is never shown: the engine redoes it once from the token the model
    # was least sure of, that token barred, and answers a second refusal with an empty suggestion.
    veto: Callable[[str], bool] | None = None
    # A short prompt (the last few hundred tokens before the cursor) served instead of `prompt` while that one
    # would need more than `quick_limit` tokens evaluated past what the model holds for the document: a file
    # just opened, a jump to another region. The engine evaluates the whole prompt in idle time (coldstart.py).
    quick: str | None = None
    quick_limit: int = 0
    state: str = ""  # the KV state it is served in: `key`, or the key of the document's quick state
    created: float = field(default_factory=time.perf_counter)
    done: bool = False

    def __post_init__(self) -> None:
        self.state = self.state or self.key
