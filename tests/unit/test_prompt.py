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


def test_typing_tokenizes_the_text_before_the_cursor_once_per_stretch_of_the_file():
    from selftune.server.completion.assemble import RATIO_SAMPLE
    from selftune.server.completion.completer import Completer
    from selftune.server.settings import Settings
    from tests.unit.test_engine import ScriptedBackend

    counted: list[str] = []

    class Counting(ScriptedBackend):
        def counter(self, text: str) -> int:
            counted.append(text)
            return len(text) // 3 + 1

    completer = Completer(Settings(), load=Counting)
    try:
        assert completer.engine.loaded.wait(10)
        text = "def f(x):\n    return x + 1\n" * 1200
        offset = len(text) // 2
        prompts = []
        for c in "value = f(":  # ten keys; the window's ratio is measured at the first
            text = text[:offset] + c + text[offset:]
            offset += 1
            prompts.append(completer.assemble("a.py", text, offset).prompt)
        assert sum(len(t) for t in counted) < 2 * RATIO_SAMPLE, [len(t) for t in counted]
        assert all(p.endswith("value = f("[: i + 1]) for i, p in enumerate(prompts))
        counted.clear()
        completer.assemble("a.py", text, offset - 2 * RATIO_SAMPLE)  # another stretch of the file: measured again
        assert any(len(t) >= RATIO_SAMPLE for t in counted)
    finally:
        completer.close()
