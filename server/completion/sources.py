"""What goes into a prompt besides the file's window: blocks from the project, and the code after the cursor.

Between context and prompt (context → prompt → engine → postprocess), pure.
For a cursor in a file, `gather` picks, within a budget of tokens:

- the definitions of the names used around the cursor that the project
  defines elsewhere, those the file imports first (project.py);
- the windows of other files most like the lines before the cursor;
- the places the user just edited in other files;
- for a model without fill-in-the-middle tokens, the lines after the cursor.

Each is a `Block` the prompt renders ahead of the file's window, labelled with
its path. `Choice` keeps a document's blocks while the cursor stays in one
region (the top-level definition it is in) and what they would be has not
really changed, so that typing keeps reusing the model's KV cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .project import ProjectIndex, Window, identifiers

NEAR_LINES = 40  # lines before the cursor whose names count as used around it
QUERY_LINES = 12  # lines before the cursor that similar code is ranked against
AFTER_LINES = 15  # lines after the cursor a plain-prefix model is shown
REGION_SPAN = 16_000  # characters above the cursor searched first for the definition that holds it
REGION_FAR = 256_000  # searched at most: farther than this from any definition, a region is a span of this size
IMPORTS_SPAN = 32_000  # a file's first characters searched for its imports (and REGION_SPAN above the cursor)
DEFINITIONS_SHARE = 0.16  # of the prompt's token budget, at most, for each kind of block
SIMILAR_SHARE = 0.10
RECENT_SHARE = 0.08
AFTER_SHARE = 0.10

_FROM_IMPORT = re.compile(r"^\s*from\s+(\.*[\w.]*)\s+import\s+\(?([^#\n]+)", re.M)
_IMPORT = re.compile(r"^\s*import\s+([\w.]+)(?:\s+as\s+(\w+))?", re.M)
_TOP_LEVEL = re.compile(r"^(?:async\s+def|def|class)\s+\w+", re.M)


@dataclass(frozen=True)
class Sources:
    """Which sources a prompt draws on (each can be switched off in the settings)."""

    definitions: bool = True
    similar: bool = True
    recent: bool = True
    after: bool = True  # the code after the cursor, for models without fill-in-the-middle tokens

    @property
    def any(self) -> bool:
        return self.definitions or self.similar or self.recent or self.after


@dataclass(frozen=True)
class Block:
    kind: str  # definition | similar | recent | after
    path: str
    text: str


def imports(text: str, path: str, offset: int | None = None) -> dict[str, tuple[str, str | None]]:
    """Local name -> (module, the name it imports, or None for the module itself), from a file's imports.

    With `offset` (the cursor), only the file's head and the code just above the cursor are read, so that a
    keystroke in a large file does not scan all of it."""
    if offset is not None and len(text) > IMPORTS_SPAN + REGION_SPAN:
        text = text[:IMPORTS_SPAN] + "\n" + text[max(IMPORTS_SPAN, offset - REGION_SPAN) : offset]
    found: dict[str, tuple[str, str | None]] = {}
    package = path.rsplit("/", 1)[0].replace("/", ".") if "/" in path else ""
    for module, names in _FROM_IMPORT.findall(text):
        if module.startswith("."):
            up = len(module) - len(module.lstrip("."))
            base = package.split(".") if package else []
            base = base[: len(base) - (up - 1)] if up > 1 else base
            module = ".".join([*base, module.lstrip(".")]).strip(".")
        for item in names.replace(")", "").split(","):
            parts = item.split()
            if not parts or not parts[0].isidentifier():
                continue
            local = parts[2] if len(parts) == 3 and parts[1] == "as" else parts[0]
            found[local] = (module, parts[0])
    for module, alias in _IMPORT.findall(text):
        found[alias or module.split(".")[0]] = (module, None)
    return found


def region_of(text: str, offset: int) -> int:
    """Where the top-level definition holding `offset` starts (0 before the first one).

    Looked for in the `REGION_SPAN` characters above the cursor, then in `REGION_FAR`, so that a keystroke in
    a large file does not scan the whole file. Farther from any definition than that (a file of data, one
    huge function), the region is the span of `REGION_FAR` characters the cursor is in, as a negative number."""
    for span in (REGION_SPAN, REGION_FAR):
        lo = text.rfind("\n", 0, max(0, offset - span)) + 1  # a line start: `^` matches there
        found = None
        for m in _TOP_LEVEL.finditer(text, lo, offset):
            found = m
        if found is not None:
            return found.start()
        if lo == 0:
            return 0
    return -1 - offset // REGION_FAR


def last_lines(text: str, offset: int, n: int) -> str:
    """The last `n` lines before `offset` (the cursor's line so far being the last), found from the cursor back:
    `"\\n".join(text[:offset].split("\\n")[-n:])` without splitting the whole file."""
    start = offset
    for _ in range(n):
        start = text.rfind("\n", 0, start)
        if start < 0:
            return text[:offset]
    return text[start + 1 : offset]


def used_names(before: str, after: str) -> list[str]:
    """Identifiers around the cursor, the nearest first (those before it, then those after)."""
    seen: dict[str, None] = {}
    for name in reversed(identifiers(before)):
        seen.setdefault(name, None)
    for name in identifiers(after):
        seen.setdefault(name, None)
    return list(seen)


def definition_blocks(index: ProjectIndex, path: str, text: str, offset: int, names: list[str], budget: int,
                      measure: Callable[[str], int]) -> list[Block]:  # fmt: skip
    """The project's definitions of `names` (nearest first) from other files, as many as fit in `budget` tokens."""
    imported = imports(text, path, offset)
    blocks: list[Block] = []
    used = 0
    for name in names:
        candidates = [d for d in index.definitions(name) if d.path != path]
        if name in imported:
            module, original = imported[name]
            where = index.module_path(module) or index.module_path(f"{module}.{original}")
            if original is None:
                continue  # a module: its names are looked up as they are used
            candidates = [d for d in index.definitions(original) if d.path == where] or candidates[:1]
        elif len(candidates) > 2:
            continue  # a name many files define (`run`, `get`): no telling which
        for d in candidates[:1]:
            cost = measure(d.text) + 2
            if used + cost > budget:
                continue
            used += cost
            blocks.append(Block("definition", d.path, d.text))
    return blocks


def _window_block(kind: str, window: Window, budget: int, measure: Callable[[str], int]) -> Block | None:
    lines = window.text.split("\n")
    while lines and measure("\n".join(lines)) > budget:
        lines = lines[: len(lines) * 3 // 4] if len(lines) > 4 else []
    text = "\n".join(lines).strip("\n")
    return Block(kind, window.path, text) if text.strip() else None


def _following(text: str, offset: int) -> list[str]:
    """Up to `AFTER_LINES` lines after the cursor's line."""
    line_end = text.find("\n", offset)
    if line_end < 0:
        return []
    return text[line_end + 1 :].split("\n", AFTER_LINES)[:AFTER_LINES]


def stable(index: ProjectIndex | None, path: str, text: str, offset: int, *, sources: Sources, budget: int,
           plain: bool, measure: Callable[[str], int]) -> list[Block]:  # fmt: skip
    """The blocks that change only when the code around the cursor does: definitions, and the code after it."""
    blocks: list[Block] = []
    following = _following(text, offset)
    if index is not None and sources.definitions:
        near = last_lines(text, offset, NEAR_LINES)
        names = used_names(near, "\n".join(following[:5]))
        found = definition_blocks(index, path, text, offset, names, int(budget * DEFINITIONS_SHARE), measure)
        blocks += sorted(found, key=lambda b: (b.path, b.text))  # chosen by nearness, shown in a stable order
    if plain and sources.after:
        lines = list(following)
        while lines and not lines[-1].strip():
            lines.pop()
        if any(line.strip() for line in lines):
            block = _window_block("after", Window(path, 0, "\n".join(lines)), int(budget * AFTER_SHARE), measure)
            if block is not None:
                blocks.append(block)
    return blocks


def volatile(index: ProjectIndex | None, path: str, text: str, offset: int, *, sources: Sources, budget: int,
             measure: Callable[[str], int], shown: list[Block]) -> list[Block]:  # fmt: skip
    """The blocks that would change with every word typed: similar code, and recent edits elsewhere."""
    blocks: list[Block] = []
    if index is None:
        return blocks
    if sources.similar:
        query = last_lines(text, offset, QUERY_LINES)
        for window in index.similar(query, k=2, exclude=path):
            block = _window_block("similar", window, int(budget * SIMILAR_SHARE) // 2, measure)
            if block is not None and not any(block.text in b.text or b.text in block.text for b in shown + blocks):
                blocks.append(block)
    if sources.recent:
        for window in index.recent(exclude=path, k=2):
            block = _window_block("recent", window, int(budget * RECENT_SHARE) // 2, measure)
            if block is not None and not any(block.text == b.text for b in blocks):
                blocks.append(block)
    return blocks


def ordered(stable_blocks: list[Block], volatile_blocks: list[Block]) -> list[Block]:
    """Prompt order: what the cursor's code uses, similar code, recent edits, and last the code after the cursor
    (nearest the window it continues)."""
    rank = {"definition": 0, "similar": 1, "recent": 2, "after": 3}
    return sorted(stable_blocks + volatile_blocks, key=lambda b: rank[b.kind])


class Choice:
    """Each document's blocks, kept while the cursor stays in one region and the stable blocks stay the same.

    Similar code and recent edits would change with every word typed, and each change would cost the whole
    prompt's prefill; they are chosen again only when the region or the stable blocks change."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[int, list[Block], list[Block]]] = {}

    def blocks(self, key: str, region: int, fresh_stable: list[Block],
               compute_volatile: Callable[[], list[Block]]) -> list[Block]:  # fmt: skip
        kept = self._kept.get(key)
        if kept is not None and kept[0] == region and kept[1] == fresh_stable:
            return ordered(kept[1], kept[2])
        volatile_blocks = compute_volatile()
        self._kept[key] = (region, fresh_stable, volatile_blocks)
        return ordered(fresh_stable, volatile_blocks)

    def forget(self, key: str) -> None:
        self._kept.pop(key, None)
