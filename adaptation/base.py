"""The base model for training: the manifest's weights in transformers, dequantized once into a cache.

transformers can read the serving GGUF (`gguf_file=`), but dequantizing 236
tensors and converting the tokenizer takes a minute or more; `prepare` does it
once per GGUF file and keeps the result as safetensors in
`<cache>/hf/<model>-<hash>/`, which `load` then reads in seconds. Training on
the dequantized serving weights means the adapter is learned against exactly
the weights llama.cpp multiplies it with. A manifest with
`[training] source = "hub"` trains from the named HF checkpoint instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from selftune.server.models import Manifest, ModelUnavailable, cache_dir, resolve_weights

log = logging.getLogger(__name__)


def _file_key(path: Path, manifest: Manifest, model_path: str) -> str:
    """A short key for one GGUF file: the manifest's hash, or for a modelPath override its path, size and mtime."""
    if manifest.weights.get("sha256") and not model_path:
        return manifest.weights["sha256"][:12]
    stat = path.stat()
    return hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def prepare(manifest: Manifest, model_path: str = "", progress=print) -> tuple[str, Path]:
    """The transformers location of the base weights (a cache folder, or a hub id) and the serving GGUF."""
    gguf = resolve_weights(manifest, model_path)
    source = manifest.training.get("source", "gguf")
    if source == "hub":
        return manifest.training["hub"], gguf
    if source != "gguf":
        raise ModelUnavailable(
            f"model manifest {manifest.source}: [training] source must be 'gguf' or 'hub', not {source!r}"
        )
    key = _file_key(gguf, manifest, model_path)
    target = cache_dir() / "hf" / f"{manifest.name}-{key}"
    if (target / "done.json").is_file():
        return str(target), gguf
    progress(f"dequantizing {gguf.name} for training (once; cached in {target})")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain float32 tensors now; what marks them as "gguf-quantized"
        # only stops save_pretrained from writing them.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        (partial / "done.json").write_text(json.dumps({"gguf": str(gguf), "key": key}))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ModelUnavailable(f"transformers could not read {gguf} for training: {exc}") from exc
    return str(target), gguf


def training_device(requested: str = "auto") -> str:
    """The device to train on: "cuda" when present (or asked for), else "cpu"; train.precision says in what."""
    import torch

    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ModelUnavailable("device 'cuda' was asked for but torch sees no CUDA GPU")
        return "cuda"
    return "cpu"


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load(location: str, device: str, dtype):
    """(model, tokenizer) from `prepare`'s location, on `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, attn_implementation="eager")
    return model.to(device), tokenizer
