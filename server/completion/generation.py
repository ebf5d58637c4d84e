"""A generation: a prompt plus the tokens the model has generated after it.

The engine's unit of work (context → prompt → engine → postprocess). The
engine (engine.py) starts one per prompt it evaluates, feeds it the tokens the
model chooses, and offers its text to the request attached to it. A
generation outlives its request by a little, so that the next keystroke can be
served from text already generated. It keeps the books of its own text (where
each token ends, what token healing has still to spell) and ends itself at a
stop string or its token budget; the engine ends it at the end of text or a
full context. Used only on the engine thread, or with the engine's lock held.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

import numpy as np

from . import healing
from .request import Outcome, Partial, Request


@dataclass(eq=False)
class Generation:
    key: str
    prompt: str
    special: bool
    stop: tuple[str, ...]
    temperature: float
    text: str = ""
    heal: str = ""  # text the next tokens must spell out (token healing)
    heal_tokens: list[int] = field(default_factory=list)  # the prompt's removed tokens: drafts while healing
    ends: list[int] = field(default_factory=list)  # len(text) after each generated token
    tokens: int = 0  # generated so far
    budget: int = 0  # stop when `tokens` reaches this
    pending: int | None = None  # sampled, not yet in the KV cache
    ended: str = ""  # "", "end" (end of text or stop string), "budget", "context"
    request: Request | None = None
    offset: int = 0  # where the attached request's suggestion starts in `text`
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    stats: Outcome = field(default_factory=lambda: Outcome(None))
    start: int = 0  # tokens in the KV cache when the generation began: its prompt
    healed: str = ""  # `heal` as the generation began
    ids: list[int] = field(default_factory=list)  # the generated tokens
    margins: list[float] = field(default_factory=list)  # how far each was ahead of the runner-up (first ones)
    retry: int | None = None  # the request vetoed the suggestion: go back to this token and choose another
    barred: tuple[int, int] | None = None  # (position, token): the token not to choose there again
    first: np.ndarray | None = None  # the logits after the prompt, until the first token is chosen from them

    @classmethod
    def for_request(cls, req: Request, prompt: str, *, heal: str, heal_tokens: list[int], stats: Outcome) -> Generation:
        """A generation on `req`'s prompt less the text `heal` that token healing spells out again."""
        return cls(
            req.state,
            prompt,
            req.special,
            req.stop,
            req.temperature,
            heal=heal,
            heal_tokens=heal_tokens,
            offset=len(heal),  # the suggestion starts after the healed text
            stats=stats,
            healed=heal,
        )

    def add(self, token: int, piece: bytes, margin: float = float("inf")) -> None:
        """Append a generated token that spells `piece`, chosen `margin` ahead of the runner-up; a stop string or
        the token budget may end the generation."""
        if self.heal:
            self.heal = healing.rest(self.heal, piece.decode("utf-8", "replace"))
            self.heal_tokens = self.heal_tokens[1:] if self.heal_tokens[:1] == [token] and self.heal else []
        self.text += self.decoder.decode(piece)
        self.ends.append(len(self.text))
        self.ids.append(token)
        self.margins.append(margin)
        self.tokens += 1
        self.stats.generated_tokens += 1
        for s in self.stop:
            at = self.text.find(s, max(0, self.offset))
            if at != -1:
                self.text, self.ended = self.text[:at], "end"
        if not self.ended and self.tokens >= self.budget:
            self.ended = "budget"

    def divergence(self) -> int | None:
        """Where to choose again when the request vetoes its suggestion: the token of the suggestion's first line
        (past `offset`, not only blanks) the model was least sure of. None: the request was typed along this
        generation (it starts past the heal), or it has had its one retry, or there is no such token."""
        if self.barred is not None or self.offset != len(self.healed):
            return None
        body = len(self.text) - len(self.text[self.offset :].lstrip("\n"))  # past a leading line break
        line_end = self.text.find("\n", body)
        line_end = len(self.text) if line_end == -1 else line_end
        best = None
        for i, (end, margin) in enumerate(zip(self.ends, self.margins)):
            begin = self.ends[i - 1] if i else 0
            if end <= self.offset or begin >= line_end or not self.text[begin:end].strip():
                continue
            if best is None or margin < self.margins[best]:
                best = i
        return best

    def rewind(self, position: int) -> None:
        """Keep the first `position` tokens and bar the one that came next; the engine has cut the KV cache."""
        self.barred = (position, self.ids[position])
        keep = self.ends[position - 1] if position else 0
        self.text, self.ends, self.ids, self.margins = (
            self.text[:keep], self.ends[:position], self.ids[:position], self.margins[:position])  # fmt: skip
        self.heal = self.healed[keep:] if self.healed.startswith(self.text) else ""
        self.heal_tokens, self.tokens, self.pending, self.ended, self.retry = [], position, None, "", None
        self.decoder.reset()

    def partial(self, *, hurry: bool) -> Partial:
        """What the attached request's `finish` is shown now."""
        return Partial(
            self.text[self.offset :], final=bool(self.ended), exhausted=self.ended in ("budget", "context"), hurry=hurry
        )
