"""A trained PEFT LoRA adapter as a GGUF LoRA adapter that llama.cpp loads beside the base model.

The tensor names come from the `gguf` package's own name map for the base
model's architecture (read from the serving GGUF), so `model.layers.3.mlp.down_proj`
becomes `blk.3.ffn_down.weight` exactly as llama.cpp's converters name it; each
LoRA pair is stored as `<name>.lora_a` (rank × in) and `<name>.lora_b`
(out × rank), and `adapter.lora.alpha` carries PEFT's alpha, so llama.cpp
scales by alpha / rank as PEFT does. A module the map does not know is an
error, never a silently dropped tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
from safetensors.numpy import load_file

from selftune.server.workspace import ADAPTER_FILE  # one name for the server and the trainer


class ExportError(RuntimeError):
    pass


def base_architecture(base_gguf: Path) -> tuple[str, int]:
    """The llama.cpp architecture name and block count of a GGUF model file.

    Read by llama.cpp from the file's header (vocabulary only, no weights): the `gguf` package's reader
    parses every field in Python, and a 262k-token vocabulary took it 7-14 s on two cores."""
    try:
        meta = llama_cpp.Llama(model_path=str(base_gguf), vocab_only=True, verbose=False).metadata
    except (ValueError, RuntimeError, OSError) as exc:
        raise ExportError(f"llama.cpp could not read {base_gguf}: {exc}") from exc
    arch = meta.get("general.architecture")
    if not arch:
        raise ExportError(f"{base_gguf} has no general.architecture")
    blocks = meta.get(f"{arch}.block_count")
    if blocks is None:
        raise ExportError(f"{base_gguf} has no {arch}.block_count")
    return arch, int(blocks)


def export(peft_dir: Path, base_gguf: Path, out: Path | None = None) -> Path:
    """Write `peft_dir`'s adapter as GGUF (default `peft_dir/adapter.gguf`); returns its path."""
    out = out or peft_dir / ADAPTER_FILE
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    weights = load_file(str(peft_dir / "adapter_model.safetensors"))
    arch, blocks = base_architecture(base_gguf)
    arch_ids = {name: arch_id for arch_id, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in arch_ids:
        raise ExportError(f"the gguf package does not know the architecture {arch!r}")
    names = gguf.get_tensor_name_map(arch_ids[arch], blocks)

    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    pairs = 0
    for key in sorted(weights):
        # base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
        module, _, part = key.rpartition(".lora_")
        if part not in ("A.weight", "B.weight"):
            raise ExportError(f"unexpected tensor {key} in the adapter (only LoRA A/B matrices are exported)")
        module = module.removeprefix("base_model.model.")
        name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise ExportError(f"no llama.cpp name for {module} in architecture {arch}")
        writer.add_tensor(f"{name}.lora_{part[0].lower()}", np.ascontiguousarray(weights[key], dtype=np.float32))
        pairs += part == "A.weight"
    if pairs == 0:
        raise ExportError(f"{peft_dir} holds no LoRA tensors")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
