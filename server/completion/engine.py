"""The inference thread: one model, newest request wins, nothing waits on stale work.

Third step of a completion (context → prompt → engine → postprocess). The
engine owns the backend (llama.cpp, see llama.py) on one thread and runs one
*generation* (generation.py) at a time: a prompt plus the tokens generated
after it. Requests and their answers are defined in request.py.

- **Newest wins.** A new request answers every earlier unanswered one with
  `None` at once; a generation nobody can use any more is stopped between two
  tokens, and a long prefill between two chunks.
- **Typing into a suggestion.** If a new prompt is the old prompt plus text the
  running generation already produced (the user typed what the model
  predicted), the request is served from that generation: no prefill, and the
  answer is often already there.
- **Answer at the stop point.** After each token the request's `finish`
  function (post-processing) is shown the text so far (a `Partial`) and says
  whether its suggestion is complete; the answer goes out then. The generation
  runs on a little (bounded by the token budget) so that the next keystroke
  finds its text ready. A request may veto a finished suggestion (a copy of a
  line below): it is redone from the token the model was least sure of.
- **KV reuse.** A new generation evaluates only the tokens after the prefix
  it shares with what the KV cache holds. The KV state of the few most
  recently used documents is parked in memory, so switching back to a file
  does not pay the full prefill. kvcache.py keeps these books.
- **Cold starts.** A prompt that would need a long prefill is answered from
  the request's short `quick` prompt, and the whole prompt is evaluated
  between requests (coldstart.py).

Which token comes next is decided by pure functions: sampling and
prompt-lookup drafts in decoding.py, token healing in healing.py. The engine
knows nothing of LSP, documents or post-processing rules: requests carry a
prompt and a `finish` callback.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import coldstart, decoding, healing
from .backend import Backend
from .generation import Generation
from .kvcache import KVCache
from .request import Finish, Outcome, Partial, Request

# Callers import the engine's interface from here as well as from its own modules.
__all__ = ["Backend", "Engine", "Finish", "Outcome", "Partial", "Request"]

log = logging.getLogger(__name__)

# Tokens a generation may run on after its request was cancelled.
SPECULATE_AFTER_CANCEL = 16
DRAFT_DOCUMENTS = 64  # documents whose draft length is kept
MARGINS = 32  # a generation's first tokens whose lead over the runner-up is kept (where a vetoed line is redone)


class Engine:
    def __init__(self, load: Callable[[], Backend], *, cached_documents: int = 4, seed: int = 0):
        self._load = load
        self._cv = threading.Condition()
        self._pending: Request | None = None
        self._starting: Request | None = None  # taken from _pending, not yet attached to a generation
        self._gen: Generation | None = None
        self._closed = False
        self._reload: Callable[[], Backend] | None = None
        self._jobs: list[Callable[[], None]] = []  # run on the engine thread between generations
        self.adapter: Path | None = None  # the adapter applied now (None: the base model)
        self.backend: Backend | None = None
        self.load_error: str | None = None
        self.loaded = threading.Event()
        self._cache: KVCache[Generation] = KVCache(cached_documents)
        self._rng = np.random.default_rng(seed)
        # Each document's draft length: how far drafts pay depends on what is typed there, and a document's answer
        # must not depend on which documents were answered before it (held-out points are evaluated in a row).
        self._drafts: OrderedDict[str, decoding.DraftLength] = OrderedDict()
        self._warmup: coldstart.Warmup | None = None  # a whole prompt a quick one stood in for, to evaluate
        self._thread = threading.Thread(target=self._run, name="selftune-inference", daemon=True)
        self._thread.start()

    @property
    def cached_documents(self) -> int:
        """Documents whose KV state is parked in memory besides the one in the context."""
        return self._cache.capacity

    @cached_documents.setter
    def cached_documents(self, n: int) -> None:
        self._cache.capacity = n

    @property
    def warming(self) -> str | None:
        """The document whose whole prompt is evaluated between requests (after a cold start's quick answer)."""
        warmup = self._warmup
        return warmup.key if warmup is not None else None

    # --- called from other threads -------------------------------------------------

    def submit(self, req: Request) -> None:
        with self._cv:
            self._supersede_locked(lambda r: True)
            if self._closed:
                self._resolve_locked(req, Outcome(None, error="the engine is shut down"))
                return
            self._pending = req
            self._cv.notify()

    def cancel(self, req: Request) -> None:
        """The client no longer wants `req`: answer it with None, stop work done only for it."""
        with self._cv:
            self._resolve_locked(req, Outcome(None))
            if self._pending is req:
                self._pending = None
            gen = self._gen
            if gen is not None and gen.request is req:
                gen.request = None
                gen.budget = min(gen.budget, gen.tokens + SPECULATE_AFTER_CANCEL)

    def supersede(self, key: str) -> None:
        """The document `key` changed: its unanswered requests are stale; answer them with None."""
        with self._cv:
            self._supersede_locked(lambda r: r.key == key)

    def forget(self, key: str) -> None:
        """The document `key` was closed: its whole prompt is not evaluated in idle time any more."""
        with self._cv:
            if self._warmup is not None and self._warmup.key == key:
                self._warmup = None
            self._drafts.pop(key, None)

    def reload(self, load: Callable[[], Backend]) -> None:
        """Load another model on the engine thread; requests wait for it."""
        with self._cv:
            self.loaded.clear()
            self._reload = load
            self._supersede_locked(lambda r: True)
            self._cv.notify()

    def set_adapter(self, path: Path | None, on_done: Callable[[str | None], None] = lambda error: None) -> None:
        """Switch to the LoRA adapter at `path` (None: none) on the engine thread, between generations.

        `on_done(None)` when it is in use, `on_done(message)` when it was refused (the old one stays).
        Requests waiting now are answered with None: they were made for the other weights.
        """
        if not self._queue_job(lambda: self._apply_adapter(path, on_done)):
            on_done("the engine is shut down")

    def exclusive(self, fn: Callable[[Backend], object]) -> object:
        """`fn(backend)` on the engine thread, between generations, for a caller that needs the model itself
        (the adaptation's llama.cpp/transformers parity). Blocks until it is done and returns its result or
        raises its error. No other thread may touch the backend: llama.cpp's context is not thread-safe, and
        a generation may go on after its request was answered. Cached states are dropped afterwards."""
        done = threading.Event()
        box: dict = {}

        def job() -> None:
            try:
                if self.backend is None:
                    raise RuntimeError(self.load_error or "the model is not loaded")
                box["value"] = fn(self.backend)
            except Exception as exc:  # raised again in the caller's thread
                box["error"] = exc
            finally:
                self._gen = None
                self._cache.reset(self.backend)
                done.set()

        if not self._queue_job(job):
            raise RuntimeError("the engine is shut down")
        while not done.wait(0.2):
            if not self._thread.is_alive():  # closed before the job's turn came
                raise RuntimeError("the engine is shut down")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _queue_job(self, job: Callable[[], None]) -> bool:
        """Queue `job` for the engine thread (False: it is shut down); requests waiting now are answered None."""
        with self._cv:
            if self._closed:
                return False
            self._jobs.append(job)
            self._supersede_locked(lambda r: True)
            self._cv.notify()
            return True

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closed = True
            self._supersede_locked(lambda r: True)
            self._cv.notify()
        self._thread.join(timeout)

    # --- the engine thread --------------------------------------------------------

    def _run(self) -> None:
        self._do_load(self._load)
        while True:
            with self._cv:
                while not self._closed and not self._has_work():
                    self._cv.wait()
                if self._closed:
                    break
                jobs, self._jobs = self._jobs, []
                if jobs:
                    for job in jobs:
                        job()
                    continue
                reload, self._reload = self._reload, None
                req, self._pending = self._pending, None
                self._starting = req
            if reload is not None:
                self._do_load(reload)
                continue
            try:
                if req is not None:
                    self._start(req)
                    with self._cv:
                        self._starting = None
                elif self._gen is not None and self._active():
                    self._step(self._gen)
                elif self._warmup is not None:
                    self._warm_step()
            except Exception as exc:  # a broken decode must not kill the thread
                log.exception("inference failed")
                self._warmup = None
                # Only the context is in doubt; the states parked before the failure are sound.
                self._cache.reset(self.backend, keep_parked=True)
                with self._cv:
                    for r in (req, self._gen.request if self._gen else None):
                        if r is not None:
                            self._resolve_locked(r, Outcome(None, error=f"inference failed: {exc}"))
                    self._gen = None
                    self._starting = None
        if self.backend is not None:
            self.backend.close()

    def _apply_adapter(self, path: Path | None, on_done: Callable[[str | None], None]) -> None:
        error = None
        if self.backend is None:
            error = "the model is not loaded"
        else:
            try:
                self.backend.set_adapter(path)
                self.adapter = path
            except Exception as exc:  # the refusal goes to on_done; the old adapter stays
                error = str(exc)
            # Every cached state was computed with the weights before this job.
            self._gen = None
            self._cache.reset(self.backend)
        try:
            on_done(error)
        except Exception:
            log.exception("adapter callback failed")

    def _do_load(self, load: Callable[[], Backend]) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self._gen = None
        self._warmup = None  # tokens of the old vocabulary
        self._cache.reset(None)  # the old context went with its backend
        self.adapter = None
        try:
            self.backend = load()
            self.load_error = None
        except Exception as exc:  # reported to every request and the status
            log.error("model not loaded: %s", exc)
            self.load_error = str(exc)
        self.loaded.set()

    def _loaded_backend(self) -> Backend:
        """The backend, where a generation runs: there is one only while a model is loaded."""
        assert self.backend is not None, "no model is loaded"
        return self.backend

    def _has_work(self) -> bool:
        warm = self._warmup is not None and self.backend is not None
        return self._reload is not None or self._pending is not None or self._active() or bool(self._jobs) or warm

    def _active(self) -> bool:
        g = self._gen
        return g is not None and (g.retry is not None or (not g.ended and g.tokens < g.budget))

    def _start(self, req: Request) -> None:
        backend = self.backend
        if backend is None:
            with self._cv:
                self._resolve_locked(req, Outcome(None, error=self.load_error or "no model is loaded"))
            return
        with self._cv:  # whatever the running generation was doing it for is superseded
            if self._gen is not None and self._gen.request is not None:
                self._resolve_locked(self._gen.request, Outcome(None))
                self._gen.request = None
        # A request for another document, or one that evaluates its own whole prompt, ends a warm-up.
        (prompt, tokens, retyped, heal), self._warmup = coldstart.serve(backend, self._cache, req, self._piece_text)
        cache = self._cache
        self._switch(req.state)
        if self._attach(req):
            return
        self._gen = None
        keep = cache.reuse(backend, tokens)
        stats = Outcome(None, cached_tokens=keep, prefill_tokens=len(tokens) - keep, quick=req.state != req.key)
        chunk = backend.prefill_chunk
        for i in range(keep, len(tokens), chunk):
            if self._pending is not None:  # a newer request: it will reuse what is evaluated so far
                with self._cv:
                    self._resolve_locked(req, Outcome(None))
                return
            cache.decode(backend, tokens[i : i + chunk])
        gen = Generation.for_request(req, prompt, heal=heal, heal_tokens=retyped, stats=stats)
        gen.start, gen.first = len(cache), cache.logits_after(len(cache))
        if gen.first is None:
            gen.first = cache.keep_logits(backend)
        # Healed tokens re-spell typed text: they do not count against the suggestion's budget.
        gen.budget = min(req.max_tokens + len(retyped), backend.n_ctx - len(cache) - 1)
        with self._cv:
            if req.done:
                gen.budget = min(gen.budget, SPECULATE_AFTER_CANCEL)
            else:
                gen.request = req
            self._gen = gen

    def _switch(self, state: str) -> None:
        """Bring `state` into the context if it is not there; the generation running on the one it replaces is
        parked with it."""
        if self._cache.key == state:
            return
        running = self._gen if self._gen is not None and self._gen.key == self._cache.key else None
        self._gen = self._cache.switch(self._loaded_backend(), state, running)

    def _warm_step(self) -> None:
        """Evaluate the next chunk of the whole prompt a quick one stood in for (nothing else is waiting)."""
        warmup = self._warmup
        if warmup is None:
            return
        self._switch(warmup.key)
        self._gen = None  # what ran on the document's state before it is stale: the prompt is evaluated afresh
        if self._cache.fill(self._loaded_backend(), warmup.tokens, coldstart.CHUNK):
            self._warmup = None
            self._cache.discard(warmup.key + coldstart.QUICK)  # its place is for another document's state

    def _attach(self, req: Request) -> bool:
        """Serve `req` from the running generation if its prompt is a prefix of that generation's text."""
        g = self._gen
        if g is None or g.key != req.state or g.special != req.special or len(req.prompt) < len(g.prompt):
            return False
        if g.retry is not None or not (g.prompt + g.text).startswith(req.prompt):
            return False
        if g.ended == "end" and len(req.prompt) == len(g.prompt) + len(g.text):
            return False  # nothing left to offer; a fresh generation may do better
        # The request's budget counts from its own place in the text: tokens the user
        # has already typed over do not count, those after it do.
        offset = len(req.prompt) - len(g.prompt)
        typed = bisect.bisect_right(g.ends, offset)
        room = self._loaded_backend().n_ctx - len(self._cache) - 2
        if g.ended == "context" or (g.ended != "end" and g.tokens - typed + room < req.max_tokens):
            # Typed along this generation until the context is nearly full: start again
            # (the KV cache still holds the prompt, so that is cheap).
            return False
        with self._cv:
            if req.done:
                return True
            g.request, g.offset = req, offset  # _start has already superseded g's previous request
            g.stats = Outcome(None, reused=True, quick=req.state != req.key)
            if g.ended in ("budget", ""):
                budget = typed + req.max_tokens
                g.ended, g.budget = ("budget", g.budget) if g.tokens >= budget else ("", budget)
            self._offer(g)
        return True

    def _step(self, g: Generation) -> None:
        """Generate the next token, or several when drafts from the prompt are confirmed."""
        backend = self._loaded_backend()
        cache = self._cache
        if g.retry is not None:  # the request said no to the suggestion: back to where the model was least sure
            cache.rewind(backend, g.start + g.retry)
            with self._cv:
                g.rewind(g.retry)
            return
        drafts: list[int] = []
        lookup = g.pending is not None and g.temperature <= 0 and not g.heal
        lengths = self._draft_length(g.key) if lookup else None  # the document's: how far drafts pay there
        if g.pending is not None:
            if g.temperature <= 0 and g.heal:
                drafts = g.heal_tokens  # most often the model spells the word as the prompt did
            elif lengths is not None:
                room = min(g.budget - g.tokens - 1, backend.n_ctx - len(cache) - 2)
                drafts = lengths.take(decoding.draft(cache.tokens, g.pending, room))
            cache.decode(backend, [g.pending, *drafts], all_logits=bool(drafts))
            g.pending = None
        # The model's token after the pending one, then after each draft it agrees with.
        chosen: list[int] = []
        margins: list[float] = []
        heal = g.heal
        first, g.first = g.first, None  # the logits after the prompt, kept: no decode call has made them yet
        for j in range(len(drafts) + 1):
            logits = first if first is not None else backend.logits(j if drafts else -1)
            if g.barred is not None and g.barred[0] == g.tokens + j:
                logits = decoding.bar(logits, {g.barred[1]})
            if heal:
                token = healing.choose(logits, heal, self._piece_text, lambda t: backend.tokenize(t, bos=False)[0])
                heal = healing.rest(heal, self._piece_text(token))
            else:
                token = decoding.sample(logits, g.temperature, self._rng)
                if not chosen and len(g.text) <= g.offset and not g.special and backend.is_end(token):
                    # Nothing written yet: a plain model's end says the file ends here, never so (FIM: an empty middle)
                    token = decoding.other_than_end(logits, token, g.temperature, self._rng, backend.is_end)
            chosen.append(token)
            margins.append(decoding.margin(logits, token) if g.tokens + j < MARGINS else float("inf"))
            if j == len(drafts) or token != drafts[j]:
                break
        rejected = len(drafts) - (len(chosen) - 1)
        if rejected:
            cache.truncate(backend, len(cache) - rejected)
        g.stats.drafted += len(drafts)
        g.stats.accepted += len(drafts) - rejected
        if lengths is not None:
            lengths.record(len(drafts), len(drafts) - rejected)
        for i, token in enumerate(chosen):
            with self._cv:
                self._emit(g, token, margins[i], last=i == len(chosen) - 1)
                if g.ended or g.retry is not None:
                    return

    def _draft_length(self, state: str) -> decoding.DraftLength:
        """The draft length of the document whose KV `state` this is (its quick prompts' state included)."""
        key = state.removesuffix(coldstart.QUICK)
        with self._cv:  # `forget` drops a closed document's from another thread
            length = self._drafts.pop(key, None) or decoding.DraftLength()
            self._drafts[key] = length  # the newest last: the longest unused go first
            while len(self._drafts) > DRAFT_DOCUMENTS:
                self._drafts.popitem(last=False)
        return length

    def _emit(self, g: Generation, token: int, margin: float, *, last: bool) -> None:
        """Add one generated token to `g` (lock held). Only the last one is not in the KV cache yet."""
        backend = self._loaded_backend()
        if backend.is_end(token):
            g.ended = "end"
            self._offer(g)
            return
        g.add(token, backend.piece(token), margin)
        if last:
            g.pending = token
        if not g.ended and len(self._cache) + 2 >= backend.n_ctx:
            g.ended = "context"
        self._offer(g)

    def _offer(self, g: Generation) -> None:
        """Give the attached request its suggestion if it is complete (lock held)."""
        req = g.request
        if req is None or req.done:
            return
        suggestion, complete = req.finish(g.partial(hurry=time.perf_counter() - req.created > req.patience))
        if (complete or g.ended) and suggestion and req.veto is not None and req.veto(suggestion):
            g.retry = g.divergence()
            if g.retry is not None:
                return
            suggestion = ""
        if complete or g.ended:
            if not suggestion:
                log.debug("empty suggestion: ended=%r, %d tokens generated, %d in the KV cache, output %r",
                          g.ended, g.tokens, len(self._cache), g.text[g.offset : g.offset + 60])  # fmt: skip
            g.stats.text = suggestion
            g.stats.seconds = time.perf_counter() - req.created
            self._resolve_locked(req, g.stats)
            g.request = None

    def _piece_text(self, token: int) -> str:
        return self._loaded_backend().piece(token).decode("utf-8", "replace")

    # --- helpers (lock held) ------------------------------------------------------

    def _supersede_locked(self, which: Callable[[Request], bool]) -> None:
        for r in (self._pending, self._starting, self._gen.request if self._gen else None):
            if r is not None and which(r):
                self._resolve_locked(r, Outcome(None))
        if self._gen is not None and self._gen.request is not None and self._gen.request.done:
            self._gen.request = None

    def _resolve_locked(self, req: Request, outcome: Outcome) -> None:
        if req.done:
            return
        req.done = True
        if outcome.seconds == 0.0:
            outcome.seconds = time.perf_counter() - req.created
        try:
            req.on_done(outcome)
        except Exception:
            log.exception("completion callback failed")
