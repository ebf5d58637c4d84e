"""Completions from the real server and the real default model (Gemma 3 270M), through LSP."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import LanguageClient

from .conftest import Editor

AVERAGE = """def average(values):
    total = 0
    for v in values:
        total += v
    """


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


async def test_completion_continues_the_block_at_its_indentation(client: LanguageClient):
    ed = Editor(client, client.root / "stats.py", AVERAGE)
    text = await ed.inline()
    assert text.strip(), "no completion"
    lines = (ed.text.rsplit("\n", 1)[-1] + text).split("\n")
    # The first line sits at the block's indentation, every later line inside the block,
    # and the suggestion stops where the block ends (no new top-level code).
    assert indent(lines[0]) == 4 and lines[0].strip()
    assert all(indent(line) >= 4 for line in lines[1:] if line.strip())
    assert "total" in text


async def test_mid_line_completes_the_line_and_leaves_the_suffix_alone(client: LanguageClient):
    source = (
        "import os\n\n\ndef list_python_files(folder):\n"
        "    return [name for name in os.listdir(folder) if name.endswith()]\n"
    )
    ed = Editor(client, client.root / "files.py", source)
    cursor = source.index("endswith(") + len("endswith(")
    text = await ed.inline(ed.position(cursor))
    assert "\n" not in text
    assert not text.endswith(")]"), f"repeats the text after the cursor: {text!r}"


async def test_accept_command_and_classic_completion(client: LanguageClient):
    ed = Editor(client, client.root / "greet.py", "def greet(name):\n    return ")
    result = await client.text_document_inline_completion_async(ed.params())
    item = result.items[0]
    assert item.command.command == "selftune.accept"
    assert item.range == types.Range(ed.position(), ed.position())
    accepted = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=item.command.command, arguments=item.command.arguments)
    )
    assert accepted is True

    listing = await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(ed.uri), ed.position())
    )
    assert listing.is_incomplete and len(listing.items) == 1
    only = listing.items[0]
    assert only.text_edit.new_text.strip() and only.command.command == "selftune.accept"

    # Mid-word, the edit replaces the word being typed, so the client's filter matches it.
    ed.type("na")
    listing = await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(ed.uri), ed.position())
    )
    edit = listing.items[0].text_edit
    assert edit.range.start == types.Position(1, ed.position().character - 2) and edit.range.end == ed.position()
    assert edit.new_text.startswith("na")


async def test_twenty_rapid_requests_only_the_newest_gets_content(client: LanguageClient):
    ed = Editor(client, client.root / "rapid.py", "def fibonacci(n):\n    ")
    sent: list[tuple[asyncio.Future, list[float]]] = []
    begun = time.perf_counter()
    for ch in "if n < 2:\n        ret"[:20]:
        ed.type(ch)
        stamp: list[float] = []
        fut = asyncio.ensure_future(client.text_document_inline_completion_async(ed.params()))
        fut.add_done_callback(lambda _f, s=stamp: s.append(time.perf_counter() - begun))
        sent.append((fut, stamp))
    results = [await f for f, _ in sent]
    newest = results[-1]
    assert newest.items and newest.items[0].insert_text.strip()
    assert all(not r.items for r in results[:-1]), "a stale request got content"
    stale_done = max(s[0] for _, s in sent[:-1])
    assert stale_done <= sent[-1][1][0], "a stale request was answered after the newest"


async def test_cancelled_request_is_answered_as_cancelled_and_the_server_goes_on(client: LanguageClient):
    ed = Editor(client, client.root / "cancel.py", "class Queue:\n    def __init__(self):\n        ")
    msg_id = "cancel-me"
    future = client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, ed.params(), msg_id=msg_id)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wrap_future(future)
    assert (await ed.inline()).strip()


async def test_switching_files_keeps_each_files_answer(client: LanguageClient):
    a = Editor(client, client.root / "shapes.py", "import math\n\n\ndef circle_area(radius):\n    return ")
    first = await a.inline()
    b = Editor(client, client.root / "words.py", "def count_words(text):\n    return len(")
    assert (await b.inline()).strip()
    # Back in the first file: its parked model state gives the same greedy answer.
    assert await a.inline() == first


async def test_answer_after_typing_matches_a_fresh_answer(client: LanguageClient):
    """Reusing a running generation or the KV cache never changes what the model says."""
    # The same prompt in another document: without the project's blocks (which name the file, and show the
    # other one as just edited), the two prompts are the same text.
    off = {"contextDefinitions": False, "contextSimilar": False, "contextRecent": False, "contextAfterCursor": False}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"selftune": off}))
    ed = Editor(client, client.root / "reuse.py", "def is_even(n):\n    return n % ")
    await ed.inline()
    ed.type("2")
    warm = await ed.inline()
    fresh = Editor(client, client.root / "fresh.py", ed.text)
    assert await fresh.inline() == warm
    on = {key: True for key in off}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"selftune": on}))


async def test_at_its_deadline_a_line_offers_its_whole_words_and_the_next_request_the_rest(client: LanguageClient):
    """With a deadline that has always passed, the first answer is the line's first whole words; typing them, the
    next request is served from the generation that went on, and the two make the line a patient request gets."""
    off = {"contextDefinitions": False, "contextSimilar": False, "contextRecent": False, "contextAfterCursor": False}
    text = "import os\n\n\ndef list_python_files(folder):\n    return "

    def settings(wait: int) -> None:
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"selftune": {**off, "lineWaitMs": wait}})
        )

    settings(60000)
    whole = await Editor(client, client.root / "patient.py", text).inline()
    settings(0)
    hurried = Editor(client, client.root / "hurried.py", text)
    first = await hurried.inline()
    assert first and whole.startswith(first) and len(first) < len(whole), (first, whole)
    assert not (first[-1].isalnum() and whole[len(first)].isalnum())  # it ends where a word ends
    settings(60000)
    hurried.type(first)
    assert first + await hurried.inline() == whole
    settings(60000)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"selftune": {key: True for key in off}})
    )
