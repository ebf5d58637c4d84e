import numpy as np

from selftune.server.completion import healing
from selftune.server.completion.healing import choose, split_partial_word

PIECES = [
    "",
    "<eos>",
    " ",
    " x",
    " xs",
    "x",
    "s",
    "sorted",
    "so",
    " =",
    "=",
    "\n",
    " dee",
    "pl",
    " deep",
    "ly",
    "(",
    "it",
    "e",
]


def piece(token: int) -> str:
    return PIECES[token]


def tok(p: str) -> int:
    return PIECES.index(p)


def logits(best_first: list[str]) -> np.ndarray:
    out = np.zeros(len(PIECES), dtype=np.float32)
    for rank, p in enumerate(best_first):
        out[tok(p)] = 10.0 - rank
    return out


def first_token(text: str) -> int:
    """Like a tokenizer: the longest piece the text starts with."""
    return max((t for t, p in enumerate(PIECES) if p and text.startswith(p)), key=lambda t: len(PIECES[t]))


def test_the_model_is_free_among_consistent_tokens():
    # The model prefers a newline, which the cut-off space does not allow.
    assert piece(choose(logits(["\n", " xs", " x"]), " ", piece, first_token)) == " xs"
    assert piece(choose(logits(["\n", "sorted", "so"]), "so", piece, first_token)) == "sorted"


def test_falls_back_to_the_first_token_of_the_text(monkeypatch):
    monkeypatch.setattr(healing, "CANDIDATES", 1)  # only the model's favourite, a newline, is looked at
    assert piece(choose(logits(["\n"]), " deepl", piece, first_token)) == " deep"


def test_backs_up_over_the_whole_partial_word():
    text = "x = deepl"
    tokens = [0, tok("x"), tok(" ="), tok(" dee"), tok("pl")]
    assert split_partial_word(text, tokens, piece, bos=0) == ("x =", tokens[:3], " deepl")


def test_backs_up_one_token_at_a_word_boundary():
    text = "sorted(it"
    tokens = [0, tok("sorted"), tok("("), tok("it")]
    assert split_partial_word(text, tokens, piece, bos=0) == ("sorted(", tokens[:3], "it")
    text = "x ="
    assert split_partial_word(text, [0, tok("x"), tok(" =")], piece, bos=0) == ("x", [0, tok("x")], " =")


def test_no_healing_when_the_piece_does_not_match_the_text():
    assert split_partial_word("x = so", [0, tok("x"), tok(" ="), tok("pl")], piece, bos=0)[2] == ""


def test_bos_and_a_lone_token_are_not_healed():
    assert split_partial_word("x", [tok("x")], piece, bos=0) == ("x", [tok("x")], "")
    assert split_partial_word("", [0], piece, bos=0) == ("", [0], "")


def test_a_token_that_spells_all_of_the_text_beats_a_likelier_part():
    # The model likes "so" better, but "sorted" spells all of what was typed.
    assert piece(choose(logits(["so", "sorted"]), "sor", piece, first_token)) == "sorted"
    # Nothing spells all of " deepl": the likeliest part is taken.
    assert piece(choose(logits(["\n", " dee", " deep"]), " deepl", piece, first_token)) == " dee"
