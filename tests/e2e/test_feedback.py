"""Test feedback through LSP: save a broken function, see the failure, fix it, find the pair in the journal."""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from .conftest import Editor, config, git, start, until

STATS = '''"""Small statistics."""


def mean(xs):
    total = sum(xs)
    return total / len(xs)


def spread(xs):
    return max(xs) - min(xs)
'''

TESTS = """from stats.core import mean, spread


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_spread():
    assert spread([1, 5, 3]) == 4
"""

OTHER_TESTS = """def test_unrelated():
    assert True
"""


def stats_project(root: Path) -> Path:
    (root / "stats").mkdir()
    (root / "stats" / "__init__.py").write_text("")
    (root / "stats" / "core.py").write_text(STATS)
    (root / "tests").mkdir()
    (root / "tests" / "test_core.py").write_text(TESTS)
    (root / "tests" / "test_other.py").write_text(OTHER_TESTS)
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "stats")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return stats_project(tmp_path_factory.mktemp("stats"))


@pytest_lsp.fixture(config=config(), scope="module")
async def client(lsp_client: LanguageClient, project: Path):
    lsp_client.root = project
    await start(lsp_client, project, {"testFeedback": True, "historyDepth": 0, "workspaceTrusted": True})
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=config())
async def unsettled_client(lsp_client: LanguageClient, tmp_path):
    """A client that holds back its answer to workspace/configuration until `lsp_client.answer` is set."""
    lsp_client.root = stats_project(tmp_path)
    lsp_client.answer = asyncio.Event()
    del lsp_client.protocol.fm.features[types.WORKSPACE_CONFIGURATION]

    @lsp_client.feature(types.WORKSPACE_CONFIGURATION)
    async def configuration(params: types.ConfigurationParams):
        await lsp_client.answer.wait()
        return [{"testFeedback": True, "historyDepth": 0, "workspaceTrusted": True}]

    await start(lsp_client, lsp_client.root, {"testFeedback": True, "historyDepth": 0, "workspaceTrusted": True})
    yield
    await lsp_client.shutdown_session()


def ours(client: LanguageClient, path: Path) -> list[types.Diagnostic]:
    return [d for d in client.diagnostics.get(path.as_uri(), []) if d.source == "selftune-tests"]


async def runs_ended(client: LanguageClient) -> None:
    """Wait until every test run the client was shown has ended."""

    def ended():
        return all(
            r and isinstance(r[-1], types.WorkDoneProgressEnd)
            for token, r in client.progress_reports.items()
            if str(token).startswith("selftune-tests")
        )

    await until(ended, what="the test runs to end")


def journal(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True)


async def test_a_broken_function_is_shown_fixed_and_learned_from(client: LanguageClient, project: Path):
    source, test_file = project / "stats" / "core.py", project / "tests" / "test_core.py"
    editor = Editor(client, source, STATS)
    editor.replace("return total / len(xs)", "return totl / len(xs)")
    editor.save()

    at_source = await until(lambda: ours(client, source), what="a diagnostic in stats/core.py")
    assert len(at_source) == 1
    assert at_source[0].range.start.line == STATS.splitlines().index("    return total / len(xs)")
    assert at_source[0].range.start.character == 4
    assert "NameError" in at_source[0].message and "totl" in at_source[0].message
    assert at_source[0].code == "failed"
    at_test = await until(lambda: ours(client, test_file), what="a diagnostic at the test")
    assert [d.range.start.line for d in at_test] == [TESTS.splitlines().index("    assert mean([1, 2, 3]) == 2")]
    assert "tests/test_core.py::test_mean failed" in at_test[0].message
    assert at_test[0].related_information[0].location.uri == source.as_uri()
    # test_spread passes, test_other is not related to stats/core.py and did not run
    await until(
        lambda: any(
            r
            for r in client.progress_reports.values()
            if r and isinstance(r[-1], types.WorkDoneProgressEnd) and "1 failed" in (r[-1].message or "")
        ),
        what="the run's progress to end",
    )

    editor.replace("return totl / len(xs)", "return total / len(xs)")
    editor.save()
    await until(
        lambda: not ours(client, source) and not ours(client, test_file) and source.as_uri() in client.diagnostics,
        what="the diagnostics to clear",
    )

    def fix():
        with journal(project) as conn:
            return conn.execute(
                "SELECT path, function, context, failing, error, passing, tests FROM test_fixes"
            ).fetchall()

    rows = await until(fix, what="a fix in the journal")
    assert len(rows) == 1
    path, function, context, failing, error, passing, tests = rows[0]
    assert (path, function, tests) == ("stats/core.py", "mean", "tests/test_core.py::test_mean")
    assert failing == "def mean(xs):\n    total = sum(xs)\n    return totl / len(xs)\n"
    assert passing == "def mean(xs):\n    total = sum(xs)\n    return total / len(xs)\n"
    assert context == '"""Small statistics."""\n\n\n'
    assert "NameError" in error
    with journal(project) as conn:
        assert conn.execute("SELECT prompt, chosen, rejected FROM preference_pairs").fetchall() == [
            (context, passing, failing)
        ]
        runs = conn.execute(
            "SELECT status, failed, passed, head, trigger, scope FROM test_runs ORDER BY started"
        ).fetchall()
        assert [r[:3] for r in runs] == [("finished", 1, 1), ("finished", 0, 2)]
        assert all(r[3] and r[4] == "stats/core.py" and r[5] == "related" for r in runs)
        # each run's state: HEAD plus the dirty files as they were; the fixed file equals HEAD again
        states = conn.execute(
            "SELECT r.failed, f.path, b.data FROM test_runs r LEFT JOIN run_files f ON r.id = f.run_id "
            "LEFT JOIN blobs b ON b.hash = f.snapshot ORDER BY r.started"
        ).fetchall()
        assert [(failed, path, data and zlib.decompress(data).decode()) for failed, path, data in states] == [
            (1, "stats/core.py", STATS.replace("return total", "return totl")),
            (0, None, None),
        ]
        results = conn.execute(
            "SELECT nodeid, outcome, path, line, test_path, test_line FROM test_results WHERE outcome = 'failed'"
        ).fetchall()
        assert results == [("tests/test_core.py::test_mean", "failed", "stats/core.py", 6, "tests/test_core.py", 5)]


