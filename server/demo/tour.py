"""`selftune demo`: a newcomer's tour of the product, on the real server and the real model.

Copies the sample project (an `inventory` library with tests) to a temporary
folder, starts `selftune serve`, and as an editor would: opens a file, types a
new method into it keystroke by keystroke, and prints each suggestion that
appears at a pause with its latency; accepts one; asks for a classic
completion list; switches to the test file and back. Ends with a summary.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

from lsprotocol import types

from ..settings import Settings
from .replay import Pause, Session, type_text, useful_chars

NEW_METHOD = '''
    def restock(self, sku: str, count: int) -> None:
        if sku not in self.items:
            raise KeyError(sku)
        self.counts[sku] = self.counts.get(sku, 0) + count
'''

GREY, BOLD, GREEN, RESET = "\033[90m", "\033[1m", "\033[32m", "\033[0m"


def run(settings: Settings) -> int:
    return asyncio.run(_tour(settings))


def _copy_sample(into: Path) -> Path:
    project = into / "inventory-project"
    with resources.as_file(resources.files("selftune.server.demo").joinpath("sample")) as sample:
        shutil.copytree(sample, project, ignore=shutil.ignore_patterns("__pycache__"))
    return project


async def _tour(settings: Settings) -> int:
    with tempfile.TemporaryDirectory(prefix="selftune-demo-") as tmp:
        project = _copy_sample(Path(tmp))
        print(f"{BOLD}selftune demo{RESET}: the sample project is in {project}")
        print(f"starting `selftune serve` with model {settings.model} ...")
        started = time.perf_counter()
        session = await Session.start(project, {"model": settings.model, "modelPath": settings.model_path,
                                                "maxTokens": settings.max_tokens}, log=Path(tmp) / "server.log")
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
    print(f"server up and model loaded; first suggestion after {time.perf_counter() - started:.1f} s "
          f"(cold prefill of the whole file: {seconds * 1000:.0f} ms)\n")

    print(f"{BOLD}1. Typing a new method at the end of inventory/stock.py{RESET}")
    print(f"   {GREY}(a keystroke every 50 ms, pauses at word and line ends; ghost text in green){RESET}\n")

    def show(p: Pause) -> None:
        if p.kind != "line" and not (p.suggestion or "").strip():
            return
        ghost = (p.suggestion or "").split("\n")
        tail = f" {GREY}+{len(ghost) - 1} lines{RESET}" if len(ghost) > 1 and ghost[0] else ""
        first_line = ghost[0] if ghost[0] else (ghost[1].strip() if len(ghost) > 1 else "")
        arrow = "⏎ " if not ghost[0] and len(ghost) > 1 else ""
        good = f" {GREEN}✓{RESET}" if p.suggestion and useful_chars(p.suggestion, p.expected) >= max(3, len(p.expected.strip()) // 2) else ""
        print(f"   {p.seconds * 1000:5.0f} ms  {p.line.rstrip()}{GREEN}{arrow}{first_line}{RESET}{tail}{good}")

    pauses = await type_text(session, doc, len(doc.text), NEW_METHOD, on_pause=show)
    answered = [p for p in pauses if p.suggestion is not None]
    offered = [p for p in answered if p.suggestion]
    lat = sorted(p.seconds * 1000 for p in answered)
    print(f"\n   {len(pauses)} pauses, {len(offered)} with a suggestion; pause-to-suggestion "
          f"median {statistics.median(lat):.0f} ms, worst {lat[-1]:.0f} ms")

    print(f"\n{BOLD}2. Accepting a suggestion{RESET}")
    session.insert(doc, len(doc.text), "\n    def ")
    result = await session.client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
            text_document=types.TextDocumentIdentifier(doc.uri),
            position=doc.position(len(doc.text)),
        )
    )
    if result and result.items:
        item = result.items[0]
        print(f"   after `    def ` the server offers: {GREEN}{item.insert_text.splitlines()[0]}{RESET}")
        accepted = await session.execute(item.command)
        print(f"   the editor runs its command {item.command.command} → recorded: {accepted}")
    else:
        print("   (no suggestion this time)")

    print(f"\n{BOLD}3. A classic completion list (for editors without inline completion){RESET}")
    line_text = "        total = "
    session.insert(doc, len(doc.text), "\n" + line_text)
    clist = await session.client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(doc.uri), doc.position(len(doc.text)))
    )
    items = clist.items if clist else []
    print(f"   {len(items)} item(s): " + ", ".join(repr(i.label) for i in items))

    print(f"\n{BOLD}4. Switching files{RESET}")
    tests = project / "tests" / "test_stock.py"
    tdoc = session.open(tests, tests.read_text())
    _, cold = await session.inline(tdoc, len(tdoc.text))
    back_text, back = await session.inline(doc, len(doc.text))
    print(f"   first suggestion in tests/test_stock.py: {cold * 1000:.0f} ms (new file: full prefill)")
    print(f"   back in inventory/stock.py:              {back * 1000:.0f} ms (its model state was kept)")
    print(f"\n{BOLD}Done.{RESET} Point your editor at `selftune serve` (see README.md) to use it for real.")
    return 0
