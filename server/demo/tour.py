"""`selftune demo`: a newcomer's tour of the product, on the real server and the real model.

Copies the sample project (an `inventory` library with tests) to a temporary
folder, starts `selftune serve`, and as an editor would: opens a file, types a
new method into it keystroke by keystroke, and prints each suggestion that
appears at a pause with its latency; accepts one; asks for a classic
completion list; switches to the test file and back; and shows, along the
way, the journal filling up in the project's `.selftune/journal.sqlite3`: the
git history imported at start, every edit, the edit steps, the suggestions
shown, accepted and rejected, and the revision pair left by editing an
accepted suggestion. Then it turns test feedback on, breaks a function and
saves: the failing test appears as diagnostics; fixing it clears them, and the
journal holds the fix as a revision example and a preference pair. It ends
with a short adaptation on the CPU, started as an editor starts one (the
command `selftune.adapt`): its progress, the held-out numbers of the base
model and of the new adapter, the gate's decision, and, when the adapter is
promoted, the running server's suggestion at one point before and after.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

from lsprotocol import types

from ..journal.queries import stats
from ..settings import Settings
from ..workspace import CONFIG_NAME, adapters_dir, config_path, journal_path
from .replay import Doc, Pause, Session, replace, type_text, useful_chars

NEW_METHOD = """
    def restock(self, sku: str, count: int) -> None:
        if sku not in self.items:
            raise KeyError(sku)
        self.counts[sku] = self.counts.get(sku, 0) + count
"""

# The demo's recipe: small enough for a few minutes on two cores (adaptation/config.py has the defaults).
DEMO_RECIPE = """
[adapt]
epochs = 2
learning_rate = 0.0005
batch_size = 2
max_length = 192
window_chars = 600
max_train_examples = 24
max_points = 10
lintseq_per_file = 1
self_revise = false
dpo_rounds = 1
"""

GREY, BOLD, GREEN, RESET = "\033[90m", "\033[1m", "\033[32m", "\033[0m"


def run(settings: Settings) -> int:
    return asyncio.run(_tour(settings))


def _copy_sample(into: Path) -> Path:
    project = into / "inventory-project"
    with resources.as_file(resources.files("selftune.server.demo").joinpath("sample")) as sample:
        shutil.copytree(sample, project, ignore=shutil.ignore_patterns("__pycache__"))
    # A repository with a little history, so that the journal has something to import.
    git = ["git", "-c", "user.name=selftune demo", "-c", "user.email=demo@selftune.invalid"]
    try:
        subprocess.run([*git, "init", "-q"], cwd=project, check=True, capture_output=True)
        subprocess.run([*git, "add", "."], cwd=project, check=True, capture_output=True)
        subprocess.run(
            [*git, "commit", "-qm", "inventory: stock and tests"], cwd=project, check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        pass  # no git: the demo goes on without history
    return project


async def _journal(project: Path, wait: float = 0.3) -> dict | None:
    """The journal's figures, once the writer has committed what was just sent."""
    await asyncio.sleep(wait)
    path = journal_path(project)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return stats(conn, path) | {"conn": conn}
    except sqlite3.Error:
        return None


def _journal_line(s: dict | None) -> str:
    if s is None:
        return f"{GREY}   journal: nothing yet{RESET}"
    return (
        f"{GREY}   journal: {s['edits']} edits, {s['editor_steps']} edit steps, "
        f"{s['completions_shown']} suggestions shown "
        f"({s['accepted']} accepted, {s['rejected']} rejected), {s['revision_pairs']} revision pairs, "
        f"{s['test_runs']} test runs ({s['test_fixes']} fixes), "
        f"{s['history_commits']} commits of history, {(s['bytes'] + s['wal_bytes']) / 1000:.0f} kB on disk{RESET}"
    )


async def _tour(settings: Settings) -> int:
    with tempfile.TemporaryDirectory(prefix="selftune-demo-") as tmp:
        project = _copy_sample(Path(tmp))
        print(f"{BOLD}selftune demo{RESET}: the sample project is in {project}")
        print(f"starting `selftune serve` with model {settings.model} ...")
        started = time.perf_counter()
        session = await Session.start(
            project,
            {"model": settings.model, "modelPath": settings.model_path, "maxTokens": settings.max_tokens},
            log=Path(tmp) / "server.log",
        )
        try:
            return await _walk(session, project, started)
        finally:
            await session.close()


