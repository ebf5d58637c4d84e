"""From a document and a cursor to a suggestion: context → prompt → engine → postprocess.

The one path every completion takes, whether it comes from the LSP handlers
or from `selftune complete`. It owns the model (an `Engine` over a llama.cpp
backend) and, per document, the window anchors and the chosen project blocks
that keep consecutive prompts sharing their beginning. The prompt is
assembled in assemble.py, from the document and what the project index
(project.py) knows. Knows nothing of LSP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable

from ..models import Manifest, load_manifest, resolve_weights
from ..settings import MODEL_KEYS, Settings
from . import postprocess
from .assemble import RATIO_SAMPLE, Assembled, assemble, chars_per_token, prompt_budget
from .backend import Backend
from .engine import Engine
from .project import ProjectIndex
from .request import Outcome, Partial, Request
from .sources import Choice, Sources

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3.0  # before the model is loaded (its vocabulary counts tokens); the engine trims an overflow
MIN_CONTEXT = 512
NO_SOURCES = Sources(definitions=False, similar=False, recent=False, after=False)  # a cold start's short prompt
MEASURED_KEPT = 256  # texts whose token counts are kept: a prompt's blocks are measured again at every key


def backend_loader(settings: Settings) -> tuple[Manifest, Callable[[], Backend]]:
    """The manifest for `settings` (read now) and a function that loads its weights (on the engine thread)."""
    manifest = load_manifest(settings.model)
    n_ctx = max(MIN_CONTEXT, settings.context_size or manifest.context_size)

    def load() -> Backend:
        from .llama import LlamaBackend  # llama_cpp loads its shared library on import

        return LlamaBackend(resolve_weights(manifest, settings.model_path), n_ctx=n_ctx, threads=settings.threads)

    return manifest, load


def patience(mode: str, line_wait_ms: int, block_wait_ms: int) -> float:
    """Seconds a request waits for its suggestion to be complete before it takes what is ready."""
    return (block_wait_ms if mode == "block" else line_wait_ms) / 1000


class Completer:
    def __init__(self, settings: Settings, load: Callable[[], Backend] | None = None, manifest: Manifest | None = None):
        self.settings = settings
        if load is None:
            manifest, load = backend_loader(settings)
        self.manifest = manifest or load_manifest(settings.model)
        self.engine = Engine(load, cached_documents=settings.cached_documents)
        self._anchors: dict[str, int] = {}
        self._quick_anchors: dict[str, int] = {}  # the same for the short prompt of a cold start
        self._choice = Choice()
        # Per document, the window's characters per token and the stretch of the file they were measured in.
        self._ratios: dict[str, tuple[int, float]] = {}
        self._measured: dict[str, int] = {}
        self._counter: Callable[[str], int] | None = None  # the vocabulary `_measured` was counted in

    def update_settings(self, settings: Settings) -> None:
        """Apply new settings; a model change loads the new model on the engine thread."""
        old, self.settings = self.settings, settings
        self.engine.cached_documents = settings.cached_documents
        if settings.differs_in(old, MODEL_KEYS):
            self.manifest, load = backend_loader(settings)
            self._anchors.clear()
            self._quick_anchors.clear()
            self._ratios.clear()
            self._choice = Choice()
            self.engine.reload(load)

    def model_state(self) -> tuple[str, str | None]:
        """("loading" | "ready" | "error", the load error if any) of the model being served."""
        engine = self.engine
        if not engine.loaded.is_set():
            return "loading", None
        if engine.load_error:
            return "error", str(engine.load_error)
        return "ready", None

    def n_ctx(self) -> int:
        backend = self.engine.backend
        return backend.n_ctx if backend is not None else (self.settings.context_size or self.manifest.context_size)

    def measure(self, text: str) -> int:
        """Tokens of `text` in the model's vocabulary (an estimate until the model is loaded)."""
        counter: Callable[[str], int] | None = getattr(self.engine.backend, "counter", None)
        if counter is None:
            return int(len(text) / CHARS_PER_TOKEN) + 1
        if counter != self._counter:
            self._counter, self._measured = counter, {}
        n = self._measured.get(text)
        if n is None:
            n = self._measured[text] = counter(text)
            if len(self._measured) > MEASURED_KEPT:
                del self._measured[next(iter(self._measured))]
        return n

    def ratio(self, key: str, text: str, offset: int) -> float | None:
        """The characters per token before `offset`, measured once per stretch of the document: tokenizing
        thousands of characters at every key costs more than the window's size could gain from it."""
        if getattr(self.engine.backend, "counter", None) is None:
            return None  # not loaded: estimated at every request until it is
        stretch = offset // RATIO_SAMPLE
        kept = self._ratios.get(key)
        if kept is None or kept[0] != stretch:
            kept = self._ratios[key] = (stretch, chars_per_token(text, offset, self.measure))
        return kept[1]

    def sources(self) -> Sources:
        s = self.settings
        return Sources(definitions=s.context_definitions, similar=s.context_similar, recent=s.context_recent,
                       after=s.context_after_cursor)  # fmt: skip

    def assemble(self, key: str, text: str, offset: int, *, language_id: str = "", path: str = "",
                 index: ProjectIndex | None = None) -> Assembled:  # fmt: skip
        """The prompt for a completion at `offset` (what `request` sends the model), keeping the document's
        window anchor and blocks."""
        budget = prompt_budget(self.n_ctx(), self.settings.max_tokens)
        assembled = assemble(self.manifest.prompt, text, offset, budget=budget, measure=self.measure, path=path,
                             language_id=language_id, index=index, sources=self.sources(),
                             previous_start=self._anchors.get(key), key=key, choice=self._choice,
                             ratio=self.ratio(key, text, offset))  # fmt: skip
        self._anchors[key] = assembled.context.window_start
        return assembled

    def quick(self, key: str, text: str, offset: int, whole: Assembled, *, language_id: str = "",
              path: str = "") -> str | None:  # fmt: skip
        """The short prompt a cold start is answered from first: the last `coldStartTokens` before the cursor,
        no blocks (None: none, or no shorter than the whole prompt). The engine decides which it serves."""
        limit = self.settings.cold_start_tokens
        if not limit or not self.settings.cached_documents:
            return None  # off, or no state can be parked: the two prompts would keep evicting each other
        short = assemble(self.manifest.prompt, text, offset, budget=limit, measure=self.measure, path=path,
                         language_id=language_id, sources=NO_SOURCES, previous_start=self._quick_anchors.get(key),
                         ratio=self.ratio(key, text, offset))  # fmt: skip
        self._quick_anchors[key] = short.context.window_start
        return short.prompt if len(short.prompt) < len(whole.prompt) else None

    def request(self, key: str, text: str, offset: int, on_done: Callable[[Outcome], None], *, language_id: str = "",
                path: str = "", index: ProjectIndex | None = None) -> Request:  # fmt: skip
        """Submit a completion at `offset` in `text`; `on_done` is called once, from any thread.

        `path`: the document's path in its workspace folder, and `index` that folder's project index."""
        s = self.settings
        assembled = self.assemble(key, text, offset, language_id=language_id, path=path, index=index)
        ctx = assembled.context
        shape = postprocess.shape_of(ctx, multiline=s.multiline, language_id=language_id)

        def finish(p: Partial) -> tuple[str, bool]:
            return postprocess.cut(shape, p.text, final=p.final, exhausted=p.exhausted, hurry=p.hurry)

        quick = self.quick(key, text, offset, assembled, language_id=language_id, path=path)

        def answer(outcome: Outcome) -> None:
            served = quick if outcome.quick and quick is not None else assembled.prompt
            context_hash = hashlib.sha1(served.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            on_done(dataclasses.replace(outcome, context_hash=context_hash))

        req = Request(
            key=key,
            prompt=assembled.prompt,
            finish=finish,
            on_done=answer,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            special=self.manifest.prompt.uses_special_tokens,
            stop=self.manifest.stop,
            patience=patience(shape.mode, s.line_wait_ms, s.block_wait_ms),
            veto=lambda suggestion: postprocess.repeats_below(shape, suggestion),
            quick=quick,
            quick_limit=s.cold_start_tokens,
        )
        self.engine.submit(req)
        return req

    async def complete(self, key: str, text: str, offset: int, *, language_id: str = "", path: str = "",
                       index: ProjectIndex | None = None) -> Outcome:  # fmt: skip
        """`request` for asyncio callers; cancelling the awaiting task cancels the request."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def on_done(outcome: Outcome) -> None:
            def resolve() -> None:
                if not future.done():  # the awaiting task may have been cancelled
                    future.set_result(outcome)

            loop.call_soon_threadsafe(resolve)

        req = self.request(key, text, offset, on_done, language_id=language_id, path=path, index=index)
        try:
            return await future
        except asyncio.CancelledError:
            self.engine.cancel(req)
            raise

    def forget(self, key: str) -> None:
        self._anchors.pop(key, None)
        self._quick_anchors.pop(key, None)
        self.engine.forget(key)
        self._ratios.pop(key, None)
        self._choice.forget(key)

    def close(self) -> None:
        self.engine.close()
