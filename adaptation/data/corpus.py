"""The project's own code as training text: plain continuation, and FIM where the model has FIM tokens.

Lets the very first adaptation run from the repository alone, before anything
was recorded. Files are what git tracks at HEAD (read from the object store, so
uncommitted edits and ignored files are not used), or for a folder without git
every Python file the journal's privacy rules allow; secret-looking values are
masked as the journal masks them. A file's time is its last commit (or its
mtime), so the newest files are the held-out ones.

Each file is cut at line boundaries into windows of at most `window_chars`;
a ``code`` example is a whole window (loss on all of it: plain continuation is
what the server asks of a base model); a ``fim`` example moves a middle span of
the window behind the model's FIM template.
"""

from __future__ import annotations

import random
from pathlib import Path

from selftune.server.completion.prompt import PromptFormat
from selftune.server.journal.privacy import NEVER_DIRS, Rules, is_secret_file, redact

from . import Example

MAX_FILE_CHARS = 200_000  # generated or vendored files are not the project's style
SKIP_DIRS = NEVER_DIRS | {".venv", "venv", "node_modules", "__pycache__", "build", "dist", ".tox", ".mypy_cache"}


def project_files(
    root: Path, *, suffixes: tuple[str, ...] = (".py",), rev: str = "HEAD"
) -> dict[str, tuple[str, float]]:
    """path → (text, time of its last change) for the project's source files."""
    rules = Rules(root)
    repo = rules.repo
    files: dict[str, tuple[str, float]] = {}
    if repo is not None:
        try:
            commit = repo.commit(rev)
        except (ValueError, Exception):  # an empty repository has no HEAD
            commit = None
        if commit is not None:
            # The workspace may be a folder inside the repository: its paths are relative to it.
            sub = root.resolve().relative_to(Path(repo.working_tree_dir).resolve()).as_posix()
            under = "" if sub == "." else sub + "/"
            times = _last_changed(repo, rev)
            for blob in commit.tree.traverse():
                if blob.type != "blob" or not blob.path.startswith(under) or not blob.path.endswith(suffixes):
                    continue
                rel = blob.path[len(under) :]
                if is_secret_file(rel) or blob.size > MAX_FILE_CHARS or set(Path(rel).parts) & SKIP_DIRS:
                    continue
                try:
                    text = blob.data_stream.read().decode("utf-8")
                except UnicodeDecodeError:
                    continue
                files[rel] = (redact(text), times.get(blob.path, commit.committed_date))
            return files
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or not path.name.endswith(suffixes) or set(rel.parts) & SKIP_DIRS:
            continue
        if not rules.allows(path) or path.stat().st_size > MAX_FILE_CHARS:
            continue
        try:
            files[rel.as_posix()] = (redact(path.read_text(encoding="utf-8")), path.stat().st_mtime)
        except (UnicodeDecodeError, OSError):
            continue
    return files


def _last_changed(repo, rev: str) -> dict[str, float]:
    """path → time of the newest commit (up to `rev`) that touched it; one `git log` for all paths."""
    times: dict[str, float] = {}
    at = 0.0
    # split("\n"), not splitlines(): that also splits at the \x1e marker.
    for line in repo.git.log(rev, "--format=\x1e%ct", "--name-only", "--no-renames").split("\n"):
        if line.startswith("\x1e"):
            at = float(line[1:])
        elif line.strip() and line not in times:
            times[line] = at
    return times


def windows(text: str, window_chars: int) -> list[str]:
    """`text` cut at line boundaries into pieces of at most `window_chars` (a longer line is its own piece)."""
    out, current = [], ""
    for line in text.splitlines(keepends=True):
        if current and len(current) + len(line) > window_chars:
            out.append(current)
            current = ""
        current += line
    if current.strip():
        out.append(current)
    return out


def from_files(
    files: dict[str, tuple[str, float]],
    fmt: PromptFormat,
    *,
    window_chars: int = 2400,
    fim_share: float = 0.5,
    seed: int = 0,
) -> list[Example]:
    examples = []
    for path in sorted(files):
        text, at = files[path]
        rng = random.Random(f"{seed}:{path}")
        for i, window in enumerate(windows(text, window_chars)):
            if fmt.kind == "fim" and rng.random() < fim_share and window.count("\n") >= 3:
                lines = window.splitlines(keepends=True)
                a = rng.randrange(1, len(lines) - 1)
                b = rng.randrange(a + 1, min(len(lines), a + 8) + 1)
                prefix, middle, suffix = "".join(lines[:a]), "".join(lines[a:b]), "".join(lines[b:])
                head, _, tail = fmt.fim_template.partition("{suffix}")
                prompt = head.replace("{prefix}", prefix) + suffix + tail.replace("{prefix}", prefix)
                examples.append(Example("fim", prompt, middle, at, path, meta={"window": i}))
            else:
                examples.append(Example("code", "", window, at, path, meta={"window": i}))
    return examples
