"""The README's settings table and command-line section against the code they document.

The settings table must list `settings.describe()`'s keys in the same order,
each with its default as the table shows it; the command-line section must
name every `selftune` subcommand the argparse parser has, and every option
each one takes.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from selftune.server import cli
from selftune.server.settings import describe

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    """The README's text from the `## <title>` heading to the next `## ` heading."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match[1]


def settings_rows() -> list[tuple[str, str]]:
    """(key, default cell) of each row `| `key` | default | meaning |` in the Settings section."""
    rows = []
    for line in section("Settings").splitlines():
        match = re.match(r"\|\s*`([A-Za-z]+)`\s*\|\s*(.*?)\s*\|", line)
        if match:
            rows.append((match[1], match[2]))
    return rows


def shown(default: object) -> str:
    """A default as the table writes it: `not set` for None, JSON-like values in backticks."""
    if default is None:
        return "not set"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if isinstance(default, float):
        return f"`{default:g}`"
    if default == "":
        return '`""`'
    return f"`{default}`"


def test_settings_table_lists_every_setting_in_schema_order():
    assert [key for key, _ in settings_rows()] == [key for key, _, _ in describe()]


@pytest.mark.parametrize("key,default", [(key, default) for key, default, _ in describe()])
def test_settings_table_shows_each_default(key, default):
    table = dict(settings_rows())
    assert key in table, f"README's settings table has no row for {key}"
    assert table[key] == shown(default)


def help_text(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return out.getvalue()


def subcommands(*argv: str) -> list[str]:
    """The choices of the first `{a,b,...}` group in `selftune ... --help`, or none."""
    match = re.search(r"\{([\w,-]+)\}", help_text(*argv))
    return match[1].split(",") if match else []


def commands() -> list[tuple[str, ...]]:
    found = []
    for name in subcommands():
        nested = subcommands(name)
        found += [(name, sub) for sub in nested] if nested else [(name,)]
    return found


def test_the_parser_has_subcommands():
    names = [c[0] for c in commands()]
    assert "serve" in names and ("journal", "export") in commands()


@pytest.mark.parametrize("command", [(), *commands()], ids=lambda c: " ".join(c) or "selftune")
def test_command_line_section_names_each_command_and_its_options(command):
    text = section("Command line")
    assert " ".join(("selftune", *command)) in text
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", help_text(*command))) - {"--help"}
    missing = sorted(o for o in options if o not in text)
    assert not missing, f"selftune {' '.join(command)}: {missing} not in README's command-line section"
