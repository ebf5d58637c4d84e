"""The `selftune` command.

    selftune serve [--tcp HOST:PORT]   the language server (stdio by default)
    selftune complete FILE:LINE:COL    print the suggestion the server would offer there
    selftune models [--fetch]          list model manifests and whether their weights are here
    selftune demo                      drive the real server over LSP on a sample project
    selftune journal stats|export|forget   what the workspace's journal holds; export it; delete parts of it
    selftune report [--workspace DIR]  write .selftune/reports/report.html (journal, completions, tests, adapters)
    selftune adapt [--workspace DIR]   train a LoRA adapter on the workspace; promote it if it wins on held-out data
    selftune eval [--workspace DIR]    held-out metrics of the base model and the current adapter
    selftune trust [DIR] / untrust [DIR]   allow a workspace to run its own code, or withdraw that

Nothing but the protocol goes to stdout in `serve`: logs go to stderr (and to
the editor's log once a client is connected).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

from . import cli_adapt
from .settings import Settings, describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="selftune", description="A code-completion language server that learns your project."
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SELFTUNE_LOG", "INFO"),
        help="DEBUG, INFO, WARNING (default INFO; env SELFTUNE_LOG)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the language server")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    p.set_defaults(run=_serve)

    p = sub.add_parser("complete", help="print the suggestion the server would offer at FILE:LINE:COL (1-based)")
    p.add_argument("where", metavar="FILE:LINE:COL")
    _add_setting_flags(p)
    p.add_argument("--stats", action="store_true", help="print timing and token counts to stderr")
    p.set_defaults(run=_complete)

    p = sub.add_parser("models", help="list model manifests")
    p.add_argument("--fetch", action="store_true", help="make the default model's weights ready (assemble and verify)")
    p.set_defaults(run=_models)

    p = sub.add_parser("demo", help="drive the real server over LSP on a sample project")
    _add_setting_flags(p)
    p.set_defaults(run=_demo)

    p = sub.add_parser("journal", help="the workspace's journal (.selftune/journal.sqlite3)")
    jsub = p.add_subparsers(dest="journal_command", required=True)
    j = jsub.add_parser("stats", help="events, size, acceptance and retention rates")
    j.add_argument("--json", action="store_true", help="print one JSON object")
    j.set_defaults(run=_journal_stats)
    j = jsub.add_parser("export", help="JSONL: edit sequences, revision pairs, completion events (schema in README)")
    j.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    j.add_argument("--raw-edits", action="store_true", help="also every raw edit, as the editor sent it")
    _add_time_range(j)
    j.set_defaults(run=_journal_export)
    j = jsub.add_parser("forget", help="delete what was recorded for some paths and/or a time range")
    j.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or globs relative to the workspace")
    _add_time_range(j)
    j.set_defaults(run=_journal_forget)
    for j in jsub.choices.values():
        j.add_argument("--workspace", default=".", help="the workspace folder (default: the current one)")

    p = sub.add_parser("report", help="write the workspace's report page (.selftune/reports/report.html)")
    p.add_argument("--workspace", default=".", help="the workspace folder (default: the current one)")
    p.set_defaults(run=_report)

    cli_adapt.add_commands(sub)

    args = parser.parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message at INFO
    return args.run(args) or 0


def _add_time_range(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since", type=_when, help="from this time: ISO date/time (2026-11-22T10:00) or an age (30m, 2h, 7d)"
    )
    p.add_argument("--until", type=_when, help="before this time, same forms")


def _when(text: str) -> float:
    import datetime
    import re
    import time

    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if age:
        seconds = float(age[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[age[2]]
        return time.time() - seconds
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO date/time nor an age like 30m, 2h or 7d"
        ) from None
    return moment.timestamp()


def _journal(args: argparse.Namespace):
    from .journal.queries import open_readonly
    from .workspace import journal_path

    path = journal_path(Path(args.workspace).resolve())
    try:
        return path, open_readonly(path)
    except (FileNotFoundError, sqlite3.Error) as exc:
        raise SystemExit(f"selftune journal: {exc}") from None


def _journal_stats(args: argparse.Namespace) -> int:
    import json

    from .journal.queries import describe_stats, stats

    path, conn = _journal(args)
    s = stats(conn, path)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(describe_stats(s))
    return 0


def _journal_export(args: argparse.Namespace) -> int:
    import json

    from .journal.queries import export

    _, conn = _journal(args)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    count = 0
    try:
        for record in export(conn, args.since, args.until, raw_edits=args.raw_edits):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    finally:
        if args.output:
            out.close()
    print(f"{count} records exported", file=sys.stderr)
    return 0


def _journal_forget(args: argparse.Namespace) -> int:
    from .journal.queries import forget
    from .journal.store import connect
    from .workspace import journal_path

    path = journal_path(Path(args.workspace).resolve())
    if not path.exists():
        raise SystemExit(f"selftune journal: no journal at {path}")
    try:
        deleted = forget(connect(path), args.paths or None, args.since, args.until)
    except ValueError as exc:
        raise SystemExit(f"selftune journal forget: {exc}") from None
    print("deleted: " + (", ".join(f"{n} {table}" for table, n in sorted(deleted.items())) or "nothing matched"))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    said: list[str] = []
    try:
        path = write_report(Path(args.workspace).resolve(), said)
    except (FileNotFoundError, sqlite3.Error) as exc:
        raise SystemExit(f"selftune report: {exc}") from None
    print(path)
    for line in said:  # how much of the project the adapters were trained on
        print(line)
    return 0


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=Settings.model, help="model manifest name or .toml path (default %(default)s)")
    p.add_argument("--model-path", default="", help="GGUF file to serve instead of the manifest's weights")
    p.add_argument("--max-tokens", type=int, default=Settings.max_tokens)


def _settings(args: argparse.Namespace) -> Settings:
    from .settings import parse

    settings, problems = parse({"model": args.model, "modelPath": args.model_path, "maxTokens": args.max_tokens})
    for problem in problems:
        print(problem, file=sys.stderr)
    return settings


def _serve(args: argparse.Namespace) -> int:
    from .lsp import create_server, forward_logs

    server = create_server()
    forward_logs(server)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        try:
            server.start_tcp(host or "127.0.0.1", int(port))
        finally:
            server.stop_parts()
        return 0
    # Keep the real stdout for the protocol and point fd 1 at stderr, so that
    # nothing else (native libraries included) can corrupt the stream.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that the journal is committed on the way out
    try:
        server.start_io(sys.stdin.buffer, protocol_out)
    finally:
        server.stop_parts()
    return 0


def _complete(args: argparse.Namespace) -> int:
    from .completion.completer import Completer
    from .completion.engine import Outcome
    from .models import ModelUnavailable

    path_text, line, col = _parse_where(args.where)
    path = Path(path_text)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"selftune: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    if b"\x00" in data:
        print(f"selftune: {path} looks binary (it contains NUL bytes); nothing to complete", file=sys.stderr)
        return 2
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        print(f"selftune: line {line} is outside {path}, which has {len(lines)} lines", file=sys.stderr)
        return 2
    offset = sum(len(s) + 1 for s in lines[: line - 1]) + min(max(col, 1) - 1, len(lines[line - 1]))
    try:
        # One answer and no later keys: the whole prompt, however long its prefill, not a cold start's short one.
        completer = Completer(dataclasses.replace(_settings(args), cold_start_tokens=0))
    except ModelUnavailable as exc:
        print(f"selftune: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    result: list[Outcome] = []

    def answered(outcome: Outcome) -> None:
        result.append(outcome)
        done.set()

    completer.request(str(path.resolve()), text, offset, answered, language_id=_language(path))
    done.wait()
    completer.close()
    outcome = result[0]
    if outcome.error:
        print(f"selftune: {outcome.error}", file=sys.stderr)
        return 2
    if args.stats:
        print(
            f"{outcome.seconds * 1000:.0f} ms, {outcome.prefill_tokens} prompt tokens evaluated, "
            f"{outcome.generated_tokens} generated",
            file=sys.stderr,
        )
    sys.stdout.write((outcome.text or "") + "\n")
    return 0


def _parse_where(where: str) -> tuple[str, int, int]:
    parts = where.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise SystemExit(f"selftune complete: expected FILE:LINE:COL (1-based), got {where!r}")
    return parts[0], int(parts[1]), int(parts[2])


def _language(path: Path) -> str:
    return {
        ".py": "python",
        ".md": "markdown",
        ".txt": "plaintext",
        ".js": "javascript",
        ".ts": "typescript",
        ".rs": "rust",
        ".go": "go",
        ".c": "c",
        ".h": "c",
        ".cpp": "cpp",
        ".java": "java",
    }.get(path.suffix, "")


def _models(args: argparse.Namespace) -> int:
    from .models import DEFAULT_MODEL, ModelUnavailable, available, load_manifest, resolve_weights

    if args.fetch:
        try:
            print(resolve_weights(load_manifest(DEFAULT_MODEL)))
        except ModelUnavailable as exc:
            print(f"selftune: {exc}", file=sys.stderr)
            return 2
        return 0
    for name in available():
        manifest = load_manifest(name)
        try:
            where = str(resolve_weights(manifest))
        except ModelUnavailable as exc:
            where = f"not here: {exc}"
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}: {manifest.description}\n    {where}")
    print("\nSettings (initializationOptions or workspace/configuration section 'selftune'):")
    for key, default, doc in describe():
        print(f"    {key} = {default!r}: {doc}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo.tour import run

    return run(_settings(args))
