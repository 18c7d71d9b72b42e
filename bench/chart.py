"""Draw the benchmark's medians: per workload, throughput and client CPU per unit of work.

python bench/chart.py results.json results.png    # run.py's or reallink.py's JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stats import cpu_per_unit, throughput

try:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit(
        "the chart needs matplotlib: install the benchmark's extras, pip install -e '.[bench]'"
    ) from error

COLOURS = {"longbow": "#1f6fb4", "rclone": "#e07b39", "limit": "#8c8c8c"}
ORDER = ("longbow", "rclone", "limit")


def draw(document: dict[str, Any], path: Path) -> None:
    """Write a PNG with one column per workload: throughput above, CPU per unit below."""
    meds = {(m["workload"], m["tool"]): m for m in document["medians"]}
    names = list(dict.fromkeys(m["workload"] for m in document["medians"]))
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), squeeze=False)
    for column, name in enumerate(names):
        tools = [t for t in ORDER if (name, t) in meds]
        panels = ((throughput, "higher is better"), (cpu_per_unit, "lower is better"))
        for row, (figure, hint) in enumerate(panels):
            ax = axes[row][column]
            values, unit = [], ""
            for tool in tools:
                value, unit = figure(name, meds[(name, tool)])
                values.append(value or 0.0)
            bars = ax.bar(tools, values, color=[COLOURS[t] for t in tools])
            ax.bar_label(bars, fmt="%.4g", fontsize=8)
            ax.set_ylabel(unit)
            ax.margins(y=0.15)
            ax.set_title(f"{name}: {unit}" if row == 0 else f"{unit} ({hint})", fontsize=9)
            ax.tick_params(labelsize=8)
    scale = document.get("scale", 1.0)
    fig.suptitle(
        f"longbow vs rclone vs limit (s5cmd raw GET/PUT), medians of {document.get('rounds')} "
        f"round(s), scale {scale}, {document.get('cores')} cores, commit {document.get('commit')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


REALLINK_COLOURS = {"longbow": "#1f6fb4", "rclone-default": "#f2b27d", "rclone-best": "#e07b39"}


def draw_reallink(document: dict[str, Any], path: Path) -> None:
    """Write a PNG of the real-link bed (bench/reallink.py): one column per set, throughput
    above and client CPU per unit below, bars per round trip for each tool."""
    meds = {(m["workload"], m["tool"]): m for m in document["medians"]}
    cases = document["cases"]
    sets = list(dict.fromkeys(case["set"] for case in cases))
    tools = list(REALLINK_COLOURS)
    width_in = max(8.0, 4.2 * len(sets))
    fig, axes = plt.subplots(2, len(sets), figsize=(width_in, 6.8), squeeze=False)
    for column, name in enumerate(sets):
        mine = [case for case in cases if case["set"] == name]
        labels = [f"{case['rtt_ms']} ms\n(scale {case['scale']:g})" for case in mine]
        width = 0.8 / len(tools)
        panels = ((throughput, "higher is better"), (cpu_per_unit, "lower is better"))
        for row, (figure, hint) in enumerate(panels):
            ax = axes[row][column]
            unit = ""
            for i, tool in enumerate(tools):
                values = []
                for case in mine:
                    med = meds.get((case["case"], tool))
                    value, unit = figure(name, med) if med else (None, unit)
                    values.append(value or 0.0)
                xs = [x + (i - (len(tools) - 1) / 2) * width for x in range(len(mine))]
                bars = ax.bar(xs, values, width, color=REALLINK_COLOURS[tool], label=tool)
                ax.bar_label(bars, fmt="%.3g", fontsize=6)
            ax.set_xticks(range(len(mine)), labels, fontsize=7)
            ax.set_ylabel(unit, fontsize=8)
            ax.margins(y=0.15)
            ax.set_title(f"{name}: {unit}" if row == 0 else f"{unit} ({hint})", fontsize=9)
            ax.tick_params(labelsize=7)
            if row == 0 and column == 0:
                ax.legend(fontsize=7)
    window = document.get("window_bytes", 0) / 2**20
    fig.suptitle(
        f"longbow (defaults) vs rclone (defaults; best of a grid), https, the far side "
        f"behind a {window:g} MiB window per connection\nmedians of {document.get('rounds')} "
        f"round(s), {document.get('cores')} cores, commit {document.get('commit')}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python bench/chart.py RESULTS.json OUT.png")
    document = json.loads(Path(sys.argv[1]).read_text())
    (draw_reallink if document.get("bed") == "reallink" else draw)(document, Path(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
