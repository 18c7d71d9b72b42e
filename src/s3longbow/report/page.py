"""The run report as one self-contained HTML page: its styles, charts (inline SVG) and the
small script that shows a chart's values under the pointer are all in the file, so it opens
anywhere, offline, and can be attached to a ticket as it is."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

from s3longbow.config import format_size
from s3longbow.display import printable
from s3longbow.errors import ConfigError

from .data import CopiedObject, ReportData, format_duration, format_time
from .svg import LEFT, RIGHT, Line, bar_chart, line_chart, short_number

_STYLE = """
:root { --fg: #1d2430; --muted: #5d6778; --line: #d9dee7; --bg: #ffffff; --panel: #f5f7fa;
  --c0: #1f6feb; --c1: #d4731c; --c2: #2da44e; --c3: #8250df; --bad: #cf222e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; }
.sub { color: var(--muted); margin: 0 0 16px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px;
  margin: 20px 0; }
.tile { background: var(--panel); border-radius: 8px; padding: 12px 14px; }
.tile .value { font-size: 22px; font-weight: 600; }
.tile .label, .tile .exact { color: var(--muted); font-size: 12px; }
.tile.bad .value { color: var(--bad); }
figure.chart-box { margin: 0; position: relative; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .frame { fill: none; stroke: var(--line); }
svg .tick { fill: var(--muted); font-size: 12px; }
svg .axis { fill: var(--muted); font-size: 12px; }
svg .line { fill: none; stroke-width: 2; stroke-linejoin: round; }
.line-0 { stroke: var(--c0); background: var(--c0); }
.line-1 { stroke: var(--c1); background: var(--c1); }
.line-2 { stroke: var(--c2); background: var(--c2); }
svg .bar { fill: var(--c0); } svg .bar-0 { fill: var(--c2); } svg .bar-1 { fill: #8c959f; }
svg .cursor { stroke: var(--muted); stroke-dasharray: 3 3; }
.legend { color: var(--muted); font-size: 12px; margin-top: 4px; }
.key { margin-right: 16px; white-space: nowrap; }
.swatch { display: inline-block; width: 14px; height: 3px; margin: 0 6px 3px 0;
  vertical-align: middle; }
.tip { position: absolute; pointer-events: none; background: var(--fg); color: var(--bg);
  font-size: 12px; padding: 4px 8px; border-radius: 4px; white-space: pre; display: none; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.key { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px;
  overflow-wrap: anywhere; }
details { margin: 4px 0 12px; } summary { cursor: pointer; }
ul.keys { margin: 4px 0; padding-left: 20px; font-family: ui-monospace, Menlo, monospace;
  font-size: 12px; overflow-wrap: anywhere; }
.empty, .notes { color: var(--muted); }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
@media (max-width: 800px) { .grid2 { grid-template-columns: 1fr; } }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
"""

# Under the pointer, a chart shows the time and each line's value at the nearest point.
_SCRIPT = """
(function () {
  function fmt(v, bytes) {
    if (!bytes) return (Math.round(v * 100) / 100).toString();
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(i ? 1 : 0) + " " + units[i];
  }
  function clock(s) {
    s = Math.round(s); var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return h ? h + ":" + pad(m) + ":" + pad(r) : m + ":" + pad(r);
  }
  document.querySelectorAll("figure.chart-box").forEach(function (box) {
    var data = JSON.parse(box.getAttribute("data-chart"));
    var svg = box.querySelector("svg"), tip = document.createElement("div");
    tip.className = "tip"; box.appendChild(tip);
    var view = svg.viewBox.baseVal, left = %LEFT%, right = %RIGHT%;
    var span = Math.max(data.seconds[data.seconds.length - 1], 1);
    svg.addEventListener("mousemove", function (e) {
      var r = svg.getBoundingClientRect();
      var x = (e.clientX - r.left) * view.width / r.width;
      var t = (x - left) / (view.width - left - right) * span, best = 0;
      data.seconds.forEach(function (s, i) {
        if (data.after ? data.seconds[best] < t && s >= data.seconds[best]
                       : Math.abs(s - t) < Math.abs(data.seconds[best] - t)) best = i;
      });
      var lines = data.lines.map(function (l) {
        return l.name + ": " + fmt(l.values[best], l.bytes) + l.unit;
      });
      tip.textContent = clock(data.seconds[best]) + "\\n" + lines.join("\\n");
      tip.style.display = "block";
      tip.style.left = (e.clientX - r.left + 12) + "px";
      tip.style.top = (e.clientY - r.top + 12) + "px";
    });
    svg.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  });
})();
"""


def render_html(data: ReportData) -> str:
    """The report as one HTML document."""
    script = _SCRIPT.replace("%LEFT%", str(LEFT)).replace("%RIGHT%", str(RIGHT))
    sections = [
        _header(data),
        _tiles(data),
        _charts(data),
        _outcomes(data),
        _objects(data),
        _failures(data),
        _verification(data),
        _history(data),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(data.title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(sections)
        + f"<footer>Made by longbow report on {escape(format_time(data.generated_at))}."
        "</footer>"
        f"<script>{script}</script></body></html>\n"
    )


def _text(value: str) -> str:
    """Text from the run (keys, reasons) for the page: control characters shown, escaped."""
    return escape(printable(value))


def _bytes(n: int | None) -> str:
    return "—" if n is None else escape(format_size(n))


def _header(data: ReportData) -> str:
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{_text(v)}</dd>" for k, v in data.facts)
    notes = "".join(f'<p class="notes">{escape(note)}</p>' for note in data.notes)
    return (
        f"<header><h1>{escape(data.title)}</h1>"
        '<p class="sub">What the run copied, how fast, and what is left.</p>'
        f'<dl class="facts">{facts}</dl>{notes}</header>'
    )


def _tile(tile_id: str, label: str, value: str, exact: str = "", bad: bool = False) -> str:
    return (
        f'<div class="tile{" bad" if bad else ""}" id="{tile_id}">'
        f'<div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
        f'<div class="exact">{escape(exact)}</div></div>'
    )


def _tiles(data: ReportData) -> str:
    average = data.average_bytes_per_second
    peak = data.timeline.peak_bytes_per_second
    return (
        '<section class="tiles">'
        + _tile("objects-copied", "Objects copied", f"{data.objects_copied:,}", "objects")
        + _tile(
            "bytes-copied",
            "Bytes copied",
            format_size(data.bytes_copied),
            f"{data.bytes_copied:,} bytes",
        )
        + _tile("duration", "Duration", format_duration(data.seconds))
        + _tile(
            "throughput",
            "Average throughput",
            f"{format_size(average)}/s",
            f"peak {format_size(peak)}/s" if peak else "",
        )
        + _tile(
            "failed",
            "Failed objects",
            f"{data.failed_objects:,}",
            "of the run, now",
            bad=data.failed_objects > 0,
        )
        + _tile("verified", "Verified copies", f"{data.verified_objects:,}", "of the run")
        + "</section>"
    )


def _charts(data: ReportData) -> str:
    t = data.timeline
    throughput = line_chart(
        "chart-throughput",
        "Throughput over time",
        t.seconds,
        [
            Line("bytes sent", t.bytes_per_second, hold="previous", unit="/s"),
            Line("objects done", t.objects_per_second, right=True, hold="previous", unit="/s"),
        ],
        left_axis=("bytes per second", lambda v: format_size(v) + "/s", True),
        right_axis=("objects per second", short_number, False),
        origin=t.origin,
    )
    concurrency = line_chart(
        "chart-concurrency",
        "Concurrency over time",
        t.seconds,
        [
            Line("objects in flight", t.in_flight),
            Line("concurrency limit", t.concurrency, hold="next"),
        ],
        left_axis=("objects", short_number, False),
        height=220,
    )
    return (
        "<section><h2>Throughput</h2>"
        '<p class="sub">Bytes the destination accepted and objects finished, per second '
        "(each step the average over its span).</p>"
        f"{throughput}</section>"
        "<section><h2>Concurrency</h2>"
        '<p class="sub">Objects being copied, and the most the concurrency controller '
        "allowed at that moment.</p>"
        f"{concurrency}</section>"
    )


def _outcomes(data: ReportData) -> str:
    bars = [(o.label, float(o.bytes), format_size(o.bytes)) for o in data.outcomes if o.bytes]
    rows = "".join(
        f'<tr><td>{escape(o.label)}</td><td class="num">{o.objects:,}</td>'
        f'<td class="num">{_bytes(o.bytes)}</td>'
        f'<td class="num">{"—" if o.bytes is None else f"{o.bytes:,}"}</td>'
        f"<td>{escape(o.note)}</td></tr>"
        for o in data.outcomes
    )
    return (
        "<section><h2>Bytes by outcome</h2>"
        + bar_chart("chart-outcomes", "Bytes by outcome", bars)
        + '<table id="outcomes"><thead><tr><th>Outcome</th><th class="num">Objects</th>'
        '<th class="num">Size</th><th class="num">Bytes</th><th></th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _object_table(table_id: str, title: str, objects: Sequence[CopiedObject]) -> str:
    if not objects:
        return f'<div><h3>{escape(title)}</h3><p class="empty">No object was copied.</p></div>'
    rows = "".join(
        f'<tr><td class="key">{_text(o.key)}</td><td class="num">{_bytes(o.size)}</td>'
        f'<td class="num">{escape(format_duration(o.seconds))}</td>'
        f'<td class="num">{_bytes(int(o.size / o.seconds)) + "/s" if o.seconds else "—"}</td>'
        "</tr>"
        for o in objects
    )
    return (
        f'<div><h3>{escape(title)}</h3><table id="{table_id}"><thead><tr><th>Key</th>'
        '<th class="num">Size</th><th class="num">Time</th><th class="num">Rate</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></div>"
    )


def _objects(data: ReportData) -> str:
    return (
        "<section><h2>Objects</h2>"
        '<p class="sub">Time is from an object\'s last claim to the end of its copy.</p>'
        '<div class="grid2">'
        + _object_table("slowest", "Slowest copies", data.slowest)
        + _object_table("largest", "Largest copies", data.largest)
        + "</div></section>"
    )


def _failures(data: ReportData) -> str:
    if not data.failures:
        return '<section><h2>Failures</h2><p class="empty" id="failures">None.</p></section>'
    groups = []
    for group in data.failures:
        keys = "".join(f"<li>{_text(key)}</li>" for key in group.keys)
        more = group.objects - len(group.keys)
        tail = f"<li>… and {more:,} more (longbow status lists them)</li>" if more > 0 else ""
        groups.append(
            f'<details class="failure" open><summary><strong>{group.objects:,}</strong> '
            f"({_bytes(group.bytes)}): {_text(group.reason or 'no reason recorded')}"
            f'</summary><ul class="keys">{keys}{tail}</ul></details>'
        )
    return (
        f'<section id="failures"><h2>Failures ({data.failed_objects:,})</h2>'
        '<p class="sub">Failed jobs of the run by reason; <code>longbow sync '
        "--retry-failed</code> gives them fresh attempts.</p>" + "".join(groups) + "</section>"
    )


def _verification(data: ReportData) -> str:
    if not data.verification:
        body = '<p class="empty">No copy is done yet.</p>'
    else:
        rows = "".join(
            f'<tr><td>{_text(text)}</td><td class="num">{count:,}</td></tr>'
            for text, count in data.verification
        )
        body = (
            '<table id="verification"><thead><tr><th>How each copy was proven</th>'
            f'<th class="num">Objects</th></tr></thead><tbody>{rows}</tbody></table>'
        )
    return (
        "<section><h2>Verification</h2>"
        '<p class="sub">Done jobs of the run by how their bytes were proven.</p>'
        f"{body}</section>"
    )


def _history(data: ReportData) -> str:
    rows = "".join(
        f"<tr><td>{escape(row.label)}</td><td>{escape(format_time(row.started_at))}</td>"
        f'<td class="num">{"—" if row.seconds is None else escape(format_duration(row.seconds))}'
        f'</td><td class="num">'
        f"{'—' if row.objects_copied is None else f'{row.objects_copied:,}'}</td>"
        f'<td class="num">{_bytes(row.bytes_copied)}</td><td>{_text(row.outcome)}</td></tr>'
        for row in data.history
    )
    return (
        f"<section><h2>{escape(data.history_label)}</h2>"
        '<table id="history"><thead><tr><th></th><th>Started</th><th class="num">Duration</th>'
        '<th class="num">Objects copied</th><th class="num">Bytes copied</th><th>Outcome</th>'
        f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def write_html(data: ReportData, path: Path) -> None:
    """Write the report to `path`."""
    try:
        path.write_text(render_html(data), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {path}: {exc.strerror}",
            hint="pass -o with a writable path",
        ) from None
