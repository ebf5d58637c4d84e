"""The project index: what the rest of the project says about the code at the cursor.

Part of a completion's context (context → prompt → engine → postprocess): the
prompt holds, ahead of the file's window, what this index finds for the
cursor (sources.py picks and renders it). Pure data structures, fed file by
file (`set_file`); the server builds one per workspace folder in the
background and keeps it current (server/indexing.py), the benchmark and the
trainer build one from a repository at a commit. It knows nothing of LSP.

- **Definitions**: the functions and classes (with their methods) each
  Python file defines, from `ast`: the signature and the first line of the
  docstring, by name; a file's imports map its names to the project's modules.
- **Similar code**: windows of `WINDOW_LINES` lines (every `WINDOW_STRIDE`),
  ranked against a query by BM25 over identifier tokens, as RepoCoder ranks
  windows by Jaccard similarity; BM25 weighs a rare name above `self`.
- **Recent edits**: where the user last changed each file (`edited`), newest
  first.

Bounded: files over `MAX_FILE_CHARS` are skipped, and at most `MAX_FILES`
files are held. Safe to update from one thread while others read it.
"""

from __future__ import annotations

import ast
import keyword
import math
import re
import threading
import time
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

WINDOW_LINES = 20
WINDOW_STRIDE = 10
MAX_FILES = 5000
MAX_FILE_CHARS = 400_000
MAX_METHODS = 12  # method signatures shown with a class
RECENT_KEPT = 16  # files whose last edit is remembered
BM25_K1, BM25_B = 1.2, 0.75
# Files indexed for similar code (definitions come from Python files only).
SOURCE_SUFFIXES = frozenset({
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".mjs", ".go", ".rs", ".java", ".kt", ".c", ".h", ".cc", ".cpp",
    ".hpp", ".cs", ".rb", ".php", ".swift", ".scala", ".lua", ".sh", ".sql", ".toml", ".cfg", ".ini", ".yaml", ".yml",
})  # fmt: skip

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names too common to say anything about where code belongs.
COMMON = frozenset(keyword.kwlist) | {
    "self", "cls", "None", "True", "False", "str", "int", "float", "bool", "dict", "list", "set", "tuple", "len",
    "print", "range", "isinstance", "return", "object", "Any", "Optional", "append", "get", "args", "kwargs",
    "super", "__init__", "type", "x", "i", "a", "b", "e", "f", "k", "v", "n", "s", "p", "t",
}  # fmt: skip


def identifiers(text: str) -> list[str]:
    """The identifier tokens of `text` that can tell code apart (common names and keywords left out)."""
    return [t for t in IDENTIFIER.findall(text) if t not in COMMON]


@dataclass(frozen=True)
class Definition:
    name: str  # as code refers to it: `parse`, `Config`
    qualname: str  # `Reader.parse` for a method
    path: str
    line: int  # 0-based line of its `def` / `class`
    text: str  # what a prompt shows: the signature, the first docstring line, a class's method signatures


@dataclass(frozen=True)
class Window:
    path: str
    start: int  # 0-based first line
    text: str


@dataclass
class _File:
    text: str
    definitions: list[Definition] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)  # ids in the index's window table


