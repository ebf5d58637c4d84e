"""Workspace trust: recorded outside the workspace, withdrawn by a change to its config, and what an untrusted
workspace's `.selftune/config.toml` can still do (only narrow what runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from selftune.adaptation.config import Config
from selftune.server import trust
from selftune.server.feedback import config as test_config
from selftune.server.settings import Settings, parse

SETTINGS = dict(enabled=False, interpreter="", timeout=60.0, scope="related")


@pytest.fixture(autouse=True)
def data_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv(trust.DATA_ENV, str(folder))
    return folder


def workspace(root: Path, config: str | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (root / ".selftune").mkdir(exist_ok=True)
        (root / ".selftune" / "config.toml").write_text(config)
    return root


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@e", *args], cwd=root, check=True, capture_output=True
    )


def test_a_grant_holds_until_the_config_changes_and_the_editor_says_first(tmp_path, data_folder):
    root = workspace(tmp_path / "ws", "[tests]\nenabled = true\n")
    assert trust.decide(root, None).reason == trust.NOT_GRANTED and not trust.decide(root, None).trusted
    trust.grant(root)
    assert (data_folder / "trusted.json").is_file() and not (root / ".selftune" / "trusted.json").exists()
    assert trust.decide(root, None).trusted and trust.decide(root, None).reason == trust.GRANTED
    assert not trust.decide(root, False).trusted  # an editor that distrusts the workspace wins over a grant
    assert trust.decide(tmp_path / "other", True).trusted  # the editor's trust needs no grant

    (root / ".selftune" / "config.toml").write_text("[tests]\nenabled = true\ninterpreter = 'x/python'\n")
    withdrawn = trust.decide(root, None)
    assert (withdrawn.trusted, withdrawn.reason) == (False, trust.CONFIG_CHANGED)
    assert "changed since you trusted it" in withdrawn.why() and f"selftune trust {root}" in withdrawn.how()
    trust.grant(root)
    assert trust.decide(root, None).trusted
    (root / ".selftune" / "config.toml").unlink()  # deleting it is a change too
    assert trust.decide(root, None).reason == trust.CONFIG_CHANGED

    assert trust.revoke(root) and not trust.revoke(root)
    assert trust.decide(root, None).reason == trust.NOT_GRANTED


def test_a_folder_without_a_config_is_trusted_until_one_appears(tmp_path):
    root = workspace(tmp_path / "ws", None)
    trust.grant(root)
    assert trust.decide(root, None).trusted
    workspace(root, "[tests]\nenabled = true\n")
    assert not trust.decide(root, None).trusted


def test_an_untrusted_workspace_runs_nothing_and_its_file_only_narrows(tmp_path):
    root = workspace(
        tmp_path / "ws", '[tests]\nenabled = true\ninterpreter = "evil/python"\ntimeout = 5\nscope = "all"\n'
    )
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text("#!/bin/sh\n")
    cfg, problems = test_config.load(root, **SETTINGS, trusted=False)
    assert not cfg.enabled and "tests.enabled" in cfg.held_back and problems == []
    assert cfg.interpreter == sys.executable  # neither the file's interpreter nor the workspace's .venv
    assert cfg.timeout == 5.0  # shorter: allowed
    assert cfg.scope == "related"  # wider than the setting's: ignored
    # The user's own setting asks for tests: still nothing runs, and the reason names the setting.
    cfg, _ = test_config.load(root, **{**SETTINGS, "enabled": True, "timeout": 2.0}, trusted=False)
    assert not cfg.enabled and cfg.held_back and cfg.timeout == 2.0  # a longer timeout cannot be set either
    # Trusted, the same file wins over the settings.
    cfg, _ = test_config.load(root, **SETTINGS, trusted=True)
    assert (cfg.enabled, cfg.interpreter, cfg.timeout, cfg.scope) == (True, str(root / "evil" / "python"), 5.0, "all")
    # A file that turns tests off holds back nothing.
    workspace(root, "[tests]\nenabled = false\n")
    cfg, _ = test_config.load(root, **{**SETTINGS, "enabled": True}, trusted=False)
    assert not cfg.enabled and cfg.held_back == ""


def test_a_config_file_git_tracks_is_ignored_until_the_workspace_is_trusted(tmp_path):
    root = workspace(tmp_path / "ws", "[tests]\nenabled = false\ntimeout = 3\n[adapt]\nepochs = 9\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "ships its config")
    cfg, problems = test_config.load(root, **SETTINGS, trusted=False)
    assert cfg.timeout == 60.0  # even narrowing keys: the whole file is ignored
    assert len(problems) == 1 and "tracked by git" in problems[0] and "ignores it" in problems[0]
    adapt, notes = Config().from_workspace(root, trusted=False)
    assert adapt.epochs == Config().epochs and "tracked by git" in notes[0]
    # Trusted, it counts like any other.
    assert test_config.load(root, **SETTINGS, trusted=True)[0].timeout == 3.0
    assert Config().from_workspace(root, trusted=True) == (Config(epochs=9.0), [])
    # Untracked again (git rm --cached): an untrusted workspace's file narrows once more.
    git(root, "rm", "-q", "--cached", ".selftune/config.toml")
    assert test_config.load(root, **SETTINGS, trusted=False)[0].timeout == 3.0


def test_the_adapt_table_cannot_turn_on_project_code_in_an_untrusted_workspace(tmp_path):
    root = workspace(tmp_path / "ws", "[adapt]\nrun_tests = true\nself_revise = true\ntest_timeout = 900\nepochs = 2\n")
    cfg, notes = Config(run_tests=False, self_revise=False).from_workspace(root, trusted=False)
    assert (cfg.run_tests, cfg.self_revise, cfg.test_timeout, cfg.epochs) == (False, False, 60.0, 2.0)
    assert len(notes) == 2 and all("not trusted" in n for n in notes)
    cfg, notes = Config(run_tests=False, self_revise=False).from_workspace(root, trusted=True)
    assert (cfg.run_tests, cfg.self_revise, cfg.test_timeout, notes) == (True, True, 900.0, [])
    workspace(root, "[adapt]\nrun_tests = false\n")  # turning it off is always allowed
    assert Config().from_workspace(root, trusted=False)[0].run_tests is False


def test_the_adaptation_run_turns_project_code_off_and_says_why(tmp_path):
    from selftune.adaptation.progress import Reporter
    from selftune.adaptation.run import within_trust

    root = workspace(tmp_path / "ws", None)
    reporter = Reporter(json_lines=False, bar=False)
    cfg, note = within_trust(root, Config(), None, reporter)
    assert (cfg.run_tests, cfg.self_revise) == (False, False)
    assert note["trusted"] is False and note["off"] == ["run_tests", "self_revise"]
    assert "not trusted" in note["why"] and "selftune trust" in note["how"]
    trust.grant(root)
    cfg, note = within_trust(root, Config(), None, reporter)
    assert (cfg.run_tests, cfg.self_revise, note["trusted"]) == (True, True, True)
    cfg, note = within_trust(root, Config(), trust.decide(root, False), reporter)
    assert not cfg.run_tests and "editor does not trust" in note["why"]


def test_the_trust_setting_is_not_set_unless_the_client_says():
    assert Settings().workspace_trusted is None
    assert parse({"workspaceTrusted": True})[0].workspace_trusted is True
    assert parse({"workspaceTrusted": None}, parse({"workspaceTrusted": True})[0])[0].workspace_trusted is None
    settings, problems = parse({"workspaceTrusted": "yes"})
    assert settings.workspace_trusted is None and "'workspaceTrusted'" in problems[0]


def test_the_trust_commands(tmp_path, data_folder):
    root = workspace(tmp_path / "ws", "[tests]\nenabled = true\n")
    run = [sys.executable, "-m", "selftune.server"]
    env = {"SELFTUNE_DATA": str(data_folder), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([*run, "trust", str(root)], capture_output=True, text=True, env=env, check=True).stdout
    assert f"trusted {root}" in shown and "enabled = true" in shown  # the user sees what they approve
    assert trust.decide(root, None).trusted
    listed = subprocess.run([*run, "trust", "--list"], capture_output=True, text=True, env=env, check=True).stdout
    assert str(root) in listed and "; trusted)" in listed
    shown = subprocess.run([*run, "untrust", str(root)], capture_output=True, text=True, env=env, check=True).stdout
    assert "trust withdrawn" in shown and not trust.decide(root, None).trusted
