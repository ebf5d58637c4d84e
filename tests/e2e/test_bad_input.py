"""Bad input gets a clear error or message, and the server keeps serving."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pytest_lsp import LanguageClient

from .conftest import Editor


async def still_serving(client: LanguageClient) -> None:
    ed = Editor(client, client.root / "alive.py", "def square(x):\n    return ")
    assert (await ed.inline()).strip()


async def test_position_past_the_last_line(client: LanguageClient):
    ed = Editor(client, client.root / "short.py", "x = 1\n")
    with pytest.raises(JsonRpcInvalidParams, match="outside .* 1 lines"):
        await ed.inline(types.Position(line=40, character=0))
    await still_serving(client)


async def test_character_past_the_end_of_the_line_means_the_end_of_the_line(client: LanguageClient):
    ed = Editor(client, client.root / "clamp.py", "def square(x):\n    return ")
    assert await ed.inline(types.Position(1, 500)) == await ed.inline(types.Position(1, 11))


async def test_document_that_was_never_opened(client: LanguageClient):
    params = types.InlineCompletionParams(
        context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
        text_document=types.TextDocumentIdentifier((client.root / "ghost.py").as_uri()),
        position=types.Position(0, 0),
    )
    with pytest.raises(JsonRpcInvalidParams, match="not open"):
        await client.text_document_inline_completion_async(params)
    await still_serving(client)


async def test_five_megabyte_file_gets_a_bounded_prompt(client: LanguageClient):
    body = "".join(f"def handler_{i}(event):\n    return event.get('k{i}')\n\n\n" for i in range(90_000))
    assert len(body) > 5_000_000
    ed = Editor(client, client.root / "huge.py", body + "def handler_last(event):\n    return ")
    assert (await ed.inline()).strip()
    ed.type("event")
    assert (await ed.inline()) is not None
    await still_serving(client)


async def test_binary_document_is_skipped_with_a_message(client: LanguageClient):
    ed = Editor(client, client.root / "blob.py", "PK\x03\x04\x00\x00\x14\x00garbage\x00")
    assert await ed.inline() == ""
    assert any("looks binary" in m.message for m in client.messages)
    await still_serving(client)


async def test_text_that_is_not_valid_utf8_on_disk_is_served_as_the_client_sent_it(client: LanguageClient):
    # A Latin-1 file decoded by the editor with replacement characters.
    ed = Editor(client, client.root / "latin.py", "name = 'Jos\ufffd'\nprint(")
    await ed.inline()
    await still_serving(client)


def raw_request(client: LanguageClient, msg_id: str, method: str, params: object) -> asyncio.Future:
    """Send a request as raw JSON-RPC, bypassing the client's typed serialization."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    client.protocol._request_futures[msg_id] = future
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}).encode()
    client._server.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return asyncio.wrap_future(future)


async def test_malformed_request_params_get_an_error(client: LanguageClient):
    reply = raw_request(
        client, "bad-1", "textDocument/inlineCompletion", {"textDocument": {"uri": 42}, "position": "here"}
    )
    with pytest.raises(JsonRpcException) as failure:
        await asyncio.wait_for(reply, 10)
    assert failure.value.code == -32602  # InvalidParams
    assert "params.position" in failure.value.message  # names what is wrong
    await still_serving(client)


async def test_garbage_on_the_wire_does_not_stop_the_server(client: LanguageClient):
    body = b'{"jsonrpc": "2.0", "id": 99, "method": "textDocument/inlineCompletion", "params": {\xff\xfe'
    client._server.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    bad_json = b"{not json at all"
    client._server.stdin.write(b"Content-Length: %d\r\n\r\n" % len(bad_json) + bad_json)
    await still_serving(client)


async def test_unknown_accept_id_is_harmless(client: LanguageClient):
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="selftune.accept", arguments=["no-such-id"])
    )
    assert result is False
