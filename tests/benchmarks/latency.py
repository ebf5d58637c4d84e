"""Pause-to-suggestion latency: selftune vs llama-cpp-python's own server, same keystrokes, same model.

    python tests/benchmarks/latency.py [--file PATH] [--start LINE] [--lines N] [--json OUT]
                                      [--setting KEY=JSON ...] [--no-peer]

Replays typing a real Python file nobody here wrote (by default a function of
the standard library's textwrap.py) through LSP, as an editor does: keys 50 ms
apart, pauses at word ends (250 ms) and line ends (600 ms), a didChange and an
inline-completion request per key (the previous one cancelled). The region is
removed from the file first and typed back in, the rest of the file around it.

The peer is `python -m llama_cpp.server` with the same GGUF and context size,
driven the way llama.vscode drives llama-server: a streaming request once
150 ms pass without typing, abandoned when a key comes, with a window of whole
lines ending at the cursor and up to 64 new tokens.

Measured at each pause: the time from the last key to the suggestion for that
text (ours: the LSP answer; the peer: the end of its stream), and whether the
suggestion matches what the file really says next. The typist keeps its
schedule for both: a suggestion not there when the next key is due was never
seen, and counts as never shown (inf) in the medians over all pauses. Then switching files: the
first suggestion after coming back to a file opened earlier.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import json.decoder
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx

from selftune.server.completion.assemble import prompt_budget
from selftune.server.completion.completer import CHARS_PER_TOKEN, Completer
from selftune.server.cpus import usable_cpus
from selftune.server.demo.replay import Pause, Session, _expected, keystrokes, type_text, useful_chars
from selftune.server.models import load_manifest, resolve_weights
from selftune.server.settings import Settings

PEER_DEBOUNCE = 0.150
PEER_MAX_TOKENS = 64


def pick_region(path: Path, start: int | None, count: int) -> tuple[str, str, str]:
    """(text before, the lines to type, text after). As in an editor, the lines are typed
    on an empty line of their own: `before + "\n" + after` is the document at the start,
    and the region's last newline is already there."""
    lines = path.read_text().splitlines(keepends=True)
    if start is None:
        start = next(i for i, line in enumerate(lines) if line.startswith("def dedent(")) + 1
    i = start - 1
    region = "".join(lines[i : i + count])
    return "".join(lines[:i]), region[:-1], "\n" + "".join(lines[i + count :])


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summarize(name: str, pauses: list[Pause]) -> dict:
    # A pause without a suggestion before the next key counts as never shown (inf) in every figure over all pauses.
    lat = [p.seconds * 1000 if p.suggestion else math.inf for p in pauses]
    shown = [p for p in pauses if p.suggestion]
    useful = [useful_chars(p.suggestion or "", p.expected) for p in pauses]
    line_hits = [
        p
        for p in shown
        if p.suggestion.split("\n")[0].strip()
        and p.expected.split("\n")[0].strip() == p.suggestion.split("\n")[0].strip()
    ]
    out = {
        "name": name,
        "pauses": len(pauses),
        "p50_ms": statistics.median(lat),
        "p95_ms": percentile(lat, 0.95),
        "word_p50_ms": statistics.median([t for t, p in zip(lat, pauses) if p.kind == "word"] or [0]),
        "line_p50_ms": statistics.median([t for t, p in zip(lat, pauses) if p.kind == "line"] or [0]),
        "shown_p50_ms": statistics.median([t for t in lat if t < math.inf] or [math.inf]),
        "with_suggestion": len(shown) / len(pauses),
        "useful_chars_mean": statistics.mean(useful),
        "rest_of_line_exact": len(line_hits) / len(pauses),
        "no_answer": sum(p.suggestion is None for p in pauses),  # nothing at all came before the next key
    }
    return out


# --- selftune -----------------------------------------------------------------------


async def run_ours(
    root: Path, path: Path, before: str, region: str, after: str, other: Path, switches: int, settings: dict
) -> tuple[list[Pause], dict[str, list[float]]]:
    session = await Session.start(root, settings, log=root / "selftune.log")
    try:
        doc = session.open(path, before + after)
        # Model load, the project index and the cold prefill, not measured: a prompt made before the index is
        # built changes its head once the index brings blocks (a whole prefill, once per session).
        await indexed(session)
        await session.inline(doc, len(before))
        pauses = await type_text(session, doc, len(before), region, rest_of_file=after)
        return pauses, await switching(session, doc, len(before) + len(region), other, switches)
    finally:
        await session.close()


