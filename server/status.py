"""What the server is doing, for status bars: the model, the adapter, and the state.

The state is the most important activity under way: `adapting`, then
`testing`, then `recording` (the journal is open and nothing else runs), else
`idle`; long work carries its progress (`$/progress` mirrored: title, message,
percentage). Editors get it two ways:

- the command `selftune.status` (workspace/executeCommand) returns it at any time;
- a client that sets `capabilities.experimental.selftuneStatus` receives the
  notification `selftune/status` with the same object whenever it changes
  (coalesced: at most one per `INTERVAL`, and always the newest).

Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checking import Checking
    from .completion.completer import Completer
    from .recording import Recording
    from .scheduler import Scheduler

NOTIFICATION = "selftune/status"
INTERVAL = 0.1  # seconds between two notifications at most
STATES = ("adapting", "testing", "indexing", "recording", "idle")  # most important first
KIND_STATE = {"adapt": "adapting", "tests": "testing", "index": "indexing", "history": "recording"}


@dataclass
class Activity:
    state: str
    title: str
    message: str = ""
    percentage: int | None = None
    since: float = 0.0


class Status:
    def __init__(
        self,
        *,
        completer: Callable[[], Completer | None],
        recording: Recording,
        checking: Checking,
        scheduler: Scheduler,
        wanted: Callable[[], bool],
        send: Callable[[dict[str, Any]], None],
    ):
        """`wanted`: whether the client asked for `selftune/status`; `send`: notify it."""
        self.completer = completer
        self.recording = recording
        self.checking = checking
        self.scheduler = scheduler
        self.wanted = wanted
        self.send = send
        self.activities: dict[str, Activity] = {}
        self._sent: dict[str, Any] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._last_sent = 0.0

    # --- activities (from Progress, on the event loop) ------------------------------

    def begin(self, token: str, kind: str, title: str, message: str = "", percentage: int | None = None) -> None:
        self.activities[token] = Activity(KIND_STATE.get(kind, "recording"), title, message, percentage, time.time())
        self.changed()

    def report(self, token: str, message: str, percentage: int | None = None) -> None:
        activity = self.activities.get(token)
        if activity is not None:
            activity.message, activity.percentage = message, percentage
            self.changed()

    def end(self, token: str) -> None:
        if self.activities.pop(token, None) is not None:
            self.changed()

    # --- the snapshot ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        completer = self.completer()
        model, model_state, model_error = None, "none", None
        if completer is not None:
            model = completer.manifest.name
            model_state, model_error = completer.model_state()
        recording = bool(self.recording.journals)
        activity = min(self.activities.values(), key=lambda a: (STATES.index(a.state), -a.since), default=None)
        state = activity.state if activity else "recording" if recording else "idle"
        return {
            "state": state,
            "model": model,
            "modelState": model_state,
            "modelError": model_error,
            "adapter": self.scheduler.serving,
            "recording": recording,
            "journals": [str(j.path) for j in self.recording.journals.values()],
            "testFeedback": self.checking.enabled_roots(),
            "trusted": self.checking.trusted_roots(),
            "progress": None
            if activity is None
            else {"title": activity.title, "message": activity.message, "percentage": activity.percentage},
            "activities": len(self.activities),
        }

    # --- telling the client ---------------------------------------------------------

    def changed(self) -> None:
        """Something the snapshot shows may have changed: notify, coalesced."""
        if self._pending is not None or not self.wanted():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, self._last_sent + INTERVAL - loop.time())
        self._pending = loop.call_later(delay, self._send)

    def _send(self) -> None:
        self._pending = None
        self._last_sent = asyncio.get_running_loop().time()
        snapshot = self.snapshot()
        if snapshot != self._sent:
            self._sent = snapshot
            self.send(snapshot)
