"""The engine's scheduling rules, on a scripted backend that 'knows' one text.

The real model is exercised in tests/e2e; here the backend continues a fixed
script character by character so that every rule has an exact expectation.
"""

import threading
import time

import numpy as np
import pytest

from selftune.server.completion.coldstart import QUICK
from selftune.server.completion.decoding import DraftLength
from selftune.server.completion.engine import Engine, Outcome, Partial, Request
from selftune.server.models import ModelUnavailable

SCRIPT = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n"
BOS, EOS = 0, 1


class ScriptedBackend:
    """Tokens are characters (code point + 2). The next token continues SCRIPT if the KV cache holds a prefix of it."""

    n_ctx = 4096
    bos = BOS
    prefill_chunk = 8

    def __init__(self, script=SCRIPT, delay=0.0):
        self.script = script
        self.delay = delay
        self.kv: list[int] = []
        self.decoded = 0  # tokens evaluated, over all calls
        self.fail_next = False
        self.batches: list[int] = []
        self.cut_to: list[int] = []  # KV lengths kept by truncate/clear, in order

    def tokenize(self, text, *, special=False, bos=True):
        return [BOS] * bos + [ord(c) + 2 for c in text]

    def piece(self, token):
        return chr(token - 2).encode() if token >= 2 else b""

    def is_end(self, token):
        return token == EOS

    def decode(self, tokens, *, all_logits=False):
        self.batches.append(len(tokens))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("decode exploded")
        time.sleep(self.delay * len(tokens))
        self.kv.extend(tokens)
        self.decoded += len(tokens)

    def truncate(self, n):
        self.cut_to.append(n)
        del self.kv[n:]

    def clear(self):
        self.cut_to.append(0)
        self.kv = []

    def logits(self, i=-1):
        # After the i-th token of the last batch (-1: after the last one).
        upto = len(self.kv) if i == -1 else len(self.kv) - self.batches[-1] + i + 1
        text = "".join(chr(t - 2) for t in self.kv[1:upto])
        out = np.zeros(0x3000, dtype=np.float32)
        out[BOS] = -1.0  # never predicted
        nxt = EOS
        if self.script.startswith(text) and len(text) < len(self.script):
            nxt = ord(self.script[len(text)]) + 2
        out[nxt] = 1.0
        return out

    def save(self):
        return repr(self.kv).encode()

    def restore(self, data, n_tokens):
        self.kv = eval(data.decode())
        return True

    def close(self):
        pass


def line_finish(p: Partial):
    """Answer with the rest of the current line."""
    if "\n" in p.text:
        return p.text.split("\n", 1)[0], True
    return p.text, p.final


def submit(engine, prompt, key="a.py", finish=line_finish, max_tokens=64):
    done = threading.Event()
    box: list[Outcome] = []
    req = Request(
        key=key, prompt=prompt, finish=finish, on_done=lambda o: (box.append(o), done.set()), max_tokens=max_tokens
    )
    engine.submit(req)
    return req, done, box


def wait(done, box, timeout=5):
    assert done.wait(timeout), "no answer"
    return box[0]


@pytest.fixture
def backend():
    return ScriptedBackend()


@pytest.fixture
def engine(backend):
    e = Engine(lambda: backend)
    yield e
    e.close()


def test_a_request_gets_the_rest_of_its_line(engine):
    _, done, box = submit(engine, "def total(xs):\n    s =")
    out = wait(done, box)
    assert out.text == " 0" and out.error is None
    # BOS plus the prompt, less the last token, which is healed (generated again under constraint).
    assert out.prefill_tokens == len("def total(xs):\n    s =")


def test_newest_wins_and_stale_requests_return_at_once():
    slow = ScriptedBackend(delay=0.005)
    engine = Engine(lambda: slow)
    try:
        waits = [submit(engine, SCRIPT[: 20 + i]) for i in range(20)]
        last = wait(*waits[-1][1:])
        stale = [wait(done, box) for _, done, box in waits[:-1]]
        assert all(o.text is None for o in stale)
        assert last.text == SCRIPT[39:].split("\n", 1)[0]
        assert max(o.seconds for o in stale) < last.seconds
    finally:
        engine.close()