async def indexed(session: Session, timeout: float = 300) -> None:
    """Until the server's `$/progress` for indexing the project has ended."""

    def field(value: object, name: str) -> object:
        return value.get(name) if isinstance(value, dict) else getattr(value, name, None)

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        titles = {token: str(field(v, "title")) for _, token, v in session.progress if field(v, "kind") == "begin"}
        if any("indexing" in titles.get(token, "") and field(v, "kind") == "end" for _, token, v in session.progress):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the project index was not built (no end of its $/progress)")


async def switching(session: Session, doc, at: int, other: Path, switches: int) -> dict[str, list[float]]:
    """Go to a second file and back, a few times: back at the same place, and back then typing a key."""
    odoc = session.open(other, other.read_text())
    same, typed = [], []
    await session.inline(doc, at)
    for i in range(switches):
        await session.inline(odoc, len(odoc.text) // 2 + 40 * i)
        _, seconds = await session.inline(doc, at)
        same.append(seconds * 1000)
        await session.inline(odoc, len(odoc.text) // 2 + 40 * i + 20)
        session.insert(doc, at, "#")
        at += 1
        _, seconds = await session.inline(doc, at)
        typed.append(seconds * 1000)
    return {"same place": same, "after a key": typed}


# --- the peer: llama_cpp.server driven like llama.vscode --------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peer_window(text: str, offset: int, budget_chars: int) -> str:
    """Whole lines ending at the cursor, as many as fit in the budget."""
    start = text.rfind("\n", 0, offset) + 1
    while start > 0:
        prev = text.rfind("\n", 0, start - 1) + 1
        if offset - prev > budget_chars:
            break
        start = prev
    return text[start:offset]


class Peer:
    def __init__(self, model: Path, n_ctx: int, threads: int, log: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--n_ctx",
                str(n_ctx),
                "--n_threads",
                str(threads),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    async def ready(self) -> None:
        for _ in range(600):
            try:
                if (await self.http.get("/v1/models")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("llama_cpp.server exited; see its log")
            await asyncio.sleep(0.1)
        raise RuntimeError("llama_cpp.server did not start")

    async def complete(self, prompt: str) -> str | None:
        """The streamed completion, or None when the server broke the stream off."""
        body = {"prompt": prompt, "max_tokens": PEER_MAX_TOKENS, "temperature": 0.0, "stream": True}
        out = []
        try:
            async with self.http.stream("POST", "/v1/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        out.append(json.loads(line[6:])["choices"][0]["text"])
        except httpx.HTTPError:
            return None
        return "".join(out)

    async def close(self) -> None:
        await self.http.aclose()
        self.proc.terminate()
        self.proc.wait(10)


async def run_peer(
    peer: Peer, before: str, region: str, after: str, other_text: str, budget_chars: int, switches: int
) -> tuple[list[Pause], list[float]]:
    await peer.ready()
    text = before + after
    await peer.complete(peer_window(text, len(before), budget_chars))  # warm-up, not measured
    full = region + after
    offset = len(before)
    pauses: list[Pause] = []
    inflight: asyncio.Task | None = None
    next_at = time.perf_counter()
    for i, key in enumerate(keystrokes(region)):
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        text = text[:offset] + key.char + text[offset:]
        offset += 1
        pressed = time.perf_counter()
        if inflight is not None:
            inflight.cancel()  # abandoned: the stream is closed
            inflight = None
        if key.pause:
            # No key within the debounce: llama.vscode sends its request.
            await asyncio.sleep(PEER_DEBOUNCE)
            inflight = asyncio.create_task(peer.complete(peer_window(text, offset, budget_chars)))
            suggestion, seconds = None, math.inf
            try:  # until the next key is due, as for ours: a later answer was never seen
                left = max(0.0, pressed + key.gap - time.perf_counter())
                suggestion = await asyncio.wait_for(asyncio.shield(inflight), left)
                seconds, inflight = time.perf_counter() - pressed, None
            except TimeoutError:
                pass
            line = text[text.rfind("\n", 0, offset) + 1 : offset]
            pauses.append(Pause(key.pause, line, suggestion, seconds, _expected(full, i + 1, key.pause)))
        next_at = max(pressed + key.gap, time.perf_counter())
    if inflight is not None:
        inflight.cancel()
    same, typed = [], []
    await peer.complete(peer_window(text, offset, budget_chars))
    for i in range(switches):
        await peer.complete(peer_window(other_text, len(other_text) // 2 + 40 * i, budget_chars))
        start = time.perf_counter()
        await peer.complete(peer_window(text, offset, budget_chars))
        same.append((time.perf_counter() - start) * 1000)
        await peer.complete(peer_window(other_text, len(other_text) // 2 + 40 * i + 20, budget_chars))
        text = text[:offset] + "#" + text[offset:]
        offset += 1
        start = time.perf_counter()
        await peer.complete(peer_window(text, offset, budget_chars))
        typed.append((time.perf_counter() - start) * 1000)
    return pauses, {"same place": same, "after a key": typed}


def prefix_reuse(text: str) -> dict:
    """Cold prefill of a full window, then the same prompt plus one character (max 1 new token each)."""
    completer = Completer(Settings(max_tokens=1))

    def once(prompt: str):
        done, box = threading.Event(), []
        completer.request("file:///reuse.py", prompt, len(prompt), lambda o: (box.append(o), done.set()))
        done.wait()
        return box[0]

    completer.engine.loaded.wait()
    cut = text.rfind(" ", 0, len(text) - 200)
    cold = once(text[:cut])
    # A character the model did not predict, so that the answer cannot come from the
    # generation already made: only the KV cache of the shared prefix helps.
    warm = once(text[:cut] + "Z")
    completer.close()
    return {
        "tokens": cold.prefill_tokens,
        "cold_ms": cold.seconds * 1000,
        "warm_ms": warm.seconds * 1000,
        "warm_prefill": warm.prefill_tokens,
    }


# --- report -----------------------------------------------------------------------


def report(ours: dict, peer: dict | None, back_ours: dict[str, list[float]],
           back_peer: dict[str, list[float]] | None) -> None:  # fmt: skip
    """The table, selftune beside the peer (or alone, with `peer` None)."""
    if peer is None or back_peer is None:
        peer = {k: math.nan for k in ours}
        back_peer = {how: [math.nan] for how in back_ours}
    rows = [
        ("pause→suggestion p50 (ms)", "p50_ms", "{:.0f}"),
        ("pause→suggestion p95 (ms)", "p95_ms", "{:.0f}"),
        ("  at word ends, p50 (ms)", "word_p50_ms", "{:.0f}"),
        ("  at line ends, p50 (ms)", "line_p50_ms", "{:.0f}"),
        ("  the shown ones only, p50 (ms)", "shown_p50_ms", "{:.0f}"),
        ("pauses with a suggestion in time", "with_suggestion", "{:.0%}"),
        ("useful chars per pause (mean)", "useful_chars_mean", "{:.1f}"),
        ("rest of line exactly right", "rest_of_line_exact", "{:.0%}"),
        ("pauses with no answer in time", "no_answer", "{}"),
    ]
    print(f"\n{'':34}{'selftune':>12}{'peer':>12}{'ours/peer':>12}")
    for label, key, fmt in rows:
        both = key.endswith("_ms") and 0 < peer[key] < math.inf and ours[key] < math.inf
        ratio = ours[key] / peer[key] if both else None
        print(
            f"{label:34}{fmt.format(ours[key]):>12}{fmt.format(peer[key]):>12}{(f'{ratio:.2f}' if ratio else ''):>12}"
        )
    for how in back_ours:
        bo, bp = statistics.median(back_ours[how]), statistics.median(back_peer[how])
        print(f"{'back to a recent file, ' + how + ', p50 (ms)':46}{bo:>8.0f}{bp:>12.0f}{bo / bp:>12.2f}")
        print(
            f"{'    every try (ms)':34}{' '.join(f'{v:.0f}' for v in back_ours[how])}  |  "
            f"{' '.join(f'{v:.0f}' for v in back_peer[how])}"
        )
    print("\n(over all pauses; a pause with no suggestion before the next key counts as never shown: inf)")
    print("targets: ≥ 90 % of pauses in time; p50 ≤ 100 ms; ours/peer ≤ 0.2 at p50 and ≤ 0.5 at p95;")
    print("         back to a recent file ≤ 150 ms")


def write_json(out: Path | None, ours: dict, theirs: dict | None, back_ours: dict, back_peer: dict | None,
               ours_pauses: list[Pause], peer_pauses: list[Pause]) -> None:  # fmt: skip
    """The figures and every pause (what each saw, when), for `--json`."""
    if out is not None:
        pauses = {"selftune": [p.__dict__ for p in ours_pauses], "peer": [p.__dict__ for p in peer_pauses]}
        figures = {"selftune": ours, "peer": theirs, "switch_back_ms": {"selftune": back_ours, "peer": back_peer}}
        out.write_text(json.dumps(figures | {"pauses": pauses}, indent=1))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=Path(textwrap.__file__))
    parser.add_argument("--start", type=int, help="first line to type (1-based; default: def dedent)")
    parser.add_argument("--lines", type=int, default=30)
    parser.add_argument(
        "--other", type=Path, default=Path(json.decoder.__file__), help="the file switched to and back from"
    )
    parser.add_argument("--switches", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=JSON",
                        help="a server setting for selftune, e.g. lineWaitMs=150")  # fmt: skip
    parser.add_argument("--no-peer", action="store_true", help="selftune alone (to compare its settings)")
    args = parser.parse_args()
    server = {key: json.loads(value) for key, _, value in (s.partition("=") for s in args.setting)}

    settings = Settings()
    manifest = load_manifest(settings.model)
    model = resolve_weights(manifest)
    n_ctx = manifest.context_size
    budget_chars = int(prompt_budget(n_ctx, settings.max_tokens) * CHARS_PER_TOKEN)
    before, region, after = pick_region(args.file, args.start, args.lines)
    print(
        f"typing {len(region)} characters ({args.lines} lines) of {args.file} into the rest of the file; "
        f"model {manifest.name}, context {n_ctx}, {usable_cpus()} CPU threads"
    )

    with tempfile.TemporaryDirectory(prefix="selftune-bench-") as tmp:
        root = Path(tmp)
        path = root / args.file.name
        other = root / ("other_" + args.other.name)
        other.write_text(args.other.read_text())
        t = time.perf_counter()
        ours_pauses, back_ours = await run_ours(root, path, before, region, after, other, args.switches, server)
        ours = summarize("selftune", ours_pauses)
        print(
            f"selftune: {len(ours_pauses)} pauses in {time.perf_counter() - t:.0f} s; "
            f"p50 {ours['p50_ms']:.0f} ms, p95 {ours['p95_ms']:.0f} ms (the peer takes much longer)",
            flush=True,
        )
        if args.no_peer:
            report(ours, None, back_ours, None)
            write_json(args.json, ours, None, back_ours, None, ours_pauses, [])
            return 0
        peer = Peer(model, n_ctx, usable_cpus(), root / "peer.log")
        try:
            t = time.perf_counter()
            peer_pauses, back_peer = await run_peer(
                peer, before, region, after, other.read_text(), budget_chars, args.switches
            )
            print(f"peer: {len(peer_pauses)} pauses in {time.perf_counter() - t:.0f} s")
        finally:
            await peer.close()

    theirs = summarize("llama_cpp.server", peer_pauses)
    report(ours, theirs, back_ours, back_peer)
    reuse = prefix_reuse(before)
    print(
        f"\nKV-cache reuse, in process: a {reuse['tokens']}-token prompt costs {reuse['cold_ms']:.0f} ms cold; "
        f"one more character costs {reuse['warm_ms']:.0f} ms to the next token "
        f"({reuse['warm_prefill']} tokens evaluated)"
    )
    write_json(args.json, ours, theirs, back_ours, back_peer, ours_pauses, peer_pauses)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
