"""One pytest run in the project's interpreter, as a subprocess the event loop never waits on.

`run_pytest` starts ``<interpreter> -m pytest -p selftune_pytest <args>`` in the
workspace, in a process group of its own and at a lower CPU priority than the
server, and hands each JSON line the plugin writes (see
plugin/selftune_pytest.py) to `on_event` as it arrives. pytest's own output is
drained and only its tail kept, however much a test prints.

The run ends one of these ways, told apart in `RunEnd.status`: ``finished``
(pytest reported its exit status); ``timeout`` (killed at the deadline; the
stacks dumped just before say where it hung); ``crashed`` (the interpreter
died mid-run: ``os._exit``, a signal); ``cancelled`` (a newer save); ``no-pytest``
or ``no-interpreter``. Whatever the ending, the whole process group is killed
before `run_pytest` returns, so no test process outlives its run.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).parent / "plugin"
PLUGIN = "selftune_pytest"
OUTPUT_TAIL = 64 * 1024  # bytes of pytest's own output kept
NICE = 5  # test runs yield the CPU to completions
STACKS_BEFORE = 0.5  # seconds before the deadline at which a hung run's stacks are dumped
BASE_ARGS = ["-p", "no:cacheprovider", "-q", "--tb=no", "--color=no", "--continue-on-collection-errors"]


@dataclass
class RunEnd:
    status: str  # finished | timeout | crashed | cancelled | no-pytest | no-interpreter
    exit_code: int | None = None  # pytest's exit status, or the process's return code
    running: str | None = None  # the test that was running when the run ended abnormally
    output: str = ""  # the tail of pytest's output
    output_bytes: int = 0
    stacks: list[tuple[str, int]] = field(default_factory=list)  # workspace frames at the end, deepest first
    seconds: float = 0.0

    @property
    def signal_name(self) -> str | None:
        if self.exit_code is not None and self.exit_code < 0:
            with contextlib.suppress(ValueError):
                return signal.Signals(-self.exit_code).name
            return f"signal {-self.exit_code}"
        return None


_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)', re.M)


def workspace_frames(text: str, root: Path) -> list[tuple[str, int]]:
    """The frames of a faulthandler dump that lie in the workspace, most recent first,
    from the first thread listed (the one that was running)."""
    blocks = re.split(r"\n\s*\n|(?=^(?:Current thread|Thread) 0x)", text, flags=re.M)
    root_text = str(root.resolve()) + os.sep
    for block in blocks:
        frames = []
        for path, line in _FRAME.findall(block):
            real = os.path.realpath(path)
            if real.startswith(root_text) and "site-packages" not in real:
                frames.append((real[len(root_text) :].replace(os.sep, "/"), int(line)))
        if frames:
            return frames
    return []


def pytest_env(root: Path, fd: int, stacks: Path | None, deadline: float | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_DIR), env.get("PYTHONPATH", "")) if p)
    env["SELFTUNE_RESULTS_FD"] = str(fd)
    env["SELFTUNE_ROOT"] = str(root)
    env["SELFTUNE_SERVER_PID"] = str(os.getpid())
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTEST_ADDOPTS", None)  # the server's own settings are not the project's
    env.pop("VIRTUAL_ENV", None)
    if stacks is not None and deadline is not None:
        env["SELFTUNE_STACKS"] = str(stacks)
        env["SELFTUNE_DEADLINE"] = repr(deadline)
    return env


_live: set[int] = set()  # process groups of runs in progress


def kill_group(pid: int) -> None:
    _live.discard(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@atexit.register
def kill_all() -> None:
    """Kill every run in progress now (the server is exiting; there is no event loop to wait on)."""
    for pid in list(_live):
        kill_group(pid)


async def run_pytest(
    interpreter: str, root: Path, args: list[str], *, timeout: float, on_event: Callable[[dict], None]
) -> RunEnd:
    """Run pytest on `args` in `root`; every plugin event goes to `on_event` (on the event loop)."""
    started = time.monotonic()
    read_fd, write_fd = os.pipe()
    stacks_file = Path(tempfile.mkstemp(prefix="selftune-stacks-", suffix=".txt")[1])
    deadline = time.time() + timeout - min(STACKS_BEFORE, timeout / 4)
    seen: dict[str, Any] = {"session": False, "finish": None, "running": None}

    def event(item: dict) -> None:
        kind = item.get("event")
        if kind == "session":
            seen["session"] = True
        elif kind == "finish":
            seen["finish"] = item.get("exitstatus")
        elif kind == "start":
            seen["running"] = item.get("nodeid")
        elif kind == "result" and item.get("nodeid") == seen["running"]:
            seen["running"] = None
        on_event(item)

    try:
        proc = await asyncio.create_subprocess_exec(
            interpreter,
            "-m",
            "pytest",
            "-p",
            PLUGIN,
            *BASE_ARGS,
            *args,
            cwd=root,
            env=pytest_env(root, write_fd, stacks_file, deadline),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        stacks_file.unlink(missing_ok=True)
        return RunEnd("no-interpreter", output=f"{interpreter}: {exc.strerror or exc}")
    finally:
        with contextlib.suppress(OSError):
            os.close(write_fd)
    _live.add(proc.pid)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, NICE)

    tail = bytearray()
    total = 0

    async def drain_output() -> None:
        nonlocal total
        assert proc.stdout is not None  # a pipe: asked for above
        while chunk := await proc.stdout.read(65536):
            total += len(chunk)
            tail.extend(chunk)
            if len(tail) > 2 * OUTPUT_TAIL:
                del tail[: len(tail) - OUTPUT_TAIL]

    async def read_events() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 22)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        try:
            while line := await reader.readline():
                try:
                    item = json.loads(line)
                except ValueError:
                    log.debug("not a plugin event: %r", line[:200])
                    continue
                try:
                    event(item)
                except Exception:  # a bug in a consumer must not end the run
                    log.exception("handling test event %r failed", item.get("event"))
        finally:
            transport.close()

    readers = [asyncio.ensure_future(drain_output()), asyncio.ensure_future(read_events())]
    status = "finished"
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        status = "timeout"
    except asyncio.CancelledError:
        status = "cancelled"
    finally:
        kill_group(proc.pid)  # the test process and anything it started, finished or not
        with contextlib.suppress(asyncio.CancelledError):
            await proc.wait()
        # Reading ends at EOF; a forked child that escaped the group could hold the pipe open.
        done, pending = await asyncio.wait(readers, timeout=2.0)
        for task in pending:
            task.cancel()
    output = bytes(tail[-OUTPUT_TAIL:]).decode("utf-8", "replace")
    end = RunEnd(
        status,
        exit_code=proc.returncode,
        running=seen["running"],
        output=output,
        output_bytes=total,
        seconds=time.monotonic() - started,
    )
    if status == "finished":
        if seen["finish"] is not None:
            end.exit_code = seen["finish"]
        elif not seen["session"] and re.search(r"No module named pytest\b", output):
            end.status = "no-pytest"
        else:
            end.status = "crashed"
    if end.status in ("timeout", "crashed"):
        dumped = stacks_file.read_text(errors="replace") if stacks_file.exists() else ""
        end.stacks = workspace_frames(dumped if end.status == "timeout" else output, root)
    stacks_file.unlink(missing_ok=True)
    if status == "cancelled":
        raise asyncio.CancelledError
    return end
