"""SEED's revision examples: the code before a function or region (plus the error) → the revised code.

Two sources in the journal: an accepted completion the user then changed (the
prompt is the text before it, the target what the user made of it), and a
function that failed a test and later passed (the prompt is the code before
the function and the failing test's message as a comment, the target the
passing function). The error sits in the prompt the way SEED's revision
prompts carry the failure, as something the model reads, not writes.
"""

from __future__ import annotations

import sqlite3

from selftune.server.journal.queries import export, has_table

from . import Example

ERROR_LINES = 6  # of each failure message, kept in the prompt


def error_comment(error: str) -> str:
    """A test failure as a Python comment block that ends the prompt of a revision."""
    lines = [line for line in error.strip().splitlines() if line.strip()][:ERROR_LINES]
    body = "".join(f"#   {line}\n" for line in lines) or "#   (no message)\n"
    return "# The tests failed on the version below:\n" + body + "# Fixed version:\n"


def revision_prompt(context: str, error: str) -> str:
    return context.rstrip("\n") + "\n\n" + error_comment(error) if context.strip() else error_comment(error)


def from_journal(conn: sqlite3.Connection) -> list[Example]:
    examples = []
    for record in export(conn):
        if record["type"] == "revision" and record["user"].strip() and record["user"] != record["model"]:
            examples.append(
                Example(
                    "revision",
                    record["prefix"],
                    record["user"],
                    record["time"],
                    record["path"],
                    meta={"source": "completion", "completion": record["completion"]},
                )
            )
    if has_table(conn, "test_fixes"):
        for (
            fix_id,
            at,
            failing_run,
            passing_run,
            path,
            function,
            context,
            failing,
            error,
            passing,
            tests,
        ) in conn.execute(
            "SELECT id, time, failing_run, passing_run, path, function, context, failing, error, passing, tests "
            "FROM test_fixes ORDER BY time, id"
        ):
            examples.append(
                Example(
                    "revision",
                    revision_prompt(context, error),
                    passing,
                    at,
                    f"{path}::{function}",
                    tests=tuple(t for t in tests.split(",") if t),
                    meta={
                        "source": "test_fix",
                        "fix": fix_id,
                        "path": path,
                        "function": function,
                        "failing": failing,
                        "context": context,
                        "error": error,
                        "failing_run": failing_run,
                        "passing_run": passing_run,
                    },
                )
            )
    return examples
