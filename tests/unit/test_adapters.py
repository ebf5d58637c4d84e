"""Managing a workspace's adapters: the listing, the one in use, and an export for Ollama and llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selftune.server import adapters
from selftune.server.workspace import adapters_dir, current_adapter


def adapter(root: Path, adapter_id: str, meta: dict, gguf: bool = True) -> None:
    folder = adapters_dir(root) / adapter_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    if gguf:
        (folder / "adapter.gguf").write_bytes(b"GGUF" + adapter_id.encode())


def test_list_use_and_go_back_to_the_base_model(tmp_path: Path):
    metrics = {"exact_match": 0.25, "base_exact_match": 0.2, "edit_similarity": 0.6, "base_edit_similarity": 0.5}
    adapter(tmp_path, "a1", {"created": "2026-01-01 10:00:00", "decision": "promoted", "metrics": metrics,
                             "data": {"newest_trained": 1767225600.0}})  # fmt: skip
    adapter(tmp_path, "a2", {"created": "2026-01-02 10:00:00", "decision": "kept"})
    adapter(tmp_path, "a3", {"created": "2026-01-03 10:00:00", "decision": "failed"}, gguf=False)
    assert adapters.use(tmp_path, "a1") == "a1" and current_adapter(tmp_path)[0] == "a1"
    found = adapters.listed(tmp_path)
    assert [(a["id"], a["current"], a["usable"]) for a in found] == [("a1", True, True), ("a2", False, True),
                                                                     ("a3", False, False)]  # fmt: skip
    line = adapters.describe(found[0])
    assert line.startswith("a1  2026-01-01 10:00:00  data up to 2026-01-01")
    assert "held-out exact match 25.0% (base 20.0%)" in line and line.endswith("promoted  * in use")
    assert "no held-out metrics" in adapters.describe(found[1])
    with pytest.raises(ValueError, match="no adapter 'a3'.*there are: a1, a2"):
        adapters.use(tmp_path, "a3")  # no GGUF: it cannot be served
    assert current_adapter(tmp_path)[0] == "a1"  # unchanged
    assert adapters.use(tmp_path, "a2") == "a2" and current_adapter(tmp_path)[0] == "a2"
    assert adapters.use(tmp_path, adapters.BASE) is None and current_adapter(tmp_path) is None


def test_an_export_holds_the_adapter_a_modelfile_and_the_llama_cpp_commands(tmp_path: Path):
    adapter(tmp_path, "a1", {"created": "2026-01-01 10:00:00", "base": "gemma3-270m"})
    base = tmp_path / "models" / "gemma.gguf"
    written = adapters.export(tmp_path, "a1", tmp_path / "out", base)
    assert {p.name for p in written} == {"adapter.gguf", "meta.json", "Modelfile", "README.txt"}
    assert (tmp_path / "out" / "adapter.gguf").read_bytes() == b"GGUFa1"
    modelfile = (tmp_path / "out" / "Modelfile").read_text()
    assert f"FROM {base}\n" in modelfile and "ADAPTER ./adapter.gguf\n" in modelfile
    assert (
        f"llama-server -m {base} --lora {tmp_path / 'out' / 'adapter.gguf'}"
        in (tmp_path / "out" / "README.txt").read_text()
    )
    with pytest.raises(ValueError, match="no adapter 'nope'"):
        adapters.export(tmp_path, "nope", tmp_path / "out2", base)


def test_a_run_expects_the_pace_of_the_last_run_with_the_same_pace_knobs(tmp_path: Path):
    from selftune.adaptation.config import Config
    from selftune.adaptation.run import last_rate

    cfg = Config()
    assert last_rate(tmp_path, cfg) is None  # no run yet: no figure rather than a guess
    for i, (vocab, rate) in enumerate([(True, 190.0), (False, 80.0), (True, None)]):
        meta = {"created": f"2026-01-0{i + 1} 10:00:00", "config": cfg.override([f"project_vocab={vocab}"]).to_json()}
        if rate is not None:
            meta["metrics"] = {"train_tokens_per_s": rate}
        adapter(tmp_path, f"a{i}", meta)
    assert last_rate(tmp_path, cfg) == 190.0  # the newest default run recorded none; the one before it differs
    assert last_rate(tmp_path, cfg.override(["project_vocab=false"])) == 80.0
    assert last_rate(tmp_path, cfg.override(["lora_layers=6"])) is None
