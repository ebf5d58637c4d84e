"""A cold start on the real model: a long prompt's first answer comes from the short prompt, the whole prompt is
evaluated between requests, and then the answer is the one a completer that waited for the whole prompt gives."""

from __future__ import annotations

import asyncio
import sysconfig
import time
from pathlib import Path

from selftune.server.completion.completer import Completer
from selftune.server.settings import Settings

TEXT = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()  # about 5,000 tokens
CURSOR = TEXT.index("def dedent(") + len("def ")


def complete(completer: Completer, offset: int = CURSOR):
    return asyncio.run(completer.complete("file:///textwrap.py", TEXT, offset, language_id="python"))


def test_the_short_prompt_answers_first_then_the_whole_one_as_if_it_had_been_waited_for():
    waited = Completer(Settings(cold_start_tokens=0))
    try:
        expected = complete(waited)
    finally:
        waited.close()
    assert not expected.quick and expected.prefill_tokens > 1000

    completer = Completer(Settings(cold_start_tokens=512))
    try:
        first = complete(completer)
        assert first.quick and 0 < first.prefill_tokens <= 512 and first.error is None
        deadline = time.monotonic() + 300
        while completer.engine.warming is not None:
            assert time.monotonic() < deadline, "the whole prompt was not evaluated in idle time"
            time.sleep(0.05)
        again = complete(completer)
        assert not again.quick
        assert again.prefill_tokens <= 2 and again.cached_tokens >= expected.prefill_tokens - 2
        assert again.text == expected.text
    finally:
        completer.close()
