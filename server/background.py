"""Work the event loop starts and does not wait for, kept until it ends.

A task from `asyncio.ensure_future` that nothing refers to can be garbage
collected while it runs. Each part of the server that starts such work keeps
it in a `Background`, which drops each task once it is done, and cancels
what is left when the part stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future] = set()

    def start(self, work: Awaitable[Any]) -> asyncio.Future:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel(self) -> None:
        for task in list(self._tasks):
            try:
                task.cancel()
            except RuntimeError:  # its loop is closed already (the server is on its way out)
                pass

    def __len__(self) -> int:
        return len(self._tasks)
