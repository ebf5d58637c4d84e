import pytest

from selftune.server.completion.context import Context
from selftune.server.completion.prompt import PromptFormat, render

CTX = Context(
    prefix="def f(x):\n    return {", suffix="}\n", line_prefix="    return {", line_suffix="}", window_start=0
)


def test_plain_is_the_prefix():
    assert render(PromptFormat("plain"), CTX) == CTX.prefix


def test_fim_wraps_prefix_and_suffix_and_keeps_braces():
    fmt = PromptFormat("fim", "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>")
    assert render(fmt, CTX) == "<|fim_prefix|>def f(x):\n    return {<|fim_suffix|>}\n<|fim_middle|>"
    assert fmt.uses_special_tokens


def test_code_that_looks_like_a_placeholder_is_left_alone():
    fmt = PromptFormat("fim", "<PRE>{prefix}<SUF>{suffix}<MID>")
    ctx = Context(prefix="s = '{suffix}'", suffix="", line_prefix="", line_suffix="", window_start=0)
    assert render(fmt, ctx) == "<PRE>s = '{suffix}'<SUF><MID>"


@pytest.mark.parametrize("kind,template", [("chat", ""), ("fim", "<PRE>{prefix}")])
def test_bad_formats_are_refused(kind, template):
    with pytest.raises(ValueError):
        PromptFormat(kind, template)
