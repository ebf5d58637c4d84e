from selftune.server.demo.replay import CHAR_GAP, LINE_PAUSE, WORD_PAUSE, Doc, _expected, keystrokes, useful_chars


def test_schedule_pauses_at_word_and_line_ends():
    keys = keystrokes("x = ab\ny")
    assert "".join(k.char for k in keys) == "x = ab\ny"
    assert [k.pause for k in keys] == ["word", "", "", "", "", "line", "", "line"]
    assert keys[0].gap == WORD_PAUSE and keys[5].gap == LINE_PAUSE and keys[1].gap == CHAR_GAP


def test_blank_lines_do_not_pause():
    keys = keystrokes("a\n\n")
    assert [k.pause for k in keys] == ["line", "", ""]


def test_expected_text():
    full = "x = ab\ny = 2\n"
    assert _expected(full, 1, "word") == " = ab"
    assert _expected(full, 6, "line") == "\ny = 2"


def test_useful_chars():
    assert useful_chars("abcX", "abcd") == 3
    assert useful_chars("", "abc") == 0


def test_positions_are_utf16():
    doc = Doc("file:///x", "a😀b\nc")
    assert (doc.position(3).line, doc.position(3).character) == (0, 4)
    assert (doc.position(4).line, doc.position(4).character) == (1, 0)
