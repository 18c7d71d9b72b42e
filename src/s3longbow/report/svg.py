"""Charts as inline SVG, drawn here so the report needs nothing but the page itself: line
charts over time (with a second axis on the right where two units share a chart) and
horizontal bars. Styles come from the page's CSS classes (`line-0`, `line-1`, ...)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 960
LEFT, RIGHT, TOP, BOTTOM = 84, 84, 16, 34

Formatter = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Line:
    """One series of a line chart.

    Attributes:
        name: Its legend.
        values: One value per point of the chart's time axis.
        right: Drawn against the right axis (its own unit) rather than the left.
        hold: "": points joined by straight lines; "next": each value held until the next
            point (a level, such as a limit); "previous": each value held since the point
            before it, or since the chart's `origin` for the first (an average over that
            span, such as a rate).
        unit: Written after a value under the pointer (e.g. "/s").
    """

    name: str
    values: Sequence[float]
    right: bool = False
    hold: str = ""
    unit: str = ""


def nice_ticks(highest: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `highest`: steps of 1, 2 or 5 times a power of
    ten, about `count` of them."""
    if highest <= 0 or not math.isfinite(highest):
        return [0.0, 1.0]
    raw = highest / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < highest:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def binary_ticks(highest: float, count: int = 5) -> tuple[list[float], float, str]:
    """Ticks for a quantity of bytes: round numbers of the unit that suits `highest`.
    Returns (ticks in bytes, the unit's size, the unit's name)."""
    unit, name = 1.0, "B"
    for candidate, candidate_name in ((1024.0, "KiB"), (1024.0**2, "MiB"), (1024.0**3, "GiB")):
        if highest >= candidate:
            unit, name = candidate, candidate_name
    return [t * unit for t in nice_ticks(highest / unit, count)], unit, name


def short_number(value: float) -> str:
    """A tick label: 0, 2.5, 40, 1.2k, 3M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def clock(seconds: float) -> str:
    """A time-axis label: 0:42, 12:05, 3:04:00."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_ticks(span: float) -> list[float]:
    """Ticks of the time axis: whole seconds, minutes or hours, about six of them."""
    steps = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600)
    step = next((s for s in steps if span / s <= 6), 43200)
    return [float(t) for t in range(0, int(span) + 1, step)]


