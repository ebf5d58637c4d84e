"""Settings that are wrong and models that are missing: a message that says what to do, and a live server."""

from __future__ import annotations

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from .conftest import Editor, config, start, wait_for_message


@pytest_lsp.fixture(config=config())
async def client(lsp_client: LanguageClient, tmp_path):
    lsp_client.root = tmp_path
    yield
    await lsp_client.shutdown_session()


async def test_bad_setting_is_named_with_the_default_used(client: LanguageClient):
    await start(client, client.root, {"maxTokens": "plenty", "temperature": 0.0})
    message = await wait_for_message(client, "maxTokens")
    assert "using the default 64" in message
    ed = Editor(client, client.root / "a.py", "def double(x):\n    return ")
    assert (await ed.inline()).strip()


async def test_workspace_configuration_is_read_after_initialize(client: LanguageClient):
    client.set_configuration({"maxTokens": 1}, section="selftune")
    await start(client, client.root)
    ed = Editor(client, client.root / "b.py", "def double(x):\n    return ")
    # One token: the suggestion is one token long at most.
    for _ in range(50):
        text = await ed.inline()
        if len(text) <= 8:
            break
    assert 0 < len(text) <= 8
    # Settings that leave the model alone do not load it again, nor report it loaded again.
    loaded = [m.message for m in client.log_messages if m.message.endswith("model gemma3-270m loaded")]
    assert len(loaded) == 1, loaded


async def test_missing_model_file_says_what_to_set_and_keeps_serving(client: LanguageClient):
    missing = client.root / "nowhere" / "model.gguf"
    await start(client, client.root, {"modelPath": str(missing)})
    message = await wait_for_message(client, "modelPath")
    assert str(missing) in message and "does not exist" in message
    ed = Editor(client, client.root / "c.py", "x = ")
    with pytest.raises(Exception, match="modelPath"):
        await ed.inline()
    # Fixing the setting brings completions back without a restart.
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"selftune": {"modelPath": ""}})
    )
    ed2 = Editor(client, client.root / "d.py", "def double(x):\n    return ")
    assert (await ed2.inline()).strip()


async def test_corrupt_model_file_is_refused_with_a_message(client: LanguageClient):
    bad = client.root / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00\x01" * 5000)
    await start(client, client.root, {"modelPath": str(bad)})
    message = await wait_for_message(client, "could not load")
    assert str(bad) in message
    ed = Editor(client, client.root / "e.py", "x = ")
    with pytest.raises(Exception, match="could not load"):
        await ed.inline()


async def test_unknown_model_name_lists_the_known_ones(client: LanguageClient):
    await start(client, client.root, {"model": "gpt-17"})
    message = await wait_for_message(client, "gpt-17")
    assert "gemma3-270m" in message
    ed = Editor(client, client.root / "f.py", "def double(x):\n    return ")
    assert (await ed.inline()).strip()  # fell back to the default model
