"""The workspace's own selftune folder, `.selftune/`, and its settings file.

Everything selftune keeps about a project lives in the project, in
`.selftune/` (never committed: the journal adds it to `.git/info/exclude`).
This module is the one place that spells its paths; the server, the CLI and
`selftune adapt` all ask it.

It also reads `.selftune/config.toml`, the workspace's own settings (a
`[tests]` table for tests on save, an `[adapt]` table for the recipe). A
repository can ship that file, so what it may do depends on trust (trust.py):
a file git tracks came with the repository and is ignored entirely until the
user trusts the workspace, and in an untrusted workspace the file can only
narrow what runs (feedback/config.py, adaptation/config.py).
"""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pygls.uris import to_fs_path

DIRNAME = ".selftune"
CONFIG = "config.toml"
CONFIG_NAME = f"{DIRNAME}/{CONFIG}"  # the settings file as messages name it
JOURNAL = "journal.sqlite3"
ADAPTER_FILE = "adapter.gguf"  # in each adapter's folder, for llama.cpp (adaptation/export.py writes it)


def folder(root: Path) -> Path:
    return root / DIRNAME


def journal_path(root: Path) -> Path:
    return root / DIRNAME / JOURNAL


def adapters_dir(root: Path) -> Path:
    """One folder per adapter (its PEFT weights, `adapter.gguf`, `meta.json`), and `current`."""
    return root / DIRNAME / "adapters"


def heldout_dir(root: Path) -> Path:
    """Each model's answers at the held-out points of the last evaluation (adaptation/answers.py)."""
    return root / DIRNAME / "heldout"


def data_cache(root: Path) -> Path:
    """What a run's data build keeps for the next one (adaptation/data/remembered.py)."""
    return root / DIRNAME / "cache"


def current_file(root: Path) -> Path:
    """Names the promoted adapter; replaced atomically."""
    return adapters_dir(root) / "current"


def run_log(root: Path) -> Path:
    """The last adaptation run's log (its stderr), when the server started it."""
    return adapters_dir(root) / "last-run.log"


def run_lock(root: Path) -> Path:
    """Held by the one `selftune adapt` running in the workspace."""
    return adapters_dir(root) / ".lock"


def reports_dir(root: Path) -> Path:
    """What `selftune report` and `selftune eval` write."""
    return root / DIRNAME / "reports"


def current_adapter(root: Path) -> tuple[str, Path] | None:
    """(id, GGUF path) that `adapters/current` names, if it names one (the file may be missing)."""
    try:
        name = current_file(root).read_text().strip()
    except OSError:
        return None
    return (name, adapters_dir(root) / name / ADAPTER_FILE) if name else None


def locate(uri: str, roots: Iterable[Path]) -> tuple[Path, str] | None:
    """The workspace folder holding the file at `uri` and its path relative to it (POSIX), or None.

    `roots` are resolved folders, most specific first (a folder nested in another comes before it)."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    if not path:
        return None
    resolved = Path(path).resolve()
    for root in roots:
        if resolved.is_relative_to(root):
            return root, resolved.relative_to(root).as_posix()
    return None


def config_path(root: Path) -> Path:
    return root / DIRNAME / CONFIG


@dataclass(frozen=True)
class WorkspaceConfig:
    """The tables of `.selftune/config.toml` as read, before trust is applied."""

    path: Path
    tables: dict = field(default_factory=dict)  # table name -> its keys; {} when there is no file
    problems: tuple[str, ...] = ()  # the file cannot be read, or a table is not a table
    tracked: bool = False  # git tracks the file: it came with the repository

    def table(self, name: str) -> tuple[dict, list[str]]:
        """One table's keys, and a problem if it is there but not a table."""
        value = self.tables.get(name, {})
        if isinstance(value, dict):
            return value, []
        return {}, [f"{self.path}: [{name}] must be a table; it is ignored"]


_cache: dict[Path, tuple[tuple, WorkspaceConfig]] = {}


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _index_stamp(root: Path) -> tuple | None:
    """When git's index last changed, for the repository holding `root` (None if there is none)."""
    for where in (root, *root.parents):
        if (where / ".git").exists():
            return _stamp(where / ".git" / "index")
    return None


def tracked_by_git(root: Path, rel: str) -> bool:
    """Whether git tracks `rel` (relative to `root`); False outside a repository or without git."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "ls-files", "--error-unmatch", "--", rel],
            capture_output=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def read_config(root: Path) -> WorkspaceConfig:
    """`root/.selftune/config.toml` as read now (cached while neither it nor git's index changes)."""
    path = config_path(root)
    stamp = _stamp(path)
    if stamp is None:
        return WorkspaceConfig(path)
    key = (stamp, _index_stamp(root))
    cached = _cache.get(path)
    if cached and cached[0] == key:
        return cached[1]
    tracked = tracked_by_git(root, f"{DIRNAME}/{CONFIG}")
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
        found = WorkspaceConfig(path, tables, (), tracked)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        found = WorkspaceConfig(path, {}, (f"{path} cannot be read ({exc}); it is ignored",), tracked)
    _cache[path] = (key, found)
    return found
