"""From a document and a cursor to a suggestion: context → prompt → engine → postprocess.

The one path every completion takes, whether it comes from the LSP handlers
or from `selftune complete`. It owns the model (an `Engine` over a llama.cpp
backend) and the per-document window anchors that keep consecutive prompts
sharing their beginning. Knows nothing of LSP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable

from ..models import Manifest, load_manifest, resolve_weights
from ..settings import MODEL_KEYS, Settings
from . import context, postprocess, prompt
from .backend import Backend
from .engine import Engine
from .request import Outcome, Partial, Request

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3.0  # conservative for code; the engine trims if a prompt still overflows
SUFFIX_CHARS = 2000  # what post-processing looks at after the cursor (not in a plain prompt)
MIN_CONTEXT = 512


def backend_loader(settings: Settings) -> tuple[Manifest, Callable[[], Backend]]:
    """The manifest for `settings` (read now) and a function that loads its weights (on the engine thread)."""
    manifest = load_manifest(settings.model)
    n_ctx = max(MIN_CONTEXT, settings.context_size or manifest.context_size)

    def load() -> Backend:
        from .llama import LlamaBackend  # llama_cpp loads its shared library on import

        return LlamaBackend(resolve_weights(manifest, settings.model_path), n_ctx=n_ctx, threads=settings.threads)

    return manifest, load


class Completer:
    def __init__(self, settings: Settings, load: Callable[[], Backend] | None = None, manifest: Manifest | None = None):
        self.settings = settings
        if load is None:
            manifest, load = backend_loader(settings)
        self.manifest = manifest or load_manifest(settings.model)
        self.engine = Engine(load, cached_documents=settings.cached_documents)
        self._anchors: dict[str, int] = {}

    def update_settings(self, settings: Settings) -> None:
        """Apply new settings; a model change loads the new model on the engine thread."""
        old, self.settings = self.settings, settings
        self.engine.cached_documents = settings.cached_documents
        if settings.differs_in(old, MODEL_KEYS):
            self.manifest, load = backend_loader(settings)
            self._anchors.clear()
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

    def request(
        self, key: str, text: str, offset: int, on_done: Callable[[Outcome], None], *, language_id: str = ""
    ) -> Request:
        """Submit a completion at `offset` in `text`; `on_done` is called once, from any thread."""
        s = self.settings
        budget = max(64, self.n_ctx() - s.max_tokens - 8)
        fim = self.manifest.prompt.kind == "fim"
        prefix_chars = int(budget * (0.75 if fim else 1.0) * CHARS_PER_TOKEN)
        suffix_chars = int(budget * 0.25 * CHARS_PER_TOKEN) if fim else SUFFIX_CHARS
        ctx = context.build(
            text, offset, prefix_chars=prefix_chars, suffix_chars=suffix_chars, previous_start=self._anchors.get(key)
        )
        self._anchors[key] = ctx.window_start
        shape = postprocess.shape_of(ctx, multiline=s.multiline, language_id=language_id)

        def finish(p: Partial) -> tuple[str, bool]:
            return postprocess.cut(shape, p.text, final=p.final, exhausted=p.exhausted, hurry=p.hurry)

        text_prompt = prompt.render(self.manifest.prompt, ctx)
        context_hash = hashlib.sha1(text_prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        req = Request(
            key=key,
            prompt=text_prompt,
            finish=finish,
            on_done=lambda outcome: on_done(dataclasses.replace(outcome, context_hash=context_hash)),
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            special=self.manifest.prompt.uses_special_tokens,
            stop=self.manifest.stop,
            patience=s.block_wait_ms / 1000,
        )
        self.engine.submit(req)
        return req

    async def complete(self, key: str, text: str, offset: int, *, language_id: str = "") -> Outcome:
        """`request` for asyncio callers; cancelling the awaiting task cancels the request."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def on_done(outcome: Outcome) -> None:
            def resolve() -> None:
                if not future.done():  # the awaiting task may have been cancelled
                    future.set_result(outcome)

            loop.call_soon_threadsafe(resolve)

        req = self.request(key, text, offset, on_done, language_id=language_id)
        try:
            return await future
        except asyncio.CancelledError:
            self.engine.cancel(req)
            raise

    def forget(self, key: str) -> None:
        self._anchors.pop(key, None)

    def close(self) -> None:
        self.engine.close()
