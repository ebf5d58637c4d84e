"""Which test files matter for a saved file, found statically, most related first.

`ImportGraph` reads the imports of every Python file in the workspace with
`ast` (each file parsed again only when its size or mtime changes) and answers
`related_tests(path)`: the saved file itself if it is a test file, then its
own test file by name (``test_<name>.py``, ``<name>_test.py``), then test
files ordered by how few import steps separate them from the saved module
(a test that imports it directly before one that imports a module that
imports it), ties broken by how many names the test uses from the module.
A ``conftest.py`` counts as imported by every test file below it. Who imports
whom is worked out again only after a file changed, not at every save.

Module names are matched by their dotted suffix (``src/pkg/mod.py`` is
``pkg.mod`` and ``mod``), so src layouts and flat layouts both work without
knowing the project's sys.path.
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SKIP_DIRS = {"node_modules", "__pycache__", "site-packages", "build", "dist", "venv", "env"}
MAX_FILE_BYTES = 1_000_000
MAX_FILES = 20_000


def is_test_file(rel: str) -> bool:
    name = PurePosixPath(rel).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def module_names(rel: str) -> list[str]:
    """Every dotted name `rel` may be imported as: ``src/pkg/mod.py`` -> pkg.mod's suffixes and prefixes."""
    parts = list(PurePosixPath(rel).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return [".".join(parts[i:]) for i in range(len(parts))]


@dataclass
class Parsed:
    stamp: tuple[int, int]
    imports: set[str] = field(default_factory=set)  # dotted names, each import also as its parent packages
    names: set[str] = field(default_factory=set)  # identifiers the file uses (Name and Attribute)
    defines: set[str] = field(default_factory=set)  # top-level names it defines


def _resolve_relative(rel: str, level: int, module: str | None) -> str:
    package = list(PurePosixPath(rel).parent.parts)
    if level > 1:
        package = package[: len(package) - (level - 1)] if level - 1 <= len(package) else []
    return ".".join(package + ([module] if module else []))


def parse_file(rel: str, text: str, stamp: tuple[int, int]) -> Parsed:
    parsed = Parsed(stamp)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return parsed  # a file being edited may not parse; it imports nothing meanwhile
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            parsed.imports.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(rel, node.level, node.module) if node.level else (node.module or "")
            if base:
                parsed.imports.add(base)
            parsed.imports.update(f"{base}.{a.name}" if base else a.name for a in node.names if a.name != "*")
        elif isinstance(node, ast.Name):
            parsed.names.add(node.id)
        elif isinstance(node, ast.Attribute):
            parsed.names.add(node.attr)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            parsed.defines.add(node.name)
        elif isinstance(node, ast.Assign):
            parsed.defines.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for name in list(parsed.imports):  # `import a.b.c` imports a and a.b too
        while "." in name:
            name = name.rsplit(".", 1)[0]
            parsed.imports.add(name)
    return parsed


class ImportGraph:
    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, Parsed] = {}
        self._index: tuple[dict[str, set[str]], list[str]] | None = None  # (importers, tests), until a file changes

    def python_files(self) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(".")
                and d not in SKIP_DIRS
                and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
            )
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                if name.endswith(".py"):
                    found.append(name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/"))
            if len(found) > MAX_FILES:
                break
        return found

    def refresh(self) -> None:
        """Parse the files that are new or changed since the last call; forget deleted ones."""
        seen = set()
        for rel in self.python_files():
            try:
                st = os.stat(self.root / rel)
            except OSError:
                continue
            if st.st_size > MAX_FILE_BYTES:
                continue
            seen.add(rel)
            stamp = (st.st_mtime_ns, st.st_size)
            old = self.files.get(rel)
            if old is None or old.stamp != stamp:
                try:
                    text = (self.root / rel).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                self.files[rel] = parse_file(rel, text, stamp)
                self._index = None
        for rel in set(self.files) - seen:
            del self.files[rel]
            self._index = None

    def index(self) -> tuple[dict[str, set[str]], list[str]]:
        """Which files import each file (a conftest.py: every test below it), and the test files."""
        if self._index is not None:
            return self._index
        by_name: dict[str, set[str]] = defaultdict(set)
        for rel in self.files:
            for name in module_names(rel):
                by_name[name].add(rel)
        importers: dict[str, set[str]] = defaultdict(set)  # file -> files that import it
        for rel, parsed in self.files.items():
            for name in parsed.imports:
                for target in by_name.get(name, ()):
                    if target != rel:
                        importers[target].add(rel)
        tests = [rel for rel in self.files if is_test_file(rel)]
        conftests = [rel for rel in self.files if PurePosixPath(rel).name == "conftest.py"]
        for conftest in conftests:
            folder = str(PurePosixPath(conftest).parent)
            importers[conftest].update(t for t in tests if folder == "." or t.startswith(folder + "/"))
        self._index = (importers, tests)
        return self._index

    def related_tests(self, saved: str) -> list[str]:
        """Test files related to `saved` (relative POSIX path), most related first."""
        return [test for test, _ in self.ranked(saved)]

    def nearest_and_others(self, saved: str) -> tuple[list[str], list[str]]:
        """The related tests split in two: the saved file itself, its own test file and the tests that import
        it directly (else the three most related), and the others. Each part is one pytest run: collecting
        only the nearest files gets their results to the editor before a large suite is even collected."""
        ranked = self.ranked(saved)
        nearest = [test for test, near in ranked if near] or [test for test, _ in ranked[:3]]
        return nearest, [test for test, _ in ranked if test not in nearest]

    def ranked(self, saved: str) -> list[tuple[str, bool]]:
        """(test file, whether it is nearest) for the tests related to `saved`, most related first."""
        self.refresh()
        importers, tests = self.index()
        distance = {saved: 0}
        queue = deque([saved])
        while queue:
            current = queue.popleft()
            for importer in importers.get(current, ()):
                if importer not in distance:
                    distance[importer] = distance[current] + 1
                    queue.append(importer)

        stem = PurePosixPath(saved).stem
        own = {f"test_{stem}.py", f"{stem}_test.py"}
        defines = self.files[saved].defines if saved in self.files else set()

        def rank(test: str) -> tuple:
            parsed = self.files[test]
            reached = test in distance
            return (
                test != saved,
                not (reached and PurePosixPath(test).name in own),
                not reached,
                distance.get(test, 0),
                -len(defines & parsed.names),
                test,
            )

        related = sorted((t for t in tests if t == saved or t in distance or PurePosixPath(t).name in own), key=rank)
        return [
            (t, t == saved or distance.get(t, 1 << 30) <= 1 or (t in distance and PurePosixPath(t).name in own))
            for t in related
        ]

    def all_tests(self) -> list[str]:
        self.refresh()
        return sorted(self.index()[1])
