"""One fully-defaulted settings schema for the server.

Settings reach the server as `initializationOptions` and through
`workspace/configuration` (section ``selftune``), both as camelCase JSON keys.
`parse` turns such a mapping into a `Settings`, keeping the default for every
key that is missing or bad and returning one readable problem per bad key, which
the LSP layer shows with `window/showMessage`. Nothing here knows about LSP.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _meta(
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] = (),
    kind: type | None = None,
) -> dict:
    """`kind`: the value's type where the default (None: not set) does not tell it."""
    return {"doc": doc, "lo": lo, "hi": hi, "choices": choices, "kind": kind}


@dataclass(frozen=True)
class Settings:
    model: str = field(
        default="gemma3-270m",
        metadata=_meta("model manifest name (see `selftune models`) or a path to a .toml manifest"),
    )
    model_path: str = field(default="", metadata=_meta("GGUF file to serve instead of the manifest's weights"))
    max_tokens: int = field(default=64, metadata=_meta("most tokens generated for one suggestion", lo=1, hi=1024))
    temperature: float = field(
        default=0.0, metadata=_meta("sampling temperature; 0 is greedy and deterministic", lo=0.0, hi=2.0)
    )
    inline_completion: bool = field(default=True, metadata=_meta("answer textDocument/inlineCompletion"))
    completion: bool = field(
        default=True, metadata=_meta("answer textDocument/completion (for clients without inline completion)")
    )
    multiline: bool = field(
        default=True, metadata=_meta("on an empty line, suggest the rest of the block rather than one line")
    )
    line_wait_ms: int = field(
        default=60,
        metadata=_meta(
            "a one-line suggestion waits at most this long for its line to end, then offers the whole "
            "words it has (the next request gets the rest)",
            lo=0,
            hi=60000,
        ),  # fmt: skip
    )
    block_wait_ms: int = field(
        default=300,
        metadata=_meta("a multi-line suggestion waits at most this long, then offers the lines it has", lo=0, hi=60000),
    )
    context_size: int = field(
        default=0, metadata=_meta("llama.cpp context in tokens; 0 takes the manifest's", lo=0, hi=131072)
    )
    threads: int = field(
        default=0,
        metadata=_meta("CPU threads for inference; 0 uses every core it may (affinity, cgroup quota)", lo=0, hi=256),
    )
    cached_documents: int = field(
        default=4, metadata=_meta("documents whose model state is kept for fast switching", lo=0, hi=64)
    )
    cold_start_tokens: int = field(
        default=512,
        metadata=_meta(
            "when a prompt needs more than this many tokens evaluated (a file just opened, a jump), the first "
            "suggestions come from the last this-many tokens before the cursor while the whole prompt is evaluated "
            "between keys; 0: always wait for the whole prompt",
            lo=0,
            hi=131072,
        ),
    )
    context_definitions: bool = field(
        default=True,
        metadata=_meta("show the model the definitions, from other files, of the names used around the cursor"),
    )
    context_similar: bool = field(
        default=True, metadata=_meta("show the model the code of other files most like the lines before the cursor")
    )
    context_recent: bool = field(
        default=True, metadata=_meta("show the model the places you just edited in other files")
    )
    context_after_cursor: bool = field(
        default=True,
        metadata=_meta("show the model the lines after the cursor (models without fill-in-the-middle tokens)"),
    )
    record: bool = field(
        default=True,
        metadata=_meta(
            "record edits, completion outcomes and outside changes in the workspace's .selftune/journal.sqlite3"
        ),
    )
    history_depth: int = field(
        default=200,
        metadata=_meta(
            "newest git commits imported into the journal on first use (and new ones on each start); 0 imports none",
            lo=0,
            hi=100000,
        ),
    )
    test_feedback: bool = field(
        default=False,
        metadata=_meta(
            "run the project's tests on save and show failures as diagnostics (runs the project's code: off until "
            "you turn it on, and only in a trusted workspace; a trusted workspace's `.selftune/config.toml` can turn "
            "it on for that workspace)"
        ),
    )
    test_interpreter: str = field(
        default="",
        metadata=_meta(
            "Python that runs the tests (in a trusted workspace); empty: the workspace's .venv/bin/python if there "
            "is one, else the server's"
        ),
    )
    test_timeout: int = field(
        default=60,
        metadata=_meta(
            "seconds a pytest run may take before it is killed (with every process it started)", lo=1, hi=3600
        ),
    )
    workspace_trusted: bool | None = field(
        default=None,
        metadata=_meta(
            "whether the editor trusts the workspace to run its code (tests on save, self-revision): true or false; "
            "not set: only a workspace trusted with `selftune trust` runs code; the VS Code extension sets it from "
            "workspace trust",
            kind=bool,
        ),
    )
    adapt_auto: bool = field(
        default=True,
        metadata=_meta(
            "train an adapter on this project by itself when enough new examples were recorded (runs `selftune "
            "adapt` in its own, niced process)"
        ),
    )
    adapt_min_examples: int = field(
        default=50,
        metadata=_meta(
            "new examples (edit steps, revised completions, test fixes) since the last run before an automatic run",
            lo=1,
            hi=1000000,
        ),
    )
    adapt_min_hours: float = field(
        default=12.0, metadata=_meta("hours since the last adaptation run before an automatic one", lo=0.0, hi=10000.0)
    )
    adapt_idle_minutes: float = field(
        default=10.0,
        metadata=_meta(
            "minutes without typing before an automatic run starts on a machine without a GPU", lo=0.0, hi=10000.0
        ),
    )
    adapt_max_minutes: float = field(
        default=360.0,
        metadata=_meta(
            "minutes an adaptation run may take before it is stopped (the adapter in use stays)", lo=1.0, hi=100000.0
        ),
    )
    test_scope: str = field(
        default="related",
        metadata=_meta(
            "which tests run on save: the saved file's related tests, those then the rest, or the whole suite",
            choices=("related", "related-then-all", "all"),
        ),
    )

    def differs_in(self, other: Settings, names: tuple[str, ...]) -> bool:
        return any(getattr(self, n) != getattr(other, n) for n in names)