async def _walk(session: Session, project: Path, started: float) -> int:
    stock = project / "inventory" / "stock.py"
    text = stock.read_text()
    doc = session.open(stock, text)
    # The first request waits for the model to load and the file's first prefill.
    first, seconds = await session.inline(doc, len(text))
    if session.messages and first is None:
        print("\n".join(session.messages))
        return 1
    print(
        f"server up and model loaded; first suggestion after {time.perf_counter() - started:.1f} s "
        f"(cold prefill of the whole file: {seconds * 1000:.0f} ms)\n"
    )

    print(f"{BOLD}1. Typing a new method at the end of inventory/stock.py{RESET}")
    print(f"   {GREY}(a keystroke every 50 ms, pauses at word and line ends; ghost text in green){RESET}\n")

    def show(p: Pause) -> None:
        if p.kind != "line" and not (p.suggestion or "").strip():
            return
        ghost = (p.suggestion or "").split("\n")
        tail = f" {GREY}+{len(ghost) - 1} lines{RESET}" if len(ghost) > 1 and ghost[0] else ""
        first_line = ghost[0] if ghost[0] else (ghost[1].strip() if len(ghost) > 1 else "")
        arrow = "⏎ " if not ghost[0] and len(ghost) > 1 else ""
        good = (
            f" {GREEN}✓{RESET}"
            if p.suggestion and useful_chars(p.suggestion, p.expected) >= max(3, len(p.expected.strip()) // 2)
            else ""
        )
        when = f"{p.seconds * 1000:5.0f} ms" if math.isfinite(p.seconds) else "   too late"[-8:]
        print(f"   {when}  {p.line.rstrip()}{GREEN}{arrow}{first_line}{RESET}{tail}{good}")

    pauses = await type_text(session, doc, len(doc.text), NEW_METHOD, on_pause=show)
    offered = [p for p in pauses if p.suggestion]
    lat = sorted(p.seconds * 1000 if p.suggestion else math.inf for p in pauses)
    print(
        f"\n   {len(pauses)} pauses, {len(offered)} with a suggestion before the next key; pause-to-suggestion "
        f"median {statistics.median(lat):.0f} ms (a pause without one counts as never shown)"
    )
    print(_journal_line(await _journal(project, wait=2.5)))  # steps settle after a 2 s pause

    print(f"\n{BOLD}2. Accepting a suggestion{RESET}")
    session.insert(doc, len(doc.text), "\n    def ")
    result = await session.client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
            text_document=types.TextDocumentIdentifier(doc.uri),
            position=doc.position(len(doc.text)),
        )
    )
    items = result.items if isinstance(result, types.InlineCompletionList) else list(result or [])
    if items and isinstance(items[0].insert_text, str) and items[0].command is not None:
        text, command = items[0].insert_text, items[0].command
        start = len(doc.text)
        print(f"   after `    def ` the server offers: {GREEN}{text.splitlines()[0]}{RESET}")
        session.insert(doc, start, text)  # the editor inserts it, then runs the item's command
        accepted = await session.execute(command)
        print(f"   the editor runs its command {command.command} → recorded: {accepted}")
        name_end = start + max(0, text.find("("))
        session.insert(doc, name_end, "_audited")  # the user then renames what was accepted, and saves
        session.client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(doc.uri)))
        s = await _journal(project)
        row = s and s["conn"].execute("SELECT model_text, user_text FROM revisions ORDER BY time DESC").fetchone()
        if row:
            print(
                f"   renamed to `…_audited` and saved: the journal keeps the revision pair (model → user):\n"
                f"     {row[0].splitlines()[0]!r}\n   → {row[1].splitlines()[0]!r}"
            )
        print(_journal_line(s))
    else:
        print("   (no suggestion this time)")

    print(f"\n{BOLD}3. A classic completion list (for editors without inline completion){RESET}")
    line_text = "        total = "
    session.insert(doc, len(doc.text), "\n" + line_text)
    clist = await session.client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(doc.uri), doc.position(len(doc.text)))
    )
    labels = [i.label for i in (clist.items if isinstance(clist, types.CompletionList) else clist or [])]
    print(f"   {len(labels)} item(s): " + ", ".join(map(repr, labels)))

    print(f"\n{BOLD}4. Switching files{RESET}")
    tests = project / "tests" / "test_stock.py"
    tdoc = session.open(tests, tests.read_text())
    _, cold = await session.inline(tdoc, len(tdoc.text))
    back_text, back = await session.inline(doc, len(doc.text))
    print(f"   first suggestion in tests/test_stock.py: {cold * 1000:.0f} ms (new file: full prefill)")
    print(f"   back in inventory/stock.py:              {back * 1000:.0f} ms (its model state was kept)")

    await _tests_on_save(session, project, doc)

    print(f"\n{BOLD}6. What the journal holds{RESET} ({journal_path(project).relative_to(project)})")
    s = await _journal(project)
    if s is not None:
        print(_journal_line(s).replace(GREY, ""))
        last = s["conn"].execute("SELECT path, diff FROM steps WHERE origin = 'editor' ORDER BY id DESC").fetchone()
        if last:
            print(f"   the latest edit step, in {last[0]} (zero-context hunks, as LintSeq trains on):")
            for line in last[1].splitlines()[:6]:
                print(f"     {GREY}{line}{RESET}")
        print("   `selftune journal stats|export|forget --workspace <project>` read and prune it.")
    if not await _adapt(session, project, doc):
        return 1
    print(f"\n{BOLD}Done.{RESET} Point your editor at `selftune serve` (see README.md) to use it for real.")
    return 0


