"""A model's answers at the held-out points are remembered while nothing that decides them changes: the next run
compares its new adapter with the base model and the adapter in use without completing their points again."""

from __future__ import annotations

from pathlib import Path

from selftune.adaptation import answers, evaluate
from selftune.adaptation.answers import Answers
from selftune.adaptation.data.points import Point

FILES = {"pkg/a.py": ("def f():\n    return 1\n", 1.0), "pkg/b.py": ("x = 1\ny = 2\n", 2.0)}


class Counting:
    """Stands in for the model: answers with the line it is asked for, and counts the questions."""

    def __init__(self):
        self.asked = 0

    def complete(self, text, offset, **kwargs) -> str:
        self.asked += 1
        return "return 1\nmore" if offset < 20 else "y = 3"


def points() -> list[Point]:
    source = FILES["pkg/a.py"][0] + FILES["pkg/b.py"][0]
    return [Point("pkg/a.py", source, 13, 21, "return 1", 1.0), Point("pkg/b.py", source, 28, 33, "y = 2", 2.0)]


def test_a_second_evaluation_of_the_same_points_remembers_every_answer(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(answers, "code_fingerprint", lambda: "code")
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    gen = Counting()
    first = evaluate.completion_metrics(gen, points(), memo=Answers(tmp_path, FILES, "settings", weights).of(None))
    assert gen.asked == 2 and first["remembered"] == 0
    again = evaluate.completion_metrics(gen, points(), memo=Answers(tmp_path, FILES, "settings", weights).of(None))
    assert gen.asked == 2 and again["remembered"] == 2
    assert {k: again[k] for k in ("exact_match", "edit_similarity")} == {
        k: first[k] for k in ("exact_match", "edit_similarity")
    }
    assert first["exact_match"] == 0.5 and first["edit_similarity"] == 0.9  # (1 + 0.8) / 2
    # another model (an adapter) has answers of its own
    evaluate.completion_metrics(gen, points(), memo=Answers(tmp_path, FILES, "settings", weights).of("run-1"))
    assert gen.asked == 4


def test_answers_are_computed_again_when_anything_that_decides_them_changed(tmp_path: Path, monkeypatch):
    code = ["code"]
    monkeypatch.setattr(answers, "code_fingerprint", lambda: code[0])
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    gen = Counting()

    def evaluate_with(files=FILES, settings="settings") -> int:
        before = gen.asked
        evaluate.completion_metrics(gen, points(), memo=Answers(tmp_path, files, settings, weights).of(None))
        return gen.asked - before

    assert evaluate_with() == 2 and evaluate_with() == 0
    assert evaluate_with(files=FILES | {"pkg/c.py": ("z = 0\n", 3.0)}) == 2  # the project changed: other context
    assert evaluate_with() == 2  # and back: only the newest context is kept
    assert evaluate_with(settings="other settings") == 2
    code[0] = "new code"
    assert evaluate_with(settings="other settings") == 2
    weights.write_bytes(b"other weights")  # another model file under the same name
    assert evaluate_with(settings="other settings") == 2
    assert evaluate_with(settings="other settings") == 0


def test_an_unreadable_store_is_answered_again_not_trusted(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(answers, "code_fingerprint", lambda: "code")
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    memo = Answers(tmp_path, FILES, "settings", weights).of(None)
    gen = Counting()
    evaluate.completion_metrics(gen, points(), memo=memo)
    memo.path.write_text('{"context": "' + memo.context + '", "answers": {"x": [1, 2]')  # cut off mid-write
    evaluate.completion_metrics(gen, points(), memo=Answers(tmp_path, FILES, "settings", weights).of(None))
    assert gen.asked == 4
    evaluate.completion_metrics(gen, points(), memo=Answers(tmp_path, FILES, "settings", weights).of(None))
    assert gen.asked == 4  # and written whole again


def test_the_code_fingerprint_reads_the_completion_path():
    assert answers.code_fingerprint() == answers.code_fingerprint() and len(answers.code_fingerprint()) == 64


def test_only_the_base_models_and_the_adapter_in_uses_answers_are_kept(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(answers, "code_fingerprint", lambda: "code")
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    store = Answers(tmp_path, FILES, "settings", weights)
    for model in (None, "run-1", "run-2", "run-3"):
        evaluate.completion_metrics(Counting(), points(), memo=store.of(model))
    store.prune("run-2")
    assert sorted(p.name for p in store.folder.iterdir()) == sorted([f"{store.base}.json", "run-2.json"])
    store.prune(None)
    assert [p.name for p in store.folder.iterdir()] == [f"{store.base}.json"]


def test_a_models_held_out_loss_is_remembered_for_the_same_held_out_examples(tmp_path: Path, monkeypatch):
    from selftune.adaptation.answers import loss_key
    from selftune.adaptation.data import Example

    monkeypatch.setattr(answers, "code_fingerprint", lambda: "code")
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    held = [Example("code", "def f():\n", "    return 1\n", 1.0, "pkg/a.py")]
    memo = Answers(tmp_path, FILES, "settings", weights).of(None)
    assert memo.loss(loss_key(held, 512, "fp32")) is None
    memo.put_loss(loss_key(held, 512, "fp32"), 1.25)
    memo.put(points()[0], "return 1", 0.5)
    memo.save()
    # the next run reads it back, with the answers, for the same examples cut to the same length; else it is not known
    again = Answers(tmp_path, FILES, "settings", weights).of(None)
    assert again.loss(loss_key(held, 512, "fp32")) == 1.25
    assert again.loss(loss_key(held, 384, "fp32")) is None
    assert again.loss(loss_key(held, 512, "bf16")) is None  # the base held in bf16 gives another loss
    assert again.loss(loss_key([*held, Example("code", "", "x = 1\n", 2.0, "pkg/b.py")], 512, "fp32")) is None
    # the project changed outside the held-out examples: its answers are computed again, not the loss of the same
    # examples (an adapter's loss is the next run's measure of the adapter in use)
    elsewhere = Answers(tmp_path, {}, "settings", weights).of(None)
    assert again.get(points()[0]) == ("return 1", 0.5) and elsewhere.get(points()[0]) is None
    assert elsewhere.loss(loss_key(held, 512, "fp32")) == 1.25
