"""Commands editors run through `workspace/executeCommand` (besides `selftune.accept`).

    selftune.status   what the server is doing (see status.py); also sent as `selftune/status`
    selftune.stats    the journal of each workspace folder: {"folders": [{"root", "text", "stats"}]}
    selftune.report   write each folder's report page: {"reports": [path, ...]}
    selftune.adapt    start `selftune adapt` now in a workspace folder (argument: its path; default the first):
                      {"started": root}; progress comes as $/progress and `selftune/status`, the outcome as a message
    selftune.trust    allow workspace folders to run their own code, as `selftune trust` does (argument: a folder's
                      path or URI; default every folder of the session): {"trusted": [root, ...]}
    selftune.untrust  withdraw that: {"untrusted": [root, ...]}
    selftune.adapters the adapters of each workspace folder: {"folders": [{"root", "adapters": [meta + id, current,
                      usable], "text": [one line each]}]}
    selftune.useAdapter  serve an adapter from now on (arguments: its id or "base", and optionally the folder):
                      {"using": id or null}; the swap happens at once, without a restart
    selftune.prompt   what the model is shown for a completion (arguments: a document URI and a position
                      {"line", "character"}): {"prompt": text, "tokens": n, "blocks": [{"kind", "path"}, ...]}
    selftune.flush    a barrier: answers once everything the notifications before it recorded is committed to the
                      journals: {"flushed": true, "journals": [path, ...]} (false: the writer did not catch up in 10 s)

Journal reads and the report run on a worker thread; the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path

from . import adapters
from .checking import Checking
from .errors import RequestFailed
from .host import Host
from .journal.queries import describe_stats, open_readonly, stats
from .recording import Recording
from .report import write_report
from .scheduler import Scheduler
from .status import Status
from .suggestions import Suggestions
from .trust import grant, revoke
from .workspace import CONFIG_NAME, journal_path

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

STATUS, STATS, REPORT, ADAPT = "selftune.status", "selftune.stats", "selftune.report", "selftune.adapt"
FLUSH, PROMPT = "selftune.flush", "selftune.prompt"
ADAPTERS, USE_ADAPTER = "selftune.adapters", "selftune.useAdapter"
TRUST, UNTRUST = "selftune.trust", "selftune.untrust"


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


def register(
    server: LanguageServer,
    *,
    host: Host,
    recording: Recording,
    checking: Checking,
    status: Status,
    scheduler: Scheduler,
    suggestions: Suggestions,
) -> None:
    """Register the commands on `server`; each uses only the parts it is given."""

    def roots() -> list[Path]:
        if not recording.roots:
            raise RequestFailed("selftune: no workspace folder is open, so there is no journal")
        return recording.roots

    def chosen(args: tuple) -> list[Path]:
        """The workspace folder the command's first argument names (a path or a file URI), else every folder."""
        folders = roots()
        if not (args and isinstance(args[0], str) and args[0]):
            return folders
        wanted = Path((to_fs_path(args[0]) or args[0]) if args[0].startswith("file:") else args[0]).resolve()
        if wanted not in folders:
            raise RequestFailed(f"selftune: {args[0]} is not a workspace folder of this server")
        return [wanted]

    @server.command(STATUS)
    def status_(ls, *args: object) -> dict:
        return status.snapshot()

    @server.command(STATS)
    async def journal_stats(ls, *args: object) -> dict:
        loop = asyncio.get_running_loop()
        folders = [await loop.run_in_executor(None, folder_stats, root) for root in roots()]
        return {"folders": folders}

    @server.command(ADAPTERS)
    async def list_adapters(ls, *args: object) -> dict:
        loop = asyncio.get_running_loop()
        folders = []
        for root in roots():
            found = await loop.run_in_executor(None, adapters.listed, root)
            folders.append({"root": str(root), "adapters": found, "text": [adapters.describe(a) for a in found]})
        return {"folders": folders}

    @server.command(USE_ADAPTER)
    def use_adapter(ls, *args: object) -> dict:
        name = args[0] if args else None
        if not isinstance(name, str) or not name:
            raise JsonRpcInvalidParams(f"{USE_ADAPTER}: expected an adapter id, or {adapters.BASE!r}")
        root = chosen(args[1:])[0]
        try:
            using = adapters.use(root, name)
        except ValueError as exc:
            raise RequestFailed(f"selftune: {exc}") from None
        scheduler.apply_current(force=True)
        return {"using": using}

    @server.command(PROMPT)
    def prompt(ls, *args: object) -> dict:
        uri = args[0] if args else None
        where = args[1] if len(args) > 1 else None
        if not isinstance(uri, str) or not isinstance(where, dict):
            raise JsonRpcInvalidParams(f"{PROMPT}: expected a document URI and a position {{line, character}}")
        try:
            position = types.Position(int(where["line"]), int(where["character"]))
        except (KeyError, TypeError, ValueError):
            raise JsonRpcInvalidParams(f"{PROMPT}: the position must be {{line, character}}, got {where!r}") from None
        return suggestions.prompt_at(uri, position)

    @server.command(FLUSH)
    async def flush(ls, *args: object) -> dict:
        # Every notification sent before this request has been handled: what they recorded is queued.
        done = await asyncio.get_running_loop().run_in_executor(None, recording.flush)
        return {"flushed": done, "journals": [str(j.path) for j in recording.journals.values()]}

    @server.command(REPORT)
    async def report(ls, *args: object) -> dict:
        loop = asyncio.get_running_loop()
        written, problems = [], []
        for root in roots():
            try:
                written.append(str(await loop.run_in_executor(None, write_report, root)))
            except (OSError, sqlite3.Error) as exc:
                problems.append(f"{root}: {exc}")
        if not written:
            raise RequestFailed("selftune: no report written: " + "; ".join(problems))
        return {"reports": written, "problems": problems}

    @server.command(TRUST)
    async def trust_folders(ls, *args: object) -> dict:
        folders = chosen(args)
        loop = asyncio.get_running_loop()
        for root in folders:
            await loop.run_in_executor(None, grant, root)
        if host.settings.workspace_trusted is False:
            host.say(
                "selftune: trust recorded, but the editor says it does not trust this workspace, and that "
                "wins: nothing runs until the editor trusts it too",
                types.MessageType.Warning,
            )
        else:
            host.say(
                f"selftune: trusted {', '.join(map(str, folders))}: its code may run (tests on save where "
                f"they are on, self-revision); a change to its {CONFIG_NAME} withdraws the trust"
            )
        checking.update()
        status.changed()
        return {"trusted": [str(root) for root in folders]}

    @server.command(UNTRUST)
    async def untrust_folders(ls, *args: object) -> dict:
        folders = chosen(args)
        loop = asyncio.get_running_loop()
        for root in folders:
            await loop.run_in_executor(None, revoke, root)
        host.say(f"selftune: trust withdrawn for {', '.join(map(str, folders))}: its code does not run")
        checking.update()
        status.changed()
        return {"untrusted": [str(root) for root in folders]}

    @server.command(ADAPT)
    def adapt(ls, *args: object) -> dict:
        root = chosen(args)[0]
        if not recording.journals:
            raise RequestFailed("selftune: recording is off (setting `record`), so there is nothing to adapt to")
        try:
            scheduler.launch(root)
        except RuntimeError as exc:
            raise RequestFailed(f"selftune: {exc}") from None
        return {"started": str(root)}
