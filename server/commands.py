"""Commands editors run through `workspace/executeCommand` (besides `selftune.accept`).

    selftune.status   what the server is doing (see status.py); also sent as `selftune/status`
    selftune.stats    the journal of each workspace folder: {"folders": [{"root", "text", "stats"}]}
    selftune.report   write each folder's report page: {"reports": [path, ...]}
    selftune.adapt    start `selftune adapt` now in a workspace folder (argument: its path; default the first):
                      {"started": root}; progress comes as $/progress and `selftune/status`, the outcome as a message

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
    def adapt(ls, *args: object) -> dict:
        folders = roots(ls)
        root = folders[0]
        if args and isinstance(args[0], str) and args[0]:
            wanted = Path(args[0].removeprefix("file://")).resolve()
            if wanted not in folders:
                raise RequestFailed(f"selftune: {args[0]} is not a workspace folder of this server")
            root = wanted
        if not ls.recording.journals:
            raise RequestFailed("selftune: recording is off (setting `record`), so there is nothing to adapt to")
        try:
            ls.scheduler.launch(root)
        except RuntimeError as exc:
            raise RequestFailed(f"selftune: {exc}") from None
        return {"started": str(root)}
