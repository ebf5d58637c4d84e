"""What editor clients rely on beyond completions: `selftune/status`, the commands, and workspace trust.

The workspace turns tests on in its own `.selftune/config.toml`; the client says the workspace is not
trusted, so no test may run until it says otherwise.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .conftest import Editor, config, git, start
from .test_feedback import journal, ours, until

CODE = "def double(x):\n    return x + x\n"
TESTS = "from calc import double\n\n\ndef test_double():\n    assert double(3) == 7\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("untrusted")
    (root / ".selftune").mkdir()
    (root / ".selftune" / "config.toml").write_text("[tests]\nenabled = true\n")
    (root / "calc.py").write_text(CODE)
    (root / "test_calc.py").write_text(TESTS)
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    return root


@pytest_lsp.fixture(config=config(), scope="module")
async def client(lsp_client: LanguageClient, project: Path):
    await start(lsp_client, project, {"historyDepth": 0, "workspaceTrusted": False}, status=True)
    yield
    await lsp_client.shutdown_session()


def field(status, name):
    return status[name] if isinstance(status, dict) else getattr(status, name)


async def command(client: LanguageClient, name: str, *args):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command=name, arguments=list(args)))


async def test_status_is_sent_and_an_untrusted_workspace_runs_no_tests(client: LanguageClient, project: Path):
    ready = await until(
        lambda: [s for s in client.statuses if field(s, "modelState") == "ready"],
        what="a selftune/status with the model ready",
    )
    status = ready[-1]
    assert field(status, "model") == "gemma3-270m" and field(status, "adapter") is None
    assert field(status, "state") == "recording" and field(status, "recording") is True
    assert list(field(status, "testFeedback")) == []  # config.toml says on; the editor's distrust wins

    editor = Editor(client, project / "test_calc.py", TESTS)
    editor.save()
    await until(
        lambda: journal(project).execute("SELECT count(*) FROM documents").fetchone()[0], what="the save to be recorded"
    )
    snapshot = await command(client, "selftune.status")
    assert list(field(snapshot, "testFeedback")) == [] and field(snapshot, "state") == "recording"
    assert journal(project).execute("SELECT count(*) FROM test_runs").fetchone()[0] == 0
    assert not ours(client, project / "test_calc.py")

    # Trust granted: the same workspace now runs its tests on save, and the status says so.
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"selftune": {"historyDepth": 0, "workspaceTrusted": True}})
    )
    await until(
        lambda: client.statuses and list(field(client.statuses[-1], "testFeedback")) == [str(project)],
        what="selftune/status to show tests on",
    )
    editor.save()
    diagnostics = await until(lambda: ours(client, project / "test_calc.py"), what="the failing test's diagnostic")
    assert "assert 6 == 7" in diagnostics[0].message
    assert any(field(s, "state") == "testing" and field(s, "progress") for s in client.statuses)


async def test_stats_report_and_adapt(client: LanguageClient, project: Path):
    stats = await command(client, "selftune.stats")
    folder = field(stats, "folders")[0]
    assert field(folder, "root") == str(project)
    assert "documents opened: 1" in field(folder, "text")

    report = await command(client, "selftune.report")
    page = Path(field(report, "reports")[0])
    assert page == project / ".selftune" / "reports" / "report.html"
    html = page.read_text()
    assert "Completions per day" in html and "Test runs per day" in html and "<svg" in html
    assert "No adapter has been trained" in html

    # A real run is tests/e2e/test_adaptation.py; here, the command checks what it is given.
    with pytest.raises(JsonRpcException, match="is not a workspace folder of this server"):
        await command(client, "selftune.adapt", "/nowhere")
