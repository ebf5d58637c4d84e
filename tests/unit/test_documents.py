"""Open documents apply LSP edits like pygls's own documents, and answer line questions without splitting."""

import random

from lsprotocol import types
from pygls.workspace import TextDocument

from selftune.server.documents import Document


def change(sl, sc, el, ec, text):
    return types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(sl, sc), types.Position(el, ec)), text=text
    )


def test_edits_agree_with_pygls_and_lines_are_counted_as_pygls_counts_them():
    rng = random.Random(1)
    ours, theirs = (
        Document("file:///a.py", "def f():\n    pass\n"),
        TextDocument("file:///a.py", "def f():\n    pass\n"),
    )
    for _ in range(300):
        lines = ours.source.split("\n")
        sl = rng.randrange(len(lines))
        sc = rng.randrange(len(lines[sl]) + 1)
        el = min(len(lines) - 1, sl + rng.choice([0, 0, 1]))
        ec = rng.randrange(len(lines[el]) + 1) if el > sl else rng.randrange(sc, len(lines[el]) + 1)
        c = change(sl, sc, el, ec, rng.choice(["", "x", "\n", "return 1\n    ", "é"]))
        ours.apply_change(c)
        theirs.apply_change(c)
        assert ours.source == theirs.source
        assert ours.line_count == len(theirs.lines)


def test_line_text_and_offsets_clamp_like_lsp():
    doc = Document("file:///a.py", "ab\r\ncd😀e\nlast")
    assert [doc.line_text(i) for i in range(3)] == ["ab", "cd😀e", "last"]
    assert doc.offset_of(types.Position(1, 4)) == 7  # "ab\r\n" is 4, and the emoji two UTF-16 units
    assert doc.offset_of(types.Position(0, 99)) == 2  # past the end of a line: its end, before \r\n
    assert doc.offset_of(types.Position(2, 99)) == len(doc.source)
    assert Document("file:///e.py", "").line_count == 0
