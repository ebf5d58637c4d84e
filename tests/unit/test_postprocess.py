from selftune.server.completion.context import build
from selftune.server.completion.postprocess import cut, is_prose, repeats_below, shape_of


def shape_at(text: str, marker: str = "|", language_id: str = "python", multiline: bool = True):
    offset = text.index(marker)
    doc = text.replace(marker, "", 1)
    return shape_of(
        build(doc, offset, prefix_chars=10_000, suffix_chars=2_000), multiline=multiline, language_id=language_id
    )


def test_mid_line_completes_the_line_only():
    s = shape_at("x = compute(|)\n")
    assert s.mode == "inline"
    assert cut(s, "a, b)\ny = 2\n") == ("a, b", True)


def test_mid_line_waits_for_the_end_of_the_line():
    s = shape_at("x = compute(|)\n")
    assert cut(s, "a, b") == ("a, b", False)
    assert cut(s, "a, b", final=True) == ("a, b", True)


def test_suffix_repeated_verbatim_is_dropped():
    s = shape_at("print(|, end='')\n")
    assert cut(s, "'hello', end='')\n")[0] == "'hello'"


def test_end_of_line_completes_the_line():
    s = shape_at("    total = |\n")
    assert s.mode == "line"
    assert cut(s, "sum(values)\n    return total\n") == ("sum(values)", True)


def test_complete_line_offers_the_next_line():
    s = shape_at("def f(values):\n    total = sum(values)|\n")
    assert cut(s, "\n    return total\n\n") == ("\n    return total", True)
    assert cut(s, "\n    return to") == ("", False)
    # In a hurry, the whole words of the next line so far; none yet, nothing.
    assert cut(s, "\n    return total +", hurry=True) == ("\n    return total +", True)
    assert cut(s, "\n    return to", hurry=True) == ("\n    return", True)
    assert cut(s, "\n    ret", hurry=True) == ("", False)


def test_block_on_empty_line_stops_at_dedent():
    s = shape_at("def f(xs):\n    |\n")
    assert s.mode == "block"
    text, done = cut(s, "total = 0\n    for x in xs:\n        total += x\n    return total\n\ndef g():\n    pass\n")
    assert done
    assert text == "total = 0\n    for x in xs:\n        total += x\n    return total"


def test_block_is_not_done_while_the_block_is_open():
    s = shape_at("def f(xs):\n    |\n")
    assert cut(s, "total = 0\n    for x in xs:\n") == ("total = 0\n    for x in xs:", False)


def test_block_after_an_opener_starts_on_the_next_line():
    s = shape_at("class A:\n    def f(self):|\n")
    assert s.mode == "block"
    text, done = cut(s, "\n        return 1\n\n    def g(self):\n        pass\n")
    assert done and text == "\n        return 1"


def test_top_level_block_is_one_definition():
    s = shape_at("import os\n\n|")
    text, done = cut(s, "def main():\n    print(os.getcwd())\n\n\nif __name__ == '__main__':\n    main()\n")
    assert done and text == "def main():\n    print(os.getcwd())"


def test_blank_line_inside_a_function_does_not_end_the_block():
    s = shape_at("def f():\n|")
    text, _ = cut(s, "    a = 1\n\n    return a\nx = 1\n", final=True)
    assert text == "    a = 1\n\n    return a"


def test_closing_bracket_of_the_block_is_kept():
    s = shape_at("def f():\n    |\n")
    text, done = cut(s, "x = call(\n        1,\n    )\n    return x\nprint(1)\n")
    assert done and text == "x = call(\n        1,\n    )\n    return x"


def test_block_stops_before_repeating_the_code_after_the_cursor():
    s = shape_at("def f(xs):\n    |\n    return total\n")
    text, done = cut(s, "total = sum(xs)\n    return total\n")
    assert done and text == "total = sum(xs)"


def test_fences_and_chat_markers_end_a_suggestion():
    s = shape_at("def f():\n    |\n")
    assert cut(s, "return 1\n```\nThis function returns one.") == ("return 1", True)
    assert cut(s, "return 1<end_of_turn>") == ("return 1", True)


