"""When to adapt, running `selftune adapt`, and swapping the adapter it promotes.

Every `CHECK_SECONDS` the scheduler looks at each workspace folder: a run
starts when `adaptAuto` is on, at least `adaptMinExamples` new examples
(settled edit steps, revised completions, test fixes) were recorded since the
last run, at least `adaptMinHours` have passed since it, and the user has not
typed for `adaptIdleMinutes` -- or a GPU is present, where training does not
compete with typing. `selftune.adapt` starts a run at once. One run at a time;
one that takes longer than `adaptMaxMinutes` is stopped with its process group.

A run is `selftune adapt --json` in its own process (niced; the server never
imports torch), whose JSON lines become `$/progress`. When it promotes an
adapter, the server swaps it into the engine with llama.cpp's adapter API,
without reloading the base model; a run that fails, or an adapter llama.cpp
refuses, leaves the adapter in use in place, and the message says why. The
adapter of the first workspace folder is the one served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from .journal import DIRNAME, journal_path
from .journal.queries import has_table, open_readonly
from .progress import Progress

if TYPE_CHECKING:
    from .lsp import SelftuneServer

log = logging.getLogger(__name__)

CHECK_SECONDS = 60.0
ADAPTER_FILE = "adapter.gguf"  # in each adapter's folder; adaptation/export.py writes it


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def gpu_present() -> bool:
    """An NVIDIA GPU, seen without importing torch (the server never does)."""
    return os.path.exists("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))


def adapters_dir(root: Path) -> Path:
    return root / DIRNAME / "adapters"


def current_adapter(root: Path) -> tuple[str, Path] | None:
    """(id, GGUF path) that `.selftune/adapters/current` names, if it names one."""
    folder = adapters_dir(root)
    try:
        name = (folder / "current").read_text().strip()
    except OSError:
        return None
    return (name, folder / name / ADAPTER_FILE) if name else None


def new_examples(root: Path) -> tuple[int, float | None]:
    """(examples recorded since the last adaptation run, when that run ended)."""
    path = journal_path(root)
    if not path.exists():
        return 0, None
    conn = open_readonly(path)
    try:
        last = conn.execute("SELECT max(ended) FROM adaptation_runs").fetchone()[0] \
            if has_table(conn, "adaptation_runs") else None
        since = last or 0.0
        count = conn.execute("SELECT count(*) FROM steps WHERE time > ?", (since,)).fetchone()[0]
        count += conn.execute("SELECT count(*) FROM revisions WHERE time > ?", (since,)).fetchone()[0]
        if has_table(conn, "test_fixes"):
            count += conn.execute("SELECT count(*) FROM test_fixes WHERE time > ?", (since,)).fetchone()[0]
        return count, last
    finally:
        conn.close()


class Scheduler:
    def __init__(self, server: "SelftuneServer"):
        self.server = server
        self.last_typing = time.monotonic()
        self.running: dict[Path, asyncio.subprocess.Process] = {}
        self._task: asyncio.Task | None = None
        self.last_result: dict | None = None

    # --- the served adapter ------------------------------------------------------------

    def apply_current(self) -> None:
        """Serve the current adapter of the first workspace folder (after start, a reload, or a promotion)."""
        completer = self.server.completer
        roots = self.server.recording.roots
        if completer is None or not roots:
            return
        found = current_adapter(roots[0])
        path = found[1] if found else None
        if path == completer.engine.adapter:
            return
        loop = asyncio.get_running_loop()

        def done(error: str | None) -> None:
            loop.call_soon_threadsafe(self._applied, found, error)

        completer.engine.set_adapter(path, done)

    def _applied(self, found: tuple[str, Path] | None, error: str | None) -> None:
        if error:
            self.server.say(f"selftune: adapter {found[0] if found else ''} not used, the one in use stays: {error}",
                            types.MessageType.Error)
        else:
            self.server.status.adapter = found[0] if found else None
            log.info("serving adapter %s", found[0] if found else "none (base model)")
        self.server.status.changed()

    # --- when to run -------------------------------------------------------------------

    def typing(self) -> None:
        self.last_typing = time.monotonic()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                await self.check()
            except Exception:
                log.exception("the adaptation scheduler failed a check")

    async def check(self) -> Path | None:
        """Start a run where one is due; returns the folder it started in."""
        s = self.server.settings
        if not s.adapt_auto or self.running or not self.server.recording.journals:
            return None
        idle = time.monotonic() - self.last_typing >= s.adapt_idle_minutes * 60
        if not (idle or gpu_present()):
            return None
        loop = asyncio.get_running_loop()
        for root in self.server.recording.roots:
            count, last = await loop.run_in_executor(None, new_examples, root)
            if count >= s.adapt_min_examples and (last is None or time.time() - last >= s.adapt_min_hours * 3600):
                log.info("adapting %s: %d new examples", root, count)
                self.launch(root)
                return root
        return None

    # --- a run ---------------------------------------------------------------------------

    def launch(self, root: Path) -> None:
        if self.running:
            raise RuntimeError(f"an adaptation run is already going on in {next(iter(self.running))}")
        self.running[root] = None  # reserved until the process exists
        asyncio.ensure_future(self._run(root))

    def command(self, root: Path) -> list[str]:
        s = self.server.settings
        cmd = [sys.executable, "-m", "selftune.server", "adapt", "--json", "--workspace", str(root), "--model", s.model]
        if s.model_path:
            cmd += ["--model-path", s.model_path]
        if self.server.checking.trust(root).trusted:
            cmd += ["--trusted"]  # the editor's trust, which `selftune adapt` cannot see by itself
        if str(root) not in self.server.checking.enabled_roots():
            cmd += ["--set", "run_tests=false"]  # the project's code runs only where test feedback is on
        return cmd

    async def _run(self, root: Path) -> None:
        progress = Progress(self.server, asyncio.get_running_loop(), "selftune: adapting", f"starting in {root.name}",
                            kind="adapt")
        log_path = adapters_dir(root) / "last-run.log"
        limit = self.server.settings.adapt_max_minutes
        result, error = None, None
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("wb") as stderr:
                # Its own process group, so that a run stopped for taking too long goes with its children.
                proc = await asyncio.create_subprocess_exec(*self.command(root), stdout=asyncio.subprocess.PIPE,
                                                            stderr=stderr, stdin=asyncio.subprocess.DEVNULL,
                                                            start_new_session=True)
                self.running[root] = proc
                try:
                    result, error = await asyncio.wait_for(self._follow(proc, progress), limit * 60)
                    code = await proc.wait()
                except asyncio.TimeoutError:
                    _signal_group(proc, signal.SIGKILL)
                    await proc.wait()
                    code, error = None, f"stopped after {limit:g} minutes (adaptMaxMinutes); see {log_path}"
            if result is None and error is None:
                error = f"selftune adapt exited with code {code}; see {log_path}"
        except (OSError, sqlite3.Error) as exc:
            error = f"could not run selftune adapt: {exc}"
        finally:
            self.running.pop(root, None)
        self.last_result = result or {"event": "error", "message": error}
        if error:
            progress.end("failed")
            self.server.say(f"selftune: adaptation failed, the adapter in use stays: {error}", types.MessageType.Error)
            return
        decision = result.get("decision")
        progress.end(decision or "done")
        trust = result.get("trust") or {}
        untrusted = "" if trust.get("trusted", True) else (
            f" The project's code did not run (no tests, no self-revision): {trust.get('why')}; to allow it, "
            f"{trust.get('how')}.")
        if decision == "promoted":
            self.server.say(f"selftune: new adapter {result.get('id')} promoted: {result.get('reason')}.{untrusted}")
            self.apply_current()
        else:
            self.server.say(f"selftune: the new adapter was not better, the one in use stays: "
                            f"{result.get('reason')}.{untrusted}")

    @staticmethod
    async def _follow(proc: asyncio.subprocess.Process, progress: Progress) -> tuple[dict | None, str | None]:
        """The run's JSON lines, as `$/progress`, until it closes its output: (its result, its error)."""
        result, error = None, None
        async for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") == "progress":
                progress.report(line.get("message", ""), line.get("percent"))
            elif line.get("event") == "result":
                result = line
            elif line.get("event") == "error":
                error = line.get("message")
        return result, error

    def stop(self) -> None:
        for proc in self.running.values():
            if proc is not None and proc.returncode is None:
                _signal_group(proc, signal.SIGTERM)
        if self._task is not None:
            self._task.cancel()
