"""Log records for the editor: `window/logMessage`, once a client is connected.

Nothing but the protocol goes to stdout; logs go to stderr (cli.py sets that
up) and, through `LogForwarder`, to the editor's log, from any thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from lsprotocol import types


class LogForwarder(logging.Handler):
    """Sends log records to the editor (from any thread) once `loop` is set, at `initialize`."""

    LEVELS = {
        logging.ERROR: types.MessageType.Error,
        logging.WARNING: types.MessageType.Warning,
        logging.INFO: types.MessageType.Info,
    }

    def __init__(self, send: Callable[[types.LogMessageParams], None]):
        super().__init__(logging.INFO)
        self.send = send
        self.loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.loop is None or self.loop.is_closed():
            return
        kind = self.LEVELS.get(record.levelno, types.MessageType.Log)
        params = types.LogMessageParams(type=kind, message=self.format(record))
        try:
            self.loop.call_soon_threadsafe(self.send, params)
        except RuntimeError:  # the loop closed meanwhile
            pass
