"""What the journal costs: per didChange, in bytes per hour of typing, and to import git history.

    python tests/benchmarks/journal.py [--file PATH] [--lines N] [--repo GIT_DIR] [--commits N] [--json OUT]

1. didChange: two real servers in this process (`create_server()`, no model),
   one recording and one with `record: false`, are handed the same JSON-RPC
   didChange messages, alternately, for typing `--lines` lines of a real file
   (textwrap.py of the standard library by default) one character at a time.
   The time is everything the server does with one message: JSON parse,
   pygls's structuring and document update, our handler, and (recording) the
   recorder and the hand-off to the writer thread, which runs meanwhile.
2. Bytes per hour: the same typing replayed into a recorder on a simulated
   clock with the demo's keystroke schedule (50 ms between keys, pauses at word
   and line ends), with a suggestion shown at every pause and rejected, and
   steps settling at pauses. Bytes of the journal file afterwards, per
   simulated hour of continuous typing (an upper bound for a real hour).
3. History import: the newest `--commits` commits of `--repo` (a real
   project's history) imported into a fresh journal, next to `git log -p -U0`
   over the same commits written to /dev/null, the floor for reading them.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import git
from lsprotocol import types

from selftune.server.demo.replay import keystrokes
from selftune.server.documents import DocumentWorkspace
from selftune.server.journal import history
from selftune.server.journal.recorder import Recorder
from selftune.server.journal.store import Store
from selftune.server.lsp import create_server
from selftune.server.settings import Settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def typing_messages(uri: str, before: str, typed: str) -> list[bytes]:
    """didChange bodies for typing `typed` at the end of `before`, one character each."""
    line, col = before.count("\n"), len(before) - (before.rfind("\n") + 1)
    bodies = []
    for version, ch in enumerate(typed, start=2):
        bodies.append(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didChange",
                    "params": {
                        "textDocument": {"uri": uri, "version": version},
                        "contentChanges": [
                            {
                                "range": {
                                    "start": {"line": line, "character": col},
                                    "end": {"line": line, "character": col},
                                },
                                "text": ch,
                            }
                        ],
                    },
                }
            ).encode()
        )
        line, col = (line + 1, 0) if ch == "\n" else (line, col + len(ch.encode("utf-16-le")) // 2)
    return bodies


async def did_change_cost(source: str, start: int, count: int, root: Path) -> dict:
    lines = source.splitlines(keepends=True)
    before, typed = "".join(lines[:start]), "".join(lines[start : start + count])
    servers = {}
    for name, record in (("recording", True), ("not recording", False)):
        server = create_server()
        server.settings = Settings(record=record)
        server.protocol._workspace = DocumentWorkspace(root.as_uri(), types.TextDocumentSyncKind.Incremental)
        server.protocol.client_capabilities = types.ClientCapabilities()
        server.recording.roots = [root]
        server.settled = True
        server.recording.update()
        uri = (root / f"{name.replace(' ', '_')}.py").as_uri()
        opened = json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": before}},
            }
        ).encode()
        server.protocol.handle_message(json.loads(opened, object_hook=server.protocol.structure_message))
        servers[name] = (server, typing_messages(uri, before, typed), [])
    await asyncio.sleep(0.5)  # the journal has opened its file and imported what history there is
    for i in range(len(typed)):
        for server, messages, times in servers.values():
            t0 = time.perf_counter()
            server.protocol.handle_message(json.loads(messages[i], object_hook=server.protocol.structure_message))
            times.append(time.perf_counter() - t0)
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the loop run its timers, as it does between messages
    figures = {}
    for name, (server, _, times) in servers.items():
        ms = [t * 1000 for t in times]
        figures[name] = {
            "p50_ms": statistics.median(ms),
            "p99_ms": percentile(ms, 0.99),
            "max_ms": max(ms),
            "n": len(ms),
        }
        server.recording.stop()
    return figures


def bytes_per_hour(source: str, start: int, count: int, root: Path) -> dict:
    lines = source.splitlines(keepends=True)
    before, typed = "".join(lines[:start]), "".join(lines[start : start + count])
    clock = [1_000_000.0]
    store = Store(root / "journal.sqlite3")
    ids = itertools.count(1)
    rec = Recorder(store, "bench", new_id=lambda: next(ids), clock=lambda: clock[0])
    uri = "file:///bench/textwrap.py"
    rec.opened(uri, "textwrap.py", "python", 1, before)
    text, version, line, col = before, 1, before.count("\n"), len(before) - (before.rfind("\n") + 1)
    pauses = 0
    began = clock[0]
    for i, key in enumerate(keystrokes(typed)):
        version += 1
        rec.changed(uri, version, [(((line, col), (line, col)), key.char)])
        text += key.char
        line, col = (line + 1, 0) if key.char == "\n" else (line, col + 1)
        if key.pause:
            pauses += 1
            upcoming = typed[i + 1 : i + 41]
            rec.shown(
                uri,
                f"c{pauses}",
                len(text),
                line,
                col,
                upcoming or "pass",
                model="gemma3-270m",
                adapter=None,
                latency_ms=150.0,
                context_hash="0123456789abcdef",
            )
        clock[0] += key.gap
        rec.tick()
    clock[0] += 30
    rec.tick()
    rec.close()
    store.close()
    seconds = clock[0] - 30 - began
    size = sum(p.stat().st_size for p in root.glob("journal.sqlite3*"))
    return {
        "keys": len(typed),
        "pauses_with_a_suggestion": pauses,
        "simulated_minutes": seconds / 60,
        "bytes": size,
        "bytes_per_hour": size * 3600 / seconds,
        "bytes_per_key": size / len(typed),
    }


def history_import(repo_dir: Path, commits: int, root: Path) -> dict:
    repo = git.Repo(repo_dir)
    t0 = time.perf_counter()
    subprocess.run(
        ["git", "-C", str(repo_dir), "log", *history.log_args(commits, None)], stdout=subprocess.DEVNULL, check=True
    )
    floor = time.perf_counter() - t0
    store = Store(root / "history.sqlite3")
    t0 = time.perf_counter()
    done, _ = history.import_history(repo, store.put, depth=commits)
    parsed = time.perf_counter() - t0
    store.flush(600)
    total = time.perf_counter() - t0
    store.close()
    return {
        "repo": str(repo_dir),
        "commits": done,
        "git_log_seconds": floor,
        "git_log_commits_per_s": done / floor,
        "import_seconds": total,
        "import_commits_per_s": done / total,
        "read_and_parse_seconds": parsed,
        "ratio_to_git_log": total / floor,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=Path(textwrap.__file__))
    parser.add_argument("--start", type=int, default=200, help="lines of the file already there (default 200)")
    parser.add_argument("--lines", type=int, default=60, help="lines typed (default 60)")
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path(__file__).resolve().parents[2],
        help="a git repository whose history is imported (default: this one)",
    )
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    source = args.file.read_text()
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(["git", "init", "-q", str(root / "ws")], check=True)
        figures["did_change"] = await did_change_cost(source, args.start, args.lines, root / "ws")
        (root / "size").mkdir()
        figures["size"] = bytes_per_hour(source, args.start, args.lines, root / "size")
        (root / "hist").mkdir()
        figures["history"] = history_import(args.repo, args.commits, root / "hist")

    d = figures["did_change"]
    print(f"didChange handling, {d['recording']['n']} keystrokes typing {args.lines} lines of {args.file.name}:")
    print(f"  {'':14} {'p50':>8} {'p99':>8} {'max':>8}")
    for name in ("recording", "not recording"):
        f = d[name]
        print(f"  {name:14} {f['p50_ms']:7.3f}ms {f['p99_ms']:7.3f}ms {f['max_ms']:7.2f}ms")
    print(
        f"  journal's share: p50 +{d['recording']['p50_ms'] - d['not recording']['p50_ms']:.3f} ms, "
        f"p99 +{d['recording']['p99_ms'] - d['not recording']['p99_ms']:.3f} ms (target: p99 <= 0.5 ms in all)"
    )
    s = figures["size"]
    print(
        f"journal size: {s['bytes']} bytes for {s['keys']} keys and {s['pauses_with_a_suggestion']} suggestions "
        f"in {s['simulated_minutes']:.1f} simulated minutes: {s['bytes_per_hour'] / 1e6:.2f} MB per hour of typing, "
        f"{s['bytes_per_key']:.0f} bytes per key"
    )
    h = figures["history"]
    print(
        f"history import of {h['commits']} commits of {h['repo']}: {h['import_seconds']:.2f} s "
        f"({h['import_commits_per_s']:.0f} commits/s); git log -p over the same commits: {h['git_log_seconds']:.2f} s "
        f"({h['git_log_commits_per_s']:.0f} commits/s); ratio {h['ratio_to_git_log']:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
