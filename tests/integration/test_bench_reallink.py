"""The real-link bed end to end at its CI size: https endpoints, the latency proxy in front of
the destination, the grid, the three tools, every copy read back, the JSON and the chart."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.slow
def test_the_quick_case_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "reallink.json"
    argv = [sys.executable, str(BENCH / "reallink.py"), "--quick", "--json", str(out)]
    chart = tmp_path / "reallink.png"
    drawn = importlib.util.find_spec("matplotlib") is not None  # the benchmark's extras
    if drawn:
        argv += ["--chart", str(chart)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "small@50ms: 100 objects" in done.stdout and "(scale 0.05)" in done.stdout

    document = json.loads(out.read_text())
    assert document["bed"] == "reallink" and document["rtts_ms"] == [50]
    [case] = document["cases"]
    assert (case["set"], case["rtt_ms"], case["scale"], case["objects"]) == ("small", 50, 0.05, 100)
    # Two grid points on the short run, the faster one kept, HTTP/2 off for every rclone run.
    assert len(case["grid"]) == 2 and all(point["objects"] == 25 for point in case["grid"])
    assert case["best_flags"][:-1] in [point["flags"] for point in case["grid"]]
    assert case["best_flags"][-1] == "--disable-http2"
    assert case["proxy"]["connections"] > 0 and case["proxy"]["cpu_s"] > 0

    runs = {r["tool"]: r for r in document["results"]}
    assert set(runs) == {"longbow", "rclone-default", "rclone-best"}
    assert all(r["objects"] == 100 and r["bytes"] == 100 * 64 * 1024 for r in runs.values())
    # The long path is real: rclone's defaults copy 4 objects at a time, each PUT a 100 ms
    # round trip at least.
    assert runs["rclone-default"]["wall_s"] >= 100 / 4 * 0.100
    ratios = document["ratios"]["small@50ms"]
    assert set(ratios) == {"vs_rclone_best", "vs_rclone_default"}
    assert all(ratios[k]["speed"] and ratios[k]["cpu"] and ratios[k]["rss"] for k in ratios)
    if drawn:
        assert chart.stat().st_size > 10_000
