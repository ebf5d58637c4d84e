"""selftune's pytest plugin: one JSON line per test result, for the language server.

Loaded into the project's own interpreter with ``-p selftune_pytest`` (the
runner puts this folder on PYTHONPATH), so it imports nothing from selftune
and nothing outside the standard library and pytest. It writes to the file
descriptor named by ``SELFTUNE_RESULTS_FD``:

- ``session``: pytest has started (its absence means pytest never ran);
- ``start``: a test begins (so that a test that kills the interpreter is known);
- ``result``: a test's outcome over setup, call and teardown, or a collection
  error, with the message and two places: the deepest traceback frame inside
  the workspace (``SELFTUNE_ROOT``) and the deepest frame in the test's own file;
- ``collected``: a test file that collected cleanly (clears its old errors);
- ``finish``: the session's exit status.

If the server (``SELFTUNE_SERVER_PID``) dies, the run kills its own process
group. If ``SELFTUNE_STACKS`` and ``SELFTUNE_DEADLINE`` are set, every thread's stack
is written to that file just before the run's deadline, so that a test that
hangs can be shown where it hangs.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import threading
import time
import traceback

import pytest

MESSAGE_CHARS = 2000
MESSAGE_LINES = 12

_fd: int | None = None
_root = ""
_rootdir = ""
_stacks = None
_tests: dict[str, dict] = {}


def _send(event: dict) -> None:
    if _fd is None:
        return
    try:
        os.write(_fd, (json.dumps(event) + "\n").encode("utf-8", "replace"))
    except OSError:  # the server went away: the run goes on without it
        pass


def _in_workspace(filename: str) -> str | None:
    """`filename` relative to the workspace if it is the project's own source, else None."""
    path = os.path.realpath(filename)
    if not _root or not path.startswith(_root + os.sep):
        return None
    rel = path[len(_root) + 1 :]
    parts = rel.split(os.sep)
    if any(p.startswith(".") or p in ("site-packages", "node_modules", "__pycache__") for p in parts[:-1]):
        return None
    return "/".join(parts)


def _frames(exc: BaseException | None) -> list[tuple[str, int]]:
    """The workspace frames of `exc`'s traceback, outermost first."""
    found: list[tuple[str, int]] = []
    if exc is None:
        return found
    for frame in traceback.extract_tb(exc.__traceback__):
        rel = _in_workspace(frame.filename)
        if rel is not None and frame.lineno:
            found.append((rel, frame.lineno))
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        rel = _in_workspace(exc.filename)
        if rel is not None:
            found.append((rel, exc.lineno))
    return found


def _message(exc: BaseException | None, fallback: str = "") -> str:
    if exc is None:
        text = fallback
    else:
        if isinstance(exc, SyntaxError):  # its default text repeats the file's absolute path
            text = f"{type(exc).__name__}: {exc.msg}"
        else:
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    lines = text.splitlines()
    if len(lines) > MESSAGE_LINES:
        lines = lines[:MESSAGE_LINES] + [f"... ({len(lines) - MESSAGE_LINES} more lines)"]
    text = "\n".join(lines)
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "..."


def _places(exc: BaseException | None, test_file: str | None) -> tuple[list | None, list | None]:
    frames = _frames(exc)
    deepest = list(frames[-1]) if frames else None
    in_test = [list(f) for f in frames if f[0] == test_file]
    return deepest, (in_test[-1] if in_test else None)


def pytest_configure(config) -> None:
    global _fd, _root, _rootdir, _stacks
    fd = os.environ.get("SELFTUNE_RESULTS_FD")
    if not fd:
        return
    _fd = int(fd)
    _rootdir = str(config.rootpath)
    _root = os.path.realpath(os.environ.get("SELFTUNE_ROOT") or str(config.rootpath))
    stacks, deadline = os.environ.get("SELFTUNE_STACKS"), os.environ.get("SELFTUNE_DEADLINE")
    if stacks and deadline:
        _stacks = open(stacks, "w")
        faulthandler.dump_traceback_later(max(0.05, float(deadline) - time.time()), file=_stacks)
    server = os.environ.get("SELFTUNE_SERVER_PID")
    if server:
        threading.Thread(target=_end_with_server, args=(int(server),), name="selftune-orphan", daemon=True).start()
    _send({"event": "session", "pytest": pytest.__version__, "pid": os.getpid()})