async def _until(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    return None


async def _tests_on_save(session: Session, project: Path, doc: Doc) -> None:
    print(
        f"\n{BOLD}5. Tests on save{RESET} (off by default: they run the project's code; the demo, like an "
        f"editor that trusts the workspace, sends workspaceTrusted and turns on the testFeedback setting)"
    )
    stock = project / "inventory" / "stock.py"
    good = (project / "inventory" / "stock.py").read_text() + NEW_METHOD
    replace(session.client, doc, 0, len(doc.text), good)  # back to a file that parses, with the method from part 1
    session.save(stock, doc)
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"selftune": {"testFeedback": True, "workspaceTrusted": True}})
    )
    right, wrong = "return self.counts.get(sku, 0)", "return self.counts[sku]"
    at = doc.text.index(right)
    replace(session.client, doc, at, at + len(right), wrong)
    print(f"   in Stock.count, `{right}` becomes `{wrong}`, and the file is saved")
    saved = session.save(stock, doc)

    def ours() -> dict[str, list[types.Diagnostic]]:
        return {
            uri: [d for d in ds if d.source == "selftune-tests"]
            for uri, ds in session.diagnostics.items()
            if any(d.source == "selftune-tests" for d in ds)
        }

    def ended() -> bool:
        return any(
            at >= saved
            and token.startswith("selftune-tests")
            and (value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)) == "end"
            for at, token, value in session.progress
        )

    first = await _until(ours)
    first_at = time.perf_counter()
    await _until(ended)
    shown = ours()
    if not first or not shown:
        print("   no diagnostics arrived" + (": " + session.messages[-1] if session.messages else ""))
        return
    print(f"   {first_at - saved:.1f} s later the editor shows (source selftune-tests):")
    for uri, diagnostics in sorted(shown.items()):
        rel = Path(uri.removeprefix("file://")).relative_to(project)
        for d in diagnostics:
            print(f"     {rel}:{d.range.start.line + 1}  {d.message.splitlines()[0]}")
    at = doc.text.index(wrong)
    replace(session.client, doc, at, at + len(wrong), right)
    fixed = session.save(stock, doc)
    if await _until(lambda: not ours()):
        print(f"   fixed and saved: the diagnostics are cleared {time.perf_counter() - fixed:.1f} s later")
    s = await _journal(project, wait=0.5)
    row = None
    for _ in range(40):
        row = (
            s
            and s["conn"]
            .execute("SELECT function, failing, passing, error, tests FROM test_fixes ORDER BY time DESC")
            .fetchone()
        )
        if row:
            break
        s = await _journal(project, wait=0.25)
    if not row:
        print("   (no fix recorded)")
        return
    function, failing, passing, error, tests = row
    print(f"   the journal turns {tests} failing, then passing, into a revision example (SEED) for {function}:")
    print(f"     error:   {error.splitlines()[0]}")
    for old, new in zip(failing.splitlines(), passing.splitlines()):
        if old != new:
            print(f"     failing: {old.strip()}\n     passing: {GREEN}{new.strip()}{RESET}")
    print(
        f"   and a preference pair (CodeLutra): prompt = the code before {function}, "
        f"chosen = the passing version, rejected = the failing one"
    )


