"""The recorder's copy of a document follows LSP edits exactly as a reference implementation does."""

import random

import pytest

from selftune.server.journal.text import Text, rebuild, utf16_column_to_index


def reference_apply(text: str, range_, new: str) -> str:
    """LSP semantics spelled out slowly: split into lines, count UTF-16 units, clamp."""
    if range_ is None:
        return new
    lines = text.split("\n")

    def offset(line: int, col: int) -> int:
        if line >= len(lines):
            return len(text)
        base = sum(len(row) + 1 for row in lines[:line])
        content = lines[line].rstrip("\r")
        units = 0
        for i, ch in enumerate(content):
            if units >= col:
                return base + i
            units += 2 if ord(ch) > 0xFFFF else 1
        return base + len(content)

    a, b = offset(*range_[0]), offset(*range_[1])
    return text[:a] + new + text[b:]


def test_utf16_columns_count_astral_characters_twice():
    assert utf16_column_to_index("a😀b", 3) == 2
    assert utf16_column_to_index("a😀b", 99) == 3
    assert utf16_column_to_index("plain", 2) == 2


@pytest.mark.parametrize("seed", range(20))
def test_random_edits_match_the_reference(seed):
    rng = random.Random(seed)
    alphabet = ["a", "b", " ", "\n", "é", "😀", "\r\n", "def f():\n    ", "x"]
    text = original = "".join(rng.choice(alphabet) for _ in range(60))
    tracked = Text(text)
    changes = []
    for _ in range(80):
        lines = text.split("\n")
        sl = rng.randrange(len(lines) + 1)
        el = min(len(lines), sl + rng.choice([0, 0, 0, 1, 2]))
        sc, ec = rng.randrange(8), rng.randrange(8)
        if el == sl and ec < sc:
            sc, ec = ec, sc
        new = "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 1, 3, 12])))
        range_ = ((sl, sc), (el, ec))
        text = reference_apply(text, range_, new)
        tracked.apply(range_, new)
        changes.append((range_, new))
        assert tracked.text == text
        assert tracked.line_count == text.count("\n") + 1
    assert rebuild(original, changes) == text


def test_rebuild_replays_changes_including_whole_document_replacement():
    changes = [(((0, 0), (0, 0)), "hello\n"), (None, "fresh\ntext"), (((1, 0), (1, 4)), "TEXT")]
    assert rebuild("", changes) == "fresh\nTEXT"


def test_line_of_offsets():
    t = Text("ab\ncd\n\nef")
    assert [t.line_of(o) for o in (0, 2, 3, 6, 7, 9)] == [0, 0, 1, 2, 3, 3]