# Settings that need the model to be loaded again when they change.
MODEL_KEYS = ("model", "model_path", "context_size", "threads")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _check(f: dataclasses.Field, value: Any) -> tuple[Any, str | None]:
    """Return (value, None) if `value` is valid for field `f`, else (default, reason)."""
    kind = f.metadata["kind"] or type(f.default)
    lo, hi = f.metadata["lo"], f.metadata["hi"]
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return f.default, "is not true or false"
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return f.default, f"is not a whole number between {lo} and {hi}"
        if not lo <= value <= hi:
            return f.default, f"is outside {lo}..{hi}"
        return value, None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f.default, f"is not a number between {lo} and {hi}"
        if not lo <= value <= hi:
            return f.default, f"is outside {lo}..{hi}"
        return float(value), None
    if not isinstance(value, str):
        return f.default, "is not a string"
    choices = f.metadata["choices"]
    if choices and value not in choices:
        return f.default, f"is not one of {', '.join(choices)}"
    return value, None


def parse(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a JSON-like mapping, and one message per key that was ignored.

    Accepts the settings either flat or under a ``selftune`` key, with camelCase
    or snake_case names. Keys that are absent keep their value from `base`.
    """
    base = base or Settings()
    problems: list[str] = []
    if raw is None:
        return base, problems
    if not isinstance(raw, Mapping):
        return base, [f"selftune settings must be an object, got {type(raw).__name__}; using the defaults"]
    if isinstance(raw.get("selftune"), Mapping):
        raw = raw["selftune"]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = snake(str(key))
        f = FIELDS.get(name)
        if f is None:
            problems.append(f"unknown selftune setting '{key}' is ignored")
            continue
        if value is None:
            if f.default is None:  # "not set" is a value of its own here
                values[name] = None
            continue
        checked, reason = _check(f, value)
        if reason:
            problems.append(f"selftune setting '{camel(name)}' = {value!r} {reason}; using the default {f.default!r}")
        values[name] = checked
    return dataclasses.replace(base, **values), problems


def describe() -> list[tuple[str, Any, str]]:
    """(camelCase key, default, one-line description) for every setting, for docs and `--help`."""
    return [(camel(f.name), f.default, f.metadata["doc"]) for f in dataclasses.fields(Settings)]
