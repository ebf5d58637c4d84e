"""Test feedback for one workspace folder: tests on save, failures as problems, fixes as training data.

`TestFeedback.saved` is called for each saved file. After a short pause (a
"save all" is one run) it plans the run: the saved files' related tests
(related.py), then, if the scope says so, the rest of the suite; or the whole
suite at once. Each phase is one pytest subprocess (runner.py). A newer save
cancels the run in progress, and its files are tested again with the new ones.

While the run goes, each result updates `failures` (diagnostics.py) and the
changed files are published at once, so the first failure shows as soon as
pytest reports it. When the journal is on, the run is recorded with the
workspace state it ran on (state.py) and every result; a test that failed
before and passes now turns the functions that changed into revision examples
and preference pairs (pairs.py); completions that were accepted and then
edited are linked to the first run that passes after them.

Nothing here knows about LSP: the server passes in how to publish, show
progress, say things, and find the journal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..background import Background
from ..journal import events as ev
from ..workspace import CONFIG_NAME
from .config import TestConfig
from .diagnostics import Failures, Problem, ending_problems, result_problems
from .pairs import fixes
from .related import ImportGraph
from .runner import RunEnd, run_pytest
from .state import State, capture, changed_paths

if TYPE_CHECKING:
    from ..journal import Journal

log = logging.getLogger(__name__)

SAVE_PAUSE = 0.02  # seconds: saves arriving together ("save all") make one run
OUTPUT_LINES = 15  # of pytest's output quoted in a message when a run goes wrong


class Progress(Protocol):
    def report(self, message: str, percent: int | None = None) -> None: ...
    def end(self, message: str) -> None: ...


@dataclass
class Failing:
    run_id: int
    state: asyncio.Future  # of the State the test failed on
    message: str


@dataclass
class Run:
    """One test run after a save, filled in by its phases."""

    id: int
    config: TestConfig
    journal: Journal | None
    state: asyncio.Future | None  # of the State it runs on (None: not recorded)
    progress: Progress
    results: dict[str, dict] = field(default_factory=dict)  # node id -> its result
    counts: dict[str, int] = field(default_factory=lambda: {"passed": 0, "failed": 0, "errors": 0})


@dataclass
class Phase:
    name: str  # nearest | related | rest | all
    files: list[str]  # test files, most related first; empty: pytest's own choice (the whole suite)


class TestFeedback:
    def __init__(
        self,
        root: Path,
        *,
        publish: Callable[[set[str]], None],
        progress: Callable[[str, str], Progress],
        say: Callable[[str], None],
        journal: Callable[[], Journal | None],
    ):
        self.root = root
        self.publish = publish
        self.progress = progress
        self.say = say
        self.journal = journal
        self.graph = ImportGraph(root)
        self.failures = Failures()
        self.failing: dict[str, Failing] = {}  # test id -> its latest failing run
        self.pending: list[str] = []  # saved files whose tests have not run to the end yet
        self.config: TestConfig | None = None
        self.task: asyncio.Future | None = None  # the run in progress, or the last one
        self._background = Background()
        # Workspace states are read on their own thread: queued behind other work, a state could be read
        # after the next save and hold the fixed code as the failing one.
        self.state_reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="selftune-state")
        self.saved_at = 0.0
        self.phase_marks: list[tuple[str, float]] = []

    # --- on the event loop ------------------------------------------------------------

    def warm(self) -> None:
        """Read the workspace's imports now, so that the first save does not wait for it."""
        asyncio.get_running_loop().run_in_executor(None, self.graph.refresh)

    def saved(self, rel: str, config: TestConfig) -> None:
        if rel not in self.pending:
            self.pending.append(rel)
        self.saved_at = time.perf_counter()
        self.config = config
        previous = self.task
        if previous is not None and not previous.done():
            previous.cancel()
        self.task = self._background.start(self._after(previous))

    def stop(self) -> None:
        self._background.cancel()
        self.state_reader.shutdown(wait=False, cancel_futures=True)

    async def _after(self, previous: asyncio.Future | None) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        await asyncio.sleep(SAVE_PAUSE)
        paths = list(self.pending)
        assert self.config is not None  # set by `saved`, which started this
        try:
            await self._run(paths, self.config)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not stop the server or later runs
            log.exception("test run failed")
            self.say(f"selftune: the test run failed: {exc}")
        self._tested(paths)

    def _tested(self, paths: list[str]) -> None:
        """The related tests of `paths` have run: a cancelled run after this point need not repeat them."""
        self.pending = [p for p in self.pending if p not in paths]

    def plan(self, paths: list[str], scope: str) -> list[Phase]:
        if scope == "all":
            return [Phase("all", [])]
        nearest: list[str] = []
        others: list[str] = []
        for path in paths:
            near, far = self.graph.nearest_and_others(path)
            nearest += [t for t in near if t not in nearest]
            others += [t for t in far if t not in others]
        others = [t for t in others if t not in nearest]
        related = nearest + others
        phases = [Phase(name, files) for name, files in (("nearest", nearest), ("related", others)) if files]
        if scope == "related-then-all":
            rest = [t for t in self.graph.all_tests() if t not in related]
            if rest:
                phases.append(Phase("rest", rest))
        return phases

    async def _run(self, paths: list[str], config: TestConfig) -> None:
        loop = asyncio.get_running_loop()
        phases = await loop.run_in_executor(None, self.plan, paths, config.scope)
        marks = [("planned", time.perf_counter())]
        self.phase_marks = []
        if not phases:
            log.info("no tests related to %s", ", ".join(paths))
            self._tested(paths)
            return
        journal = self.journal()
        run_id = secrets.randbits(62)
        started = time.time()
        state: asyncio.Future | None = None
        revised = dict(journal.recorder.revised) if journal is not None else {}
        if journal is not None:
            journal.store.put(
                ev.RunStarted(
                    run_id,
                    journal.session,
                    started,
                    trigger=",".join(paths),
                    scope=config.scope,
                    interpreter=config.interpreter,
                )
            )
            # Read while pytest starts: it is what pytest runs on (a newer save would cancel this run).
            state = asyncio.ensure_future(
                loop.run_in_executor(self.state_reader, capture, self.root, journal.rules.allows)
            )
            state.add_done_callback(lambda done: self._record_state(journal, run_id, done))
        files = sum(len(p.files) for p in phases)
        progress = self.progress(
            "selftune: running tests", f"{files} test files for {', '.join(paths)}" if files else "the whole suite"
        )
        run = Run(run_id, config, journal, state, progress)
        counts = run.counts
        status, exit_code = "finished", None
        try:
            for phase in phases:
                end = await self._phase(phase, run)
                if phase.name != "nearest" or all(p.name in ("nearest", "rest") for p in phases):
                    self._tested(paths)  # their related tests have all run
                if end.status != "finished":
                    status, exit_code = end.status, end.exit_code
                    if end.status in ("no-pytest", "no-interpreter"):
                        break
                elif exit_code is None or end.exit_code not in (0, 5):
                    exit_code = end.exit_code
            if state is not None:
                # The run ends once its state is read, so a save after the end cannot leak into it.
                await asyncio.wait([state])
        except asyncio.CancelledError:
            progress.end("cancelled by a newer save")
            if journal is not None:
                journal.store.put(ev.RunEnded(run_id, time.time(), "cancelled", None, **counts))
                # What passed before the cancel passed on this state: learn from it without holding up the new run.
                self._background.start(self._learn(journal, run_id, state, run.results))
            raise
        summary = (
            f"{counts['failed']} failed, {counts['errors']} errors, {counts['passed']} passed"
            f" in {time.time() - started:.1f} s"
        )
        progress.end(summary if status == "finished" else f"{status}: {summary}")
        log.debug(
            "test run timing after the save: %s",
            ", ".join(f"{name} +{1000 * (at - self.saved_at):.0f} ms" for name, at in marks + self.phase_marks),
        )
        if journal is not None:
            journal.store.put(ev.RunEnded(run_id, time.time(), status, exit_code, **counts))
            await self._learn(journal, run_id, state, run.results)
            if status == "finished" and not counts["failed"] and not counts["errors"] and revised:
                for key in revised:
                    journal.store.put(ev.RunCompletion(run_id, key))
                journal.recorder.forget_revised(revised)
        log.info("tests for %s: %s", ", ".join(paths), summary)

    @staticmethod
    def _record_state(journal: Journal, run_id: int, done: asyncio.Future) -> None:
        if done.cancelled() or done.exception() is not None:
            log.warning(
                "the workspace state of a test run could not be read: %s",
                "cancelled" if done.cancelled() else done.exception(),
            )
            return
        state: State = done.result()
        for path, text in state.files.items():
            journal.store.put(ev.RunFile(run_id, path, text))
        journal.store.put(ev.RunHead(run_id, state.head))

    async def _phase(self, phase: Phase, run: Run) -> RunEnd:
        config, journal, state, results, counts = run.config, run.journal, run.state, run.results, run.counts
        reported: set[str] = set()
        modules: set[str] = set()
        locations: dict[str, tuple[str, int]] = {}
        total = {"tests": 0, "done": 0}

        def on_event(item: dict) -> None:
            kind = item.get("event")
            if kind == "collected":
                total["tests"] = int(item.get("count") or 0)
            elif kind == "module" and isinstance(item.get("path"), str):
                modules.add(item["path"])
                self._update(str(item.get("nodeid") or item["path"]), [])  # it collects again
            elif kind == "start" and isinstance(item.get("location"), list):
                path, line = item["location"]
                locations[str(item.get("nodeid"))] = (path, line)
            elif kind == "result":
                nodeid = str(item.get("nodeid") or "")
                reported.add(nodeid)
                results[nodeid] = item
                outcome = item.get("outcome")
                key = (
                    "passed"
                    if outcome in ("passed", "skipped", "xfailed", "xpassed")
                    else ("errors" if outcome == "error" else "failed")
                )
                counts[key] += 1
                total["done"] += 1
                self._update(nodeid, result_problems(item))
                if state is not None and outcome in ("failed", "error"):
                    self.failing[nodeid] = Failing(run.id, state, str(item.get("message") or outcome))
                if journal is not None:
                    path, line = item.get("frame") or (None, None)
                    test_path, test_line = item.get("test_frame") or (None, None)
                    journal.store.put(
                        ev.RunResult(
                            run.id,
                            nodeid,
                            str(outcome),
                            item.get("duration"),
                            item.get("message"),
                            path=path,
                            line=line,
                            test_path=test_path,
                            test_line=test_line,
                        )
                    )
                if total["tests"]:
                    run.progress.report(
                        f"{total['done']}/{total['tests']} {phase.name} tests, {counts['failed']} failed",
                        min(100, 100 * total["done"] // total["tests"]),
                    )

        self.phase_marks.append((f"{phase.name} started", time.perf_counter()))
        end = await run_pytest(config.interpreter, self.root, phase.files, timeout=config.timeout, on_event=on_event)
        self.phase_marks.append((f"{phase.name} ended (pytest {1000 * end.seconds:.0f} ms)", time.perf_counter()))
        if end.status == "finished":
            self.publish(self.failures.forget_missing(modules, reported))
            if end.exit_code in (3, 4):  # pytest's internal error / usage error
                self.say(
                    f"selftune: pytest could not run the tests (exit status {end.exit_code}):\n"
                    + _last_lines(end.output)
                )
        elif end.status in ("timeout", "crashed"):
            problems = ending_problems(end, locations.get(end.running or ""), config.timeout, config.interpreter)
            if end.running:
                item = {
                    "nodeid": end.running,
                    "outcome": end.status,
                    "message": problems[-1].message if problems else "",
                }
                results[end.running] = item
                counts["errors"] += 1
                self._update(end.running, problems)
                if state is not None:
                    self.failing[end.running] = Failing(run.id, state, item["message"])
                if journal is not None:
                    test_path, test_line = locations.get(end.running) or (None, None)
                    journal.store.put(
                        ev.RunResult(
                            run.id,
                            end.running,
                            end.status,
                            None,
                            item["message"],
                            path=None,
                            line=None,
                            test_path=test_path,
                            test_line=test_line,
                        )
                    )
            else:
                self.say(
                    f"selftune: the test run {'timed out' if end.status == 'timeout' else 'crashed'} "
                    f"before any test started ({_ending(end, config)}):\n{_last_lines(end.output)}"
                )
        elif end.status == "no-pytest":
            self.say(
                f"selftune: no tests run: pytest is not installed for {config.interpreter}. "
                f"Install it there ({config.interpreter} -m pip install pytest) or set "
                f"selftune.testInterpreter (or tests.interpreter in {CONFIG_NAME})."
            )
        elif end.status == "no-interpreter":
            self.say(
                f"selftune: no tests run: the test interpreter cannot be started ({end.output}). "
                f"Set selftune.testInterpreter (or tests.interpreter in {CONFIG_NAME})."
            )
        return end

    def _update(self, nodeid: str, problems: list[Problem]) -> None:
        changed = self.failures.set(nodeid, problems)
        if changed:
            self.publish(changed)

    async def _learn(
        self, journal: Journal, run_id: int, state: asyncio.Future | None, results: dict[str, dict]
    ) -> None:
        """Tests that failed in an earlier run and pass in this one: revision examples and preference pairs."""
        fixed: dict[int, list[str]] = {}
        for nodeid, item in results.items():
            failing = self.failing.get(nodeid)
            if item.get("outcome") == "passed" and failing is not None and failing.run_id != run_id:
                fixed.setdefault(failing.run_id, []).append(nodeid)
        if not fixed or state is None:
            return
        loop = asyncio.get_running_loop()
        for failing_run, nodeids in fixed.items():
            before = self.failing[nodeids[0]].state
            error = "\n".join(f"{n}: {self.failing[n].message}" for n in nodeids[:3])
            for nodeid in nodeids:
                del self.failing[nodeid]
            try:
                old, new = await before, await state
            except Exception as exc:  # a state that could not be read: no pairs from it
                log.info("no fixes from %s: %s", ", ".join(nodeids), exc)
                continue
            found = await loop.run_in_executor(None, fixes, old, new, error)
            for fix in found:
                journal.store.put(
                    ev.Fix(
                        time.time(),
                        failing_run=failing_run,
                        passing_run=run_id,
                        path=fix.path,
                        function=fix.function,
                        context=fix.context,
                        failing=fix.failing,
                        error=fix.error,
                        passing=fix.passing,
                        tests=",".join(nodeids),
                    )
                )
            if found:
                log.info("%d revision examples from %s passing again", len(found), ", ".join(nodeids))
            else:
                changed = await loop.run_in_executor(None, changed_paths, old, new)
                log.info(
                    "%s pass again, but no Python function changed between the two runs (files that differ: %s)",
                    ", ".join(nodeids),
                    ", ".join(changed) or "none",
                )


def _last_lines(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-OUTPUT_LINES:])


def _ending(end: RunEnd, config: TestConfig) -> str:
    if end.status == "timeout":
        return f"killed after {config.timeout:g} s"
    return f"killed by {end.signal_name}" if end.signal_name else f"exit status {end.exit_code}"
