"""`longbow report` after a real `longbow sync` between two SeaweedFS buckets: the HTML file has
the run's numbers, the PNG is a PNG, and the page opens in a real browser (Debian's headless
Chromium, driven by Playwright) with no console error, no request beyond the file itself, and
charts drawn at a size."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from s3longbow.config import format_size
from s3longbow.jobs.sqlite import JobDatabase

from ..conftest import CHROMIUM, Bucket, cli_env, endpoint_args

# A real run: the CLI as a user starts it, in its own process.
LONGBOW = [sys.executable, "-m", "s3longbow"]


def longbow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LONGBOW, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


@pytest.fixture()
def synced(src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A finished sync of a few objects, one of them already at the destination; returns the
    job database and the sync's JSON summary."""
    sizes = {f"photos/{n:02d}.jpg": 40_000 * (n + 1) for n in range(12)}
    sizes["big/video.mp4"] = 7 * 1024 * 1024 + 3
    for key, size in sizes.items():
        src_bucket.put(key, os.urandom(size))
    dst_bucket.put("photos/00.jpg", src_bucket.get("photos/00.jpg"))
    db = tmp_path / "jobs.db"
    env = cli_env(src_bucket.endpoint, dst_bucket.endpoint)
    # Held to 4 MiB/s, the copy lasts a few seconds: a few samples, a few points on the charts.
    args = [
        "sync",
        src_bucket.url + "/",
        dst_bucket.url + "/",
        "--db",
        str(db),
        "--json",
        "--bwlimit",
        "4MiB/s",
    ]
    done = longbow([*args, *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint)], env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["copied"]["objects"] == len(sizes) - 1
    assert summary["already_present"]["objects"] == 1
    return db, summary


def test_a_sync_records_its_invocation_and_samples_of_its_counters(
    synced: tuple[Path, dict[str, Any]],
) -> None:
    path, summary = synced
    db = JobDatabase(path)
    try:
        [invocation] = db.invocations(summary["run_id"])
        samples = db.samples(invocation.id)
    finally:
        db.close()
    assert invocation.ended_at is not None and invocation.summary is not None
    recorded = invocation.summary
    assert recorded["copied"] == summary["copied"] and recorded["ok"] is True
    assert recorded["already_present"] == summary["already_present"]
    assert recorded["failed"] == 0 and recorded["archived"] == {
        "needs_restore": 0,
        "restore_requested": 0,
    }
    # A first sample as the copying began, one a second, and a last with the final counts.
    assert len(samples) >= 3
    assert samples[0].objects_copied == 0 and samples[0].at >= invocation.started_at
    assert samples[-1].objects_copied == summary["copied"]["objects"]
    assert samples[-1].bytes_sent == summary["bytes_sent"]
    assert max(s.concurrency for s in samples) > 0
    assert all(a.at <= b.at for a, b in zip(samples, samples[1:], strict=False))


def test_the_report_of_a_real_sync_has_its_numbers_and_its_chart(
    synced: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    db, summary = synced
    html, png = tmp_path / "out" / "report.html", tmp_path / "chart.png"
    html.parent.mkdir()
    made = longbow(["report", "--db", str(db), "-o", str(html), "--png", str(png)], {})
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [f"wrote {html}", f"wrote {png}"]

    page = html.read_text()
    copied = summary["copied"]
    assert f'<div class="value">{copied["objects"]}</div>' in page
    assert f"{copied['bytes']:,} bytes" in page
    assert format_size(copied["bytes"]) in page
    assert "big/video.mp4" in page  # the largest copy
    assert "verified: source-md5" in page
    assert "already present" in page

    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0 and len(data) > 10_000


def test_a_missing_database_or_run_is_a_clear_error(tmp_path: Path) -> None:
    missing = longbow(
        ["report", "--db", str(tmp_path / "none.db"), "-o", str(tmp_path / "report.html")], {}
    )
    assert missing.returncode == 2
    assert "no job database" in missing.stderr and "--db" in missing.stderr
    JobDatabase(tmp_path / "empty.db").close()
    empty = longbow(
        ["report", "--db", str(tmp_path / "empty.db"), "-o", str(tmp_path / "report.html")], {}
    )
    assert empty.returncode == 2
    assert "no run in the job database" in empty.stderr and "status --all" in empty.stderr
    assert not (tmp_path / "report.html").exists()


@pytest.mark.browser
def test_the_report_opens_in_a_browser_offline_with_its_charts_drawn(
    synced: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    db, summary = synced
    html = tmp_path / "report.html"
    made = longbow(["report", "--db", str(db), "-o", str(html)], {})
    assert made.returncode == 0, made.stderr
    url = html.resolve().as_uri()

    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.on(
                "console",
                lambda message: (
                    problems.append(message.text) if message.type in ("error", "warning") else None
                ),
            )
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(url, wait_until="load")

            assert requests == [url]  # the file itself, nothing else
            assert problems == []
            assert page.title() == f"Longbow run {summary['run_id']}"
            for chart in ("chart-throughput", "chart-concurrency", "chart-outcomes"):
                box = page.locator(f"#{chart}").bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 50, chart
            for line in page.locator("#chart-throughput polyline").all():
                box = line.bounding_box()
                assert box is not None and box["width"] > 0
            copied = summary["copied"]
            assert page.locator("#objects-copied .value").inner_text() == str(copied["objects"])
            assert f"{copied['bytes']:,} bytes" in page.locator("#bytes-copied").inner_text()
            assert "big/video.mp4" in page.locator("#largest").inner_text()

            # Under the pointer, the throughput chart shows its values.
            box = page.locator("#chart-throughput").bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
            tip = page.locator("figure.chart-box .tip").first
            assert tip.is_visible() and "bytes sent" in tip.inner_text()
            assert requests == [url] and problems == []
        finally:
            browser.close()
