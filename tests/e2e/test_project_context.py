"""The project in the prompt, through the real server: the index built in the background, definitions from
other files, the code after the cursor, kept current from the editor, and each source switched off."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from selftune.server.models import load_manifest

from .conftest import Editor, config, git, start, until, until_async

PRICING = '''"""Prices and the codes that change them."""


def apply_voucher_code(order_total, voucher_code, *, zebra_margin=0.15):
    """Take a voucher off an order's total, never below the zebra margin."""
    rate = 0.1 if voucher_code.startswith("TEN") else 0.05
    return max(order_total * (1 - rate), order_total * zebra_margin)
'''

CART = '''"""The shopping cart."""

from shop.pricing import apply_voucher_code


def checkout(cart, voucher_code):
    order_total = sum(item.price for item in cart)
    discounted = apply_voucher_code(
    return round(discounted, 2)
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "pricing.py").write_text(PRICING)
    (root / "shop" / "cart.py").write_text(CART)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "shop")
    return root


@pytest_lsp.fixture(config=config(), scope="module")
async def client(lsp_client: LanguageClient, project: Path):
    await start(lsp_client, project, {"historyDepth": 0}, status=True, progress=True)
    yield
    await lsp_client.shutdown_session()


async def shown(client: LanguageClient, editor: Editor, offset: int) -> dict:
    position = editor.position(offset)
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="selftune.prompt", arguments=[editor.uri, {"line": position.line, "character": position.character}]
        )
    )
    return result if isinstance(result, dict) else vars(result)


def indexed(client: LanguageClient) -> bool:
    return any(rs and isinstance(rs[-1], types.WorkDoneProgressEnd) and "indexing" in getattr(rs[0], "title", "")
               for rs in client.progress_reports.values())  # fmt: skip


async def test_the_prompt_holds_the_definition_from_another_file_and_the_code_after_the_cursor(
    client: LanguageClient, project: Path
):
    await until(lambda: indexed(client), what="the project index to be built ($/progress)")
    editor = Editor(client, project / "shop" / "cart.py", CART)
    cursor = CART.index("apply_voucher_code(\n") + len("apply_voucher_code(")
    seen = await shown(client, editor, cursor)
    assert {"kind": "definition", "path": "shop/pricing.py"} in seen["blocks"]
    assert {"kind": "after", "path": "shop/cart.py"} in seen["blocks"]
    prompt = seen["prompt"]
    assert "# shop/pricing.py\ndef apply_voucher_code(order_total, voucher_code, *, zebra_margin=0.15):" in prompt
    assert '"""Take a voucher off an order\'s total, never below the zebra margin."""' in prompt
    assert "rate = 0.1" not in prompt  # the body is not shown
    assert "# shop/cart.py, after the cursor:\n    return round(discounted, 2)" in prompt
    assert prompt.endswith("# shop/cart.py\n" + CART[:cursor])
    assert 0 < seen["tokens"] < load_manifest("gemma3-270m").context_size

    # The model uses it: it completes the call with the other file's parameters.
    suggestion = await editor.inline(editor.position(cursor))
    assert "order_total" in suggestion or "voucher_code" in suggestion, suggestion


async def test_an_edit_elsewhere_reaches_the_index_and_each_source_can_be_switched_off(
    client: LanguageClient, project: Path
):
    pricing = Editor(client, project / "shop" / "pricing.py", PRICING)
    pricing.type('\n\ndef refund_parcel_fee(parcel_weight, *, courier_zone="north"):\n    return parcel_weight * 2\n')
    cart_text = CART + "\n\ndef refund(parcel):\n    fee = refund_parcel_fee(\n"
    cart = Editor(client, project / "shop" / "cart.py", cart_text)
    cursor = len(cart_text) - 1

    async def has_new_definition() -> dict | None:
        seen = await shown(client, cart, cursor)
        return seen if "def refund_parcel_fee(parcel_weight" in seen["prompt"] else None

    # The edited document is indexed again a second after the typing stops.
    seen = await until_async(has_new_definition, timeout=30, what="the definition typed in pricing.py")
    assert {"kind": "recent", "path": "shop/pricing.py"} in seen["blocks"]  # it was just edited

    # Settings take effect with the next request: every source off, the prompt is the window alone.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"selftune": {
        "historyDepth": 0, "contextDefinitions": False, "contextRecent": False, "contextSimilar": False,
        "contextAfterCursor": False}}))  # fmt: skip
    bare = await shown(client, cart, cursor)
    assert bare["blocks"] == [] and bare["prompt"] == cart_text[:cursor]


def test_the_token_counter_remembers_the_newest_counts_and_gives_the_models_own():
    from selftune.server.completion.llama import TokenCounter
    from selftune.server.models import resolve_weights

    counter = TokenCounter(resolve_weights(load_manifest("gemma3-270m"), ""))
    own = len(counter.llm.tokenize(PRICING.encode("utf-8"), add_bos=False, special=False))
    assert counter(PRICING) == own == counter(PRICING) > 10
    assert counter._count.cache_info().hits == 1  # the second count was remembered, not tokenized again
    assert counter("") == 0
    for n in range(TokenCounter.REMEMBERED):  # as many newer texts: the oldest is forgotten, and counted again
        counter(f"x{n}")
    misses = counter._count.cache_info().misses
    assert counter(PRICING) == own and counter._count.cache_info().misses == misses + 1