def test_prose_after_code_is_cut():
    s = shape_at("def add(a, b):\n|")
    text, done = cut(s, "    return a + b\n\nThis function adds two numbers together.\n")
    assert done and text == "    return a + b"


def test_prose_is_fine_in_a_docstring_and_in_markdown():
    s = shape_at('def f():\n    """|\n')
    assert s.prose_ok
    assert shape_at("# Notes\n\n|", language_id="markdown").prose_ok


def test_budget_exhausted_drops_a_cut_short_last_line():
    s = shape_at("def f(xs):\n    |\n")
    assert cut(s, "a = 1\n    b = som", final=True, exhausted=True) == ("a = 1", True)
    assert cut(s, "a = 1\n    b = 2", final=True, exhausted=False) == ("a = 1\n    b = 2", True)


def test_multiline_off_gives_one_line():
    s = shape_at("def f(xs):\n    |\n", multiline=False)
    assert s.mode == "line"
    assert cut(s, "a = 1\n    b = 2\n") == ("a = 1", True)


def test_trailing_whitespace_is_dropped():
    s = shape_at("x = |\n")
    assert cut(s, "1   \n") == ("1", True)


def test_is_prose():
    assert is_prose("This function returns the sum of two numbers.")
    assert is_prose("1. Install the package")
    assert not is_prose("return a + b")
    assert not is_prose("from os import path")
    assert not is_prose("# This is a comment about the code.")
    assert not is_prose("Item(sku, name, price)")
    assert not is_prose("None")


def test_a_block_in_a_hurry_offers_its_complete_lines():
    s = shape_at("def f(xs):\n    |\n")
    text = "total = 0\n    for x in xs:\n        tot"
    assert cut(s, text) == ("total = 0\n    for x in xs:", False)
    assert cut(s, text, hurry=True) == ("total = 0\n    for x in xs:", True)


def test_a_hurry_never_offers_a_half_written_line():
    s = shape_at("def f(xs):\n    |\n")
    assert cut(s, "total = su", hurry=True) == ("total = su", False)
    s = shape_at("class A:\n    def f(self):|\n")
    assert cut(s, "\n        ret", hurry=True)[1] is False


def test_a_line_stuck_repeating_itself_ends_after_the_first_copy():
    s = shape_at("class A:\n    def |\n", multiline=False)
    assert cut(s, "name_part_part_part_part_") == ("name_part_", True)  # answered now, not at the budget's end
    assert cut(s, "name_part_part_") == ("name_part_part_", False)  # two copies: still writing
    assert cut(s, "name_part_part_part_", final=True, exhausted=True) == ("name_part_", True)
    # the budget ran out inside a third copy of a long piece, the model already straying from it (quality.py, click)
    s = shape_at("def test(process):\n    |\n", multiline=False)
    text = "assert process.is_real_binary_or_not_is_real_binary_or_not_is_real_fil"
    assert cut(s, text, final=True, exhausted=True) == ("assert process.is_real_binary_or_not_", True)
    assert cut(s, text) == (text, False)  # while it is still writing, two copies are not yet a run-on
    for line in ('x = "0123456789abcdef0123456789abcdef01"', "x = foo_bar_baz(foo_bar_baz(fo"):
        assert cut(s, line, final=True, exhausted=True) == (line, True)  # no third copy begun: cut by the budget
    s = shape_at("x = |\n", multiline=False)
    assert cut(s, "[0, 0, 0]\n") == ("[0, 0, 0]", True)  # a line that ends is not a run-on
    assert cut(s, '"=" * 80 + "========"\n') == ('"=" * 80 + "========"', True)  # no letter or digit repeated


def test_no_second_indentation_at_an_indented_cursor():
    s = shape_at("def f(xs):\n    total = 0\n    |\n", multiline=False)
    assert s.mode == "line"
    assert cut(s, "    return total\n") == ("return total", True)
    s = shape_at("def f(xs):\n|\n", multiline=False)  # at column 0 the model's indentation is the line's
    assert cut(s, "    return 1\n")[0] == "    return 1"


