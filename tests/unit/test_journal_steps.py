"""Raw edits become settled steps; steps are zero-context hunks without headers."""

from selftune.server.journal.steps import SETTLE_SECONDS, Steps, hunks


def test_hunks_are_zero_context_and_headerless():
    before = "a\nb\nc\nd\n"
    after = "a\nB\nc\nd\ne\n"
    assert hunks(before, after) == "@@ -2 +2 @@\n-b\n+B\n@@ -4,0 +5 @@\n+e"
    assert hunks("same\n", "same\n") == ""


def test_a_pause_settles_a_step():
    steps = Steps()
    assert steps.edit("", 0, 0, 0, now=0.0) is None
    assert steps.edit("d", 0, 0, 0, now=0.5) is None
    assert steps.settled("de", now=0.5 + SETTLE_SECONDS / 2) is None
    assert steps.settled("def", now=0.5 + SETTLE_SECONDS) == ("", "def")
    assert steps.pending is None


def test_an_edit_elsewhere_ends_the_step_with_the_text_before_it():
    steps = Steps()
    steps.edit("l0\nl1\n", 1, 1, 0, now=0.0)
    assert steps.edit("l0\nl1x\n", 2, 2, 1, now=0.1) is None  # next line: same step
    finished = steps.edit("l0\nl1x\nnew\n" + "\n" * 20, 20, 20, 0, now=0.2)
    assert finished == ("l0\nl1\n", "l0\nl1x\nnew\n" + "\n" * 20)
    assert steps.pending.first == 20


def test_the_step_region_grows_and_moves_with_inserted_lines():
    steps = Steps()
    steps.edit("", 10, 10, 2, now=0.0)  # a paste of two lines at line 10
    assert (steps.pending.first, steps.pending.last) == (10, 12)
    assert steps.edit("", 9, 9, 1, now=0.1) is None  # a line added just above: same step, pushed down
    assert (steps.pending.first, steps.pending.last) == (9, 13)
    assert steps.edit("", 15, 15, 0, now=0.2) is None  # within NEAR_LINES of the end
    assert steps.edit("", 40, 40, 0, now=0.3) is not None  # far away: a new step
    assert (steps.pending.first, steps.pending.last) == (40, 40)


def test_a_change_after_a_pause_settles_the_step_when_the_pause_reached_the_limit():
    """`change` takes LSP ranges and the edit's own time: the same steps whenever (or whether) a tick ran."""
    steps = Steps()
    assert steps.change("", ((0, 0), (0, 0)), "a = 1\n", now=10.0) == []
    assert steps.change("a = 1\n", ((1, 0), (1, 0)), "b", now=11.0) == []
    ended = steps.change("a = 1\nb", ((1, 1), (1, 1)), "c", now=20.0)  # a long pause, then more typing
    assert ended == [(11.0 + SETTLE_SECONDS, "", "a = 1\nb")]
    ended = steps.change("a = 1\nbc" + "\n" * 20, None, "new\n", now=20.5)  # the whole text replaced
    assert ended == []  # it covers every line, the pending step's too
    assert steps.finish("new\n") == ("a = 1\nb", "new\n")
