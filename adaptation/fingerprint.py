"""Digests of what decides a result kept for later runs: texts, installed packages, source code, a project's files.

The held-out answers (answers.py) and the examples in the server's format (data/remembered.py) are kept under such
digests, and computed again when anything in them changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def installed(package: str) -> str:
    """The installed version of `package`, or "?"."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def completion_path() -> list[Path]:
    """The server's completion path: what assembles a prompt and answers it."""
    from selftune.server import completion

    return sorted(Path(completion.__file__).parent.glob("*.py"))


def code(sources: Iterable[Path]) -> str:
    """llama.cpp's version and the text of `sources`."""
    return digest(installed("llama_cpp_python"), *(p.read_text(encoding="utf-8", errors="replace") for p in sources))


def listing(files: dict[str, tuple[str, float]]) -> list[str]:
    """A project's files (path -> (text, time)) as they read: each path with its text's digest."""
    return [f"{path}\0{digest(text)}" for path, (text, _time) in sorted(files.items())]