def test_typing_what_the_model_predicted_reuses_the_generation(engine, backend):
    prompt = "def total(xs):\n    s = 0\n    for"
    _, done, box = submit(engine, prompt)
    assert wait(done, box).text == " x in xs:"
    cuts = len(backend.cut_to)
    # The user types the first characters of the suggestion.
    _, done, box = submit(engine, prompt + " x i")
    out = wait(done, box)
    assert out.reused and out.prefill_tokens == 0
    assert out.text == "n xs:"
    # No new prefill: the KV cache never lost the prompt and what was typed (rejected draft tokens of the
    # generation running on may be cut; how far it ran depends on the machine's load, not on the engine).
    kept = len(backend.tokenize(prompt + " x i"))
    assert all(n >= kept for n in backend.cut_to[cuts:]), backend.cut_to[cuts:]


def test_a_new_prompt_evaluates_only_what_is_not_cached(engine):
    _, done, box = submit(engine, "def total(xs):\n    s = 0\n")
    wait(done, box)
    # A different continuation (the model predicted "    for", the user wrote "    # ").
    _, done, box = submit(engine, "def total(xs):\n    s = 0\n    # ")
    out = wait(done, box)
    assert not out.reused
    assert out.cached_tokens >= len("def total(xs):\n    s = 0\n")
    assert out.prefill_tokens <= len("    # ") + 1


def test_switching_back_resumes_the_documents_generation(engine):
    a = "def total(xs):\n    s = 0\n"
    wait(*submit(engine, a, key="a.py")[1:])
    wait(*submit(engine, "print(1)\n", key="b.py")[1:])
    out = wait(*submit(engine, a + "    for", key="a.py")[1:])
    assert out.reused and out.prefill_tokens == 0 and out.text == " x in xs:"


def test_switching_back_restores_the_documents_kv_cache(engine):
    a = "def total(xs):\n    s = 0\n"
    wait(*submit(engine, a, key="a.py")[1:])
    wait(*submit(engine, "print(1)\n", key="b.py")[1:])
    out = wait(*submit(engine, a + "    # sum", key="a.py")[1:])  # not what a.py's generation wrote
    assert not out.reused
    assert out.cached_tokens >= len(a)  # not a cold prefill


def test_cancel_answers_none(engine):
    slow = ScriptedBackend(delay=0.01)
    e = Engine(lambda: slow)
    try:
        req, done, box = submit(e, SCRIPT[:30])
        e.cancel(req)
        assert wait(done, box).text is None
    finally:
        e.close()


def test_document_change_supersedes_its_requests():
    slow = ScriptedBackend(delay=0.01)
    e = Engine(lambda: slow)
    try:
        _, done, box = submit(e, SCRIPT[:30], key="a.py")
        e.supersede("a.py")
        assert wait(done, box).text is None
    finally:
        e.close()


def test_a_model_that_cannot_load_answers_with_its_error():
    def load():
        raise ModelUnavailable("needs the package foo: pip install foo")

    e = Engine(load)
    try:
        out = wait(*submit(e, "x")[1:])
        assert out.text is None and "pip install foo" in out.error
    finally:
        e.close()


def test_a_failed_decode_is_reported_and_the_engine_keeps_serving(engine, backend):
    backend.fail_next = True
    out = wait(*submit(engine, "def total(xs):\n")[1:])
    assert out.text is None and "decode exploded" in out.error
    out = wait(*submit(engine, "def total(xs):\n    s =")[1:])
    assert out.text == " 0"


def test_generation_stops_at_the_token_budget(engine):
    def never_done(p: Partial):
        return p.text, p.final

    out = wait(*submit(engine, "def", finish=never_done, max_tokens=5)[1:])
    # Five new tokens, plus "d", "e", "f" generated again: the partial word is healed.
    assert out.text == SCRIPT[3:8] and out.generated_tokens == 8


def test_prompt_lookup_drafts_are_confirmed_in_batches_and_change_nothing():
    script = "total = compute(alpha, beta, gamma)\nother = compute(alpha, beta, gamma)\n"
    backend = ScriptedBackend(script)
    e = Engine(lambda: backend)
    try:
        prompt = "total = compute(alpha, beta, gamma)\nother = comp"
        out = wait(*submit(e, prompt)[1:])
        assert out.text == "ute(alpha, beta, gamma)"
        assert out.accepted >= 10
        # Far fewer decode calls than tokens: drafts were checked several at a time.
        assert len(backend.batches) < out.generated_tokens
    finally:
        e.close()


