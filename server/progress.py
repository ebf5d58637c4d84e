"""Long work shown in the editor as `$/progress` (work done progress).

`Progress` asks the client for a token (`window/workDoneProgress/create`)
without waiting for the answer: reports made before the token exists are
folded into the `begin`, and an `end` waits for it. Its methods are safe to
call from any thread. A client that does not support work done progress, or
refuses the token, simply sees nothing in its progress UI; every activity is
mirrored into the server's `Status` (`selftune/status`) either way.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from lsprotocol import types

from .background import Background

if TYPE_CHECKING:
    from pygls.progress import Progress as ProgressHandler

log = logging.getLogger(__name__)


class Activities(Protocol):
    """Where progress is mirrored (status.Status): begin, report and end of each activity."""

    def begin(self, token: str, kind: str, title: str, message: str = "", percentage: int | None = None) -> None: ...
    def report(self, token: str, message: str, percentage: int | None = None) -> None: ...
    def end(self, token: str) -> None: ...


class Progress:
    """One piece of long work. `work_done`: pygls's progress handler where the client shows progress, else None."""

    def __init__(
        self,
        work_done: ProgressHandler | None,
        loop: asyncio.AbstractEventLoop,
        activities: Activities | None,
        title: str,
        message: str = "",
        *,
        kind: str = "work",
    ):
        self.work_done = work_done
        self.loop = loop
        self.title = title
        self.enabled = work_done is not None
        self.status = activities
        self.token = f"selftune-{kind}-{uuid.uuid4().hex[:8]}"
        self.last: tuple[str, int | None] = (message, None)
        self.created: asyncio.Future | None = None
        self.ended = False
        self._background = Background()
        if self.status is not None:
            self._call(self.status.begin, self.token, kind, title, message)
        if self.enabled:
            self._call(self._create)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _create(self) -> None:
        self.created = self._background.start(self._begin())

    async def _begin(self) -> bool:
        assert self.work_done is not None
        try:
            await self.work_done.create_async(self.token)
        except Exception as exc:  # the client refused a progress token: carry on without one
            log.info("no progress shown for %s: %s", self.title, exc)
            return False
        message, percent = self.last
        self.work_done.begin(
            self.token,
            types.WorkDoneProgressBegin(
                title=self.title, message=message or None, percentage=percent, cancellable=False
            ),
        )
        return True

    def report(self, message: str, percent: int | None = None) -> None:
        if not self.ended and (message, percent) != self.last:
            self.last = (message, percent)
            if self.status is not None:
                self._call(self.status.report, self.token, message, percent)
            if self.enabled:
                self._call(self._report, message, percent)

    def _report(self, message: str, percent: int | None) -> None:
        created = self.created
        if (
            created is not None
            and created.done()
            and not created.cancelled()
            and not created.exception()
            and created.result()
            and not self.ended
        ):
            assert self.work_done is not None
            self.work_done.report(self.token, types.WorkDoneProgressReport(message=message, percentage=percent))

    def end(self, message: str) -> None:
        if not self.ended:
            self.ended = True
            if self.status is not None:
                self._call(self.status.end, self.token)
            if self.enabled:
                self._call(lambda: self._background.start(self._end(message)))

    async def _end(self, message: str) -> None:
        if self.created is not None and await self.created and self.work_done is not None:
            self.work_done.end(self.token, types.WorkDoneProgressEnd(message=message))
