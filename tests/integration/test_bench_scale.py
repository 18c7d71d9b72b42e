"""The planning-at-scale bench end to end at a small size: the synthetic endpoint, the merge
alone, a sync's planning into a fresh job database, the projections, the JSON and the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from longbow_testkit.synthetic import KeySpace

BENCH = Path(__file__).resolve().parents[2] / "bench"
KEYS = 20_000


def test_a_small_run_plans_every_job_and_reports_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    argv = [sys.executable, str(BENCH / "scale.py"), "--keys", str(KEYS), "--json", str(out)]
    argv += ["--db-dir", str(tmp_path / "db")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"| {KEYS:,} |" in done.stdout and "10^8 keys in 10 minutes needs" in done.stdout

    document = json.loads(out.read_text())
    [result] = document["results"]
    assert result["keys"] == KEYS and document["cores"] and document["commit"]
    assert result["calibration_cpu_s"] > 0

    merge = result["merge"]
    assert merge["to_copy"] == KEYS // 100 + KEYS // 1000  # as diff_micro's listings make
    assert merge["merge_keys_per_s"] > 0 and merge["peak_rss_mib"] > 0
    assert 0 < merge["making_listings_s"] < merge["wall_s"]

    serve = result["serve"]
    assert serve["pages"] == KEYS // 1000 and serve["server_cpu_s"] > 0

    # Every other key is missing at the destination, every third of the others differs.
    src, dst = KeySpace(KEYS), KeySpace(KEYS, missing_every=2, differs_every=3)
    jobs = [i for i in range(KEYS) if not dst.present(i) or dst.size(i) != src.size(i)]
    planned = result["plan"]
    assert planned["jobs"] == len(jobs) == 13_333
    assert planned["job_bytes"] == sum(src.size(i) for i in jobs)
    assert planned["already_present"] == KEYS - len(jobs)
    assert planned["ledger_batches"] >= len(jobs) // 500
    assert planned["db_bytes"] > len(jobs) * 64  # a key, its destination key, indexes
    assert planned["peak_rss_mib"] > 0 and planned["server_cpu_s"] > 0
    # The kernel's resident-set counters are kept per CPU and summed when read, so a sample
    # of VmRSS may pass the VmHWM read later by a fraction of a MiB.
    assert len(planned["rss_mib_at"]) == 3
    assert max(planned["rss_mib_at"]) <= planned["peak_rss_mib"] + 1.0
    # The ledger's writes are made on whichever thread plans (this one, or a key range's).
    assert planned["keys_per_cpu_s"] > 0 and planned["ledger_cpu_s"] <= planned["cpu_s"]
    # The synthetic store lists in byte order, so the pair is listed by key ranges: a
    # connection per range thread and side, not one per folder as a folder split opens.
    assert 0 < planned["connections_opened"] < 2 * (1 + KEYS // 1000)
    assert planned["listing_cpu_s"] + planned["planner_cpu_s"] == pytest.approx(
        planned["cpu_s"], abs=0.002
    )
    assert not list((tmp_path / "db").iterdir())  # each database is removed once measured

    projected = document["projections"]
    assert projected["aws_like"]["listing_keys_per_s_per_side"] == 8 * 1000 / 0.050
    assert projected["aws_like"]["threads_for_goal"] == 9  # 10^8 keys at 50 ms a page
    for keys in ("100000000", "1000000000"):
        assert projected[keys]["wall_s"] > 0 and projected[keys]["cpu_s"] > 0
        assert projected[keys]["db_gib"] > 0 and projected[keys]["peak_rss_mib"] is None
        assert projected[keys]["aws_like_listing_s"] == int(keys) / 160_000
        assert projected[keys]["aws_like_wall_s"] == max(
            projected[keys]["cpu_s"], projected[keys]["aws_like_listing_s"]
        )
