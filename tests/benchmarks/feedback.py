"""What test feedback costs, and what related-tests-first buys, through LSP as an editor sees it.

    python tests/benchmarks/feedback.py [--repo GIT_DIR] [--trials N] [--skip-project] [--json OUT]

1. Overhead. A small generated project (a module and its 5-test file, a git
   repository). The real server (`selftune serve`, test feedback on) is sent a
   didSave of a broken version, then of the fixed one, `--trials` times. Measured
   from didSave: to the failure's diagnostic, and to the run's `$/progress`
   end. The peer, in the same run and interleaved with it: the same pytest
   command without selftune (same interpreter, same options, no plugin), from
   spawn to exit. selftune's overhead = save-to-end minus the peer's time
   (medians); it includes the plugin, planning, the process group, the journal
   and the workspace snapshot.
2. Related tests first, on a real project nobody here wrote: `--repo` (a
   clone of pallets/click) is cloned, given a .venv with pytest and the
   project installed (from PyPI), and a bug is planted in one function (the
   bugs below are click's; a line not found is skipped). Time from didSave to
   the first failure diagnostic with scope `related-then-all` (the saved
   module's nearest tests first) and `all` (the whole suite as pytest orders
   it), alternating, `--trials` times each; the buggy file is saved fixed,
   and the run awaited, between trials.

Prints figures (medians and ratios); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types

from selftune.server.demo.replay import Session
from selftune.server.feedback.runner import BASE_ARGS

MODULE = """def mean(xs):
    total = sum(xs)
    return total / len(xs)


def spread(xs):
    return max(xs) - min(xs)
"""

TESTS = """from calc import mean, spread


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_mean_one():
    assert mean([5]) == 5


def test_spread():
    assert spread([1, 5, 3]) == 4


def test_spread_same():
    assert spread([2, 2]) == 0


def test_negative():
    assert mean([-1, 1]) == 0
"""

# (file, text to replace, bug): planted in click's source.
BUGS = [
    ("src/click/formatting.py", "widths[idx] = max(widths.get(idx, 0), term_len(col))", "widths[idx] = term_len(col)"),
    (
        "src/click/termui.py",
        'bits.append(f"\\033[{_interpret_color(fg)}m")',
        'bits.append(f"\\033[{_interpret_color(fg)}")',
    ),
]


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=b@e", *args], cwd=root, check=True, capture_output=True
    )


def progress_ended(session: Session, since: float) -> float | None:
    """When the first test run's $/progress end after `since` arrived."""
    for at, token, value in session.progress:
        kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
        if at >= since and token.startswith("selftune-tests") and kind == "end":
            return at
    return None


def first_failure(session: Session, since: float) -> float | None:
    for at, _uri, diagnostics in session.published:
        if at >= since and any(d.source == "selftune-tests" for d in diagnostics):
            return at
    return None