def _end_with_server(server: int) -> None:
    """If the server dies without killing this run (kill -9), end the run and everything it started."""
    while os.getppid() == server:
        time.sleep(0.5)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def pytest_unconfigure(config) -> None:
    if _stacks is not None:
        faulthandler.cancel_dump_traceback_later()


def pytest_collection_finish(session) -> None:
    _send({"event": "collected", "count": len(session.items)})


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    # pytest turns a collection error into text; keep the exception to find where it happened.
    caught: list[BaseException] = []
    original = collector.repr_failure

    def keep(excinfo, *args, **kwargs):
        caught.append(excinfo.value)
        return original(excinfo, *args, **kwargs)

    collector.repr_failure = keep
    try:
        report = yield
    finally:
        del collector.repr_failure
    path = getattr(collector, "path", None)
    test_file = _in_workspace(str(path)) if path is not None else None
    if report.failed:
        exc = caught[-1] if caught else None
        cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
        deepest, in_test = _places(cause, test_file)
        text = str(report.longrepr or "").strip()
        _send(
            {
                "event": "result",
                "nodeid": report.nodeid or test_file or "",
                "outcome": "error",
                "when": "collect",
                "duration": 0.0,
                "message": _message(cause, text.splitlines()[-1] if text else "collection failed"),
                "frame": deepest,
                "test_frame": in_test or ([test_file, 1] if test_file else None),
                "location": [test_file, 1] if test_file else None,
            }
        )
    elif report.passed and test_file is not None and test_file.endswith(".py"):
        _send({"event": "module", "nodeid": report.nodeid, "path": test_file})
    return report


def pytest_runtest_logstart(nodeid, location) -> None:
    _tests[nodeid] = {
        "outcome": "passed",
        "duration": 0.0,
        "message": "",
        "frame": None,
        "test_frame": None,
        "when": "call",
    }
    path = _in_workspace(os.path.join(_rootdir, location[0])) if location and location[0] else None
    _send({"event": "start", "nodeid": nodeid, "location": [path, (location[1] or 0) + 1] if path else None})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    state = _tests.setdefault(
        item.nodeid,
        {"outcome": "passed", "duration": 0.0, "message": "", "frame": None, "test_frame": None, "when": "call"},
    )
    state["duration"] += report.duration
    test_file = _in_workspace(str(item.path))
    state["location"] = [test_file, (item.location[1] or 0) + 1] if test_file else None
    if report.failed and state["outcome"] not in ("failed", "error"):
        exc = call.excinfo.value if call.excinfo is not None else None
        crash = getattr(report.longrepr, "reprcrash", None)
        deepest, in_test = _places(exc, test_file)
        state.update(
            outcome="failed" if call.when == "call" else "error",
            when=call.when,
            message=_message(exc, crash.message if crash else str(report.longrepr or "")),
            frame=deepest,
            test_frame=in_test or state["location"],
        )
    elif report.skipped and state["outcome"] == "passed":
        if hasattr(report, "wasxfail"):
            state["outcome"] = "xfailed"
        else:
            state["outcome"] = "skipped"
            longrepr = report.longrepr
            state["message"] = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
    elif report.passed and call.when == "call" and hasattr(report, "wasxfail"):
        state["outcome"] = "xpassed"
    return report


def pytest_runtest_logfinish(nodeid, location) -> None:
    state = _tests.pop(nodeid, None)
    if state is not None:
        _send({"event": "result", "nodeid": nodeid, **state})


def pytest_sessionfinish(session, exitstatus) -> None:
    _send({"event": "finish", "exitstatus": int(exitstatus)})
