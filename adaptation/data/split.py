"""The time split: the newest 20 % is held out, whole groups at a time.

Groups (a file, or a function) are ordered by their newest example; the newest
groups go to the held-out side until it holds `held_share` of the examples. A
file or function is therefore wholly on one side: no state of it is trained on
and then evaluated.
"""

from __future__ import annotations

from collections import defaultdict

from . import Example


def by_time(examples: list[Example], held_share: float = 0.2) -> tuple[list[Example], list[Example]]:
    if not examples:
        return [], []
    groups: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        groups[e.group].append(e)
    # A function's group "path::f" and its file's group "path" are one unit: the file's text holds the function.
    units: dict[str, list[str]] = defaultdict(list)
    for g in groups:
        units[g.split("::", 1)[0]].append(g)
    order = sorted(units, key=lambda u: (max(e.time for g in units[u] for e in groups[g]), u), reverse=True)
    held_units: set[str] = set()
    held = 0
    for unit in order:
        if held >= held_share * len(examples) or len(held_units) == len(units) - 1:
            break
        held_units.add(unit)
        held += sum(len(groups[g]) for g in units[unit])
    train = [e for e in examples if e.group.split("::", 1)[0] not in held_units]
    test = [e for e in examples if e.group.split("::", 1)[0] in held_units]
    return train, test


def held_paths(held: list[Example]) -> set[str]:
    return {e.group.split("::", 1)[0] for e in held}
