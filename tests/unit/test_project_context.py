"""The project index, the blocks chosen for a cursor, and the prompt assembled within a token budget."""

from __future__ import annotations

import random
import re

from selftune.server.completion.assemble import assemble
from selftune.server.completion.project import ProjectIndex, module_names, python_definitions
from selftune.server.completion.prompt import PromptFormat
from selftune.server.completion.sources import (
    REGION_FAR,
    Choice,
    Sources,
    imports,
    last_lines,
    region_of,
    stable,
)

GEOMETRY = '''"""Shapes."""
import math


def circle_area(radius: float,
                precision: int = 2) -> float:
    """Area of a circle of `radius`.

    More text that is not shown."""
    return round(math.pi * radius * radius, precision)


class Polygon:
    """A closed shape of straight sides."""

    def __init__(self, sides):
        self.sides = sides

    def perimeter(self) -> float:
        return sum(self.sides)

    def _cache(self):
        pass
'''

USE = """from geo.shapes import circle_area, Polygon as Shape
import geo.shapes as shapes


def report(r):
    value = circle_area(r)
    square = Shape([1, 1, 1, 1])
    total = square.perimeter()
<INDENT>
    return value
""".replace("<INDENT>", "    ")  # the cursor's line: its indentation only


def measure(text: str) -> int:
    return max(1, len(text) // 4)


def index_with(files: dict[str, str]) -> ProjectIndex:
    index = ProjectIndex()
    for path, text in files.items():
        assert index.set_file(path, text)
    return index


def test_definitions_hold_the_signature_and_first_docstring_line_only():
    found = {d.qualname: d for d in python_definitions("geo/shapes.py", GEOMETRY)}
    assert set(found) == {"circle_area", "Polygon", "Polygon.__init__", "Polygon.perimeter", "Polygon._cache"}
    area = found["circle_area"]
    assert area.text == ('def circle_area(radius: float,\n                precision: int = 2) -> float:\n'
                         '    """Area of a circle of `radius`."""\n    ...')  # fmt: skip
    assert area.line == 4 and "More text" not in area.text and "round(" not in area.text
    polygon = found["Polygon"].text
    assert polygon.startswith('class Polygon:\n    """A closed shape of straight sides."""')
    assert "def perimeter(self) -> float: ..." in polygon and "_cache" not in polygon and "sum(" not in polygon
    assert found["Polygon.perimeter"].text.startswith("class Polygon:\n    def perimeter(self) -> float:")
    assert python_definitions("bad.py", "def broken(:\n") == []
    assert module_names("src/geo/shapes.py") == ["src.geo.shapes", "geo.shapes", "shapes"]
    assert module_names("geo/__init__.py") == ["geo"]


def test_imports_map_local_names_to_modules():
    found = imports(USE + "from .sibling import thing\nfrom .. import up\n", "geo/report.py")
    assert found["circle_area"] == ("geo.shapes", "circle_area")
    assert found["Shape"] == ("geo.shapes", "Polygon")
    assert found["shapes"] == ("geo.shapes", None)
    assert found["thing"] == ("geo.sibling", "thing")
    assert found["up"] == ("", "up")


def test_in_a_large_file_the_imports_are_read_from_its_head_and_above_the_cursor():
    filler = "x = 1\n" * 20_000
    text = "import os\n" + filler + "from geo.shapes import Polygon\n" + filler + "import json\n" + filler
    at_end = imports(text, "big.py", len(text))
    assert "os" in at_end and "Polygon" not in at_end and "json" not in at_end  # the middle is not read
    below = text.index("import json") + len("import json\n")
    assert {"os", "json"} <= set(imports(text, "big.py", below))
    assert {"os", "Polygon", "json"} <= set(imports(text, "big.py"))  # without a cursor: all of it


def test_the_definitions_of_names_used_around_the_cursor_come_from_the_imported_module():
    decoy = "def circle_area(x):\n    return 0\n"  # the same name elsewhere: the import says which one
    index = index_with({"geo/shapes.py": GEOMETRY, "other/area.py": decoy, "geo/report.py": USE})
    offset = USE.index("    \n    return value") + 4
    blocks = stable(index, "geo/report.py", USE, offset, sources=Sources(), budget=4000, plain=True, measure=measure)
    kinds = [(b.kind, b.path) for b in blocks]
    assert ("definition", "geo/shapes.py") in kinds and ("definition", "other/area.py") not in kinds
    texts = "\n".join(b.text for b in blocks if b.kind == "definition")
    assert "def circle_area(radius: float," in texts and "class Polygon:" in texts and "def perimeter" in texts
    after = [b for b in blocks if b.kind == "after"]
    assert after and after[0].text == "    return value"
    # A tight budget keeps only what fits.
    small = stable(index, "geo/report.py", USE, offset, sources=Sources(), budget=200, plain=True, measure=measure)
    assert sum(measure(b.text) for b in small if b.kind == "definition") <= 200 * 0.16
    # Switched off, a source gives nothing; a fill-in-the-middle model gets no "after" block.
    none = stable(index, "geo/report.py", USE, offset, sources=Sources(definitions=False), budget=4000, plain=False,
                  measure=measure)  # fmt: skip
    assert none == []


def test_similar_code_comes_from_other_files_and_recent_edits_newest_first():
    parser = "def parse_header(line):\n    key, _, value = line.partition(':')\n    return key.strip(), value\n"
    index = index_with({"web/headers.py": parser, "web/app.py": "import os\n", "web/util.py": "X = 1\n"})
    found = index.similar("key, _, value = row.partition(':')", exclude="web/app.py")
    assert [w.path for w in found] == ["web/headers.py"]
    assert index.similar("key, value = row.partition(':')", exclude="web/headers.py") == []
    index.edited("web/util.py", 0, 0, at=1.0)
    index.edited("web/headers.py", 1, 1, at=2.0)
    assert [w.path for w in index.recent(exclude="web/app.py")] == ["web/headers.py", "web/util.py"]
    assert [w.path for w in index.recent(exclude="web/headers.py")] == ["web/util.py"]
    index.remove_file("web/headers.py")
    assert index.similar("key, _, value = row.partition(':')") == [] and index.definitions("parse_header") == []


def test_the_prompt_labels_each_block_and_fits_the_budget():
    index = index_with({"geo/shapes.py": GEOMETRY})
    text = USE * 30  # a long file: the window must give way to the blocks
    offset = len(text) - len("    return value\n")
    out = assemble(PromptFormat(), text, offset, budget=1000, measure=measure, path="geo/report.py",
                   language_id="python", index=index)  # fmt: skip
    assert out.prompt.startswith("# geo/shapes.py\n")
    assert "\n# geo/report.py\n" in out.prompt and out.prompt.endswith(text[:offset][-200:])
    assert measure(out.prompt) <= 1000
    # The window before the cursor starts at a line start.
    assert out.context.window_start == 0 or text[out.context.window_start - 1] == "\n"
    # No index, no source: the prompt is the window alone, as before.
    bare = assemble(PromptFormat(), text, offset, budget=1000, measure=measure, sources=Sources(
        definitions=False, similar=False, recent=False, after=False))  # fmt: skip
    assert bare.prompt == bare.context.prefix and bare.blocks == ()


def test_a_window_measured_in_tokens_gives_short_lines_no_more_tokens():
    text = "x = 1\n" * 200_000  # tokens are dense here: a character budget would overflow

    def dense(s: str) -> int:  # about 4 tokens for 6 characters
        return (len(s) * 2) // 3

    out = assemble(PromptFormat(), text, len(text), budget=2000, measure=dense, sources=Sources(after=False))
    # A fresh window holds about 60 % of its budget (context.REFILL_SHARE), leaving room to type before it moves.
    assert 1000 < dense(out.prompt) <= 2000


def test_blocks_stay_while_typing_in_one_region():
    choice = Choice()
    index = index_with({"geo/shapes.py": GEOMETRY})
    text = USE
    first = USE.index("    \n    return value") + 4
    region = region_of(text, first)

    def blocks(t: str, at: int):
        fresh = stable(index, "geo/report.py", t, at, sources=Sources(), budget=4000, plain=True, measure=measure)
        return choice.blocks("doc", region_of(t, at), fresh, lambda: [])

    before = blocks(text, first)
    typed = text[:first] + "total + value" + text[first:]  # names without project definitions: same blocks
    assert blocks(typed, first + len("total + value")) == before
    assert region_of(typed, first) == region
    moved = text + "\n\ndef other():\n    return Shape([2])\n"
    assert region_of(moved, len(moved) - 2) != region


def test_the_region_and_the_last_lines_are_found_from_the_cursor_back_as_a_whole_scan_finds_them():
    rng = random.Random(3)
    pieces = ["x = 1\n", "    y = 2\n", "def f(a):\n", "class K:\n", "async def g():\n", "\n", "# def no\n", "def\n"]
    for size in (0, 50, 3000, 60_000):
        text = "".join(rng.choice(pieces) for _ in range(size // 6))
        for offset in sorted({0, len(text), *(rng.randrange(len(text) + 1) for _ in range(20))}):
            whole = 0
            for m in re.finditer(r"^(?:async\s+def|def|class)\s+\w+", text[:offset], re.M):
                whole = m.start()
            assert region_of(text, offset) == whole, (size, offset)
            for n in (1, 12, 40):
                assert last_lines(text, offset, n) == "\n".join(text[:offset].split("\n")[-n:])


def test_far_from_any_definition_a_region_is_a_span_of_the_file():
    text = "def f():\n    pass\n" + "x = 1\n" * 200_000  # 1.2 MB of data after one definition
    far = REGION_FAR + 100
    assert region_of(text, 40) == 0
    assert region_of(text, far) == region_of(text, far + 600) < 0  # typing on: the same region, no scan
    assert region_of(text, len(text)) != region_of(text, far)
    assert region_of(text + "def g():\n", len(text) + 8) == len(text)  # a definition near the cursor
