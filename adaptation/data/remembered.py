"""The serving-format examples, remembered between runs while nothing that makes them changes.

Assembling the server's prompt at every block the steps added (insertions.py) is most of a run's data build: on
tenacity with its history, 33 of 34 s, tokenizing the prompts' parts and replaying the history through git. Idle
runs back to back make the same examples again and again. What decides them goes into a key: the journal's steps
(and the editor's edits and documents they are rebuilt from), the project's files (the editor's steps are completed
against HEAD), the prompt format and sizes, the tokenizer, the code that makes them and llama.cpp's version. The
examples are kept in `.selftune/cache/insertions.json` under that key, and made again when any of it changed.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..fingerprint import code, completion_path, digest, listing
from . import Example

FILE = "insertions.json"


def _journal(conn: sqlite3.Connection) -> str:
    """The steps as recorded, and how far the edits and documents they are rebuilt from go."""
    steps = conn.execute("SELECT id, time, path, origin, commit_sha, document_id, diff FROM steps ORDER BY id")
    ends = conn.execute("SELECT (SELECT max(id) FROM edits), (SELECT max(id) FROM documents)").fetchone()
    return digest(*(repr(row) for row in steps), repr(ends))


def key(conn: sqlite3.Connection, files: dict[str, tuple[str, float]], settings: object, measure: object) -> str:
    """What decides the examples: the journal, the project's `files`, the `settings` that size and format the
    prompts (their repr), the tokenizer `measure` counts with (its `key`, else its name), and the code that makes
    them (this package and the completion path)."""
    tokenizer = str(getattr(measure, "key", None) or getattr(measure, "__qualname__", repr(measure)))
    made_by = code(sorted(Path(__file__).parent.glob("*.py")) + completion_path())
    return digest(made_by, _journal(conn), repr(settings), tokenizer, *listing(files))


def examples(folder: Path | None, conn: sqlite3.Connection, files: dict[str, tuple[str, float]], settings: object,
             measure: object, make: Callable[[], list[Example]]) -> tuple[list[Example], bool]:  # fmt: skip
    """(`make()`'s examples, or those `folder` keeps for the same `key`; whether they were kept). None: no folder."""
    if folder is None:
        return make(), False
    path, key_ = folder / FILE, key(conn, files, settings, measure)
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        if kept.get("key") == key_:
            return [Example.from_json(e) for e in kept["examples"]], True
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not there, or damaged: made again
    made = make()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"key": key_, "examples": [e.to_json() for e in made]}), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass  # a read-only workspace: made again next time
    return made, False
