"""Training where the model is wrong: which line of an example is checked, and what is trained on last."""

import random

from selftune.adaptation import wrong_first
from selftune.adaptation.data import Example
from selftune.adaptation.lineage import example_key

WINDOW = "import os\n\n\ndef load(path):\n    with open(path) as f:\n        return f.read()\n"


def test_an_inserted_block_is_checked_on_its_first_line_after_its_prompt():
    e = Example("insertion", "# a.py\ndef f():\n    ", "return 1\n    x = 2\n", 0.0, "a.py")
    assert wrong_first.line_point(e, random.Random(0)) == ("# a.py\ndef f():\n    ", "return 1")
    assert wrong_first.line_point(Example("insertion", "p", "\n", 0.0, "a.py"), random.Random(0)) is None


def test_a_code_window_is_checked_at_a_line_inside_it_at_its_indentation():
    before, line = wrong_first.line_point(Example("code", "", WINDOW, 0.0, "a.py"), random.Random(0))
    assert line in ("with open(path) as f:", "return f.read()")
    assert WINDOW.startswith(before) and WINDOW[len(before) :].startswith(line)  # the cursor at its indentation
    assert wrong_first.line_point(Example("code", "", "x = 1\n", 0.0, "a.py"), random.Random(0)) is None
    assert wrong_first.line_point(Example("revision", "p", "t", 0.0, "a.py"), random.Random(0)) is None


def test_what_the_model_already_writes_goes_last_and_is_left_out_beyond_the_cap():
    examples = [Example("insertion", f"# {i}\n", f"x = {i}\n", 0.0, f"{i}.py") for i in range(10)]
    asked = []

    def model(text: str) -> str:  # writes the right line for even numbers only
        asked.append(text)
        n = int(text[2:].strip())
        return f"x = {n}\nmore" if n % 2 == 0 else "y = 0"

    right, checked = wrong_first.already_right(model, examples, limit=10, seed=0)
    assert checked == len(asked) == 10
    assert right == {example_key(e) for e in examples[::2]}
    ordered = wrong_first.wrong_first(examples, right, cap=10)
    assert [e.target for e in ordered[:5]] == [f"x = {i}\n" for i in (1, 3, 5, 7, 9)]
    assert len(wrong_first.wrong_first(examples, right, cap=7)) == 7  # two of the right ones left out
    assert wrong_first.wrong_first(examples, set(), cap=3) == examples  # nothing checked: unchanged
    _, checked = wrong_first.already_right(model, examples, limit=4, seed=0)
    assert checked == 4
