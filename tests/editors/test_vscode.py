"""VS Code with the packaged selftune extension, driven the way a user drives it.

code-server (VS Code built for the browser, from npm) serves the workbench and runs the extension host;
Debian's Chromium, driven headless by Playwright for Python, is the window. The extension is the packaged
editor-clients/vscode/selftune.vsix (`make test-vscode` builds it), the server the real `selftune serve` with
the embedded model. The workspace opens untrusted (Restricted Mode). The tests, in order, in one workbench:
type into a Python file and read the ghost text from the editor's DOM; accept it with Tab, and one word of
the next with Ctrl+Right, checking the file and the journal; save, and see that no tests ran although the
workspace's .selftune/config.toml asks for them; grant trust, and see the server restart once, cleanly, and
the next save run them.

Needs Node.js 20 and npm (code-server is installed once into ~/.cache/selftune/, which builds native modules:
Debian's ripgrep and libkrb5-dev), /usr/bin/chromium (Debian: apt install chromium) and the playwright package
(never `playwright install`: Debian's Chromium is driven). Without one of them the tests are skipped, saying which.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from selftune.server.models import cache_dir

from .conftest import SOURCE

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[2]
VSIX = ROOT / "editor-clients" / "vscode" / "selftune.vsix"
SERVER = Path(sys.executable).parent / "selftune"
CHROMIUM = Path("/usr/bin/chromium")
CODE_SERVER_VERSION = "4.100.3"  # VS Code 1.100.3; the newest code-server whose engines.node is 20
CODE_SERVER = Path.home() / ".cache" / "selftune" / f"code-server-{CODE_SERVER_VERSION}"
# @vscode/ripgrep's install script downloads ripgrep from GitHub unless this cache in $TMPDIR has the archive.
RIPGREP_CACHE = "vscode-ripgrep-cache-1.15.11"
RIPGREP_TARGETS = {"x86_64": "x86_64-unknown-linux-musl", "aarch64": "aarch64-unknown-linux-musl"}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY = "gemma3-270m · base · recording"  # the status item: model · adapter · state
STARTING = "starting " + str(SERVER)  # the extension's log, each time it starts the server
FAILING_TEST = "from shapes import Rectangle\n\n\ndef test_area():\n    assert Rectangle(2, 3).area() == 5\n"

# The line with the cursor in the focused editor: its text, and the ghost text VS Code shows on it.
EDITOR_JS = r"""() => {
  const editor = document.querySelector('.editor-instance .monaco-editor.focused');
  const cursor = editor && editor.querySelector('.cursors-layer .cursor');
  if (!cursor) return {line: null, ghost: '', lines: []};
  const ghostly = s => s.classList.contains('ghost-text-decoration') ||
                       s.classList.contains('ghost-text-decoration-preview');
  const text = spans => spans.map(s => s.textContent).join('').replace(/\u00a0/g, ' ');
  const lines = [...editor.querySelectorAll('.view-lines .view-line')].map(l => {
    const spans = [...l.querySelectorAll('span > span')];
    return {top: l.style.top, real: text(spans.filter(s => !ghostly(s))), ghost: text(spans.filter(ghostly))};
  });
  const at = lines.find(l => l.top === cursor.style.top);
  return {line: at ? at.real : null, ghost: at ? at.ghost : '', lines: lines.map(l => l.real)};
}"""
# From now on, keep each label the selftune status item has while it shows an error.
WATCH_ERRORS_JS = r"""() => {
  window.selftuneErrors = [];
  const bar = document.querySelector('.part.statusbar');
  new MutationObserver(() => {
    const item = bar.querySelector('[id="selftune.selftune"]');
    if (item && item.classList.contains('error-kind')) window.selftuneErrors.push(item.getAttribute('aria-label'));
  }).observe(bar, {attributes: true, childList: true, subtree: true, characterData: true});
}"""


def until(check: Callable[[], Any], what: str, timeout: float = 60.0, context: Callable[[], str] | None = None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    detail = f"\n{context()}" if context else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


# --- code-server, installed once per machine -------------------------------------------------------------


def install_code_server(target: Path, scratch: Path) -> None:
    """npm install code-server into `target`, its native modules built against the local Node headers."""
    node = shutil.which("node")
    assert node is not None
    nodedir = Path(node).resolve().parent.parent  # Debian's nodejs: /usr, with /usr/include/node
    rg = shutil.which("rg")
    triple = RIPGREP_TARGETS.get(platform.machine())
    needs = {
        f"Node.js headers in {nodedir / 'include' / 'node'}": (nodedir / "include" / "node" / "node.h").is_file(),
        "ripgrep (Debian: apt install ripgrep)": rg is not None,
        "Kerberos headers (Debian: apt install libkrb5-dev)": Path("/usr/include/gssapi/gssapi.h").is_file(),
        f"a ripgrep build for {platform.machine()}": triple is not None,
    }
    if missing := [what for what, there in needs.items() if not there]:
        pytest.skip(f"code-server {CODE_SERVER_VERSION} is not installed, and installing it needs {', '.join(missing)}")
    assert rg is not None
    # Debian's rg is the version @vscode/ripgrep pins (13.0.0): seed its download cache with it.
    (scratch / RIPGREP_CACHE).mkdir(parents=True, exist_ok=True)
    with tarfile.open(scratch / RIPGREP_CACHE / f"ripgrep-v13.0.0-10-{triple}.tar.gz", "w:gz") as archive:
        archive.add(rg, arcname="rg")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = {
        **os.environ,
        "TMPDIR": str(scratch),
        "npm_config_nodedir": str(nodedir),  # node-gyp builds against these headers, downloading none
        "npm_config_unsafe_perm": "true",  # code-server's install script refuses to run as root without it
        "npm_config_yes": "true",  # node-pty's install script runs `npx node-gyp`, which npm 11 asks about
    }
    started = time.monotonic()
    done = subprocess.run(
        ["npm", "install", "--prefix", str(partial), "--no-audit", "--no-fund", f"code-server@{CODE_SERVER_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        pytest.fail(f"npm install code-server@{CODE_SERVER_VERSION} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    partial.rename(target)
    print(f"installed code-server {CODE_SERVER_VERSION} in {target} ({time.monotonic() - started:.0f} s)")


@pytest.fixture(scope="module")
def code_server(tmp_path_factory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("code-server needs Node.js 20 and npm")
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if not version.startswith("v20."):
        pytest.skip(f"code-server {CODE_SERVER_VERSION} runs on Node.js 20; this is {version}")
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM} (Debian: apt install chromium)")
    CODE_SERVER.parent.mkdir(parents=True, exist_ok=True)
    with open(CODE_SERVER.with_name(CODE_SERVER.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be installing it
        if not CODE_SERVER.is_dir():
            install_code_server(CODE_SERVER, tmp_path_factory.mktemp("code-server-install"))
    return CODE_SERVER / "node_modules" / ".bin" / "code-server"


# --- one workbench for the module: code-server, the extension, a browser page -----------------------------


class Workbench:
    """The page showing VS Code, the workspace it has open, and where code-server keeps its logs."""

    def __init__(self, page, workspace: Path, user_data: Path, output: Path):
        self.page = page
        self.workspace = workspace
        self.user_data = user_data
        self.output = output  # where a failure's screenshot goes

    def log(self) -> str:
        """The extension's output channel: the client's log and the server's stderr."""
        logs = sorted(self.user_data.glob("logs/*/exthost*/selftune.selftune/selftune.log"))
        return "".join(p.read_text(errors="replace") for p in logs)

    def context(self) -> str:
        shot = self.output / f"failure-{time.monotonic_ns()}.png"
        self.page.screenshot(path=str(shot))
        tail = "\n".join(self.log().splitlines()[-25:])
        return f"screenshot: {shot}\nstatus item: {self.status()}\nthe extension's log ends:\n{tail}"

    def until(self, check: Callable[[], Any], what: str, timeout: float = 60.0):
        return until(check, what, timeout, self.context)

    def status(self) -> dict | None:
        item = self.page.query_selector('[id="selftune.selftune"]')  # the item's id is the extension's
        if item is None:
            return None
        return {
            "text": item.inner_text().strip(),
            "tooltip": item.get_attribute("aria-label") or "",
            "error": "error-kind" in (item.get_attribute("class") or ""),
        }

    def ready(self) -> dict | None:
        status = self.status()
        return status if status and status["text"] == READY and not status["error"] else None

    def restricted(self) -> bool:
        item = self.page.query_selector('[id="status.workspaceTrust"]')
        return item is not None and item.is_visible()

    def editor(self) -> dict:
        return self.page.evaluate(EDITOR_JS)

    def pick(self, keys: str, label: str) -> None:
        """Open Quick Open (Ctrl+P) or the command palette (Ctrl+Shift+P), type `label`, take its row."""
        self.page.keyboard.press(keys)
        self.page.wait_for_selector(".quick-input-widget input", state="visible")
        self.page.keyboard.type(label)
        row = f'.quick-input-list .monaco-list-row.focused[aria-label^="{label}"]'
        self.until(lambda: self.page.query_selector(row), f"{label!r} chosen in the quick pick", 20)
        self.page.keyboard.press("Enter")

    def open(self, name: str) -> None:
        self.pick("Control+P", name)
        self.until(
            lambda: (
                self.page.query_selector(f'.tab.active[aria-label^="{name}"]') and self.editor()["line"] is not None
            ),
            f"{name} open in the editor, with the focus",
            20,
        )
        # VS Code makes an editor's inline-suggestion controller once the window is idle after the editor
        # opened; keys typed before then ask for no suggestion. Idle callbacks run in the order asked for.
        self.page.evaluate("() => new Promise(resolve => requestIdleCallback(() => resolve(true)))")

    def save(self) -> None:
        self.page.keyboard.press("Control+S")
        self.until(lambda: self.page.query_selector(".tab.active:not(.dirty)"), "the file to be saved", 20)

    def journal(self, sql: str, args: tuple = ()) -> list[tuple]:
        path = self.workspace / ".selftune" / "journal.sqlite3"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # the server has not made the tables yet
            return []
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(root: Path) -> Path:
    """A git repository with a module, a failing test of it, and a .selftune/config.toml turning tests on."""
    workspace = root / "shapes-project"
    (workspace / ".selftune").mkdir(parents=True)
    (workspace / "shapes.py").write_text(SOURCE)
    (workspace / "test_shapes.py").write_text(FAILING_TEST)
    (workspace / ".selftune" / "config.toml").write_text("[tests]\nenabled = true\n")
    git = ["git", "-c", "user.name=selftune", "-c", "user.email=selftune@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=workspace, check=True)
    subprocess.run([*git, "add", "shapes.py", "test_shapes.py"], cwd=workspace, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "shapes"], cwd=workspace, check=True)
    return workspace


