"""Test feedback when the tests misbehave: hangs, dead interpreters, broken collection, no pytest, floods.

The workspace turns test feedback on in `.selftune/config.toml` (the editor's
setting stays off), with a 6-second timeout, and the user trusts it as a
Neovim or Emacs user does (`selftune trust`: the client does not say).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from selftune.server import trust

from .conftest import Editor, config, start, wait_for_message
from .test_feedback import ours, runs_ended, until

SLOW = """import time


def wait_forever():
    time.sleep(1000)
"""

HANG = """import os
import subprocess
import sys
from pathlib import Path

from slow import wait_forever


def test_hang():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    Path("pids.txt").write_text(f"{os.getpid()} {child.pid}")
    wait_forever()
"""

EXIT = """import os


def test_exit():
    os._exit(3)
"""

SEGV = """import ctypes


def test_segv():
    ctypes.string_at(0)
"""

FLOOD = """def test_flood(capsys):
    with capsys.disabled():
        for _ in range(300):
            print("x" * 100_000)
    assert "y" * 1_000_000 == ""
"""

PARSER = """def parse(text):
    return text.split(",")
"""

BROKEN_PARSER = """def parse(text):
    return text.split(","
"""

PARSER_TESTS = """from parser_mod import parse


def test_parse():
    assert parse("a,b") == ["a", "b"]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faulty")
    (root / ".selftune").mkdir()
    (root / ".selftune" / "config.toml").write_text("[tests]\nenabled = true\ntimeout = 6\n")
    (root / "slow.py").write_text(SLOW)
    (root / "parser_mod.py").write_text(PARSER)
    (root / "test_parser_mod.py").write_text(PARSER_TESTS)
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    trust.grant(root)
    return root


@pytest_lsp.fixture(config=config(), scope="module")
async def client(lsp_client: LanguageClient, project: Path):
    lsp_client.root = project
    await start(lsp_client, project, {"historyDepth": 0})
    yield
    await lsp_client.shutdown_session()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def runs(root: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{root / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT trigger, status FROM test_runs ORDER BY started").fetchall()


async def test_a_hanging_test_is_killed_with_its_children_and_completions_go_on(client: LanguageClient, project: Path):
    # The model is loaded and this file's prompt evaluated before the hang, so that what is measured is the
    # server going on while a test hangs, not a cold prefill racing the 6 s timeout on a loaded machine.
    other = Editor(client, project / "scratch.py", "def add(a, b):\n    return ")
    assert isinstance(await other.inline(), str)
    test_file = project / "test_hang.py"
    hang = Editor(client, test_file, HANG)
    hang.save()
    pids = await until(
        lambda: (project / "pids.txt").exists() and (project / "pids.txt").read_text().split(),
        what="the hanging test to start",
    )
    assert all(alive(int(p)) for p in pids)

    other.type("a")
    assert isinstance(await other.inline(), str)  # served while the test hangs
    assert all(alive(int(p)) for p in pids), "the run ended before the completion was served"

    problems = await until(lambda: ours(client, test_file), timeout=30, what="the timeout diagnostic")
    assert not any(alive(int(p)) for p in pids), "a test process outlived its run"
    assert problems[0].code == "timeout"
    assert problems[0].range.start.line == HANG.splitlines().index("    wait_forever()")
    assert "did not finish within 6 s" in problems[0].message and "killed" in problems[0].message
    where = ours(client, project / "slow.py")
    assert [d.range.start.line for d in where] == [SLOW.splitlines().index("    time.sleep(1000)")]
    assert "was here when it was killed" in where[0].message
    await runs_ended(client)


@pytest.mark.parametrize(
    "text, name, line, says",
    [
        (EXIT, "test_exit.py", "    os._exit(3)", "exited with status 3"),
        (SEGV, "test_segv.py", "    ctypes.string_at(0)", "killed by SIGSEGV"),
    ],
)
async def test_a_test_that_kills_its_interpreter(client: LanguageClient, project: Path, text, name, line, says):
    path = project / name
    Editor(client, path, text).save()
    problems = await until(lambda: ours(client, path), what=f"a diagnostic for {name}")
    assert problems[0].code == "crashed"
    assert says in problems[0].message and "killed its interpreter" in problems[0].message
    if "SIGSEGV" in says:  # faulthandler's dump says where
        assert problems[0].range.start.line == text.splitlines().index(line)
    else:  # os._exit leaves no trace: the test's definition
        assert problems[0].range.start.line == text.splitlines().index("def test_exit():")
    await runs_ended(client)


async def test_a_suite_that_cannot_be_collected_and_then_can(client: LanguageClient, project: Path):
    source = Editor(client, project / "parser_mod.py", PARSER)
    source.replace(PARSER, BROKEN_PARSER)
    source.save()
    problems = await until(lambda: ours(client, project / "parser_mod.py"), what="the syntax error")
    assert problems[0].code == "collection-error"
    assert "SyntaxError" in problems[0].message
    assert problems[0].range.start.line == 1
    at_test = ours(client, project / "test_parser_mod.py")
    assert at_test and "cannot be collected" in at_test[0].message
    assert at_test[0].range.start.line == 0  # the import that fails
    source.replace(BROKEN_PARSER, PARSER)
    source.save()
    await until(
        lambda: not ours(client, project / "parser_mod.py") and not ours(client, project / "test_parser_mod.py"),
        what="the collection error to clear",
    )
    await runs_ended(client)


async def test_huge_output_is_drained_and_the_message_bounded(client: LanguageClient, project: Path):
    path = project / "test_flood.py"
    Editor(client, path, FLOOD).save()
    problems = await until(lambda: ours(client, path), what="the flood's failure")
    assert problems[0].code == "failed"
    assert len(problems[0].message) < 3000
    await runs_ended(client)


async def test_a_newer_save_cancels_the_run(client: LanguageClient, project: Path):
    (project / "pids.txt").unlink(missing_ok=True)
    hang = Editor(client, project / "test_hang2.py", HANG)
    hang.save()
    pids = await until(
        lambda: (project / "pids.txt").exists() and (project / "pids.txt").read_text().split(),
        what="the hanging test to start",
    )
    Editor(client, project / "test_quick.py", "def test_quick():\n    pass\n").save()
    await until(lambda: not any(alive(int(p)) for p in pids), timeout=3, what="the cancelled run to be killed")
    await until(lambda: ("test_hang2.py", "cancelled") in runs(project), what="the cancelled run in the journal")
    # the cancelled file's tests run again with the newer save's
    await until(lambda: runs(project)[-1][0] == "test_hang2.py,test_quick.py", what="a run for both files")
    await runs_ended(client)


async def test_no_pytest_in_the_interpreter(client: LanguageClient, project: Path, tmp_path: Path):
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"selftune": {"testInterpreter": str(venv / "bin" / "python")}})
    )
    Editor(client, project / "test_again.py", "def test_again():\n    pass\n").save()
    message = await wait_for_message(client, "pytest is not installed")
    assert str(venv / "bin" / "python") in message and "testInterpreter" in message
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"selftune": {"testInterpreter": "/no/such/python"}})
    )
    Editor(client, project / "test_again2.py", "def test_again2():\n    pass\n").save()
    message = await wait_for_message(client, "cannot be started")
    assert "/no/such/python" in message
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"selftune": {"testInterpreter": ""}})
    )


def test_no_test_process_is_left(project: Path):
    mine = subprocess.run(["pgrep", "-f", "selftune_pytest"], capture_output=True, text=True).stdout.split()
    assert [p for p in mine if alive(int(p))] == []
