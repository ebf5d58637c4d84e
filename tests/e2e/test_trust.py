"""A cloned repository cannot run its code through selftune until the user trusts it.

The repository ships what would run its code: a `.selftune/config.toml` that turns tests on with an
interpreter of its own and asks adaptation to run tests and self-revise, a `conftest.py` and a
`.venv/bin/python` script, each leaving a marker when it runs. It is cloned and opened from a client that
sends no settings (as a plain Neovim, Emacs or Helix set-up does). A save and an adaptation run start, and
nothing runs; the server says why. After `selftune trust`, the same save runs the tests; after an edit to
the config file, nothing runs until the user trusts the workspace again.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from .conftest import ENV, SERVER, Editor, config, flush, git, until, wait_for_message
from .test_feedback import ours, runs_ended

CODE = "def double(x):\n    return x + x\n"
TESTS = "from calc import double\n\n\ndef test_double():\n    assert double(3) == 7\n"
SHIPPED_CONFIG = """[tests]
enabled = true
interpreter = ".venv/bin/python"

[adapt]
run_tests = true
self_revise = true
"""


def cloned_repository(origin: Path, clone: Path, markers: Path) -> Path:
    markers.mkdir()
    (origin / ".selftune").mkdir(parents=True)
    (origin / ".selftune" / "config.toml").write_text(SHIPPED_CONFIG)
    (origin / "calc.py").write_text(CODE)
    (origin / "test_calc.py").write_text(TESTS)
    (origin / "conftest.py").write_text(f"open({str(markers / 'conftest')!r}, 'w').close()\n")
    python = origin / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\ntouch {markers / "venv-python"}\nexec {sys.executable} "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    (origin / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    git(origin, "init", "-q")
    git(origin, "add", "-f", "-A")
    git(origin, "commit", "-qm", "a project that ships its own selftune settings")
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True, capture_output=True)
    return clone


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("markers") / "ran"


@pytest.fixture(scope="module")
def clone(tmp_path_factory, markers: Path) -> Path:
    base = tmp_path_factory.mktemp("trust")
    return cloned_repository(base / "origin", base / "clone", markers)


@pytest_lsp.fixture(config=config(), scope="module")
async def client(lsp_client: LanguageClient, clone: Path):
    # No initializationOptions and no workspace/configuration: the client says nothing about trust.
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                ),
                window=types.WindowClientCapabilities(work_done_progress=True),
            ),
            root_uri=clone.as_uri(),
            workspace_folders=[types.WorkspaceFolder(clone.as_uri(), clone.name)],
        )
    )
    yield
    await lsp_client.shutdown_session()


async def status(client: LanguageClient) -> dict:
    """The server's status; also a barrier: every notification sent before it has been handled."""
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.status"))
    return result if isinstance(result, dict) else vars(result)


def ran(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


def run_count(clone: Path) -> int:
    conn = sqlite3.connect(f"file:{clone / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM test_runs").fetchone()[0]
    finally:
        conn.close()


async def test_nothing_runs_in_a_cloned_repository_and_the_server_says_why(
    client: LanguageClient, clone: Path, markers: Path
):
    warning = await wait_for_message(client, "tests on save stay off")
    assert str(clone) in warning and "not trusted" in warning
    assert "came with the repository" in warning and "conftest.py" in warning  # what would run
    assert f"selftune trust {clone}" in warning and "selftune.trust" in warning  # how to allow it
    ignored = await wait_for_message(client, "tracked by git")
    assert "ignores it until you trust this workspace" in ignored

    editor = Editor(client, clone / "calc.py", CODE)
    editor.replace("x + x", "x * 2")
    editor.save()
    now = await status(client)
    assert now["testFeedback"] == [] and now["trusted"] == []
    await flush(client)  # the journal is written up to the save (its tables may not exist before)
    assert run_count(clone) == 0 and ran(markers) == []

    # An adaptation run, as the editor starts it: it runs no project code either, and its result says why.
    started = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.adapt"))
    assert Path(started["started"] if isinstance(started, dict) else started.started) == clone
    said = await wait_for_message(client, "The project's code did not run", timeout=900)
    assert "not trusted" in said and "selftune trust" in said
    meta = json.loads(
        max((clone / ".selftune" / "adapters").glob("*/meta.json"), key=lambda p: p.stat().st_mtime).read_text()
    )
    assert meta["trust"]["trusted"] is False and "self_revise" in meta["trust"]["off"]
    assert meta["config"]["run_tests"] is False and meta["config"]["self_revise"] is False
    report = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.report"))
    page = Path(report["reports"][0] if isinstance(report, dict) else report.reports[0]).read_text()
    assert "no project code ran: this workspace is not trusted" in page
    assert ran(markers) == []


async def test_after_selftune_trust_the_same_save_runs_the_tests(client: LanguageClient, clone: Path, markers: Path):
    done = subprocess.run([*SERVER[:-1], "trust", str(clone)], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0 and "enabled = true" in done.stdout, done.stderr
    editor = Editor(client, clone / "calc.py", (clone / "calc.py").read_text())
    editor.save()
    diagnostics = await until(lambda: ours(client, clone / "test_calc.py"), what="the failing test's diagnostic")
    assert "assert 6 == 7" in diagnostics[0].message
    await runs_ended(client)
    assert ran(markers) == ["conftest", "venv-python"]  # the config's own interpreter, now that it is trusted
    assert (await status(client))["trusted"] == [str(clone)]


async def test_an_edit_to_the_config_withdraws_the_trust(client: LanguageClient, clone: Path, markers: Path):
    config_file = clone / ".selftune" / "config.toml"
    config_file.write_text(config_file.read_text() + "timeout = 30\n")
    for marker in markers.iterdir():
        marker.unlink()
    runs = run_count(clone)
    editor = Editor(client, clone / "calc.py", (clone / "calc.py").read_text())
    editor.save()
    said = await wait_for_message(client, "changed since you trusted it")
    assert "tests on save stay off" in said and f"selftune trust {clone}" in said
    now = await status(client)
    assert now["testFeedback"] == [] and now["trusted"] == []
    assert not ours(client, clone / "test_calc.py")  # the old run's diagnostics are cleared
    assert ran(markers) == [] and run_count(clone) == runs

    # Trusted again through the editor's command, the changed file is what the user approved.
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="selftune.trust"))
    editor.save()
    await until(lambda: ours(client, clone / "test_calc.py"), what="the failing test's diagnostic again")
    await runs_ended(client)
    assert ran(markers) == ["conftest", "venv-python"]
