import asyncio
import math
import time

from lsprotocol import types

from selftune.server.demo.replay import (
    CHAR_GAP,
    LINE_PAUSE,
    WORD_PAUSE,
    Doc,
    _expected,
    keystrokes,
    type_text,
    useful_chars,
)


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


class _Answers:
    """A session whose server answers at once, or never before the next key (`late`)."""

    def __init__(self, late: set[int]):
        self.late, self.messages, self.cancelled, self.sent = late, [], [], 0

    def insert(self, doc, offset, text):
        doc.text = doc.text[:offset] + text + doc.text[offset:]

    def cancel(self, msg_id):
        self.cancelled.append(msg_id)

    def request_inline(self, doc, offset):
        self.sent += 1
        future = asyncio.get_running_loop().create_future()
        if self.sent not in self.late:
            future.set_result(types.InlineCompletionList([types.InlineCompletionItem(f"s{self.sent}")]))
        return str(self.sent), future


def test_the_typist_keeps_its_schedule_and_a_late_answer_was_never_seen():
    session = _Answers(late={2})  # the answer to the second key (a word's end) never comes in time
    started = time.perf_counter()
    pauses = asyncio.run(type_text(session, Doc("file:///x", ""), 0, "ab c"))
    took = time.perf_counter() - started
    assert [(p.kind, p.suggestion) for p in pauses] == [("word", None), ("line", "s4")]
    assert pauses[0].seconds == math.inf and pauses[1].seconds < LINE_PAUSE
    assert took < 2 * (CHAR_GAP * 2 + WORD_PAUSE + LINE_PAUSE)  # nobody waited for the missing answer
    assert "2" in session.cancelled  # the next key cancelled it, as an editor does
