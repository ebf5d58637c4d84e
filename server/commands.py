"""Commands editors run through `workspace/executeCommand` (besides `selftune.accept`).

    selftune.status   what the server is doing (see status.py); also sent as `selftune/status`
    selftune.stats    the journal of each workspace folder: {"folders": [{"root", "text", "stats"}]}
    selftune.report   write each folder's report page: {"reports": [path, ...]}
    selftune.adapt    train an adapter now (not in this version: answered with an error that says so)

Journal reads and the report run on a worker thread; the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RequestFailed
from .journal import journal_path
from .journal.queries import describe_stats, open_readonly, stats
from .report import write_report

if TYPE_CHECKING:
    from .lsp import SelftuneServer

STATUS, STATS, REPORT, ADAPT = "selftune.status", "selftune.stats", "selftune.report", "selftune.adapt"


def folder_stats(root: Path) -> dict:
    path = journal_path(root)
    try:
        conn = open_readonly(path)
    except (FileNotFoundError, sqlite3.Error) as exc:
        return {"root": str(root), "text": f"{root}: {exc}", "stats": None}
    try:
        s = stats(conn, path)
    finally:
        conn.close()
    return {"root": str(root), "text": describe_stats(s), "stats": s}


def register(server: "SelftuneServer") -> None:
    def roots(ls: "SelftuneServer") -> list[Path]:
        if not ls.recording.roots:
            raise RequestFailed("selftune: no workspace folder is open, so there is no journal")
        return ls.recording.roots

    @server.command(STATUS)
    def status(ls, *args: object) -> dict:
        return ls.status.snapshot()

    @server.command(STATS)
    async def journal_stats(ls, *args: object) -> dict:
        loop = asyncio.get_running_loop()
        folders = [await loop.run_in_executor(None, folder_stats, root) for root in roots(ls)]
        return {"folders": folders}

    @server.command(REPORT)
    async def report(ls, *args: object) -> dict:
        loop = asyncio.get_running_loop()
        written, problems = [], []
        for root in roots(ls):
            try:
                written.append(str(await loop.run_in_executor(None, write_report, root)))
            except (OSError, sqlite3.Error) as exc:
                problems.append(f"{root}: {exc}")
        if not written:
            raise RequestFailed("selftune: no report written: " + "; ".join(problems))
        return {"reports": written, "problems": problems}

    @server.command(ADAPT)
    def adapt(ls, *args: object) -> None:
        raise RequestFailed("selftune: adaptation (training an adapter on this project) is not available in this "
                            "version yet; completions come from the base model")