async def test_an_accepted_then_edited_completion_is_linked_to_the_passing_run(client: LanguageClient, project: Path):
    (project / "tests" / "test_extra.py").write_text(
        "from stats.extra import double\n\n\ndef test_double():\n    assert double(2) == 4\n"
    )
    editor = Editor(client, project / "stats" / "extra.py", "def double(x):\n    return ")
    result = await client.text_document_inline_completion_async(editor.params())
    (item,) = result.items
    start = len(editor.text)
    editor.type(item.insert_text)
    assert (
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(item.command.command, item.command.arguments)
        )
        is True
    )
    from selftune.server.demo.replay import replace as replace_range

    replace_range(client, editor.doc, start, len(editor.text), "2 * x  # doubled\n")
    editor.save()

    def linked():
        with journal(project) as conn:
            return conn.execute(
                "SELECT c.id, r.status, r.failed, r.trigger FROM run_completions l "
                "JOIN completions c ON c.id = l.completion_id JOIN test_runs r ON r.id = l.run_id"
            ).fetchall()

    rows = await until(linked, what="the completion linked to a run")
    ((cid, status, failed, trigger),) = rows
    assert cid.endswith(item.command.arguments[0]) and (status, failed, trigger) == ("finished", 0, "stats/extra.py")
    await runs_ended(client)


async def test_related_then_all_runs_the_rest_after(client: LanguageClient, project: Path):
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"selftune": {"testFeedback": True, "testScope": "related-then-all"}}
        )
    )
    editor = Editor(client, project / "stats" / "core.py", STATS)
    editor.save()

    def last_run():
        with journal(project) as conn:
            run = conn.execute("SELECT id, scope, status FROM test_runs ORDER BY started DESC LIMIT 1").fetchone()
            if run is None or run[1] != "related-then-all" or run[2] is None:
                return None
            return [
                n for (n,) in conn.execute("SELECT nodeid FROM test_results WHERE run_id = ? ORDER BY id", (run[0],))
            ]

    nodeids = await until(last_run, what="a related-then-all run")
    # the related tests first, the unrelated one after them
    assert nodeids[:2] == ["tests/test_core.py::test_mean", "tests/test_core.py::test_spread"]
    assert "tests/test_other.py::test_unrelated" in nodeids[2:]
    await runs_ended(client)


async def test_a_fix_saved_before_the_failing_run_ends_still_gives_the_pair(client: LanguageClient, project: Path):
    source = project / "stats" / "core.py"
    editor = Editor(client, source, source.read_text())
    editor.replace("return max(xs) - min(xs)", "return max(xs) - max(xs)")
    editor.save()
    await until(
        lambda: any("test_spread" in d.message for d in ours(client, project / "tests" / "test_core.py")),
        what="test_spread's failure",
    )
    editor.replace("return max(xs) - max(xs)", "return max(xs) - min(xs)")
    editor.save()  # at once: the failing run is most likely still going, and is cancelled

    def fix():
        with journal(project) as conn:
            return conn.execute("SELECT failing, passing FROM test_fixes WHERE function = 'spread'").fetchall()

    ((failing, passing),) = await until(fix, what="the spread fix in the journal")
    assert "max(xs) - max(xs)" in failing and "max(xs) - min(xs)" in passing
    await runs_ended(client)


async def test_turning_feedback_off_clears_its_diagnostics(client: LanguageClient, project: Path):
    source = project / "stats" / "core.py"
    editor = Editor(client, source, source.read_text())
    editor.replace("return max(xs) - min(xs)", "return max(xs) + min(xs)")
    editor.save()
    await until(lambda: ours(client, project / "tests" / "test_core.py"), what="a failure")
    await runs_ended(client)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"selftune": {"testFeedback": False}})
    )
    await until(lambda: not ours(client, project / "tests" / "test_core.py"), what="the diagnostics to clear")
    editor.replace("return max(xs) + min(xs)", "return max(xs) - min(xs)")
    editor.save()


async def test_a_save_before_the_settings_arrive_is_tested_once_they_have(unsettled_client: LanguageClient):
    """Until workspace/configuration answers, neither trust nor the journal is known: the run waits, then learns."""
    root = unsettled_client.root
    source = root / "stats" / "core.py"
    editor = Editor(unsettled_client, source, STATS)
    editor.replace("return total / len(xs)", "return totl / len(xs)")
    editor.save()  # the server reads this before the answer below
    unsettled_client.answer.set()
    await until(lambda: ours(unsettled_client, source), what="a diagnostic in stats/core.py")

    def recorded():
        with journal(root) as conn:
            return conn.execute(
                "SELECT r.failed, f.path, b.data FROM test_runs r JOIN run_files f ON r.id = f.run_id "
                "JOIN blobs b ON b.hash = f.snapshot WHERE r.failed IS NOT NULL"
            ).fetchall()

    ((failed, path, data),) = await until(recorded, what="the run and its state in the journal")
    assert (failed, path, zlib.decompress(data).decode()) == (1, "stats/core.py", editor.text)
    await runs_ended(unsettled_client)