USER_SETTINGS = {
    "selftune.serverPath": str(SERVER),
    "selftune.maxTokens": 24,
    "selftune.historyDepth": 0,
    "selftune.adaptAuto": False,
    "files.autoSave": "off",  # the browser build saves 1 s after each change by default
    "editor.inlineSuggest.enabled": True,
    "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
    "editor.suggestOnTriggerCharacters": False,
    "workbench.startupEditor": "none",  # no walkthrough tab (which also reaches for the internet)
    "workbench.tips.enabled": False,
    "telemetry.telemetryLevel": "off",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "update.mode": "none",
    "git.enabled": False,
    # Trust is on, but not asked for at start: the workspace opens in Restricted Mode.
    "security.workspace.trust.enabled": True,
    "security.workspace.trust.startupPrompt": "never",
}


@pytest.fixture(scope="module")
def workbench(code_server: Path, tmp_path_factory) -> Iterator[Workbench]:
    if not SERVER.is_file():
        pytest.skip(f"no {SERVER}: make install")
    if not VSIX.is_file():
        pytest.skip(f"no {VSIX}: make test-vscode packages the extension")
    root = tmp_path_factory.mktemp("vscode")
    workspace = make_workspace(root)
    user_data, extensions, home = root / "user-data", root / "extensions", root / "home"
    (user_data / "User").mkdir(parents=True)
    (user_data / "User" / "settings.json").write_text(json.dumps(USER_SETTINGS, indent=2))
    # serverPath is machine-scoped: with a remote workbench, VS Code's settings editor writes it to the
    # machine's settings, and granting trust then changes it too (a second restart request at once).
    (user_data / "Machine").mkdir()
    (user_data / "Machine" / "settings.json").write_text(json.dumps({"selftune.serverPath": str(SERVER)}, indent=2))
    # Nothing outside `root`: code-server writes its config and logs under XDG, the extension hosts their
    # sockets in TMPDIR, Chromium its crash reports under XDG whatever its profile folder. SELFTUNE_DATA
    # (the trust list) is the test session's temporary one; the model stays where `make install` put it.
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(root / "tmp"),
        "SELFTUNE_CACHE": str(cache_dir()),
        "HF_HUB_OFFLINE": "1",
    }
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "TMPDIR"):
        Path(env[name]).mkdir(parents=True)
    port = free_port()
    config = root / "code-server.yaml"
    config.write_text(
        f"bind-addr: 127.0.0.1:{port}\nauth: none\ncert: false\ndisable-telemetry: true\ndisable-update-check: true\n"
    )
    base = [str(code_server), "--config", str(config), "--user-data-dir", str(user_data)]
    base += ["--extensions-dir", str(extensions)]
    installed = subprocess.run(
        [*base, "--install-extension", str(VSIX)], env=env, capture_output=True, text=True, timeout=120
    )
    assert installed.returncode == 0, f"--install-extension {VSIX} failed:\n{installed.stdout}{installed.stderr}"

    with open(root / "code-server.log", "w") as log:
        server = subprocess.Popen(
            [*base, "--disable-getting-started-override", str(workspace)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the extension host and selftune serve end with it
        )

    def answers() -> bool:
        assert server.poll() is None, f"code-server exited:\n{(root / 'code-server.log').read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        until(answers, "code-server to answer /healthz", 60)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, env=env
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/?folder={workspace}")
                bench = Workbench(page, workspace, user_data, root)
                bench.until(
                    lambda: page.query_selector('.explorer-folders-view .monaco-list-row[aria-label="shapes.py"]'),
                    "the workbench to list the workspace",
                )
                yield bench
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# --- the tests, in this order, in one workbench and workspace ----------------------------------------------


def test_status_bar_shows_model_adapter_state(workbench: Workbench):
    workbench.until(workbench.restricted, "Restricted Mode (the workspace is not trusted)", 30)
    status = workbench.until(workbench.ready, f"the status item to read {READY!r}", 120)
    assert "tests on save: off" in status["tooltip"], status


def test_ghost_text_and_tab_accepts(workbench: Workbench, tmp_path: Path):
    page = workbench.page
    workbench.open("shapes.py")
    # Keys typed before the server is up reach it only inside didOpen, and ask for no suggestion.
    workbench.until(workbench.ready, f"the status item to read {READY!r}", 120)
    page.keyboard.press("Control+End")  # the empty line after `def perimeter(self):`
    page.keyboard.type("        return ")
    shown = workbench.until(lambda: (e := workbench.editor())["ghost"].strip() and e, "ghost text after `return `")
    assert shown["line"] == "        return ", f"the ghost text is not on the line typed: {shown}"
    screenshot = tmp_path / "ghost-text.png"
    page.screenshot(path=str(screenshot))
    print(f"the ghost text: {screenshot}")

    page.keyboard.press("Tab")
    accepted_line = "        return " + shown["ghost"]
    workbench.until(lambda: accepted_line in workbench.editor()["lines"], "the suggestion in the editor", 20)
    workbench.save()
    saved = (workbench.workspace / "shapes.py").read_text()
    assert accepted_line in saved.splitlines(), f"Tab did not put {accepted_line!r} in the file:\n{saved}"

    # The journal has the suggestion as shown, then accepted, and nothing rejected it before.
    accepted = workbench.until(
        lambda: [
            key
            for key, text in workbench.journal(
                "SELECT c.id, c.text FROM completions c JOIN completion_events e ON e.completion_id = c.id "
                "WHERE e.kind = 'accepted'"
            )
            if text.startswith(shown["ghost"])
        ],
        f"the accepted completion {shown['ghost']!r} in the journal",
        20,
    )
    for key in accepted:
        kinds = [k for (k,) in workbench.journal("SELECT kind FROM completion_events WHERE completion_id = ?", (key,))]
        assert "rejected" not in kinds[: kinds.index("accepted")], f"{key} was rejected before it was accepted: {kinds}"


def test_ctrl_right_accepts_one_word(workbench: Workbench):
    page = workbench.page
    page.keyboard.press("Escape")  # whatever the server offered after the acceptance
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    page.keyboard.type("def ")
    shown = workbench.until(
        lambda: (e := workbench.editor())["ghost"].strip() and re.search(r"\w\W", e["ghost"]) and e,
        "ghost text of more than one word after `def `",
    )
    page.keyboard.press("Control+ArrowRight")  # bound to selftune.acceptNextWord (package.json)
    now = workbench.until(
        lambda: (line := workbench.editor()["line"]) != shown["line"] and line, "a word of the suggestion typed", 20
    )
    word = now[len(shown["line"]) :]
    assert now.startswith(shown["line"]) and word and shown["ghost"].startswith(word), f"{now!r} after {shown}"
    assert word != shown["ghost"], f"Ctrl+Right took the whole suggestion {shown['ghost']!r}"

    rows = workbench.until(
        lambda: workbench.journal(
            "SELECT c.text, e.accepted_length FROM completions c JOIN completion_events e "
            "ON e.completion_id = c.id WHERE e.kind = 'partially_accepted'"
        ),
        "a partially accepted completion in the journal",
        20,
    )
    assert any(text.startswith(shown["ghost"]) and n == len(word) for text, n in rows), (
        f"no partial acceptance of {len(word)} characters ({word!r}) of {shown['ghost']!r}: {rows}"
    )
    # Leave the file valid Python (for the tests on save below): the half-written `def` goes.
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Home")
    page.keyboard.press("Backspace")


def test_untrusted_workspace_runs_no_tests_on_save(workbench: Workbench):
    page = workbench.page
    assert workbench.restricted(), "the workspace was trusted before its time"
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type("# saved untrusted")
    workbench.save()
    # The save settles the typing into an edit step: once that is in the journal, the server handled the save.
    workbench.until(
        lambda: [
            d for (d,) in workbench.journal("SELECT diff FROM steps WHERE path = 'shapes.py'") if "untrusted" in d
        ],
        "the saved edit step in the journal",
        20,
    )
    runs = workbench.journal("SELECT trigger, status FROM test_runs")
    assert runs == [], f"an untrusted workspace ran its tests: {runs}"
    problems = workbench.page.get_attribute('[id="status.problems"]', "aria-label")
    assert problems == "No Problems", f"the Problems status says {problems!r}"


def test_granting_trust_restarts_once_and_runs_tests(workbench: Workbench):
    page = workbench.page
    page.evaluate(WATCH_ERRORS_JS)
    starts = workbench.log().count(STARTING)
    granted = time.time()
    workbench.pick("Control+Shift+P", "Workspaces: Manage Workspace Trust")
    page.get_by_role("button", name="Trust", exact=True).click(timeout=20_000)
    workbench.until(lambda: not workbench.restricted(), "Restricted Mode to end", 20)
    # Trust fires a trust event and a settings change (the restricted settings now apply): one restart.
    workbench.until(lambda: workbench.log().count(STARTING) > starts, "the server to restart", 20)
    status = workbench.until(
        lambda: (s := workbench.ready()) and "tests on save in" in s["tooltip"] and s,
        "the restarted server, with tests on save",
        120,
    )
    log = workbench.log()
    assert "already exists" not in log, f"two clients at once:\n{log[-3000:]}"
    assert log.count(STARTING) == starts + 1, f"restarted {log.count(STARTING) - starts} times"
    assert page.evaluate("() => window.selftuneErrors") == [], "the status item showed an error during the restart"
    assert str(workbench.workspace) in status["tooltip"], status

    workbench.open("shapes.py")
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type("# saved trusted")
    saved = time.time()
    workbench.save()
    workbench.until(
        lambda: workbench.journal(
            "SELECT status FROM test_runs WHERE trigger LIKE '%shapes.py%' AND started >= ? AND ended IS NOT NULL",
            (saved,),
        ),
        "the tests this save ran, in the journal",
        120,
    )
    # The failing test is a problem from selftune-tests, in the Problems panel.
    page.keyboard.press("Control+Shift+M")
    workbench.until(
        lambda: any(
            "selftune-tests" in (label or "")
            for label in page.eval_on_selector_all(
                ".markers-panel .monaco-list-row", "rows => rows.map(r => r.getAttribute('aria-label'))"
            )
        ),
        "a selftune-tests problem in the Problems panel",
        20,
    )
    # And the untrusted save above ran nothing: every run began after trust was granted.
    runs = workbench.journal("SELECT started, trigger FROM test_runs")
    assert all(started > granted for started, _ in runs), f"tests ran before trust was granted: {runs}, {granted}"
