"""Adaptation through the LSP, as an editor drives it: `selftune.adapt`, `$/progress`, the swap, a corrupt adapter.

The project has an idiom no base model knows: every function starts with
`ledger.stamp("<name>", zone="qx-77")`. Each module holds one function with a
verb no other module uses, so at a held-out line neither the file above it
nor the project's retrieved code shows the idiom (BM25 finds nothing that
scores); only training can teach it. The base model does not write it in a
new file; after `selftune.adapt` (a real run: datasets, TRL training on the
CPU, GGUF export, held-out evaluation, the gate) the running server completes
it, without a restart. Before that, a corrupt adapter named as current is
refused with a message, and completions keep coming from the base model.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .conftest import ENV, Editor, config, git, start, wait_for_message
from .test_feedback import journal, until

NAMES = ["load", "save", "parse", "render", "merge", "split", "clean", "count", "sort", "index", "fetch", "store"]
OBJECTS = ["order", "invoice", "customer", "ticket", "report", "basket", "refund", "coupon", "account", "voucher"]
# Small and fast: two epochs at a high rate on ~20 short windows (minutes on two cores).
RECIPE = """[adapt]
epochs = 2
learning_rate = 0.001
max_length = 160
window_chars = 400
max_points = 8
lintseq_per_file = 0
batch_size = 2
error_driven = 64
"""
NEW_FILE = "from .ledger import ledger\n\n\ndef ship_parcel(parcel, options=None):\n    "


def module_for(obj: str, verbs: list[str]) -> str:
    out = [f'"""Operations on {obj}s."""\n\nfrom .ledger import ledger\n\n']
    for name in verbs:
        out.append(
            f'\ndef {name}_{obj}({obj}, options=None):\n    ledger.stamp("{name}_{obj}", zone="qx-77")\n'
            f'    result = dict({obj})\n    result["step"] = "{name}"\n    return result\n\n'
        )
    return "".join(out)


def idiom_project(root: Path, functions: int = 1) -> Path:
    """A git repository of modules written in the idiom, one commit each (the newest are held out), with the short
    recipe: ten modules of one function each (verbs no two share), or six of `functions` (sampled verbs), where
    each held-out file shows the idiom above most of its lines."""
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "ledger.py").write_text(
        "class Ledger:\n    def stamp(self, name, zone):\n        self.last = (name, zone)\n\n\nledger = Ledger()\n"
    )
    (root / ".selftune").mkdir()
    (root / ".selftune" / "config.toml").write_text(RECIPE)
    git(root, "init", "-q")
    dated_commit(root, "ledger", "2023-12-31T00:00:00")
    rng = random.Random(0)
    modules = (
        zip(OBJECTS, ([v] for v in NAMES))
        if functions == 1
        else ((o, rng.sample(NAMES, functions)) for o in OBJECTS[:6])
    )
    for i, (obj, verbs) in enumerate(modules):
        (root / "shop" / f"{obj}s.py").write_text(module_for(obj, verbs))
        dated_commit(root, f"{obj}s", f"2024-01-{i + 1:02d}T00:00:00")
    return root


def dated_commit(root: Path, message: str, date: str) -> None:
    """Commit `shop/` authored and committed at `date`: the time split reads commit times, and commits made a
    few milliseconds apart would tie or not by chance, so the held-out files would change from run to run."""
    git(root, "add", "shop")
    command = ["git", "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", message, f"--date={date}"]
    env = os.environ | {"GIT_COMMITTER_DATE": date}
    subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = idiom_project(tmp_path_factory.mktemp("idiom"))
    # A corrupt adapter named as the current one: the server must refuse it and keep serving.
    broken = root / ".selftune" / "adapters" / "broken"
    broken.mkdir(parents=True)
    (broken / "adapter.gguf").write_bytes(b"GGUF" + bytes(64))
    (root / ".selftune" / "adapters" / "current").write_text("broken\n")
    return root


@pytest_lsp.fixture(config=config(), scope="module")
async def client(lsp_client: LanguageClient, project: Path):
    await start(lsp_client, project, {"historyDepth": 50, "adaptAuto": False}, status=True, progress=True)
    yield
    await lsp_client.shutdown_session()


def field(status, name):
    return status[name] if isinstance(status, dict) else getattr(status, name)


async def test_a_corrupt_adapter_is_refused_and_the_base_model_serves(client: LanguageClient, project: Path):
    message = await wait_for_message(client, "adapter broken not used", timeout=120)
    assert "the one in use stays" in message
    editor = Editor(client, project / "shop" / "parcels.py", NEW_FILE)
    suggestion = await editor.inline()
    assert suggestion and 'zone="qx-77"' not in suggestion  # the base model does not know the idiom
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.status"))
    assert field(status, "adapter") is None


async def test_adapt_trains_promotes_and_swaps_without_a_restart(client: LanguageClient, project: Path):
    (project / ".selftune" / "adapters" / "current").unlink()
    started = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.adapt"))
    assert Path(field(started, "started")) == project
    message = await wait_for_message(client, "new adapter", timeout=1800)
    adapter_id = message.split("new adapter ")[1].split()[0]
    meta = json.loads((project / ".selftune" / "adapters" / adapter_id / "meta.json").read_text())
    assert meta["decision"] == "promoted"
    compare = meta["compare"]
    assert compare["candidate"]["edit_similarity"] > compare["base"]["edit_similarity"]
    assert compare["candidate"]["heldout_loss"] < compare["base"]["heldout_loss"]
    assert compare["candidate"]["parity_top1"] >= 0.95
    assert 1 <= meta["error_driven"]["checked"] <= 64  # the base model completed lines of the candidates first
    # Progress came as $/progress, and the status went through `adapting`.
    assert any(
        "adapting" in str(getattr(v, "title", "")) or "training" in str(getattr(v, "message", ""))
        for values in client.progress_reports.values()
        for v in values
    )
    assert any(field(s, "state") == "adapting" for s in client.statuses)
    await until(
        lambda: any(field(s, "adapter") == adapter_id for s in client.statuses),
        60,
        what="the status to name the new adapter",
    )

    editor = Editor(client, project / "shop" / "parcels.py", NEW_FILE)
    suggestion = await editor.inline()
    assert 'ledger.stamp("ship_parcel", zone="qx-77")' in suggestion, suggestion
    assert journal(project).execute("SELECT decision FROM adaptation_runs WHERE id = ?", (adapter_id,)).fetchone() == (
        "promoted",
    )
    # The report plots the adapter's held-out metrics next to the base model's.
    report = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.report"))
    page = Path(field(report, "reports")[0]).read_text()
    assert f"{adapter_id} (current)" in page and "★ " + meta["created"][5:16] in page


async def test_adapters_are_listed_switched_and_exported_without_a_restart(client: LanguageClient, project: Path,
                                                                          tmp_path: Path):  # fmt: skip
    in_use = (project / ".selftune" / "adapters" / "current").read_text().strip()
    cli = [sys.executable, "-m", "selftune.server", "adapters", "--workspace", str(project)]
    listing = subprocess.run(cli, capture_output=True, text=True, check=True, env=ENV).stdout
    assert any(line.startswith(in_use) and line.endswith("* in use") for line in listing.splitlines()), listing
    assert "held-out exact match" in listing and "broken" in listing

    # From the command line: the running server notices and serves the base model alone.
    subprocess.run([*cli, "use", "base"], check=True, env=ENV, capture_output=True)
    await until(lambda: client.statuses and field(client.statuses[-1], "adapter") is None, 30,
                what="the server to go back to the base model")  # fmt: skip
    editor = Editor(client, project / "shop" / "parcels.py", NEW_FILE)
    assert 'zone="qx-77"' not in await editor.inline()
    # From the editor: the command swaps it back at once.
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="selftune.useAdapter", arguments=[in_use]))  # fmt: skip
    assert field(result, "using") == in_use
    await until(lambda: client.statuses and field(client.statuses[-1], "adapter") == in_use, 30,
                what="the server to serve the adapter again")  # fmt: skip
    with pytest.raises(JsonRpcException, match="no adapter 'nope'"):
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="selftune.useAdapter", arguments=["nope"]))  # fmt: skip

    out = tmp_path / "export"
    subprocess.run([*cli, "export", in_use, str(out)], check=True, env=ENV, capture_output=True)
    assert (out / "adapter.gguf").read_bytes() == (
        project / ".selftune" / "adapters" / in_use / "adapter.gguf"
    ).read_bytes()
    assert (
        "ADAPTER ./adapter.gguf" in (out / "Modelfile").read_text()
        and "llama-server" in (out / "README.txt").read_text()
    )


async def test_the_next_run_goes_on_from_the_adapter_in_use_and_trains_first_on_what_it_has_not_seen(
    client: LanguageClient, project: Path
):
    in_use = (project / ".selftune" / "adapters" / "current").read_text().strip()
    first = json.loads((project / ".selftune" / "adapters" / in_use / "meta.json").read_text())
    (project / "shop" / "labels.py").write_text(module_for("label", ["fetch"]))  # new code since that run
    # Dated before the other commits, so that it falls on the training side of the time split.
    dated_commit(project, "labels", "2023-12-30T00:00:00")
    # One epoch, and no time plan (a busy machine would cut it short): this run's lineage is under test, not what
    # it learns or how fast.
    cli = [sys.executable, "-m", "selftune.server", "adapt", "--workspace", str(project), "--json", "--set", "epochs=1",
           "--set", "minutes=0"]  # fmt: skip
    lines = subprocess.run(cli, capture_output=True, text=True, check=True, env=ENV).stdout.splitlines()
    result = next(json.loads(line) for line in lines if line.startswith('{"event": "result"'))
    meta = json.loads((project / ".selftune" / "adapters" / result["id"] / "meta.json").read_text())

    assert meta["warm_from"] == in_use and meta["lineage"]["runs"] == 2
    assert meta["lineage"]["tokens"] == first["training"]["tokens"] + meta["training"]["tokens"]
    assert meta["lineage"]["new_examples"] >= 1 and meta["lineage"]["replayed_examples"] >= 1
    db = journal(project)
    assert db.execute("SELECT warm_from FROM adaptation_runs WHERE id = ?", (result["id"],)).fetchone() == (in_use,)
    trained = dict(db.execute("SELECT run_id, COUNT(*) FROM trained_examples GROUP BY run_id").fetchall())
    assert trained[in_use] >= 1 and trained[result["id"]] == meta["lineage"]["new_examples"] + meta["lineage"][
        "replayed_examples"]  # fmt: skip
    labels = db.execute("SELECT run_id FROM trained_examples WHERE path = 'shop/labels.py'").fetchall()
    assert (result["id"],) in labels and (in_use,) not in labels  # the new file, and only by the new run
    coverage = meta["coverage"]
    assert 1 <= coverage["trained"] < coverage["files"] and "files as they are now" in coverage["summary"]
    # Every example this run trained on is one the project gives now; the lineage's count holds them all.
    this_run = meta["lineage"]["new_examples"] + meta["lineage"]["replayed_examples"]
    assert this_run <= coverage["trained_examples"] <= coverage["examples"]
    said = f"trained on {coverage['trained_examples']:,} of the {coverage['examples']:,} examples"
    assert said in coverage["summary"]


async def test_a_second_run_while_one_is_going_is_refused(client: LanguageClient, project: Path):
    client.messages.clear()
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.adapt"))
    with pytest.raises(Exception, match="already going on"):
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.adapt"))
