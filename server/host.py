"""What the server's parts may ask of the server itself.

The parts the language server owns (recording, test feedback, the
scheduler, the status, the commands) get this small protocol and the
siblings they use, passed when `lsp.SelftuneServer` builds them; none of them
sees the `LanguageServer` subclass. `SelftuneServer` is the one host; tests
give a part a host of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from lsprotocol import types

if TYPE_CHECKING:
    from .progress import Progress
    from .settings import Settings


class Host(Protocol):
    @property
    def settings(self) -> Settings:
        """The settings in force now (they change when the editor sends new ones)."""
        ...

    def say(self, message: str, kind: types.MessageType = types.MessageType.Info, *, once: bool = False) -> None:
        """Tell the user (`window/showMessage`, and the log); `once`: not again in this session."""
        ...

    def start_progress(self, title: str, message: str = "", *, kind: str = "work") -> Progress:
        """Start showing long work (`$/progress`, mirrored in `selftune/status`); safe from any thread."""
        ...
