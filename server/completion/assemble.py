"""A whole prompt within the model's context, sized in tokens: the project's blocks, then the file's window.

Between context and engine (context → prompt → engine → postprocess), pure
given its `measure` (tokens of a text; the model's vocabulary in the server).
The budget is the context less the tokens a suggestion may take. Blocks
(sources.py) take at most their shares of it; the window before the cursor
gets the rest, converted to characters at the ratio of the text right before
the cursor, so that a file of short lines (`x = 1` a million times) gets no
more tokens than a file of long ones. The server, `selftune adapt` (which
trains on exactly this format) and the benchmarks all assemble prompts here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import context as context_
from . import prompt as prompt_
from .project import ProjectIndex
from .sources import Block, Choice, Sources, ordered, region_of, stable, volatile

SUFFIX_CHARS = 2000  # what post-processing looks at after the cursor (not in a plain prompt)
FIM_SUFFIX_SHARE = 0.25  # of the window's tokens, for the text after the cursor in a fill-in-the-middle prompt
EVERY_SOURCE = Sources()
RATIO_SAMPLE = 4000  # characters before the cursor whose tokens set the window's characters per token
SAFETY = 0.95  # the window is sized a little short of its budget: the ratio is an estimate


@dataclass(frozen=True)
class Assembled:
    prompt: str
    context: context_.Context
    blocks: tuple[Block, ...]


def prompt_budget(n_ctx: int, max_tokens: int) -> int:
    """The tokens a prompt may take in a context of `n_ctx`: room is left for the suggestion and a few more."""
    return max(64, n_ctx - max_tokens - 8)


def chars_per_token(text: str, offset: int, measure: Callable[[str], int]) -> float:
    sample = text[max(0, offset - RATIO_SAMPLE) : offset]
    if len(sample) < 200:
        return 3.0
    return max(0.5, len(sample) / max(1, measure(sample)))


def assemble(fmt: prompt_.PromptFormat, text: str, offset: int, *, budget: int, measure: Callable[[str], int],
             path: str = "", language_id: str = "", index: ProjectIndex | None = None,
             sources: Sources = EVERY_SOURCE, previous_start: int | None = None, key: str = "",
             choice: Choice | None = None, ratio: float | None = None) -> Assembled:  # fmt: skip
    """The prompt for a cursor at `offset` in `text`, within `budget` tokens.

    `previous_start`: where this document's last window started (kept while it fits, for the KV cache);
    `choice` (with `key`): keeps the document's blocks while the cursor stays in one region; `ratio`: the
    characters per token of the text before the cursor, if the caller knows them (else they are measured)."""
    plain = fmt.kind == "plain"
    blocks: list[Block] = []
    if sources.any:
        fresh = stable(index, path, text, offset, sources=sources, budget=budget, plain=plain, measure=measure)

        def more() -> list[Block]:
            return volatile(index, path, text, offset, sources=sources, budget=budget, measure=measure, shown=fresh)

        if choice is not None:
            blocks = choice.blocks(key, region_of(text, offset), fresh, more)
        else:
            blocks = ordered(fresh, more())
    head = prompt_.header(blocks, path, language_id)
    window_tokens = max(32, budget - measure(head))
    ratio = (ratio or chars_per_token(text, offset, measure)) * SAFETY
    if plain:
        prefix_chars, suffix_chars = int(window_tokens * ratio), SUFFIX_CHARS
    else:
        prefix_chars = int(window_tokens * (1 - FIM_SUFFIX_SHARE) * ratio)
        suffix_chars = int(window_tokens * FIM_SUFFIX_SHARE * ratio)
    ctx = context_.build(text, offset, prefix_chars=prefix_chars, suffix_chars=suffix_chars,
                         previous_start=previous_start)  # fmt: skip
    prompt = prompt_.render(fmt, ctx, blocks, path=path, language_id=language_id)
    return Assembled(prompt, ctx, tuple(blocks))
