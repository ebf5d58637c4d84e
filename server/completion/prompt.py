"""The prompt a model is given for a completion context.

Second step of a completion (context → prompt → engine → postprocess), pure.
A manifest's `[prompt]` table picks the format: ``plain`` continues the text
before the cursor (base models such as Gemma 3), ``fim`` wraps prefix and
suffix in the model's fill-in-the-middle tokens (Qwen2.5-Coder, StarCoder2,
DeepSeek-Coder).
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import Context


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


def render(fmt: PromptFormat, ctx: Context) -> str:
    if fmt.kind == "plain":
        return ctx.prefix
    # str.replace, not str.format: code is full of braces.
    head, _, tail = fmt.fim_template.partition("{suffix}")
    return head.replace("{prefix}", ctx.prefix) + ctx.suffix + tail.replace("{prefix}", ctx.prefix)