def module_names(path: str) -> list[str]:
    """The dotted module names a Python file can be imported as (`src/pkg/mod.py`: pkg.mod, src.pkg.mod, mod)."""
    p = PurePosixPath(path)
    if p.suffix != ".py":
        return []
    parts = list(p.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return [".".join(parts[i:]) for i in range(len(parts)) if parts[i:]]


def _signature(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
    """The header of `node` as written (decorators and comments left out), up to its body."""
    first, body = node.lineno - 1, node.body[0]
    if body.lineno - 1 == first:  # `def f(): return 1`: the header ends where the body starts (a byte offset)
        return lines[first].encode()[: body.col_offset].decode(errors="ignore").rstrip()
    header = lines[first : body.lineno - 1]
    return "\n".join(line.rstrip() for line in header if line.strip() and not line.strip().startswith("#"))


def _doc_line(node: ast.AST, indent: str) -> str:
    doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
    if not doc:
        return ""
    first = doc.strip().splitlines()[0].strip()
    return f'{indent}"""{first}"""' if first else ""


def python_definitions(path: str, text: str) -> list[Definition]:
    """The module-level functions and classes of a Python file, and the methods of its classes."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    lines = text.splitlines()
    found: list[Definition] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            parts = [_signature(lines, node), _doc_line(node, "    "), "    ..."]
            found.append(Definition(node.name, node.name, path, node.lineno - 1, "\n".join(p for p in parts if p)))
        elif isinstance(node, ast.ClassDef):
            methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
            shown = [m for m in methods if not m.name.startswith("_") or m.name == "__init__"][:MAX_METHODS]
            parts = [_signature(lines, node), _doc_line(node, "    ")]
            for m in shown:
                parts.append(_signature(lines, m) + " ...")
            found.append(Definition(node.name, node.name, path, node.lineno - 1, "\n".join(p for p in parts if p)))
            head = _signature(lines, node)
            for m in methods:  # shown inside its class, so that the model sees whose method it is
                body = [
                    head,
                    _signature(lines, m),
                    _doc_line(m, " " * (m.col_offset + 4)),
                    " " * (m.col_offset + 4) + "...",
                ]
                found.append(Definition(m.name, f"{node.name}.{m.name}", path, m.lineno - 1,
                                        "\n".join(p for p in body if p)))  # fmt: skip
    return found


class ProjectIndex:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # the server updates it on a thread of its own while completions read it
        self.files: OrderedDict[str, _File] = OrderedDict()
        self.version = 0  # changes whenever any file does
        self._by_name: dict[str, list[Definition]] = defaultdict(list)
        self._modules: dict[str, str] = {}  # dotted module name -> path
        # Windows and their BM25 postings: token -> {window id: count in that window}.
        self._windows: dict[int, Window] = {}
        self._lengths: dict[int, int] = {}
        self._postings: dict[str, dict[int, int]] = defaultdict(dict)
        self._total_length = 0
        self._next_window = 0
        self._recent: OrderedDict[str, tuple[int, int, float]] = OrderedDict()  # path -> (first, last line, time)

    # --- feeding it ------------------------------------------------------------------

    def set_file(self, path: str, text: str) -> bool:
        """Index `text` as the content of `path` (replacing what was there); False when it is not indexed.

        The parsing happens before the lock is taken: readers wait only for the tables to change."""
        with self.lock:
            old = self.files.get(path)
            if old is not None and old.text == text:
                return True
        if len(text) > MAX_FILE_CHARS or "\x00" in text:
            self.remove_file(path)
            return False
        definitions = python_definitions(path, text) if path.endswith(".py") else []
        lines = text.split("\n")
        windows = []
        for start in range(0, max(1, len(lines) - WINDOW_LINES + WINDOW_STRIDE), WINDOW_STRIDE):
            chunk = "\n".join(lines[start : start + WINDOW_LINES])
            tokens = Counter(identifiers(chunk))
            if tokens:
                windows.append((Window(path, start, chunk), tokens))
        with self.lock:
            self._remove(path)
            while len(self.files) >= MAX_FILES:
                self._remove(next(iter(self.files)))
            entry = _File(text, definitions)
            for d in definitions:
                self._by_name[d.name].append(d)
            if path.endswith(".py"):
                for name in module_names(path):
                    self._modules.setdefault(name, path)
            for window, tokens in windows:
                wid = self._next_window
                self._next_window += 1
                self._windows[wid] = window
                self._lengths[wid] = sum(tokens.values())
                self._total_length += self._lengths[wid]
                for token, count in tokens.items():
                    self._postings[token][wid] = count
                entry.windows.append(wid)
            self.files[path] = entry
            self.version += 1
        return True

    def remove_file(self, path: str) -> None:
        with self.lock:
            self._remove(path)

    def _remove(self, path: str) -> None:
        entry = self.files.pop(path, None)
        if entry is None:
            return
        for d in entry.definitions:
            same = self._by_name.get(d.name)
            if same is not None:
                same[:] = [x for x in same if x.path != path]
                if not same:
                    del self._by_name[d.name]
        for name in module_names(path):
            if self._modules.get(name) == path:
                del self._modules[name]
        for wid in entry.windows:
            window = self._windows.pop(wid)
            self._total_length -= self._lengths.pop(wid)
            for token in set(identifiers(window.text)):
                postings = self._postings.get(token)
                if postings is not None:
                    postings.pop(wid, None)
                    if not postings:
                        del self._postings[token]
        self.version += 1

    def edited(self, path: str, first: int, last: int, at: float | None = None) -> None:
        """The user changed lines `first`..`last` (0-based, inclusive) of `path`: it is a recent edit."""
        at = time.time() if at is None else at
        with self.lock:
            previous = self._recent.pop(path, None)
            if previous is not None and previous[0] - WINDOW_LINES <= first <= previous[1] + WINDOW_LINES:
                first, last = min(first, previous[0]), max(last, previous[1])
            self._recent[path] = (first, last, at)
            while len(self._recent) > RECENT_KEPT:
                self._recent.popitem(last=False)

    # --- asking it ---------------------------------------------------------------------

    def module_path(self, module: str) -> str | None:
        with self.lock:
            return self._modules.get(module)

    def definitions(self, name: str) -> list[Definition]:
        with self.lock:
            return list(self._by_name.get(name, ()))

    def similar(self, query: str, *, k: int = 3, exclude: str | None = None, min_score: float = 1.0) -> list[Window]:
        """The `k` windows most like `query` (BM25), from files other than `exclude`, not overlapping each other."""
        terms = Counter(identifiers(query))
        with self.lock:
            return self._similar(terms, k, exclude, min_score)

    def _similar(self, terms: Counter, k: int, exclude: str | None, min_score: float) -> list[Window]:
        if not terms or not self._windows:
            return []
        n = len(self._windows)
        average = self._total_length / n
        scores: dict[int, float] = defaultdict(float)
        for term in terms:
            postings = self._postings.get(term)
            if not postings:
                continue
            idf = math.log(1 + (n - len(postings) + 0.5) / (len(postings) + 0.5))
            for wid, count in postings.items():
                norm = count + BM25_K1 * (1 - BM25_B + BM25_B * self._lengths[wid] / average)
                scores[wid] += idf * count * (BM25_K1 + 1) / norm
        chosen: list[Window] = []
        for wid, score in sorted(scores.items(), key=lambda item: -item[1]):
            if score < min_score or len(chosen) >= k:
                break
            window = self._windows[wid]
            if window.path == exclude:
                continue
            if any(c.path == window.path and abs(c.start - window.start) < WINDOW_LINES for c in chosen):
                continue
            chosen.append(window)
        return chosen

    def recent(self, *, exclude: str | None = None, k: int = 2, lines: int = 12) -> list[Window]:
        """The latest edited places of other files than `exclude`, newest first, as they read now."""
        out = []
        with self.lock:
            recent = list(reversed(self._recent.items()))
        for path, (first, _last, _) in recent:
            entry = self.files.get(path)
            if path == exclude or entry is None:
                continue
            text_lines = entry.text.split("\n")
            start = max(0, first - 2)  # the edit, after two lines of what leads to it
            out.append(Window(path, start, "\n".join(text_lines[start : start + lines])))
            if len(out) >= k:
                break
        return out
