"""Whether a workspace may run its own code, decided outside the workspace.

Running a project's tests runs its code: its `conftest.py`, its test files,
the interpreter in its `.venv`. A repository can ship all of those, and a
`.selftune/config.toml` asking for them, so nothing inside a workspace can
allow it. A workspace is trusted when

- the editor says so: the setting `workspaceTrusted` is true (the VS Code
  extension sends VS Code's workspace trust); an editor that says false wins
  over everything else; or
- the user granted it, with `selftune trust DIR` or the `selftune.trust`
  command: the grant is recorded in the user's data folder (`trusted.json`
  in `$SELFTUNE_DATA`, default the platform's user data folder, e.g.
  `~/.local/share/selftune`) with the SHA-256 of the workspace's
  `.selftune/config.toml` as it was then, as direnv does. A change to that
  file withdraws the grant until the user grants it again.

Where the editor does not say, a workspace is not trusted until the user
grants it. Nothing here knows about LSP.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .workspace import CONFIG_NAME, config_path

DATA_ENV = "SELFTUNE_DATA"
FILENAME = "trusted.json"

# Why a workspace is or is not trusted.
EDITOR, GRANTED = "editor", "granted"
EDITOR_DISTRUSTS, NOT_GRANTED, CONFIG_CHANGED = "editor-distrusts", "not-granted", "config-changed"


def data_dir() -> Path:
    """The user's selftune data folder (outside every workspace)."""
    return Path(os.environ.get(DATA_ENV) or platformdirs.user_data_dir("selftune", appauthor=False))


def trust_file() -> Path:
    return data_dir() / FILENAME


def config_digest(root: Path) -> str | None:
    """SHA-256 of the workspace's `.selftune/config.toml`; None when there is none."""
    try:
        return hashlib.sha256(config_path(root).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable: a digest no grant can match
        return f"unreadable: {exc.strerror}"


def _key(root: Path) -> str:
    return str(Path(root).resolve())


def _read() -> dict:
    try:
        data = json.loads(trust_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    folders = data.get("folders") if isinstance(data, dict) else None
    return folders if isinstance(folders, dict) else {}


@contextlib.contextmanager
def _editing():
    """The grants, for changing; written back atomically, one writer at a time."""
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{FILENAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folders = _read()
        yield folders
        tmp = folder / f".{FILENAME}.{os.getpid()}"
        tmp.write_text(
            json.dumps({"version": 1, "folders": folders}, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        os.replace(tmp, folder / FILENAME)


def grant(root: Path) -> str | None:
    """Trust `root` with its config file as it is now; returns the digest recorded."""
    digest = config_digest(root)
    with _editing() as folders:
        folders[_key(root)] = {"config_sha256": digest, "granted": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return digest


def revoke(root: Path) -> bool:
    """Withdraw the grant for `root`; False if there was none."""
    with _editing() as folders:
        return folders.pop(_key(root), None) is not None


def grants() -> dict[str, dict]:
    """Every recorded grant: folder -> {config_sha256, granted}."""
    return _read()


@dataclass(frozen=True)
class Trust:
    root: Path
    trusted: bool
    reason: str  # EDITOR, GRANTED, EDITOR_DISTRUSTS, NOT_GRANTED or CONFIG_CHANGED

    def why(self) -> str:
        """Why, in a few words, for messages."""
        return {
            EDITOR: "the editor trusts this workspace",
            GRANTED: "you trusted this workspace (selftune trust)",
            EDITOR_DISTRUSTS: "the editor does not trust this workspace",
            NOT_GRANTED: "this workspace is not trusted (the editor does not say whether it trusts it, and it "
            "was never trusted with selftune trust)",
            CONFIG_CHANGED: f"its {CONFIG_NAME} changed since you trusted it, which withdraws the trust",
        }[self.reason]

    def how(self) -> str:
        """How the user can allow it."""
        if self.reason == EDITOR_DISTRUSTS:
            return "trust the workspace in the editor (VS Code: Workspaces: Manage Workspace Trust)"
        return (
            f"run `selftune trust {self.root}` (it records the folder and its {CONFIG_NAME} as it is now), "
            f"or the editor command selftune.trust (Neovim: :Selftune trust; Emacs: M-x selftune-trust)"
        )


def decide(root: Path, editor: bool | None) -> Trust:
    """Whether `root` may run its own code, given what the editor says (None: it does not say)."""
    if editor is False:
        return Trust(root, False, EDITOR_DISTRUSTS)
    if editor is True:
        return Trust(root, True, EDITOR)
    found = _read().get(_key(root))
    if not isinstance(found, dict):
        return Trust(root, False, NOT_GRANTED)
    if found.get("config_sha256") != config_digest(root):
        return Trust(root, False, CONFIG_CHANGED)
    return Trust(root, True, GRANTED)