async def _adapt(session: Session, project: Path, doc: Doc) -> bool:
    """Part 7: `selftune.adapt` as an editor runs it; False if the run failed."""
    print(f"\n{BOLD}7. Adapting to the project{RESET} (a short run on the CPU; the demo's recipe is in {CONFIG_NAME})")
    with config_path(project).open("a", encoding="utf-8") as config:
        config.write(DEMO_RECIPE)
    session.insert(doc, len(doc.text), "\n\n    def ")
    probe = len(doc.text)
    before, _ = await session.inline(doc, probe)
    session.messages.clear()
    started = time.perf_counter()
    await session.execute(types.Command("adapt", "selftune.adapt"))
    seen = len(session.progress)

    def outcome() -> str | None:
        return next((m for m in session.messages if "adapter" in m and "selftune:" in m), None)

    shown, shown_at = "", 0.0
    while (message := outcome()) is None and time.perf_counter() - started < 1800:
        for at, token, value in session.progress[seen:]:
            text = value.get("message") if isinstance(value, dict) else getattr(value, "message", None)
            if not (token.startswith("selftune-adapt") and text) or text == shown:
                continue
            if text.split(":")[0] != shown.split(":")[0] or at - shown_at > 20:  # a new phase, or now and then
                print(f"   {at - started:5.0f} s  {text}")
                shown, shown_at = text, at
        seen = len(session.progress)
        await asyncio.sleep(0.5)
    if message is None or "failed" in message:
        print(f"   {message or 'no answer from the adaptation run in 30 minutes'}")
        return False
    meta = _newest_meta(project)
    compare = meta.get("compare", {})
    b, c = compare.get("base", {}), compare.get("candidate", {})
    print(
        f"   {time.perf_counter() - started:5.0f} s  done: {meta['training']['steps']} training steps, "
        f"{meta['training']['tokens']} tokens in {meta['training']['seconds']:.0f} s on the "
        f"{meta['training']['device'].upper()}; {meta['data']['points']} held-out edit points\n"
    )
    print(f"   {'held-out':22}{'base model':>12}{'adapted':>12}")
    rows = [
        ("exact match", "exact_match", "{:.1%}"),
        ("edit similarity", "edit_similarity", "{:.3f}"),
        ("loss per token", "heldout_loss", "{:.3f}"),
        ("tests pass@1", "pass_at_1", "{:.1%}"),
    ]
    for label, key, form in rows:
        if b.get(key) is not None and c.get(key) is not None:
            print(f"   {label:22}{form.format(b[key]):>12}{form.format(c[key]):>12}")
    print(f"   llama.cpp and transformers agree on {c.get('parity_top1', 0):.1%} of next tokens with the adapter")
    print(f"   the gate: {meta['decision']} ({meta['reason']})")
    if meta["decision"] == "promoted":
        if not await _swapped_in(session, meta["id"]):
            print("   the server did not report the new adapter in use within a minute")
            return False
        after, _ = await session.inline(doc, probe)
        print("   the running server swapped it in without a restart; at a new method in stock.py it suggests")
        print(f"     before: {GREEN}{(before or '').splitlines()[0] if before else '(nothing)'}{RESET}")
        print(f"     after:  {GREEN}{(after or '').splitlines()[0] if after else '(nothing)'}{RESET}")
    else:
        print("   the server keeps the model it had; more history and edits give the next run more to learn from")
    return True


def _newest_meta(project: Path) -> dict:
    found = sorted(adapters_dir(project).glob("*/meta.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else {}


async def _swapped_in(session: Session, adapter_id: str, timeout: float = 60.0) -> bool:
    """Whether `selftune.status` names the adapter as the one in use, within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await session.execute(types.Command("status", "selftune.status"))
        adapter = status.get("adapter") if isinstance(status, dict) else getattr(status, "adapter", None)
        if adapter == adapter_id:
            return True
        await asyncio.sleep(0.5)
    return False