def test_on_an_indented_empty_line_a_leading_line_break_is_not_offered():
    s = shape_at("def f(xs):\n    total = 0\n    |\n", multiline=False)
    assert cut(s, "\n    return total\n") == ("return total", True)
    assert cut(s, "\n") == ("", False)  # nothing yet
    assert cut(s, "\nreturn 1\n") == ("", True)  # a dedent: the block ended before the cursor's line
    block = shape_at("def f(xs):\n    |\n")
    assert block.mode == "block"
    text, done = cut(block, "\n    total = 0\n    for x in xs:\n        total += x\n    return total\n\ndef g():\n")
    assert done and text == "total = 0\n    for x in xs:\n        total += x\n    return total"


def test_on_an_empty_line_at_the_margin_a_leading_line_break_is_not_offered():
    s = shape_at('html_favicon = "icon.svg"\n|\nhtml_title = "Click"\n', multiline=False)
    assert cut(s, '\nhtml_logo = "logo.svg"\n') == ('html_logo = "logo.svg"', True)
    block = shape_at("import os\n|\n")
    assert cut(block, "\n\ndef f():\n    return 1\n\n\n") == ("def f():\n    return 1", True)


def test_a_line_that_stands_just_below_the_cursor_is_vetoed():
    """The completer's veto (the engine then generates the line again, its first token barred)."""
    s = shape_at("def f(xs):\n    |\n    return total\n", multiline=False)
    assert cut(s, "return total\n") == ("return total", True) and repeats_below(s, "return total")
    assert not repeats_below(s, "total = sum(xs)")
    lines = ["a = parse(xs)", "b = check(a)", "", "c = render(b)", "d = write(c)", "e = close(d)"]
    s = shape_at("def f(xs):\n    |\n" + "".join(f"    {line}\n" for line in lines))
    assert [repeats_below(s, line) for line in lines if line] == [True, True, True, True, False]  # 4 below
    assert not repeats_below(s, "pass") and not repeats_below(shape_at("    |\n    return\n"), "return")  # short
    mid = shape_at("def f(xs):\n    a = |\n    a = parse(xs)\n")
    assert repeats_below(mid, "parse(xs)") and not repeats_below(mid, "parse(ys)")  # with the text before it
    done = shape_at("def f(xs):\n    a = parse(xs)|\n    b = check(a)\n", multiline=False)
    assert repeats_below(done, "\n    b = check(a)")  # the next line, offered after a complete one


def test_a_line_in_a_hurry_offers_its_whole_words_so_far():
    s = shape_at("    result = |\n")
    assert cut(s, "compute(values, lim", hurry=True) == ("compute(values,", True)
    assert cut(s, "compute(values, lim") == ("compute(values, lim", False)  # no hurry: wait for the line
    assert cut(s, "comp", hurry=True) == ("comp", False)  # not one word finished yet: keep waiting
    assert cut(s, "compute(values)\n", hurry=True) == ("compute(values)", True)  # complete anyway


def test_a_copy_of_the_prompts_block_labels_is_never_offered():
    """The prompt labels its blocks with comments (prompt.LABELS); a model continuing that layout is not coding."""
    top = shape_at('|\n"""Reports."""\n')
    assert cut(top, "# shop/reports.py, after the cursor:\n", final=True) == ("", True)
    assert cut(top, "# after the cursor:\n", final=True) == ("", True)
    block = shape_at("def f(xs):\n    |\n")
    assert cut(block, "return xs\n\n# shop/other.py\ndef g():\n") == ("return xs", True)
    # A comment that only mentions a file, or a dotted name, is code's own.
    assert cut(block, "# see setup.py for the version\nreturn xs\n", final=True)[0].startswith("# see setup.py")
    assert cut(block, "# os.path\nreturn xs\n", final=True)[0].startswith("# os.path")
