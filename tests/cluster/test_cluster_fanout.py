"""Giant objects fanned out across real `longbow worker` processes (moto for SQS and DynamoDB,
SeaweedFS for both sides): ranges of parts taken by several workers and completed once, a
worker killed mid-range whose range another takes over, a source changed mid-way, and an S3
event that announces a giant object.

The threshold and the parts are small here: objects above 20 MiB are fanned out, in ranges of
two 5 MiB parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from longbow_testkit.faultproxy import FaultProxy, Faults, Request
from s3longbow.cluster.dynamodb import JOB_SK
from s3longbow.cluster.jobitems import JobItem
from s3longbow.cluster.messages import job_id
from s3longbow.config import MiB
from s3longbow.model import JobState

from ..conftest import Bucket
from .conftest import DST_PREFIX, SRC_PREFIX, Cluster
from .test_cluster_workers import SlowSource, finish, start_worker

KEY = "giant.bin"


def put_multipart(bucket: Bucket, key: str, parts: list[bytes]) -> str:
    """Upload `parts` as a multipart object (its own part layout); returns its ETag."""
    client = bucket.client
    upload = client.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
    etags = [
        client.upload_part(Bucket=bucket.name, Key=key, UploadId=upload, PartNumber=i, Body=body)[
            "ETag"
        ]
        for i, body in enumerate(parts, 1)
    ]
    client.complete_multipart_upload(
        Bucket=bucket.name,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]},
    )
    return str(client.head_object(Bucket=bucket.name, Key=key)["ETag"]).strip('"')


class Completions:
    """A proxy in front of the destination counting CompleteMultipartUpload requests."""

    def __init__(self, cluster: Cluster) -> None:
        self.proxy = FaultProxy(cluster.dst.endpoint.url, Faults())
        self.count = 0
        self.lock = threading.Lock()

        def hook(request: Request) -> None:
            if request.method == "POST" and "uploadId" in request.query:
                with self.lock:
                    self.count += 1

        self.proxy.on_request(hook)
        self.proxy.start()
        cluster.dst_endpoint_url = self.proxy.url

    def stop(self) -> None:
        self.proxy.stop()


@pytest.fixture()
def completions(cluster: Cluster) -> Iterator[Completions]:
    counter = Completions(cluster)
    yield counter
    counter.stop()


def fan_out_config(cluster: Cluster, **settings: object) -> None:
    cluster.write_config(fanout_threshold="20MiB", fanout_parts=2, **settings)


def object_item(cluster: Cluster) -> JobItem:
    item = cluster.job(KEY)
    assert item is not None
    return item


def range_items(cluster: Cluster) -> list[JobItem]:
    return sorted(cluster.items("range"), key=lambda i: i.range_index or 0)


def part_items(cluster: Cluster) -> int:
    """Parts recorded under the ranges of the giant object."""
    prefix = job_id(cluster.src.name, SRC_PREFIX + KEY, cluster.dst.name, DST_PREFIX + KEY)
    count = 0
    for page in cluster.dynamodb.get_paginator("scan").paginate(TableName=cluster.table):
        for raw in page.get("Items", ()):
            if raw["pk"]["S"].startswith(prefix + "#r") and raw["sk"]["S"] != JOB_SK:
                count += 1
    return count


def open_uploads(bucket: Bucket) -> list[str]:
    resp = bucket.client.list_multipart_uploads(Bucket=bucket.name)
    return [u["Key"] for u in resp.get("Uploads", [])]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def send(cluster: Cluster) -> dict[str, object]:
    sent = cluster.run("send", "--config", str(cluster.config_path), "--json")
    assert sent.returncode == 0, sent.stderr
    return dict(json.loads(sent.stdout))


def test_a_giant_object_is_copied_by_several_workers_and_completed_once(
    cluster: Cluster, completions: Completions
) -> None:
    # 9 parts of the source's own 5 MiB layout: five ranges (of 1, 2, 2, 2 and 2 parts), and
    # a small object beside it, copied as usual.
    parts = [os.urandom(5 * MiB) for _ in range(8)] + [os.urandom(MiB + 7)]
    etag = put_multipart(cluster.src, SRC_PREFIX + KEY, parts)
    data = b"".join(parts)
    cluster.src.put(SRC_PREFIX + "small.txt", b"small")
    with SlowSource(cluster, 0.3) as source:
        cluster.src_endpoint_url = source.proxy.url
        fan_out_config(cluster)
        report = send(cluster)
        assert report["queued"] == {"objects": 2, "bytes": len(data) + 5}
        assert report["fanned_out"] == {"objects": 1, "ranges": 5}
        assert report["messages_sent"] == 6
        assert object_item(cluster).state is JobState.PENDING
        assert object_item(cluster).ranges == 5

        logs = [cluster.root / f"w{i}.log" for i in range(3)]
        workers = [
            start_worker(
                cluster, "--exit-when-idle", "--workers", "1", "--part-threads", "1", log=log
            )
            for log in logs
        ]
        for worker, log in zip(workers, logs, strict=True):
            finish(worker, log)

    item = object_item(cluster)
    assert item.state is JobState.DONE, item.reason
    assert item.verified and item.verify == "source-etag"
    assert item.ranges_done == frozenset(range(5))
    assert item.bytes_sent == len(data)
    assert completions.count == 1  # CompleteMultipartUpload exactly once
    head = cluster.dst.client.head_object(Bucket=cluster.dst.name, Key=DST_PREFIX + KEY)
    assert head["ETag"].strip('"') == etag  # the source's own layout, reproduced
    assert cluster.copy_digests() == {KEY: md5(data), "small.txt": md5(b"small")}
    ranges = range_items(cluster)
    assert [r.state for r in ranges] == [JobState.DONE] * 5
    assert len({r.worker for r in ranges}) > 1, [r.worker for r in ranges]
    assert open_uploads(cluster.dst) == []
    # Only the object counts as a job in the state index: status sees two jobs done.
    status = cluster.run("status", "--cluster", "--config", str(cluster.config_path), "--json")
    assert json.loads(status.stdout)["jobs"]["done"] == 2
    assert cluster.depth() == 0 and cluster.depth(cluster.dlq_url) == 0


def test_a_range_of_a_killed_worker_is_taken_over_and_the_object_completes_once(
    cluster: Cluster, completions: Completions
) -> None:
    data = os.urandom(40 * MiB)  # one part: copied in our 5 MiB parts, 8 of them, 4 ranges
    cluster.src.put(SRC_PREFIX + KEY, data)
    with SlowSource(cluster, 0.5) as source:
        cluster.src_endpoint_url = source.proxy.url
        fan_out_config(cluster, visibility_timeout=5)
        assert send(cluster)["fanned_out"] == {"objects": 1, "ranges": 4}

        first_log = cluster.root / "first.log"
        first = start_worker(cluster, "--workers", "1", "--part-threads", "1", log=first_log)
        deadline = time.monotonic() + 60
        try:
            while part_items(cluster) < 1:
                assert first.poll() is None, first_log.read_text()[-2000:]
                assert time.monotonic() < deadline, "no part recorded in time"
                time.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        killed = [r for r in range_items(cluster) if r.state is JobState.IN_PROGRESS]
        assert len(killed) == 1  # its one range, interrupted mid-way
        assert object_item(cluster).state is JobState.IN_PROGRESS

        source.slow.clear()
        logs = [cluster.root / f"w{i}.log" for i in range(2)]
        workers = [
            start_worker(cluster, "--exit-when-idle", "--workers", "2", log=log) for log in logs
        ]
        for worker, log in zip(workers, logs, strict=True):
            finish(worker, log)

    item = object_item(cluster)
    assert item.state is JobState.DONE, item.reason
    # A one-part source's MD5 cannot be reproduced by parts sent by many workers.
    assert not item.verified and "MD5 of all its bytes" in (item.verify or "")
    assert completions.count == 1
    assert cluster.copy_digests() == {KEY: md5(data)}
    taken_over = next(r for r in range_items(cluster) if r.id == killed[0].id)
    assert taken_over.state is JobState.DONE and taken_over.starts == 2
    assert taken_over.bytes_reused >= 5 * MiB  # resumed from the part the killed one sent
    assert item.bytes_sent + item.bytes_reused == len(data)
    assert open_uploads(cluster.dst) == []
    assert cluster.depth() == 0


def test_a_source_changed_mid_way_fails_the_object_and_leaves_no_upload(
    cluster: Cluster, completions: Completions
) -> None:
    data = os.urandom(30 * MiB)  # 6 parts, 3 ranges
    cluster.src.put(SRC_PREFIX + KEY, data)
    with SlowSource(cluster, 0.5) as source:
        cluster.src_endpoint_url = source.proxy.url
        fan_out_config(cluster)
        send(cluster)
        logs = [cluster.root / f"w{i}.log" for i in range(2)]
        workers = [
            start_worker(
                cluster, "--exit-when-idle", "--workers", "1", "--part-threads", "1", log=log
            )
            for log in logs
        ]
        deadline = time.monotonic() + 60
        while part_items(cluster) < 1:
            assert all(w.poll() is None for w in workers)
            assert time.monotonic() < deadline, "no part recorded in time"
            time.sleep(0.05)
        cluster.src.put(SRC_PREFIX + KEY, os.urandom(30 * MiB))  # a new version mid-way
        source.slow.clear()
        for worker, log in zip(workers, logs, strict=True):
            finish(worker, log)

    item = object_item(cluster)
    assert item.state is JobState.FAILED
    assert "changed" in (item.reason or ""), item.reason
    assert completions.count == 0
    assert open_uploads(cluster.dst) == []
    assert cluster.dst.keys() == []
    assert cluster.depth() == 0
    # `status` shows the object's failure with its reason.
    status = cluster.run("status", "--cluster", "--config", str(cluster.config_path), "--json")
    summary = json.loads(status.stdout)
    assert summary["jobs"]["failed"] == 1
    assert any("changed" in f["reason"] for f in summary["failed"])


def test_an_s3_event_for_a_giant_object_fans_out(cluster: Cluster, tmp_path: Path) -> None:
    parts = [os.urandom(5 * MiB) for _ in range(5)]
    etag = put_multipart(cluster.src, SRC_PREFIX + KEY, parts)
    data = b"".join(parts)
    fan_out_config(cluster)
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:CompleteMultipartUpload",
                "eventTime": "2024-05-01T12:00:00.000Z",
                "s3": {
                    "bucket": {"name": cluster.src.name},
                    "object": {"key": SRC_PREFIX + KEY, "size": len(data), "eTag": etag},
                },
            }
        ]
    }
    cluster.send_raw(json.dumps(event))
    log = tmp_path / "worker.log"
    worker = start_worker(cluster, "--exit-when-idle", log=log)
    finish(worker, log)

    item = object_item(cluster)
    assert item.state is JobState.DONE and item.verified, item.reason
    assert item.ranges == 3 and item.ranges_done == frozenset(range(3))
    assert len(range_items(cluster)) == 3
    assert cluster.copy_digests() == {KEY: md5(data)}
    lines = [json.loads(line) for line in log.read_text().splitlines() if line]
    assert any("fanned out into 3 ranges" in line["message"] for line in lines)


def test_send_flags_set_the_threshold(cluster: Cluster) -> None:
    cluster.src.put(SRC_PREFIX + KEY, os.urandom(12 * MiB))
    cluster.write_config()
    dry = cluster.run(
        "send",
        "--config",
        str(cluster.config_path),
        "--dry-run",
        "--json",
        "--fanout-threshold",
        "10MiB",
        "--fanout-parts",
        "1",
    )
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["fanned_out"] == {"objects": 1, "ranges": 3}
    bad = cluster.run(
        "send", "--config", str(cluster.config_path), "--fanout-threshold", "1MiB", "--dry-run"
    )
    assert bad.returncode == 2
    assert "--fanout-threshold must be at least" in bad.stderr
