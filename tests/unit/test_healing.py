import numpy as np

from selftune.server.completion.healing import choose, consistent, split_last_token

PIECES = ["", "<eos>", " ", " x", " xs", "x", "s", "sorted", "so", " =", "=", "\n"]


def piece(token: int) -> str:
    return PIECES[token]


def logits(best_first: list[str]) -> np.ndarray:
    out = np.zeros(len(PIECES), dtype=np.float32)
    for rank, p in enumerate(best_first):
        out[PIECES.index(p)] = 10.0 - rank
    return out


def test_consistent():
    assert consistent(" x", " x") and consistent(" xs", " x") and consistent(" ", " x")
    assert not consistent("x", " x") and not consistent("", " x")


def test_the_model_is_free_among_consistent_tokens():
    # The model prefers a newline, which the cut-off space does not allow.
    assert PIECES[choose(logits(["\n", " xs", " x"]), " ", piece, fallback=2)] == " xs"
    assert PIECES[choose(logits(["\n", "sorted", "so"]), "so", piece, fallback=8)] == "sorted"


def test_falls_back_to_the_removed_token():
    assert choose(logits(["\n"]), "q", piece, fallback=5) == 5


def test_split_last_token():
    assert split_last_token("x = so", [2, 5, 9, 8], "so", bos=0) == ("x = ", [2, 5, 9], "so")


def test_no_healing_when_the_piece_does_not_match_the_text():
    assert split_last_token("x = so", [2, 5, 9, 8], "rted", bos=0) == ("x = so", [2, 5, 9, 8], "")


def test_a_lone_token_or_bos_is_not_healed():
    assert split_last_token("x", [5], "x", bos=0) == ("x", [5], "")
    assert split_last_token("", [0], "", bos=0) == ("", [0], "")
