"""A real `longbow worker` process's logs and Prometheus metrics: the config file's keys send
its JSON log lines to a file and keep its counts in a textfile beside its EMF lines, and a
metrics port in use stops it before it takes a message."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .conftest import DST_PREFIX, SRC_PREFIX, Cluster

SIZE = 2500


def samples(path: Path) -> dict[str, float]:
    """The unlabelled samples of a textfile, as Prometheus' own parser reads it."""
    return {
        s.name: s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
        if not s.labels
    }


def test_a_worker_logs_to_its_file_and_keeps_its_counts_in_the_metrics_file(
    cluster: Cluster,
) -> None:
    keys = [f"o-{n}" for n in range(3)]
    for key in keys:
        cluster.src.put(SRC_PREFIX + key, os.urandom(SIZE))
    # Paths in the config file are relative to it.
    cluster.write_config(transfer={"log_file": "worker.log", "metrics_file": "worker.prom"})
    assert cluster.send().messages_sent >= 1

    done = cluster.run("worker", "--config", str(cluster.config_path), "--exit-when-idle")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(cluster.copy_digests()) == keys
    assert '"_aws"' in done.stdout  # the EMF lines still go to standard output
    assert done.stderr == ""  # the log lines went to the file

    final = samples(cluster.root / "worker.prom")
    assert final["longbow_objects_copied_total"] == 3
    assert final["longbow_bytes_copied_total"] == final["longbow_bytes_sent_total"] == 3 * SIZE
    assert final["longbow_messages_received_total"] >= 1
    assert final["longbow_messages_deleted_total"] == final["longbow_messages_received_total"]
    assert final["longbow_messages_moved_aside_total"] == 0
    assert final["longbow_objects_failed_total"] == final["longbow_errors_total"] == 0
    assert final["longbow_jobs_in_flight"] == 0
    assert "longbow_objects_planned_total" not in final  # the sender plans, not a worker

    lines = [json.loads(text) for text in (cluster.root / "worker.log").read_text().splitlines()]
    events = [line["event"] for line in lines if "event" in line]
    assert events[0] == "start" and events[-1] == "stop", events
    jobs = [line for line in lines if line.get("event") == "job"]
    assert sorted(job["src"] for job in jobs) == [
        f"s3://{cluster.src.name}/{SRC_PREFIX}{key}" for key in keys
    ]
    assert all(job["dst"].startswith(f"s3://{cluster.dst.name}/{DST_PREFIX}") for job in jobs)
    assert lines[-1]["objects_copied"] == 3


def test_a_metrics_port_in_use_stops_the_worker_before_it_takes_a_message(
    cluster: Cluster,
) -> None:
    cluster.src.put(SRC_PREFIX + "waiting", os.urandom(SIZE))
    sent = cluster.send().messages_sent
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cluster.run(
            "worker",
            "--config",
            str(cluster.config_path),
            "--exit-when-idle",
            "--metrics-port",
            str(port),
        )
    assert done.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1 port {port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert cluster.depth() == sent and cluster.copy_digests() == {}