def test_wrong_drafts_are_rolled_back():
    # The earlier line continues differently: drafts from it are rejected and removed from the KV cache.
    script = "f(alpha, beta)\nf(alpha, gamma)\n"
    backend = ScriptedBackend(script)
    e = Engine(lambda: backend)
    try:
        out = wait(*submit(e, "f(alpha, beta)\nf(al")[1:])
        assert out.text == "pha, gamma)"
        assert out.drafted > out.accepted
        text = "".join(chr(t - 2) for t in backend.kv[1:])
        assert script.startswith(text)  # nothing rejected is left in the cache
    finally:
        e.close()


def test_a_request_after_the_budget_is_spent_is_answered_at_once():
    # A line that never ends: the generation stops at the budget and answers what it has.
    backend = ScriptedBackend("#" * 500)
    e = Engine(lambda: backend)
    try:
        first = wait(*submit(e, "#", max_tokens=10)[1:])
        assert first.text == "#" * 10
        decoded = backend.decoded
        again = wait(*submit(e, "#", max_tokens=10)[1:])  # the same place again: nothing new to generate
        assert again.reused and again.text == first.text and backend.decoded == decoded
        later = wait(*submit(e, "###", max_tokens=10)[1:])  # two typed over: two more tokens
        assert later.text == "#" * 10
    finally:
        e.close()


def test_a_generation_that_filled_the_context_is_not_reused():
    backend = ScriptedBackend("x" * 400)
    backend.n_ctx = 64
    e = Engine(lambda: backend)
    try:
        first = wait(*submit(e, "x" * 10, finish=lambda p: (p.text, p.final), max_tokens=200)[1:])
        assert first.text and len(backend.kv) >= 60  # stopped by the context, not the budget
        # More tokens than are left past this point and in the context: a fresh generation.
        again = wait(*submit(e, "x" * 12, finish=lambda p: (p.text, p.final), max_tokens=60)[1:])
        assert not again.reused and again.text
    finally:
        e.close()


def test_exclusive_work_runs_on_the_engine_thread_while_a_generation_goes_on():
    slow = ScriptedBackend(delay=0.01)
    engine = Engine(lambda: slow)
    try:
        _, done, box = submit(engine, "def total(xs):\n    s =")
        assert wait(done, box).text == " 0"  # answered at the line's end; the generation runs on behind it
        seen = {}

        def use_the_model(backend):
            seen["thread"] = threading.current_thread().name
            seen["kv"] = len(backend.kv)
            backend.decode(backend.tokenize("x = 1"))
            return "done"

        assert engine.exclusive(use_the_model) == "done"
        assert seen["thread"] == "selftune-inference"
        assert slow.kv == []  # what the job left in the context is dropped: the engine's cache is unknown to it
        with pytest.raises(ValueError, match="bad job"):
            engine.exclusive(lambda backend: (_ for _ in ()).throw(ValueError("bad job")))
        _, done, box = submit(engine, "def total(xs):\n    s = 0\n    for")
        assert wait(done, box).text == " x in xs:"  # and it keeps serving, from a fresh prefill
    finally:
        engine.close()
    with pytest.raises(RuntimeError, match="shut down"):
        engine.exclusive(lambda backend: None)


class RunnerUpBackend(ScriptedBackend):
    """The script, and "#" always the runner-up: after the script's end the model would end the text."""

    def logits(self, i=-1):
        out = super().logits(i)
        out[ord("#") + 2] = max(out[ord("#") + 2], 0.5)
        return out


def test_a_plain_prompt_is_not_answered_with_the_end_of_the_text_before_anything():
    engine = Engine(lambda: RunnerUpBackend())
    try:
        # The model's first choice ends the text: the runner-up is taken, and an end after it is kept.
        assert wait(*submit(engine, SCRIPT)[1:]).text == "#"
        # A FIM prompt's end at once is an empty middle, which can be right: it stays.
        done, box = threading.Event(), []
        fim = Request(key="b.py", prompt=SCRIPT + " ", finish=line_finish, special=True,
                      on_done=lambda o: (box.append(o), done.set()))  # fmt: skip
        engine.submit(fim)
        assert wait(done, box).text == ""
    finally:
        engine.close()


def vetoed(engine, prompt, veto, key="v.py"):
    done, box = threading.Event(), []
    engine.submit(Request(key=key, prompt=prompt, finish=line_finish, veto=veto,
                          on_done=lambda o: (box.append(o), done.set())))  # fmt: skip
    return wait(done, box)


