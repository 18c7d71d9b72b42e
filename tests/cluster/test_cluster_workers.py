"""Real `longbow send` and `longbow worker` processes against moto (SQS, DynamoDB, SSM) and
two SeaweedFS servers: a mixed migration by three workers, a worker killed mid-file, and a
long job kept invisible by the heartbeat."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from longbow_testkit.faultproxy import FaultProxy, Faults, Request
from s3longbow.cli.app import cli
from s3longbow.config import MiB
from s3longbow.model import JobState

from .conftest import DST_PREFIX, SRC_PREFIX, Cluster


def start_worker(cluster: Cluster, *extra: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cluster.longbow("worker", "--config", str(cluster.config_path), *extra),
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def finish(proc: subprocess.Popen[str], log: Path, timeout: float = 120) -> str:
    """Wait for a worker; fail with its log if it does not end well. Returns its stdout."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("worker did not end:\n" + log.read_text()[-3000:]) from None
    assert proc.returncode == 0, log.read_text()[-3000:]
    return out


def test_sender_and_three_workers_migrate_a_mixed_set(cluster: Cluster) -> None:
    objects = {
        "empty": b"",
        "big/a.bin": os.urandom(12 * MiB + 5),
        "big/b.bin": os.urandom(7 * MiB),
    }
    for i in range(25):
        objects[f"small/{i:02d} + name é.txt"] = os.urandom(1 + 997 * i)
    for key, data in objects.items():
        cluster.src.put(SRC_PREFIX + key, data)

    sent = cluster.run("send", "--config", str(cluster.config_path), "--json")
    assert sent.returncode == 0, sent.stderr
    report = json.loads(sent.stdout)
    assert report["queued"]["objects"] == len(objects)
    # 26 objects up to the multipart threshold share messages (10 a message); 2 travel alone.
    assert report["messages_sent"] == 3 + 2

    logs = [cluster.root / f"worker-{i}.log" for i in range(3)]
    workers = [start_worker(cluster, "--exit-when-idle", "--workers", "3", log=log) for log in logs]
    # New objects arrive while the workers run: a second send queues only those.
    late = {f"late/{i}": os.urandom(2048 + i) for i in range(3)}
    for key, data in late.items():
        cluster.src.put(SRC_PREFIX + key, data)
    again = cluster.run("send", "--config", str(cluster.config_path), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["queued"]["objects"] == len(late)
    outputs = [finish(w, log) for w, log in zip(workers, logs, strict=True)]

    assert cluster.copy_digests() == cluster.source_digests()
    items = cluster.items()
    assert len(items) == len(objects) + len(late)
    assert {i.state for i in items} == {JobState.DONE}
    assert all(i.verified for i in items), [(i.src_key, i.verify) for i in items]
    assert {i.dst_key for i in items} == {DST_PREFIX + k for k in (*objects, *late)}
    assert cluster.depth() == 0 and cluster.depth(cluster.dlq_url) == 0

    # Every worker wrote EMF metric lines; together they account for every byte copied.
    metrics = [json.loads(line) for out in outputs for line in out.splitlines() if line]
    assert all(m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Longbow" for m in metrics)
    total = sum(len(d) for d in (*objects.values(), *late.values()))
    assert sum(m["BytesSent"] for m in metrics) == total
    assert sum(m["ObjectsCopied"] for m in metrics) == len(objects) + len(late)
    # Logs are JSON lines and never show a key.
    for log in logs:
        text = log.read_text()
        assert cluster.dst.endpoint.secret_key not in text
        assert cluster.src.endpoint.secret_key not in text
        assert all(json.loads(line)["level"] for line in text.splitlines() if line)

    status = CliRunner().invoke(
        cli, ["status", "--cluster", "--config", str(cluster.config_path), "--json"]
    )
    assert status.exit_code == 0, status.output
    summary = json.loads(status.stdout)
    assert summary["jobs"]["done"] == len(objects) + len(late)
    assert summary["jobs"]["failed"] == 0 and summary["failed"] == []
    assert summary["queue"]["visible"] == 0 and summary["dead_letter_queue"]["visible"] == 0
    # Everything finished within the last five minutes: it all counts in the throughput.
    assert summary["throughput"]["objects"] == len(objects) + len(late)
    assert summary["throughput"]["bytes"] == total
    assert summary["throughput"]["bytes_per_second"] == pytest.approx(total / 300, rel=0.01)


class SlowSource:
    """A proxy in front of the source whose ranged GETs wait, while `slow` is set."""

    def __init__(self, cluster: Cluster, seconds: float) -> None:
        self.proxy = FaultProxy(cluster.src.endpoint.url, Faults())
        self.slow = threading.Event()
        self.slow.set()
        self.gets: dict[str, int] = {}
        self.lock = threading.Lock()

        def hook(request: Request) -> None:
            if request.kind == "GET-range":
                with self.lock:
                    self.gets[request.key] = self.gets.get(request.key, 0) + 1
                if self.slow.is_set():
                    time.sleep(seconds)

        self.proxy.on_request(hook)

    def __enter__(self) -> SlowSource:
        self.proxy.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proxy.stop()


def test_worker_killed_mid_file_is_resumed_by_another(cluster: Cluster) -> None:
    data = os.urandom(40 * MiB)  # eight 5 MiB parts
    cluster.src.put(SRC_PREFIX + "huge.bin", data)
    with SlowSource(cluster, 0.4) as source:
        cluster.src_endpoint_url = source.proxy.url
        cluster.write_config(visibility_timeout=5)
        sent = cluster.run("send", "--config", str(cluster.config_path))
        assert sent.returncode == 0, sent.stderr

        first_log = cluster.root / "first.log"
        first = start_worker(cluster, "--part-threads", "1", log=first_log)
        deadline = time.monotonic() + 60
        try:
            while cluster.parts("huge.bin") < 3:
                assert first.poll() is None, first_log.read_text()[-2000:]
                assert time.monotonic() < deadline, "no parts recorded in time"
                time.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        recorded = cluster.parts("huge.bin")
        assert cluster.dst.keys() == []  # really interrupted
        assert cluster.job("huge.bin").state is JobState.IN_PROGRESS  # type: ignore[union-attr]

        source.slow.clear()
        second_log = cluster.root / "second.log"
        second = start_worker(cluster, "--exit-when-idle", log=second_log)
        finish(second, second_log)

    item = cluster.job("huge.bin")
    assert item is not None and item.state is JobState.DONE and item.verified
    assert item.starts == 2  # the killed delivery, then the one that resumed
    assert item.bytes_reused >= recorded * 5 * MiB
    assert item.bytes_sent < len(data)  # the second worker sent only the missing parts
    assert item.bytes_sent + item.bytes_reused == len(data)
    assert cluster.copy_digests() == {"huge.bin": _md5(data)}
    assert cluster.depth() == 0


def test_heartbeat_keeps_a_long_job_invisible(cluster: Cluster) -> None:
    keys = ["one.bin", "two.bin"]
    data = {k: os.urandom(10 * MiB) for k in keys}  # two 5 MiB parts each
    for key in keys:
        cluster.src.put(SRC_PREFIX + key, data[key])
    # Each part takes 4 s to read: a job lasts about 8 s, the visibility is 3 s.
    with SlowSource(cluster, 4.0) as source:
        cluster.src_endpoint_url = source.proxy.url
        cluster.write_config(visibility_timeout=3)
        sent = cluster.run("send", "--config", str(cluster.config_path))
        assert sent.returncode == 0, sent.stderr
        logs = [cluster.root / f"w{i}.log" for i in range(2)]
        workers = [
            start_worker(
                cluster, "--exit-when-idle", "--workers", "1", "--part-threads", "1", log=log
            )
            for log in logs
        ]
        for worker, log in zip(workers, logs, strict=True):
            finish(worker, log)
        gets = dict(source.gets)

    for key in keys:
        item = cluster.job(key)
        assert item is not None and item.state is JobState.DONE
        assert item.starts == 1, f"{key} was started {item.starts} times"
        assert gets[SRC_PREFIX + key] == 2  # each part read once: no second worker read it
    assert cluster.copy_digests() == {k: _md5(v) for k, v in data.items()}


def _md5(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()


def test_sigterm_gives_held_messages_back_at_once(cluster: Cluster) -> None:
    data = os.urandom(30 * MiB)
    cluster.src.put(SRC_PREFIX + "big.bin", data)
    with SlowSource(cluster, 0.5) as source:
        cluster.src_endpoint_url = source.proxy.url
        cluster.write_config(visibility_timeout=60)
        assert cluster.run("send", "--config", str(cluster.config_path)).returncode == 0
        log = cluster.root / "worker.log"
        worker = start_worker(cluster, "--part-threads", "1", log=log)
        deadline = time.monotonic() + 60
        while cluster.parts("big.bin") < 1:
            assert worker.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 130, log.read_text()[-2000:]
    # Visible again at once, not after the 60 s visibility timeout.
    attrs = cluster.sqs.get_queue_attributes(
        QueueUrl=cluster.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "1"
    item = cluster.job("big.bin")
    assert item is not None and item.state is JobState.PENDING
    assert item.attempts == 0 and item.upload_id  # not counted as a failure; upload kept open
    assert json.loads(out.splitlines()[-1])["_aws"]  # the final metric line was written
    assert any(json.loads(line).get("event") == "signal" for line in log.read_text().splitlines())