def line_chart(
    chart_id: str,
    label: str,
    seconds: Sequence[float],
    lines: Sequence[Line],
    *,
    left_axis: tuple[str, Formatter, bool],
    right_axis: tuple[str, Formatter, bool] | None = None,
    height: int = 260,
    origin: float = 0.0,
) -> str:
    """An SVG line chart over time.

    Args:
        chart_id: The element's id.
        label: What the chart shows (its accessible name).
        seconds: The time axis: seconds since the start, one per point.
        lines: The series, each one value per point.
        left_axis: (title, tick formatter, whether ticks are bytes) of the left axis.
        right_axis: The same for the right axis, for lines drawn against it.
        height: The chart's height in SVG units (its width is `WIDTH`).
        origin: Where the first span of a line held since the point before begins.
    """
    if not seconds:
        return (
            f'<p class="empty" id="{escape(chart_id)}">No samples were recorded for this chart.</p>'
        )
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    span = max(seconds[-1], 1.0)

    def x(t: float) -> float:
        return LEFT + plot_w * t / span

    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(label)}</title>",
    ]
    for t in time_ticks(span):
        parts.append(
            f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{TOP}" '
            f'y2="{TOP + plot_h}"/><text class="tick" x="{x(t):.1f}" y="{height - 12}" '
            f'text-anchor="middle">{clock(t)}</text>'
        )
    scales: dict[bool, Callable[[float], float]] = {}
    for right, axis in ((False, left_axis), (True, right_axis)):
        if axis is None:
            continue
        title, fmt, in_bytes = axis
        values = [v for line in lines if line.right == right for v in line.values]
        highest = max(values, default=0.0)
        ticks = binary_ticks(highest)[0] if in_bytes else nice_ticks(highest)
        top_value = ticks[-1] or 1.0
        scales[right] = _scale(top_value, plot_h)
        anchor, tx = ("start", LEFT + plot_w + 6) if right else ("end", LEFT - 6)
        for tick in ticks:
            y = scales[right](tick)
            if not right:
                parts.append(
                    f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" '
                    f'y2="{y:.1f}"/>'
                )
            parts.append(
                f'<text class="tick" x="{tx}" y="{y + 4:.1f}" text-anchor="{anchor}">'
                f"{escape(fmt(tick))}</text>"
            )
        ax = WIDTH - 12 if right else 14
        parts.append(
            f'<text class="axis" x="{ax}" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
            f'transform="rotate({90 if right else -90} {ax} {TOP + plot_h / 2:.1f})">'
            f"{escape(title)}</text>"
        )
    parts.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>')
    for index, line in enumerate(lines):
        scale = scales[line.right]
        points = _points(seconds, line.values, x, scale, hold=line.hold, origin=origin)
        parts.append(
            f'<polyline class="line line-{index}" points="{points}">'
            f"<title>{escape(line.name)}</title></polyline>"
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i class="swatch line-{i}"></i>{escape(line.name)}</span>'
        for i, line in enumerate(lines)
    )
    axis_bytes = {False: left_axis[2], True: right_axis[2] if right_axis else False}
    data = {
        # Under the pointer: the span's own point where values are held since the one before.
        "after": any(line.hold == "previous" for line in lines),
        "seconds": [round(t, 3) for t in seconds],
        "lines": [
            {
                "name": line.name,
                "values": list(line.values),
                "bytes": axis_bytes[line.right],
                "unit": line.unit,
            }
            for line in lines
        ],
    }
    return (
        f'<figure class="chart-box" data-chart="{escape(json.dumps(data))}">'
        + "".join(parts)
        + f'<figcaption class="legend">{legend}</figcaption></figure>'
    )


def _scale(top_value: float, plot_h: float) -> Callable[[float], float]:
    def y(value: float) -> float:
        return TOP + plot_h - plot_h * min(max(value, 0.0), top_value) / top_value

    return y


def _points(
    seconds: Sequence[float],
    values: Sequence[float],
    x: Callable[[float], float],
    y: Callable[[float], float],
    *,
    hold: str,
    origin: float,
) -> str:
    coords: list[str] = []
    before: tuple[float, float] | None = None  # the point before: (time, value)
    for t, value in zip(seconds, values, strict=True):
        if hold == "next" and before is not None:
            coords.append(f"{x(t):.1f},{y(before[1]):.1f}")
        elif hold == "previous":
            coords.append(f"{x(before[0] if before else origin):.1f},{y(value):.1f}")
        coords.append(f"{x(t):.1f},{y(value):.1f}")
        before = (t, value)
    return " ".join(coords)


def bar_chart(chart_id: str, label: str, bars: Sequence[tuple[str, float, str]]) -> str:
    """Horizontal bars, one a row: (name, value, the value as text). The longest bar spans the
    chart; a bar of a non-zero value is always visible."""
    if not bars:
        return f'<p class="empty" id="{escape(chart_id)}">Nothing to show.</p>'
    row, name_w, text_w = 30, 150, 170
    height = row * len(bars) + 8
    bar_w = WIDTH - name_w - text_w
    highest = max(value for _, value, _ in bars) or 1.0
    parts = [
        f'<svg class="chart bars" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
    ]
    for index, (name, value, text) in enumerate(bars):
        y = 4 + index * row
        width = max(bar_w * value / highest, 2.0 if value > 0 else 0.0)
        parts.append(
            f'<text class="tick" x="{name_w - 8}" y="{y + 19}" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<rect class="bar bar-{index}" x="{name_w}" y="{y + 4}" width="{width:.1f}" '
            f'height="{row - 10}"><title>{escape(name)}: {escape(text)}</title></rect>'
            f'<text class="tick" x="{name_w + width + 8:.1f}" y="{y + 19}">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
