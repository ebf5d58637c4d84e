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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from .background import Background
from .host import Host
from .journal.queries import has_table, open_readonly
from .progress import Progress
from .workspace import current_adapter, journal_path, run_log

if TYPE_CHECKING:
    from .checking import Checking
    from .completion.completer import Completer
    from .recording import Recording

log = logging.getLogger(__name__)

CHECK_SECONDS = 60.0
CURRENT_SECONDS = 2.0  # how often `adapters/current` is read: a change is served this soon


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def gpu_present() -> bool:
    """An NVIDIA GPU, seen without importing torch (the server never does)."""
    return os.path.exists("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))


def new_examples(root: Path) -> tuple[int, float | None]:
    """(examples recorded since the last adaptation run, when that run ended)."""
    path = journal_path(root)
    if not path.exists():
        return 0, None
    conn = open_readonly(path)
    try:
        last = (
            conn.execute("SELECT max(ended) FROM adaptation_runs").fetchone()[0]
            if has_table(conn, "adaptation_runs")
            else None
        )
        since = last or 0.0
        count = conn.execute("SELECT count(*) FROM steps WHERE time > ?", (since,)).fetchone()[0]
        count += conn.execute("SELECT count(*) FROM revisions WHERE time > ?", (since,)).fetchone()[0]
        if has_table(conn, "test_fixes"):
            count += conn.execute("SELECT count(*) FROM test_fixes WHERE time > ?", (since,)).fetchone()[0]
        return count, last
    finally:
        conn.close()


class Scheduler:
    def __init__(
        self,
        host: Host,
        *,
        recording: Recording,
        checking: Checking,
        completer: Callable[[], Completer | None],
        changed: Callable[[], None],
    ):
        """`completer`: the model's completer, once there is one; `changed`: the status may have changed."""
        self.host = host
        self.recording = recording
        self.checking = checking
        self.completer = completer
        self.changed = changed
        self.serving: str | None = None  # the id of the adapter in use; None: the base model
        self.last_typing = time.monotonic()
        self.reserved: Path | None = None  # the folder of the one run, from its launch until it ends
        self.process: asyncio.subprocess.Process | None = None  # that run's process, once it exists
        self.last_result: dict | None = None
        self._background = Background()
        self._loop: asyncio.Future | None = None
        self._asked: Path | None = None  # the adapter file last asked of the engine

    # --- the served adapter ------------------------------------------------------------

    def apply_current(self, *, force: bool = False) -> None:
        """Serve the current adapter of the first workspace folder: after start, a reload, a promotion, or when
        `adapters/current` names another (`selftune adapters use`). One the engine refused is not tried again
        until `current` changes, unless `force`."""
        completer = self.completer()
        roots = self.recording.roots
        if completer is None or not roots:
            return
        found = current_adapter(roots[0])
        path = found[1] if found else None
        if path == completer.engine.adapter or (path == self._asked and not force):
            self._asked = path
            return
        self._asked = path
        loop = asyncio.get_running_loop()

        def done(error: str | None) -> None:
            loop.call_soon_threadsafe(self._applied, found, error)

        completer.engine.set_adapter(path, done)

    def _applied(self, found: tuple[str, Path] | None, error: str | None) -> None:
        if error:
            self.host.say(
                f"selftune: adapter {found[0] if found else ''} not used, the one in use stays: {error}",
                types.MessageType.Error,
            )
        else:
            self.serving = found[0] if found else None
            log.info("serving adapter %s", found[0] if found else "none (base model)")
        self.changed()

    # --- when to run -------------------------------------------------------------------

    def typing(self) -> None:
        self.last_typing = time.monotonic()

    def start(self) -> None:
        if self._loop is None:
            self._loop = self._background.start(self._check_every())
            self._background.start(self._follow_current())

    async def _follow_current(self) -> None:
        while True:
            await asyncio.sleep(CURRENT_SECONDS)
            try:
                self.apply_current()
            except Exception:
                log.exception("following adapters/current failed")

    async def _check_every(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                await self.check()
            except Exception:
                log.exception("the adaptation scheduler failed a check")

    async def check(self) -> Path | None:
        """Start a run where one is due; returns the folder it started in."""
        s = self.host.settings
        if not s.adapt_auto or self.reserved is not None or not self.recording.journals:
            return None
        idle = time.monotonic() - self.last_typing >= s.adapt_idle_minutes * 60
        if not (idle or gpu_present()):
            return None
        loop = asyncio.get_running_loop()
        for root in self.recording.roots:
            count, last = await loop.run_in_executor(None, new_examples, root)
            if count >= s.adapt_min_examples and (last is None or time.time() - last >= s.adapt_min_hours * 3600):
                log.info("adapting %s: %d new examples", root, count)
                self.launch(root)
                return root
        return None

    # --- a run ---------------------------------------------------------------------------

    def launch(self, root: Path) -> None:
        if self.reserved is not None:
            raise RuntimeError(f"an adaptation run is already going on in {self.reserved}")
        self.reserved = root
        self._background.start(self._run(root))

    def command(self, root: Path) -> list[str]:
        s = self.host.settings
        cmd = [sys.executable, "-m", "selftune.server", "adapt", "--json", "--workspace", str(root), "--model", s.model]
        cmd += ["--stop-after", f"{s.adapt_max_minutes:g}"]  # the run plans its time to give its verdict before
        if s.model_path:
            cmd += ["--model-path", s.model_path]
        if self.checking.trust(root).trusted:
            cmd += ["--trusted"]  # the editor's trust, which `selftune adapt` cannot see by itself
        if str(root) not in self.checking.enabled_roots():
            cmd += ["--set", "run_tests=false"]  # the project's code runs only where test feedback is on
        # the history the server imports (none with record off), not the recipe's default
        cmd += ["--set", f"history_depth={s.history_depth if s.record else 0}"]
        return cmd

    async def _run(self, root: Path) -> None:
        progress = self.host.start_progress("selftune: adapting", f"starting in {root.name}", kind="adapt")
        log_path = run_log(root)
        limit = self.host.settings.adapt_max_minutes
        result, error = None, None
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("wb") as stderr:
                # Its own process group, so that a run stopped for taking too long goes with its children.
                proc = await asyncio.create_subprocess_exec(
                    *self.command(root),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )
                self.process = proc
                try:
                    result, error = await asyncio.wait_for(self._follow(proc, progress), limit * 60)
                    code = await proc.wait()
                except TimeoutError:
                    _signal_group(proc, signal.SIGKILL)
                    await proc.wait()
                    code, error = None, f"stopped after {limit:g} minutes (adaptMaxMinutes); see {log_path}"
            if result is None and error is None:
                error = f"selftune adapt exited with code {code}; see {log_path}"
        except (OSError, sqlite3.Error) as exc:
            error = f"could not run selftune adapt: {exc}"
        finally:
            self.reserved, self.process = None, None
        self.last_result = result or {"event": "error", "message": error}
        if error or result is None:
            progress.end("failed")
            self.host.say(f"selftune: adaptation failed, the adapter in use stays: {error}", types.MessageType.Error)
            return
        decision = result.get("decision")
        progress.end(decision or "done")
        trust = result.get("trust") or {}
        untrusted = (
            ""
            if trust.get("trusted", True)
            else (
                f" The project's code did not run (no tests, no self-revision): {trust.get('why')}; to allow it, "
                f"{trust.get('how')}."
            )
        )
        if decision == "promoted":
            self.host.say(f"selftune: new adapter {result.get('id')} promoted: {result.get('reason')}.{untrusted}")
            self.apply_current(force=True)
        else:
            self.host.say(
                f"selftune: the new adapter was not better, the one in use stays: {result.get('reason')}.{untrusted}"
            )

    @staticmethod
    async def _follow(proc: asyncio.subprocess.Process, progress: Progress) -> tuple[dict | None, str | None]:
        """The run's JSON lines, as `$/progress`, until it closes its output: (its result, its error)."""
        result, error = None, None
        assert proc.stdout is not None  # a pipe: asked for at its start
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
        proc = self.process
        if proc is not None and proc.returncode is None:
            _signal_group(proc, signal.SIGTERM)
        self._background.cancel()
