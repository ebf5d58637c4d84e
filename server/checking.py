"""The server's side of test feedback: saves in, diagnostics and `$/progress` out.

`Checking` keeps one `feedback.TestFeedback` per workspace folder that has
test feedback enabled (the ``testFeedback`` setting, or ``[tests]`` in the
folder's `.selftune/config.toml`, read again at every save) and is trusted
(trust.py: the editor says so, or the user granted it); elsewhere the
project's code never runs, and where something asked for it the user is told
once why and how to allow it. A save that arrives before the
workspace's settings (`workspace/configuration`) waits for them. It turns the
feedback's problems into `textDocument/publishDiagnostics` with source
``selftune-tests``: the range is the line's text (from the open document, else
the file on disk), and each problem points at its pair (the test's line, the
source line) as related information.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from lsprotocol import types
from pygls.uris import from_fs_path

from .feedback import TestFeedback
from .feedback import config as test_config
from .feedback.diagnostics import SOURCE, Problem
from .host import Host
from .journal import Journal
from .journal.text import utf16_len
from .progress import Progress
from .recording import Recording
from .trust import Trust, decide
from .workspace import DIRNAME, locate

log = logging.getLogger(__name__)


def line_range(text: str | None, line: int) -> types.Range:
    """The 1-based `line` of `text` without its indentation, in UTF-16 columns (the whole line if unknown)."""
    row = max(0, line - 1)
    lines = text.splitlines() if text is not None else []
    if row >= len(lines):
        return types.Range(types.Position(row, 0), types.Position(row + 1, 0))
    content = lines[row]
    start = utf16_len(content[: len(content) - len(content.lstrip())])
    return types.Range(types.Position(row, start), types.Position(row, max(start, utf16_len(content.rstrip()))))


class Checking:
    def __init__(
        self,
        host: Host,
        *,
        recording: Recording,
        publish: Callable[[types.PublishDiagnosticsParams], None],
        open_text: Callable[[str], str | None],
    ):
        """`recording`: the workspace folders and their journals; `publish`: send diagnostics;
        `open_text`: the text of an open document by URI (None when it is not open)."""
        self.host = host
        self.recording = recording
        self.send_diagnostics = publish
        self.open_text = open_text
        self.settled = False  # the workspace's settings have arrived (or will not): trust is known
        self.feedback: dict[Path, TestFeedback] = {}
        self.early: list[str] = []  # documents saved before the settings settled, tested once they have

    def trust(self, root: Path) -> Trust:
        return decide(root, self.host.settings.workspace_trusted)

    def trusted_roots(self) -> list[str]:
        """The workspace folders that may run their own code."""
        return [str(root) for root in self.recording.roots if self.trust(root).trusted]

    def config(self, root: Path) -> test_config.TestConfig:
        s = self.host.settings
        trust = self.trust(root)
        config, problems = test_config.load(
            root,
            enabled=s.test_feedback,
            interpreter=s.test_interpreter,
            timeout=float(s.test_timeout),
            scope=s.test_scope,
            trusted=trust.trusted,
        )
        for problem in problems:
            self.host.say(f"selftune: {problem}", types.MessageType.Warning, once=True)
        if config.held_back:
            log.info("tests stay off in %s: %s", root, trust.why())
            self.host.say(
                f"selftune: tests on save stay off in {root}: {trust.why()}. {config.held_back} asks "
                f"for them, and they would run this workspace's code (pytest imports its conftest.py "
                f"and test files, with the interpreter the settings name or the workspace's "
                f".venv/bin/python). To allow it, {trust.how()}.",
                types.MessageType.Warning,
                once=True,
            )
        return config

    def enabled_roots(self) -> list[str]:
        """The workspace folders where tests run on save."""
        return [str(root) for root in self.feedback]

    def for_root(self, root: Path) -> TestFeedback:
        if root not in self.feedback:

            def publish(paths: set[str]) -> None:
                self.publish(root, paths)

            def progress(title: str, message: str) -> Progress:
                return self.host.start_progress(title, message, kind="tests")

            def say(message: str) -> None:
                self.host.say(message, types.MessageType.Warning, once=True)

            def journal() -> Journal | None:
                return self.recording.journals.get(root)

            self.feedback[root] = TestFeedback(root, publish=publish, progress=progress, say=say, journal=journal)
            self.feedback[root].warm()
        return self.feedback[root]

    def update(self) -> None:
        """Settings changed: start reading imports where tests are now on; where they are now off, stop the
        run in progress and clear the diagnostics."""
        for root in self.recording.roots:
            if self.config(root).enabled:
                self.for_root(root)
            else:
                self._turn_off(root)
        early, self.early = self.early, []
        for uri in early:
            self.saved(uri)

    def saved(self, uri: str) -> None:
        if not self.settled:
            # Until the workspace's settings arrive, it is not known whether tests may run here (trust,
            # testFeedback) nor is the journal open that keeps the run's state: a run now could not learn.
            if uri not in self.early:
                self.early.append(uri)
            return
        found = locate(uri, self.recording.roots)
        if found is None:
            return
        root, rel = found
        if rel.split("/", 1)[0] in (DIRNAME, ".git"):
            return  # selftune's own files and git's are not the project's code
        config = self.config(root)
        if not config.enabled:
            self._turn_off(root)  # the trust may have been withdrawn since the last save
            return
        self.for_root(root).saved(rel, config)

    def _turn_off(self, root: Path) -> None:
        """Stop the run in progress and clear the diagnostics where tests are off now."""
        feedback = self.feedback.pop(root, None)
        if feedback is not None:
            feedback.stop()
            self._clear(root, set(feedback.failures.by_path()))

    def publish(self, root: Path, paths: set[str]) -> None:
        feedback = self.feedback.get(root)
        if feedback is None:
            return  # test feedback was turned off while a run was ending
        by_path = feedback.failures.by_path()
        texts: dict[str, str | None] = {}  # each file read once per publish, however many problems it has
        for rel in sorted(paths):
            problems = by_path.get(rel, [])
            uri = from_fs_path(str(root / rel))
            self.send_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=[self.diagnostic(root, p, texts) for p in problems])
            )

    def _clear(self, root: Path, paths: set[str]) -> None:
        for rel in sorted(paths):
            self.send_diagnostics(types.PublishDiagnosticsParams(uri=from_fs_path(str(root / rel)), diagnostics=[]))

    def _text(self, root: Path, rel: str) -> str | None:
        text = self.open_text(from_fs_path(str(root / rel)))
        if text is not None:
            return text
        try:
            return (root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def diagnostic(self, root: Path, problem: Problem, texts: dict[str, str | None]) -> types.Diagnostic:
        def text(rel: str) -> str | None:
            if rel not in texts:
                texts[rel] = self._text(root, rel)
            return texts[rel]

        related = [
            types.DiagnosticRelatedInformation(
                location=types.Location(uri=from_fs_path(str(root / path)), range=line_range(text(path), line)),
                message=what,
            )
            for path, line, what in problem.related
        ]
        return types.Diagnostic(
            range=line_range(text(problem.path), problem.line),
            message=problem.message,
            severity=types.DiagnosticSeverity.Error,
            source=SOURCE,
            code=problem.code,
            related_information=related or None,
        )

    def stop(self) -> None:
        for feedback in self.feedback.values():
            feedback.stop()
