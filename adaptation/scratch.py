"""A scratch copy of the workspace as a test run saw it, and a pytest run in it.

Used by self-revision and by pass@1: a candidate function is written into a
copy of the state the journal recorded for a run (the git HEAD it was based
on, plus the dirty files as they were), and the tests that checked it are run
there, in a process group of their own, killed at the deadline. The copy is
put first on PYTHONPATH (and its `src/`, for src layouts), so the project's
own installed copy does not shadow the candidate.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

from selftune.server.feedback.pairs import functions
from selftune.server.journal.privacy import Rules
from selftune.server.journal.queries import blob
from selftune.server.workspace import DIRNAME

COPY_IGNORE = shutil.ignore_patterns(".git", DIRNAME, ".venv", "venv", "__pycache__", "node_modules", ".tox")


def materialize(root: Path, conn: sqlite3.Connection, run_id: int, dest: Path) -> Path:
    """Write the workspace state of test run `run_id` into `dest`."""
    row = conn.execute("SELECT head FROM test_runs WHERE id = ?", (run_id,)).fetchone()
    head = row[0] if row else None
    repo = Rules(root).repo
    dest.mkdir(parents=True, exist_ok=True)
    if head and repo is not None:
        buf = io.BytesIO()
        sub = root.resolve().relative_to(Path(repo.working_tree_dir).resolve()).as_posix()
        repo.archive(buf, treeish=head, format="tar", **({} if sub == "." else {"path": sub}))
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tar:
            tar.extractall(dest, filter="data")
        if sub != ".":
            inner = dest / sub
            for item in inner.iterdir():
                item.rename(dest / item.name)
    else:
        shutil.copytree(root, dest, ignore=COPY_IGNORE, dirs_exist_ok=True)
    for path, digest in conn.execute("SELECT path, snapshot FROM run_files WHERE run_id = ?", (run_id,)):
        target = dest / path
        if digest is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(blob(conn, digest), encoding="utf-8")
    return dest


def replace_function(text: str, qualname: str, new: str) -> str | None:
    """`text` with function `qualname` replaced by `new`; None if it is not there or the result does not parse."""
    found = functions(text)
    if not found or qualname not in found:
        return None
    f = found[qualname]
    lines = text.splitlines(keepends=True)
    result = "".join(lines[: f.start]) + new.rstrip("\n") + "\n" + "".join(lines[f.end :])
    return result if functions(result) is not None else None


def interpreter(root: Path) -> str:
    for candidate in (root / ".venv" / "bin" / "python", root / "venv" / "bin" / "python"):
        if candidate.is_file():
            return str(candidate)
    return sys.executable


def run_tests(where: Path, tests: list[str], python: str, timeout: float) -> tuple[bool, str]:
    """(passed, the tail of pytest's output) for `tests` run in `where`."""
    env = dict(os.environ)
    paths = [str(where)] + ([str(where / "src")] if (where / "src").is_dir() else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--color=no", "--rootdir", str(where), *tests]
    proc = subprocess.Popen(
        cmd, cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return False, f"timed out after {timeout:.0f} s"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the tests left running
        except ProcessLookupError:
            pass
    return proc.returncode == 0, out.decode("utf-8", "replace")[-2000:]
