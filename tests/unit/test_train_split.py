"""Long code windows are split to fit the training length instead of losing their end."""

from __future__ import annotations

import re

from selftune.adaptation.data import Example
from selftune.adaptation.train import split_to_fit


class WordTokenizer:
    """A stand-in with the Hugging Face call shape: one token per word or run of spaces/newlines."""

    class Encoding:
        def __init__(self, spans):
            self.input_ids = list(range(len(spans)))
            self.offset_mapping = spans

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        return self.Encoding([m.span() for m in re.finditer(r"\S+|\s+", text)])


def code(text: str) -> Example:
    return Example("code", "", text, 1.0, "pkg/mod.py", meta={"window": 0})


def test_a_long_window_becomes_line_aligned_pieces_that_fit_and_rebuild_it():
    text = "".join(f"value_{i} = compute({i}, other)\n" for i in range(40))
    pieces = split_to_fit(WordTokenizer(), [code(text)], max_length=30)
    assert len(pieces) > 1
    assert "".join(p.target for p in pieces) == text
    for p in pieces:
        assert len(WordTokenizer()(p.target).input_ids) < 30
        assert p.target.endswith("\n") and p.kind == "code" and p.group == "pkg/mod.py"


def test_short_windows_and_other_kinds_are_left_alone():
    long_target = "x " * 100
    revision = Example("revision", "def f():\n", long_target, 1.0, "pkg/mod.py::f")
    short = code("a = 1\n")
    assert split_to_fit(WordTokenizer(), [revision, short], max_length=30) == [revision, short]


def test_a_line_longer_than_the_limit_is_cut_inside_it():
    text = "words " * 50 + "\nend\n"
    pieces = split_to_fit(WordTokenizer(), [code(text)], max_length=20)
    assert "".join(p.target for p in pieces) == text
    assert all(len(WordTokenizer()(p.target).input_ids) < 20 for p in pieces)
