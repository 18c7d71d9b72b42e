"""`longbow report --cluster`: workers record samples of their counters in the job table (items
that expire), and the report sums them over the workers with the job table's totals."""

from __future__ import annotations

import os
import time
from pathlib import Path

from click.testing import CliRunner

from s3longbow.cli.app import cli
from s3longbow.cluster.provision import TTL_ATTRIBUTE
from s3longbow.cluster.samples import SAMPLE_PREFIX, SAMPLE_TTL_SECONDS, read_samples

from .conftest import SRC_PREFIX, Cluster


def test_workers_record_samples_and_the_report_sums_them(cluster: Cluster, tmp_path: Path) -> None:
    objects = {f"photos/{n:02d}.jpg": os.urandom(3000 * (n + 1)) for n in range(14)}
    for key, data in objects.items():
        cluster.src.put(SRC_PREFIX + key, data)
    cluster.send()
    first = cluster.drain()
    cluster.src.put(SRC_PREFIX + "late.bin", os.urandom(5000))
    cluster.send()
    second = cluster.drain()
    total = sum(map(len, objects.values())) + 5000

    # Each worker wrote samples (one a metrics interval, a first and a last), each expiring.
    by_worker = read_samples(cluster.dynamodb, cluster.table, time.time() - 600, time.time())
    assert set(by_worker) == {first.worker_id, second.worker_id}
    assert by_worker[first.worker_id][-1].objects_copied == len(objects)
    assert by_worker[second.worker_id][-1].bytes_copied == 5000
    raw = cluster.dynamodb.scan(TableName=cluster.table)["Items"]
    samples = [item for item in raw if item["pk"]["S"].startswith(SAMPLE_PREFIX)]
    assert len(samples) >= 4
    for item in samples:
        expires = int(item[TTL_ATTRIBUTE]["N"])
        assert 0 < expires - time.time() <= SAMPLE_TTL_SECONDS
        assert "gsi_state" not in item  # never counted as a job

    html, png = tmp_path / "cluster.html", tmp_path / "cluster.png"
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--cluster",
            "--config",
            str(cluster.config_path),
            "--hours",
            "1",
            "-o",
            str(html),
            "--png",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert f"Longbow cluster {cluster.table}" in page
    assert f'<div class="value">{len(objects) + 1}</div>' in page
    assert f"{total:,} bytes" in page
    assert first.worker_id in page and second.worker_id in page
    assert "photos/13.jpg" in page  # the largest copy
    assert "verified: source-md5" in page
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_cluster_report_needs_a_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--cluster", "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "--cluster needs --config" in result.output
    assert not (tmp_path / "r.html").exists()
