"""Emacs (batch) with eglot and editor-clients/emacs/selftune.el: complete, accept, save.

Runs where Emacs 28+ and eglot are installed (Debian: `apt install emacs-nox elpa-eglot`); elsewhere it
says so and is skipped. The server is the real one, with the embedded model.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SOURCE

ROOT = Path(__file__).resolve().parents[2]
DRIVE = """
(add-to-list 'load-path {plugin})
(require 'selftune)
(setq selftune-settings '(:maxTokens 24 :historyDepth 0))
(selftune-eglot-setup {server})
(find-file {file})
(python-mode)
(call-interactively #'eglot)
(let ((deadline (+ (float-time) 60)))
  (while (and (not (eglot-current-server)) (< (float-time) deadline))
    (accept-process-output nil 0.1)))
(goto-char (point-max))
(insert "        return ")
(let ((deadline (+ (float-time) 30)) (start (point)))
  (while (and (= (point) start) (< (float-time) deadline))
    (completion-at-point)
    (unless (> (point) start) (sleep-for 0.5))))
(princ (format "LINE:%s\\n" (buffer-substring (line-beginning-position) (line-end-position))))
(save-buffer)
(selftune-trust)
(princ (format "TRUSTED:%S\n" (plist-get (jsonrpc-request (eglot-current-server) :workspace/executeCommand
                                                             '(:command "selftune.status" :arguments []))
                                          :trusted)))
;; A barrier: the save and the acceptance are in the journal before Emacs goes.
(princ (format "FLUSHED:%S\n" (plist-get (jsonrpc-request (eglot-current-server) :workspace/executeCommand
                                                             '(:command "selftune.flush" :arguments []))
                                          :flushed)))
(kill-emacs 0)
"""


def emacs_with_eglot() -> str:
    emacs = shutil.which("emacs")
    if emacs is None:
        pytest.skip("Emacs is not installed (Debian: apt install emacs-nox elpa-eglot)")
    probe = subprocess.run(
        [emacs, "--batch", "--eval", "(progn (package-initialize) (require 'eglot))"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"Emacs has no eglot (Debian: apt install elpa-eglot): {probe.stderr.strip()[-200:]}")
    return emacs


def test_eglot_completes_and_the_acceptance_is_recorded(tmp_path: Path):
    emacs = emacs_with_eglot()
    project = tmp_path / "proj"
    project.mkdir()
    (project / "shapes.py").write_text(SOURCE)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    drive = tmp_path / "drive.el"

    def quote(p: Path) -> str:
        return '"' + str(p).replace("\\", "\\\\").replace('"', '\\"') + '"'

    drive.write_text(
        DRIVE.format(
            plugin=quote(ROOT / "editor-clients" / "emacs"),
            server=quote(Path(sys.executable).parent / "selftune"),
            file=quote(project / "shapes.py"),
        )
    )
    run = subprocess.run(
        [emacs, "--batch", "-l", str(drive)],
        capture_output=True,
        text=True,
        timeout=180,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    line = next((out.removeprefix("LINE:") for out in run.stdout.splitlines() if out.startswith("LINE:")), None)
    assert line is not None, run.stdout[-2000:] + run.stderr[-3000:]
    assert line.startswith("        return ") and line.strip() != "return", line
    assert (project / "shapes.py").read_text().rstrip("\n").endswith(line)
    # M-x selftune-trust reaches the server, which then counts the workspace as trusted.
    assert f'TRUSTED:["{project.resolve()}"]' in run.stdout, run.stdout[-2000:]
    assert "FLUSHED:t" in run.stdout, run.stdout[-2000:]

    conn = sqlite3.connect(f"file:{project / '.selftune' / 'journal.sqlite3'}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT c.text, e.kind, e.survived FROM completions c JOIN completion_events e "
        "ON e.completion_id = c.id ORDER BY e.id"
    ).fetchall()
    accepted = [text for text, kind, _ in rows if kind == "accepted"]
    assert accepted and line.endswith(accepted[-1].strip()), rows
    assert not [r for r in rows if r[0] == accepted[-1] and r[1] == "rejected"], rows
    assert [r[2] for r in rows if r[1] == "retention"] == [1.0], rows