def test_a_vetoed_suggestion_is_redone_where_the_model_was_least_sure():
    backend = RunnerUpBackend()  # "#" is the runner-up everywhere, by the same margin
    engine = Engine(lambda: backend)
    prompt = "def total(xs):\n    s = 0\n    "
    try:
        seen: list[str] = []
        out = vetoed(engine, prompt, lambda s: seen.append(s) or s.startswith("for"))
        # "for x in xs:" was said no to; every token of it as sure as the next, the first ("f") is chosen again.
        assert seen == ["for x in xs:", "#"] and out.text == "#"
        # The KV cache went back to the prompt and its healed last space, short of that space, which is evaluated
        # again for the logits after it.
        assert len(prompt) in backend.cut_to
        # Said no to twice: nothing is shown, and the engine keeps serving.
        assert vetoed(engine, prompt, lambda s: True, key="w.py").text == ""
        assert wait(*submit(engine, "def total(xs):\n    s =")[1:]).text == " 0"
    finally:
        engine.close()


class DoubtfulBackend(ScriptedBackend):
    """The script, but after "for x in " the model nearly writes "y"."""

    def logits(self, i=-1):
        out = super().logits(i)
        upto = len(self.kv) if i == -1 else len(self.kv) - self.batches[-1] + i + 1
        if "".join(chr(t - 2) for t in self.kv[1:upto]).endswith("for x in "):
            out[ord("y") + 2] = 0.9
        return out


def test_a_vetoed_line_keeps_what_the_model_was_sure_of():
    engine = Engine(lambda: DoubtfulBackend())
    try:
        out = vetoed(engine, "def total(xs):\n    s = 0\n    ", lambda s: s == "for x in xs:")
        assert out.text == "for x in y"  # the line as far as its least sure token, then the runner-up there
    finally:
        engine.close()


def test_a_prompt_that_ends_where_the_last_one_did_needs_no_decode_before_its_first_token(engine, backend):
    # Typing within a word: token healing cuts each prompt back to the word's start, where the last one ended.
    stem = "def total(xs):\n    s = 0\n    "
    assert wait(*submit(engine, stem + "fo")[1:]).text == "r x in xs:"
    healed = len(backend.tokenize(stem))
    cuts = len(backend.cut_to)
    out = wait(*submit(engine, stem + "fi")[1:])  # not what the model wrote: a new generation
    assert not out.reused and out.prefill_tokens == 0 and out.cached_tokens == healed
    assert min(backend.cut_to[cuts:]) == healed  # the prompt's last token was not decoded again
    # The kept logits are the model's: the same word again gets the same suggestion, still without a decode.
    cuts = len(backend.cut_to)
    out = wait(*submit(engine, stem + "fo")[1:])
    assert out.text == "r x in xs:" and out.prefill_tokens == 0
    assert min(backend.cut_to[cuts:]) == healed


def test_drafting_backs_off_while_the_model_refuses_the_drafts():
    drafts = DraftLength()
    assert drafts.take([]) == [] and drafts.take([7, 8, 9]) == [7]
    drafts.record(1, 1)
    assert drafts.take([7, 8, 9]) == [7, 8]  # confirmed whole: twice as many
    drafts.record(2, 0)  # refused outright: the next chance is passed up, then one draft again
    assert drafts.take([7, 8]) == [] and drafts.take([7, 8]) == [7]
    drafts.record(1, 0)  # again: two chances passed up now
    assert drafts.take([7]) == [] and drafts.take([7]) == [] and drafts.take([7]) == [7]
    drafts.record(1, 1)
    drafts.record(2, 2)
    drafts.record(4, 3)  # partly confirmed: as many as were
    assert drafts.take(list(range(10))) == [0, 1, 2]


def test_drafts_the_model_keeps_refusing_are_soon_not_checked():
    # " a" comes back 20 times, followed by another letter each time: a draft from its last occurrence is
    # wrong at its first token (8 drafts checked at each of them, before).
    script = " ".join("a" + chr(98 + i) for i in range(20))
    backend = ScriptedBackend(script)
    e = Engine(lambda: backend)
    try:
        out = wait(*submit(e, "ab", finish=lambda p: (p.text, p.final), max_tokens=len(script))[1:])
        assert out.text == script[2:]
        assert 0 < out.drafted <= 5  # one draft at a time, passed up for longer after each refusal
    finally:
        e.close()


