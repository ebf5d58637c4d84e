"""The repository's recent history as edit steps: how this project was written before selftune.

On first use in a git repository (and on each start after, for the commits
made since), the newest `depth` commits are read, oldest first, with one `git log -p -U0`
process through gitpython, streamed, and parsed commit by commit: per commit a
`commit` event (message, time, author, whether it changes both code and
tests), and per Python file a `history_step` event whose diff is the file's
zero-context hunks, the same format as the editor's own steps. The HEAD that
was imported is kept in the journal's `meta` table.

One process for all commits, rather than one `git diff` per commit, keeps the
import close to the speed of `git log -p` itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import events as ev

log = logging.getLogger(__name__)

_COMMIT = "\x1e"  # starts each commit's header line
_FIELD = "\x1f"
_FORMAT = f"{_COMMIT}%H{_FIELD}%at{_FIELD}%an{_FIELD}%B{_COMMIT}"
_HUNK_RE = re.compile(r"^(@@ [^@]* @@).*$")
_TEST_RE = re.compile(r"(^|/)(tests?|testing)/|(^|/)test_[^/]*\.py$|_test\.py$|(^|/)conftest\.py$")


def is_test_path(path: str) -> bool:
    return bool(_TEST_RE.search(path))


@dataclass
class Commit:
    sha: str
    time: float
    author: str
    message: str
    diffs: dict[str, str] = field(default_factory=dict)  # path -> zero-context hunks

    @property
    def code_and_tests(self) -> bool:
        tests = [is_test_path(p) for p in self.diffs]
        return any(tests) and not all(tests)


def parse_log(lines: Iterator[str]) -> Iterator[Commit]:
    """Commits from `git log -p -U0 --format=<_FORMAT>` output, one at a time."""
    commit: Commit | None = None
    header: list[str] | None = None
    path: str | None = None
    hunk: list[str] = []

    def end_file() -> None:
        if commit is not None and path and hunk:
            commit.diffs[path] = "\n".join(hunk)

    for line in lines:
        line = line.rstrip("\n")
        if header is not None:  # inside a multi-line commit message
            header.append(line)
            if line.endswith(_COMMIT):
                commit = _header("\n".join(header))
                header = None
            continue
        if line.startswith(_COMMIT):
            end_file()
            if commit is not None:
                yield commit
            commit, path, hunk = None, None, []
            if line.endswith(_COMMIT) and len(line) > 1:
                commit = _header(line)
            else:
                header = [line]
            continue
        if line.startswith("diff --git "):
            end_file()
            path, hunk = None, []
        elif line.startswith("+++ ") and not hunk:
            target = line[4:]
            path = target[2:] if target.startswith("b/") else path
        elif line.startswith("--- ") and not hunk:
            source = line[4:]
            path = source[2:] if source.startswith("a/") else None  # kept if the file was deleted
        elif line.startswith("@@"):
            hunk.append(_HUNK_RE.sub(r"\1", line))  # without git's function-name context
        elif hunk and line[:1] in ("+", "-", "\\"):
            hunk.append(line)
    end_file()
    if commit is not None:
        yield commit


def _header(text: str) -> Commit:
    sha, at, author, message = text.strip(_COMMIT).split(_FIELD, 3)
    return Commit(sha, float(at), author, message.strip())


def log_args(depth: int, since: str | None) -> list[str]:
    revisions = [f"{since}..HEAD"] if since else ["HEAD"]
    return [
        "-n",
        str(depth),
        "-p",
        "-U0",
        "--no-color",
        "--no-ext-diff",
        "--no-renames",
        "--reverse",
        f"--format={_FORMAT}",
        *revisions,
        "--",
        "*.py",
    ]


def import_history(
    repo,
    put: Callable[[ev.Event], None],
    *,
    depth: int,
    since: str | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[int, str | None]:
    """Put the newest `depth` commits (after `since`) as journal events; returns (commits, HEAD imported)."""
    if not repo.head.is_valid():  # no commits yet
        return 0, None
    head = repo.head.commit.hexsha
    if since == head or depth <= 0:
        return 0, head
    if since is not None and not repo.is_ancestor(since, head):
        since = None  # history was rewritten: import the newest commits again (duplicates are ignored)
    count_args = [f"{since}..HEAD" if since else "HEAD", "--", "*.py"]
    total = min(depth, int(repo.git.rev_list("--count", *count_args) or 0))
    process = repo.git.log(*log_args(depth, since), as_process=True)
    done = 0
    try:
        lines = (raw.decode("utf-8", "replace") for raw in process.stdout)
        for commit in parse_log(lines):
            put(ev.CommitImported(commit.sha, commit.time, commit.author, commit.message, commit.code_and_tests))
            for path, diff in commit.diffs.items():
                if PurePosixPath(path).suffix == ".py":
                    put(ev.HistoryStep(commit.sha, path, commit.time, diff))
            done += 1
            progress(done, total)
    finally:
        process.stdout.close()
        process.wait()
    return done, head
