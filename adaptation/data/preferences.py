"""CodeLutra's preference pairs: (prompt, chosen, rejected) for the same prompt.

From the journal: a function that failed its tests and later passed (chosen:
the passing version, rejected: the failing one, prompt: the code before it);
and an accepted completion the user rewrote (chosen: the user's text,
rejected: the model's). Self-revision (../selfrevise.py) adds pairs whose
chosen answer the model wrote itself and the tests accepted.
"""

from __future__ import annotations

import sqlite3

from selftune.server.journal.queries import export

from . import Example


def from_journal(conn: sqlite3.Connection) -> list[Example]:
    pairs = []
    for record in export(conn):
        if record["type"] == "test_fix" and record["passing"].strip() != record["failing"].strip():
            pairs.append(
                Example(
                    "preference",
                    record["context"],
                    record["passing"],
                    record["time"],
                    f"{record['path']}::{record['function']}",
                    rejected=record["failing"],
                    tests=tuple(record["tests"]),
                    meta={"source": "test_fix"},
                )
            )
        elif record["type"] == "revision" and record["user"].strip() and record["user"] != record["model"]:
            pairs.append(
                Example(
                    "preference",
                    record["prefix"],
                    record["user"],
                    record["time"],
                    record["path"],
                    rejected=record["model"],
                    meta={"source": "completion"},
                )
            )
    return pairs
