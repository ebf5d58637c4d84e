"""`selftune report`: one self-contained HTML page about a workspace.

It shows what the journal holds (the same figures as `selftune journal stats`),
completions shown and accepted per day with the acceptance rate, test runs per
day, and every adapter under `.selftune/adapters/` with the held-out metrics in
its `meta.json` (a chart of each adapter's edit similarity and exact match next
to the base model's on the same held-out data, and a table of all of them).
The page is written to `.selftune/reports/report.html`; the charts are inline
SVG, so it opens from disk with nothing else.

The charts are drawn here (a few dozen lines of SVG) rather than with a
plotting library: that would add tens of megabytes to an install whose server
otherwise needs none of it.
"""

from __future__ import annotations

import html
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .adapters import listed
from .journal.queries import OUTCOMES, describe_stats, has_table, open_readonly, stats
from .workspace import journal_path, reports_dir


def report_path(root: Path) -> Path:
    return reports_dir(root) / "report.html"


def per_day(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """(day, completions shown, completions accepted fully or in part), oldest first, local time."""
    return conn.execute(
        "SELECT date(c.time, 'unixepoch', 'localtime') AS day, count(*), "
        "       coalesce(sum(f.kind IN ('accepted', 'partially_accepted')), 0) "
        "FROM completions c LEFT JOIN ("
        "  SELECT completion_id, kind, max(id) FROM completion_events "
        f"  WHERE kind IN {OUTCOMES} GROUP BY completion_id) f ON f.completion_id = c.id "
        "GROUP BY day ORDER BY day"
    ).fetchall()


def test_runs_per_day(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """(day, runs that ended with every test passing, runs with failures or that did not finish)."""
    if not has_table(conn, "test_runs"):
        return []
    return conn.execute(
        "SELECT date(started, 'unixepoch', 'localtime') AS day, "
        "       sum(status = 'finished' AND coalesce(failed, 0) + coalesce(errors, 0) = 0), "
        "       sum(NOT (status = 'finished' AND coalesce(failed, 0) + coalesce(errors, 0) = 0)) "
        "FROM test_runs WHERE status IS NOT 'cancelled' GROUP BY day ORDER BY day"
    ).fetchall()


def _frame(width: int, height: int, left: int, top: int, plot_w: float, plot_h: float, top_value) -> list[str]:
    """The opening of a chart: the SVG element, the x axis, and the y axis's top and zero labels."""
    return [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{top_value}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]


def bar_chart(
    rows: Sequence[Sequence[Any]],
    series: list[tuple[int, str, str]],
    *,
    line: list[float | None] | None = None,
    width: int = 720,
    height: int = 220,
) -> str:
    """Stacked bars per row (`series`: column index, colour, name), optionally a 0..1 line on a right-hand axis."""
    if not rows:
        return "<p class=empty>nothing recorded yet</p>"
    left, right, top, bottom = 40, 40, 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max(1, max(sum(int(r[i] or 0) for i, _, _ in series) for r in rows))
    step = plot_w / len(rows)
    parts = _frame(width, height, left, top, plot_w, plot_h, top_value)
    for k, row in enumerate(rows):
        x, base = left + k * step + step * 0.15, float(top + plot_h)
        for index, colour, name in series:
            value = int(row[index] or 0)
            h = plot_h * value / top_value
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(str(row[0]))}: {value} {name}</title></rect>"
            )
        if len(rows) <= 14 or k % max(1, len(rows) // 10) == 0:
            parts.append(
                f'<text x="{x + step * 0.35:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                f"{html.escape(str(row[0])[5:])}</text>"
            )
    if line:
        points = [(left + (k + 0.5) * step, top + plot_h * (1 - v)) for k, v in enumerate(line) if v is not None]
        parts.append(
            '<polyline fill="none" stroke="#c33" stroke-width="2" points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            + '"/>'
        )
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#c33"/>' for x, y in points]
        parts.append(
            f'<text x="{left + plot_w + 4}" y="{top + 10}">100%</text>'
            f'<text x="{left + plot_w + 4}" y="{top + plot_h}">0%</text>'
        )
    legend = [(colour, name) for _, colour, name in series] + ([("#c33", "acceptance rate")] if line else [])
    for k, (colour, name) in enumerate(legend):
        x = left + k * 170
        parts.append(
            f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{height - 5}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# (metrics key, colour, dashed, legend) of the held-out chart: each adapter next to the base model on the same data
HELD_OUT_SERIES = [
    ("edit_similarity", "#36c", False, "edit similarity"),
    ("base_edit_similarity", "#36c", True, "base model"),
    ("exact_match", "#4a8", False, "exact match"),
    ("base_exact_match", "#4a8", True, "base model"),
]


def lineage_tokens(adapter: dict) -> int | None:
    """Training tokens behind an adapter: its run's and those of the runs it went on from."""
    tokens = (adapter.get("lineage") or {}).get("tokens")
    return int(tokens) if isinstance(tokens, (int, float)) else None


def metric_chart(found: list[dict], *, width: int = 720, height: int = 240) -> str:
    """The learning curve: held-out edit similarity and exact match (0..1) of each evaluated adapter (solid) and
    of the base model (dashed), against the training tokens behind the adapter (the runs it went on from
    included), or in the order of the runs where some adapter predates that record."""
    rows = [
        d for d in found if any(isinstance((d.get("metrics") or {}).get(k), (int, float)) for k, *_ in HELD_OUT_SERIES)
    ]
    if not rows:
        return "<p class=empty>no adapter has been evaluated yet</p>"
    left, right, top, bottom = 40, 30, 10, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    found_tokens = [lineage_tokens(d) for d in rows]
    by_tokens = all(t is not None for t in found_tokens)
    tokens = [t or 0 for t in found_tokens]
    if by_tokens:
        order = sorted(range(len(rows)), key=lambda k: tokens[k])
        rows, tokens = [rows[k] for k in order], [tokens[k] for k in order]
        most = max(tokens) or 1
        xs = [left + 0.04 * plot_w + 0.92 * plot_w * t / most for t in tokens]
    else:
        xs = [left + (k + 0.5) * plot_w / len(rows) for k in range(len(rows))]
    parts = _frame(width, height, left, top, plot_w, plot_h, 1)
    for x, t, d in zip(xs, tokens, rows):
        mark = "★ " if d.get("current") else ""
        label = str(d.get("created", ""))[5:16] or d["id"]  # MM-DD HH:MM
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{mark}{html.escape(label)}'
            f"<title>{html.escape(d['id'])}: {html.escape(str(d.get('decision', '')))}</title></text>"
        )
        if by_tokens:
            parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 29}" text-anchor="middle">{t / 1000:.1f}k</text>')
    if by_tokens:
        parts.append(
            f'<text x="{left + plot_w}" y="{top + plot_h + 29}" text-anchor="end">training tokens behind the adapter'
            "</text>"
        )
    dash = {True: ' stroke-dasharray="4 3"', False: ""}
    for key, colour, dashed, _ in HELD_OUT_SERIES:
        points = [
            (xs[k], top + plot_h * (1 - float(v)), float(v))
            for k, d in enumerate(rows)
            if isinstance(v := (d.get("metrics") or {}).get(key), (int, float))
        ]
        if len(points) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash[dashed]} '
                'points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points) + '"/>'
            )
        parts += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{"#fff" if dashed else colour}" stroke="{colour}">'
            f"<title>{html.escape(key)} {v:.3f}</title></circle>"
            for x, y, v in points
        ]
    for k, (_, colour, dashed, name) in enumerate(HELD_OUT_SERIES):
        x = left + k * 170
        parts.append(
            f'<line x1="{x}" y1="{height - 9}" x2="{x + 16}" y2="{height - 9}" stroke="{colour}" stroke-width="2"'
            f'{dash[dashed]}/><text x="{x + 20}" y="{height - 5}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def adapter_table(found: list[dict]) -> str:
    if not found:
        return (
            "<p class=empty>No adapter has been trained in this workspace yet: completions come from the "
            "base model.</p>"
        )
    metric_names = sorted(
        {
            k
            for d in found
            for k, v in (d.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metric_names)
    rows = []
    for d in found:
        metrics = d.get("metrics") or {}
        cells = "".join(
            f"<td>{metrics[m]:.4g}</td>" if isinstance(metrics.get(m), (int, float)) else "<td></td>"
            for m in metric_names
        )
        note = html.escape(str(d.get("error") or d.get("decision") or ""))
        trust = d.get("trust") or {}
        if trust.get("trusted") is False:  # the run kept the project's code from running: say so, and why
            note += html.escape(f"; no project code ran: {trust.get('why', 'the workspace is not trusted')}")
        rows.append(
            f"<tr><td>{html.escape(d['id'])}{' (current)' if d['current'] else ''}</td>"
            f"<td>{html.escape(str(d.get('created', '')))}</td>{cells}<td>{note}</td></tr>"
        )
    return f"<table><tr><th>adapter</th><th>created</th>{head}<th></th></tr>{''.join(rows)}</table>"


def coverage_lines(found: list[dict], conn: sqlite3.Connection | None = None) -> list[str]:
    """How much of the project the adapter in use (with the runs it went on from) was trained on, and the run
    ahead of it that the next run goes on from (adaptation/lineage.py: `frontier`), if there is one: a sentence
    each."""
    from selftune.adaptation.lineage import frontier

    def covered(adapter: dict, who: str) -> list[str]:
        summary = (adapter.get("coverage") or {}).get("summary")
        runs = (adapter.get("lineage") or {}).get("runs", 1)
        return [f"{who}, over {runs} run{'s' if runs != 1 else ''}: {summary}."] if summary else []

    current = next((d for d in found if d.get("current")), None)
    out = covered(current, "The adapter in use") if current else []
    base = (current or (found[-1] if found else {})).get("base")
    ahead = frontier(conn, current["id"] if current else None, base) if base else None
    adapter = next((d for d in found if ahead and d["id"] == ahead[0]), None)
    if adapter is not None:
        out += covered(adapter, f"The next run goes on from {adapter['id']}, kept out by its gate with a "
                                "held-out loss below the base model's")  # fmt: skip
    return out


def paragraphs(lines: list[str]) -> str:
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines)


def render(root: Path, conn: sqlite3.Connection, path: Path, found: list[dict], covered: list[str]) -> str:
    """The page; `found`: the adapters (`listed`), `covered`: their `coverage_lines`."""
    summary = stats(conn, path)
    days = per_day(conn)
    rates = [accepted / shown if shown else None for _, shown, accepted in days]
    runs = test_runs_per_day(conn)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>selftune report: {html.escape(root.name)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 760px; color: #222; }}
svg text {{ font-size: 11px; fill: #444; }} pre {{ background: #f5f5f5; padding: 1em; white-space: pre-wrap; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: 2px 8px; text-align: right; }}
.empty {{ color: #888; }}
</style></head><body>
<h1>selftune: {html.escape(str(root))}</h1>
<p>Written {time.strftime("%Y-%m-%d %H:%M")} from <code>{html.escape(str(path))}</code>.</p>
<h2>Adapters and their held-out metrics</h2>
{metric_chart(found)}
{paragraphs(covered)}
{adapter_table(found)}
<h2>Completions per day</h2>
{
        bar_chart(
            [(day, accepted, shown - accepted) for day, shown, accepted in days],
            [(1, "#4a8", "accepted"), (2, "#ccc", "not accepted")],
            line=rates,
        )
    }
<h2>Test runs per day</h2>
{bar_chart(runs, [(1, "#4a8", "all passed"), (2, "#d66", "failures or no result")])}
<h2>The journal</h2>
<pre>{html.escape(describe_stats(summary))}</pre>
</body></html>
"""


def write_report(root: Path, said: list[str] | None = None) -> Path:
    """Write the workspace's report and return its path; FileNotFoundError when nothing was recorded. `said`, when
    given, gets the page's coverage sentences (for the command line)."""
    path = journal_path(root)
    conn = open_readonly(path)
    try:
        found = listed(root)
        covered = coverage_lines(found, conn)
        page = render(root, conn, path, found, covered)
        if said is not None:
            said += covered
    finally:
        conn.close()
    out = report_path(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
