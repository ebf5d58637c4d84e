"""The adapters a workspace has trained: list them, choose the one in use, export one for another runtime.

Each `selftune adapt` run leaves `.selftune/adapters/<id>/` with its PEFT
weights, `adapter.gguf` and `meta.json` (base model, data window, config,
held-out metrics); `adapters/current` names the one the server serves
(workspace.py). `selftune adapters` and the editor commands `selftune.adapters`
and `selftune.useAdapter` come here; the server notices a change of
`current` by itself and swaps the adapter in without a restart (scheduler.py).
An export is the GGUF adapter with an Ollama `Modelfile` (`FROM` the base
model's GGUF, `ADAPTER` the adapter) and the llama.cpp command lines that
load the two, so the adapter can be used outside selftune.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .workspace import ADAPTER_FILE, adapters_dir, current_adapter, current_file

BASE = "base"  # the name `use` takes for the base model alone


def listed(root: Path) -> list[dict]:
    """Every adapter of `root`, oldest first: its meta.json plus `id`, `current`, and `usable` (its GGUF is there)."""
    folder = adapters_dir(root)
    found = current_adapter(root)
    in_use = found[0] if found else None
    out = []
    # An adapter's folder has its meta.json, or at least its GGUF (one put there by hand); a run still going on
    # has neither yet.
    folders = {p.parent for p in folder.glob("*/meta.json")} | {p.parent for p in folder.glob(f"*/{ADAPTER_FILE}")}
    for adapter in folders:
        meta = adapter / "meta.json"
        try:
            data = json.loads(meta.read_text())
        except FileNotFoundError:
            data = {"error": "no meta.json (not made by selftune adapt)"}
        except (OSError, ValueError) as exc:
            data = {"error": f"unreadable meta.json: {exc}"}
        if not isinstance(data, dict):
            data = {"error": "meta.json is not an object"}
        name = adapter.name
        data.update(id=name, current=name == in_use, usable=(meta.parent / ADAPTER_FILE).is_file())
        out.append(data)
    return sorted(out, key=lambda d: (str(d.get("created", "")), d["id"]))


def _day(at: object) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(at)) if isinstance(at, (int, float)) else "?"


def describe(adapter: dict) -> str:
    """One line for a listing: id, date, data window, held-out metrics, decision, in use."""
    data = adapter.get("data") or {}
    metrics = adapter.get("metrics") or {}
    window = f"data up to {_day(data.get('newest_trained'))}"
    if isinstance(metrics.get("exact_match"), (int, float)):
        held = (f"held-out exact match {metrics['exact_match']:.1%} (base {metrics.get('base_exact_match', 0):.1%}), "
                f"edit similarity {metrics.get('edit_similarity', 0):.3f} "
                f"(base {metrics.get('base_edit_similarity', 0):.3f})")  # fmt: skip
    else:
        held = "no held-out metrics"
    mark = "  * in use" if adapter.get("current") else ""
    decision = adapter.get("error") or adapter.get("decision") or "?"
    return f"{adapter['id']}  {adapter.get('created', '?')}  {window}; {held}; {decision}{mark}"


def use(root: Path, adapter_id: str) -> str | None:
    """Serve `adapter_id` (or `base`) in `root` from now on; returns the id in use (None: the base model).
    Raises ValueError naming what exists when there is no such adapter."""
    if adapter_id == BASE:
        current_file(root).unlink(missing_ok=True)
        return None
    if not (adapters_dir(root) / adapter_id / ADAPTER_FILE).is_file():
        names = ", ".join(a["id"] for a in listed(root) if a["usable"]) or "none"
        raise ValueError(f"no adapter {adapter_id!r} with a GGUF file in {adapters_dir(root)} (there are: {names}; "
                         f"or `{BASE}` for the base model)")  # fmt: skip
    point_current_at(root, adapter_id)
    return adapter_id


def point_current_at(root: Path, adapter_id: str) -> None:
    """`adapters/current` names `adapter_id`, replaced atomically (a reader sees the old name or the new)."""
    folder = adapters_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".current.{os.getpid()}"
    tmp.write_text(adapter_id + "\n")
    os.replace(tmp, current_file(root))


def export(root: Path, adapter_id: str, dest: Path, base_gguf: Path) -> list[Path]:
    """Write `adapter_id`'s GGUF adapter into `dest` with an Ollama Modelfile and the llama.cpp command lines
    (README.txt) that load it over `base_gguf`; returns the files written."""
    source = adapters_dir(root) / adapter_id
    if not (source / ADAPTER_FILE).is_file():
        raise ValueError(f"no adapter {adapter_id!r} with a GGUF file in {adapters_dir(root)}")
    dest.mkdir(parents=True, exist_ok=True)
    adapter = dest / ADAPTER_FILE
    shutil.copyfile(source / ADAPTER_FILE, adapter)
    written = [adapter]
    if (source / "meta.json").is_file():
        shutil.copyfile(source / "meta.json", dest / "meta.json")
        written.append(dest / "meta.json")
    modelfile = dest / "Modelfile"
    modelfile.write_text(
        f"# Ollama: ollama create {adapter_id} -f Modelfile\nFROM {base_gguf}\nADAPTER ./{ADAPTER_FILE}\n"
    )
    readme = dest / "README.txt"
    readme.write_text(
        f"selftune adapter {adapter_id}, trained on {root}, for the base model {base_gguf.name}.\n\n"
        f"Ollama:     ollama create {adapter_id} -f {modelfile}\n"
        f"llama.cpp:  llama-server -m {base_gguf} --lora {adapter}\n"
        f"            llama-cli -m {base_gguf} --lora {adapter} -p 'def '\n"
    )
    return [*written, modelfile, readme]
