import pytest

from selftune.server.completion.context import REFILL_SHARE, build, window_start

TEXT = "".join(f"line {i:04d}\n" for i in range(1000))  # 10 chars a line


def test_small_document_is_whole():
    ctx = build("def f():\n    return 1\n", 13, prefix_chars=1000, suffix_chars=1000)
    assert ctx.prefix == "def f():\n    "
    assert ctx.line_prefix == "    " and ctx.line_suffix == "return 1"
    assert ctx.suffix == "return 1\n"
    assert ctx.window_start == 0


def test_window_starts_at_a_line_and_fits_the_budget():
    offset = 5000
    ctx = build(TEXT, offset, prefix_chars=1000, suffix_chars=100)
    assert ctx.window_start % 10 == 0
    assert len(ctx.prefix) <= 1000
    assert len(ctx.prefix) >= int(1000 * REFILL_SHARE) - 10


def test_window_start_is_kept_while_typing():
    start = window_start(TEXT, 5000, 1000)
    # Typing forward within the budget keeps the same start: the prompt keeps its beginning.
    for offset in range(5000, start + 1000, 37):
        assert window_start(TEXT, offset, 1000, previous=start) == start


def test_window_jumps_when_the_budget_is_outgrown():
    start = window_start(TEXT, 5000, 1000)
    later = window_start(TEXT, start + 1001, 1000, previous=start)
    assert later > start and (start + 1001) - later <= 1000


def test_previous_start_that_is_no_longer_a_line_start_is_dropped():
    start = window_start(TEXT, 5000, 1000, previous=4403)  # mid-line
    assert TEXT[start - 1] == "\n"


def test_huge_document_keeps_the_prompt_bounded():
    huge = "x = 1\n" * 900_000  # ~5 MB
    ctx = build(huge, len(huge) // 2, prefix_chars=6000, suffix_chars=2000)
    assert len(ctx.prefix) <= 6000 and len(ctx.suffix) <= 2000


def test_one_enormous_line_is_cut_inside():
    line = "a" * 100_000
    ctx = build(line, 90_000, prefix_chars=1000, suffix_chars=100)
    assert 0 < len(ctx.prefix) <= 1000 and len(ctx.suffix) <= 100


def test_suffix_ends_at_a_line_boundary():
    ctx = build(TEXT, 5005, prefix_chars=100, suffix_chars=57)
    assert ctx.suffix.endswith("\n") or ctx.suffix == ctx.line_suffix


@pytest.mark.parametrize("offset", [-1, len(TEXT) + 1])
def test_offset_outside_the_document(offset):
    with pytest.raises(ValueError, match="outside the document"):
        build(TEXT, offset, prefix_chars=100, suffix_chars=100)


def test_docstring_is_seen_even_when_the_window_starts_inside_it():
    text = 'def f():\n    """Start of a long docstring.\n' + "    more words here\n" * 200 + "    and the cursor"
    ctx = build(text, len(text), prefix_chars=500, suffix_chars=100)
    assert '"""' not in ctx.prefix and ctx.in_docstring
    closed = text + '\n    """\n    x = '
    assert not build(closed, len(closed), prefix_chars=500, suffix_chars=100).in_docstring
