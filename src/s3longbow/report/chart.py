"""The throughput chart as a PNG, for a ticket or a chat: drawn by matplotlib (the `report`
extra) without a display or a browser."""

from __future__ import annotations

import io
from pathlib import Path

from s3longbow.config import format_size
from s3longbow.errors import ConfigError

from .data import ReportData, format_duration
from .svg import binary_ticks, clock, time_ticks


def render_png(data: ReportData) -> bytes:
    """The throughput chart (bytes/s and objects/s over time) as PNG bytes.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, FuncFormatter
    except ImportError:
        raise ConfigError(
            "the PNG chart needs matplotlib, which is not installed",
            hint="pip install 's3longbow[report]' (or leave --png out: the HTML report "
            "needs nothing more)",
        ) from None

    t = data.timeline
    figure = Figure(figsize=(10, 4.2), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(
        f"{data.title}: {data.objects_copied:,} objects, {format_size(data.bytes_copied)} "
        f"copied in {format_duration(data.seconds)} "
        f"(average {format_size(data.average_bytes_per_second)}/s)",
        fontsize=10,
        loc="left",
    )
    axes.set_xlabel("time since the start (h:mm:ss)")
    axes.set_ylabel("bytes sent per second")
    axes.grid(True, color="#d9dee7")
    if not t.seconds:
        axes.text(0.5, 0.5, "no samples recorded", ha="center", va="center")
    else:
        # Each rate is the average over the span before its point: drawn as steps.
        times = [t.origin, *t.seconds]
        axes.plot(
            times,
            [t.bytes_per_second[0], *t.bytes_per_second],
            drawstyle="steps-pre",
            color="#1f6feb",
            label="bytes sent/s",
        )
        ticks, _, _ = binary_ticks(max(t.bytes_per_second, default=0.0))
        axes.yaxis.set_major_locator(FixedLocator(ticks))
        axes.set_ylim(0, ticks[-1] or 1)
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{format_size(v)}/s"))
        span = max(t.seconds[-1], 1.0)
        axes.xaxis.set_major_locator(FixedLocator(time_ticks(span)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: clock(v)))
        axes.set_xlim(0, span)
        objects = axes.twinx()
        objects.plot(
            times,
            [t.objects_per_second[0], *t.objects_per_second],
            drawstyle="steps-pre",
            color="#d4731c",
            label="objects done/s",
            alpha=0.8,
        )
        objects.set_ylabel("objects done per second")
        objects.set_ylim(bottom=0)
        lines = axes.get_lines() + objects.get_lines()
        axes.legend(lines, [str(line.get_label()) for line in lines], loc="upper right")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def write_png(data: ReportData, path: Path) -> None:
    """Write the throughput chart to `path`."""
    png = render_png(data)
    try:
        path.write_bytes(png)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the chart to {path}: {exc.strerror}",
            hint="pass --png with a writable path",
        ) from None