def test_a_documents_drafts_do_not_depend_on_the_documents_answered_before_it():
    # Held-out points are answered one after another, each as its own document: an answer must not depend on
    # how well drafts paid in the one before (a batch of drafts is not bit-for-bit a token at a time in llama.cpp).
    confirmed = "total = compute(alpha, beta, gamma)\nother = compute(alpha, beta, gamma)\n"
    refused = " ".join("a" + chr(98 + i) for i in range(20))

    def answer(engine, backend, script, prompt, key, finish=line_finish):
        backend.script = script
        return wait(*submit(engine, prompt, key=key, finish=finish, max_tokens=len(script))[1:])

    alone_backend, after_backend = ScriptedBackend(), ScriptedBackend()
    alone, after = Engine(lambda: alone_backend), Engine(lambda: after_backend)
    try:
        first = answer(alone, alone_backend, confirmed, confirmed[:48], "b.py")
        whole = answer(after, after_backend, refused, "ab", "a.py", finish=lambda p: (p.text, p.final))
        assert whole.accepted < whole.drafted  # drafting backs off there
        second = answer(after, after_backend, confirmed, confirmed[:48], "b.py")
        assert first.drafted > 1
        assert (second.text, second.drafted, second.accepted) == (first.text, first.drafted, first.accepted)
        assert after_backend.batches[-len(alone_backend.batches) + 1 :] == alone_backend.batches[1:]
    finally:
        alone.close()
        after.close()


# --- cold starts: a quick prompt first, the whole one evaluated in idle time ---------

HEAD = "# " + "x" * 300 + "\n"  # what a whole prompt holds ahead of the window (blocks): a long prefill
TYPED = "def total(xs):\n    s ="


def submit_cold(engine, typed, *, key="a.py", limit=100):
    """A request whose whole prompt is HEAD + `typed` and whose quick prompt is `typed` alone."""
    done = threading.Event()
    box: list[Outcome] = []
    req = Request(key=key, prompt=HEAD + typed, quick=typed, quick_limit=limit, finish=line_finish,
                  on_done=lambda o: (box.append(o), done.set()))  # fmt: skip
    engine.submit(req)
    return req, done, box


def until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_a_cold_prompt_is_answered_from_its_quick_one_and_the_whole_one_is_evaluated_after(engine):
    out = wait(*submit_cold(engine, TYPED)[1:])
    assert out.quick and out.text == " 0"  # the script, continued from the quick prompt
    assert out.prefill_tokens == len(TYPED)  # BOS and the quick prompt less its healed last token, not HEAD
    until(lambda: engine.warming is None)
    again = wait(*submit_cold(engine, TYPED + " 0\n")[1:])
    assert not again.quick
    assert again.cached_tokens >= len(HEAD + TYPED) and again.prefill_tokens <= 4  # the whole prompt was in


def test_a_key_during_the_warm_up_is_served_from_the_quick_state_and_the_warm_up_goes_on():
    slow = ScriptedBackend(delay=0.002)
    e = Engine(lambda: slow)
    try:
        wait(*submit_cold(e, TYPED)[1:])
        until(lambda: len(slow.kv) > 100 and slow.kv[1] == ord("#") + 2)  # HEAD is being evaluated
        out = wait(*submit_cold(e, TYPED + " 0")[1:])
        assert out.quick and out.prefill_tokens <= 3  # the quick state came back, not a prefill of it
        until(lambda: e.warming is None)
        assert slow.decoded < len(HEAD) + 3 * len(TYPED) + 64  # HEAD went on from where it was, once
        assert e._cache.held("a.py" + QUICK) == []  # the quick state is dropped: it keeps no document's place
        assert not wait(*submit_cold(e, TYPED + " 0\n")[1:]).quick
    finally:
        e.close()


def test_a_prompt_within_the_limit_or_without_a_place_to_park_is_served_whole(backend):
    e = Engine(lambda: backend)
    try:
        out = wait(*submit_cold(e, TYPED, limit=1000)[1:])
        assert not out.quick and e.warming is None
        assert out.prefill_tokens == len(HEAD + TYPED)
    finally:
        e.close()
    e = Engine(lambda: ScriptedBackend(), cached_documents=0)  # the two states would evict each other
    try:
        assert not wait(*submit_cold(e, TYPED)[1:]).quick
    finally:
        e.close()


def test_going_to_another_document_or_closing_it_drops_its_warm_up():
    slow = ScriptedBackend(delay=0.01)  # HEAD takes seconds: the warm-up is still on when the next request comes
    e = Engine(lambda: slow)
    try:
        wait(*submit_cold(e, TYPED)[1:])
        assert e.warming == "a.py"
        wait(*submit(e, "print(1)\n", key="b.py")[1:])
        assert e.warming is None
        wait(*submit_cold(e, TYPED + " 0")[1:])
        e.forget("a.py")
        assert e.warming is None
    finally:
        e.close()
