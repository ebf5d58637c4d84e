"""The prompt a model is given for a completion context.

Second step of a completion (context → prompt → engine → postprocess), pure.
A manifest's `[prompt]` table picks the format: ``plain`` continues the text
before the cursor (base models such as Gemma 3), ``fim`` wraps prefix and
suffix in the model's fill-in-the-middle tokens (Qwen2.5-Coder, StarCoder2,
DeepSeek-Coder).

Blocks from the project (sources.py) go ahead of the file's window, each
under a comment of the file's language naming its path, as a file listing
would show them; a plain model is also shown the lines after the cursor
that way, and the window itself is labelled with the file's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .context import Context
from .sources import Block

# Line comments by LSP language id; a language not listed uses "#".
COMMENTS = {
    **dict.fromkeys(("javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "c", "cpp",
                     "java", "kotlin", "swift", "scala", "cs", "dart", "php", "zig", "json", "jsonc"), "//"),
    **dict.fromkeys(("lua", "sql", "haskell"), "--"),
    **dict.fromkeys(("lisp", "clojure", "scheme"), ";"),
}  # fmt: skip
LABELS = {"after": "{path}, after the cursor:", "definition": "{path}", "similar": "{path}", "recent": "{path}"}


@dataclass(frozen=True)
class PromptFormat:
    kind: str = "plain"  # "plain" or "fim"
    fim_template: str = (
        ""  # with {prefix} and {suffix}, e.g. "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    )

    def __post_init__(self) -> None:
        if self.kind not in ("plain", "fim"):
            raise ValueError(f"prompt format {self.kind!r} is not 'plain' or 'fim'")
        if self.kind == "fim" and not ("{prefix}" in self.fim_template and "{suffix}" in self.fim_template):
            raise ValueError("a 'fim' prompt needs fim_template with {prefix} and {suffix}")

    @property
    def uses_special_tokens(self) -> bool:
        return self.kind == "fim"


def comment_of(language_id: str) -> str:
    return COMMENTS.get(language_id, "#")


def header(blocks: Sequence[Block], path: str, language_id: str) -> str:
    """The labelled blocks, then the label of the file itself: what goes ahead of its window."""
    if not blocks:
        return ""
    mark = comment_of(language_id)
    parts = [f"{mark} {LABELS[b.kind].format(path=b.path)}\n{b.text.rstrip()}\n\n" for b in blocks]
    return "".join(parts) + (f"{mark} {path}\n" if path else "")


def render(fmt: PromptFormat, ctx: Context, blocks: Sequence[Block] = (), *, path: str = "",
           language_id: str = "") -> str:  # fmt: skip
    head = header(blocks, path, language_id)
    if fmt.kind == "plain":
        return head + ctx.prefix
    # str.replace, not str.format: code is full of braces.
    prefix = head + ctx.prefix
    before, _, after = fmt.fim_template.partition("{suffix}")
    return before.replace("{prefix}", prefix) + ctx.suffix + after.replace("{prefix}", prefix)
