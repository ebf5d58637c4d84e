"""Training where the model is wrong: which line of an example is checked, and what is trained on last."""

import random

from selftune.adaptation import wrong_first
from selftune.adaptation.data import Example
from selftune.adaptation.lineage import example_key
from selftune.adaptation.run import Pick

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


def test_what_the_model_already_writes_goes_last():
    examples = [Example("insertion", f"# {i}\n", f"x = {i}\n", 0.0, f"{i}.py") for i in range(10)]
    examples.append(Example("edit", "", "y = 1\n", 0.0, "e.py"))  # no line to check: counted as not known right
    asked = []

    def model(text: str) -> str:  # writes the right line for even numbers only
        asked.append(text)
        n = int(text[2:].strip())
        return f"x = {n}\nmore" if n % 2 == 0 else "y = 0"

    scores, checked = wrong_first.check(model, examples, seed=0)
    assert checked == len(asked) == 10
    assert wrong_first.right(scores) == {example_key(e) for e in examples[:10:2]}
    keys = wrong_first.wrong_first(examples + examples[:1], scores)  # a candidate twice is taken once
    assert keys == [example_key(e) for e in examples[1:10:2] + examples[10:] + examples[:10:2]]


def test_the_near_misses_come_first_and_unchecked_candidates_keep_their_place():
    examples = [Example("insertion", f"# {i}\n", f"x = {i}\n", 0.0, f"{i}.py") for i in range(5)]
    examples.insert(2, Example("edit", "", "y = 1\n", 0.0, "e.py"))
    written = {"0": "z", "1": "x = 1", "2": "x = 9", "3": "completely off", "4": "x = "}
    scores, checked = wrong_first.check(lambda text: written[text[2:].strip()], examples, seed=0)
    assert checked == 5 and wrong_first.right(scores) == {example_key(examples[1])}
    nearest = [examples[3], examples[5], examples[4], examples[0]]  # "x = 9" for "x = 2", then "x =" for "x = 4"
    assert [scores[example_key(e)] for e in nearest] == sorted(scores[example_key(e)] for e in nearest)[::-1]
    keys = wrong_first.wrong_first(examples, scores)
    order = [examples[3], examples[2], examples[5], examples[4], examples[0], examples[1]]
    assert keys == [example_key(e) for e in order]


def test_a_run_trains_on_the_candidates_in_the_order_chosen_up_to_its_cap():
    examples = [Example("insertion", f"# {i}\n", f"x = {i}\n", float(i), f"{i}.py") for i in range(12)]
    pick = Pick(seen={}, replay_share=0.25, seed=0)
    drawn = pick.candidates(examples, 8, goes_on=False, code_share=1.0)
    assert len(drawn) == 8 and {e.time for e in drawn} == set(map(float, range(4, 12)))  # the newest, as a run draws
    pick.chosen = wrong_first.wrong_first(drawn, {example_key(drawn[0]): 1.0})
    chosen = pick(examples, 5, goes_on=False)
    assert chosen == drawn[1:6]  # the one known right is left out, and the order kept
    assert pick(examples, 20, goes_on=False)[-1] == drawn[0]