async def wait_for(predicate, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None:
            return value
        await asyncio.sleep(0.005)
    raise TimeoutError("the server did not answer in time")


def peer_pytest(python: str, root: Path, args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    start = time.perf_counter()
    subprocess.run([python, "-m", "pytest", *BASE_ARGS, *args], cwd=root, env=env, capture_output=True)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def overhead(trials: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="selftune-bench-feedback-") as tmp:
        root = Path(tmp)
        (root / "calc.py").write_text(MODULE)
        (root / "tests").mkdir()
        (root / "tests" / "test_calc.py").write_text(TESTS)
        (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
        git(root, "init", "-q")
        git(root, "add", ".")
        git(root, "commit", "-qm", "calc")
        python = make_venv(root)  # the project's own, as a user has it: pytest and nothing else
        session = await Session.start(root, {"testFeedback": True, "workspaceTrusted": True, "historyDepth": 0})
        to_diag, to_end, peer = [], [], []
        try:
            doc = session.open(root / "calc.py", MODULE)
            broken = MODULE.replace("total / len(xs)", "total / (len(xs) + 1)")
            for trial in range(trials + 1):  # the first trial warms up (imports read, pytest's files cached)
                for text in (broken, MODULE):
                    doc.text = text
                    at = session.save(root / "calc.py", doc)
                    ended = await wait_for(lambda at=at: progress_ended(session, at))
                    if text is broken and trial:
                        to_diag.append(await wait_for(lambda at=at: first_failure(session, at)) - at)
                        to_end.append(ended - at)
                if trial:
                    peer.append(peer_pytest(python, root, ["tests/test_calc.py"]))
        finally:
            await session.close()
    result = {
        "save_to_diagnostic_ms": 1000 * median(to_diag),
        "save_to_end_ms": 1000 * median(to_end),
        "pytest_alone_ms": 1000 * median(peer),
        "trials": trials,
    }
    result["overhead_ms"] = result["save_to_end_ms"] - result["pytest_alone_ms"]
    return result


def make_venv(root: Path, *packages: str) -> str:
    """`root/.venv` with pytest and `packages` from PyPI; its python (which selftune picks by default)."""
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True)
    python = str(root / ".venv" / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "pytest", *packages],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return python


def prepare_project(repo: str, root: Path) -> None:
    subprocess.run(["git", "-c", "safe.directory=*", "clone", "-q", repo, str(root)], check=True)
    make_venv(root, "-e", str(root))


async def related_first(repo: str, trials: int) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="selftune-bench-project-") as tmp:
        root = Path(tmp) / "project"
        print(f"cloning {repo} and installing it with pytest into its .venv ...", flush=True)
        prepare_project(repo, root)
        tests = (
            subprocess.run(
                [str(root / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider"],
                cwd=root,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        print(f"the project's suite: {tests}", flush=True)
        session = await Session.start(
            root, {"testFeedback": True, "workspaceTrusted": True, "historyDepth": 0, "testTimeout": 600}
        )
        try:
            for path, good, bad in BUGS:
                original = (root / path).read_text()
                if good not in original:
                    print(f"skipping the bug in {path}: the line is not there in this version")
                    continue
                doc = session.open(root / path, original)
                times: dict[str, list[float]] = {"related-then-all": [], "all": []}
                for _ in range(trials):
                    for scope in times:
                        session.client.workspace_did_change_configuration(
                            types.DidChangeConfigurationParams(
                                settings={"selftune": {"testFeedback": True, "testScope": scope, "testTimeout": 600}}
                            )
                        )
                        doc.text = original.replace(good, bad, 1)
                        at = session.save(root / path, doc)
                        times[scope].append(await wait_for(lambda at=at: first_failure(session, at)) - at)
                        await wait_for(lambda at=at: progress_ended(session, at))
                        doc.text = original
                        at = session.save(root / path, doc)
                        await wait_for(lambda at=at: progress_ended(session, at))
                related, whole = median(times["related-then-all"]), median(times["all"])
                results[path] = {
                    "related_first_ms": 1000 * related,
                    "whole_suite_ms": 1000 * whole,
                    "speedup": whole / related,
                    "trials": trials,
                    "samples_ms": {k: [round(1000 * v) for v in vs] for k, vs in times.items()},
                }
                print(
                    f"  {path}: first failure after {1000 * related:.0f} ms related-first vs "
                    f"{1000 * whole:.0f} ms whole suite ({whole / related:.1f}x)",
                    flush=True,
                )
        finally:
            await session.close()
    return results


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repo",
        help="git repository (path or URL) of a real project with a pytest suite, e.g. a clone of pallets/click",
    )
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--skip-project", action="store_true", help="measure the overhead only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures: dict = {}

    print(f"1. overhead on a 5-test project, {args.trials} trials, {os.cpu_count()} CPUs", flush=True)
    figures["overhead"] = o = await overhead(args.trials)
    print(
        f"  save -> failure diagnostic  {o['save_to_diagnostic_ms']:7.0f} ms (median)\n"
        f"  save -> run ended           {o['save_to_end_ms']:7.0f} ms\n"
        f"  pytest alone, spawn to exit {o['pytest_alone_ms']:7.0f} ms (same interpreter and options, no selftune)\n"
        f"  selftune's overhead         {o['overhead_ms']:7.0f} ms (target <= 150 ms)",
        flush=True,
    )

    if not args.skip_project:
        if not args.repo or not shutil.which("git"):
            print("2. skipped: pass --repo (make bench-feedback PROJECT=...), a git repository with a pytest suite")
        else:
            print(f"2. first failure, related tests first vs the whole suite, on {args.repo}", flush=True)
            figures["related_first"] = await related_first(args.repo, args.trials)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
