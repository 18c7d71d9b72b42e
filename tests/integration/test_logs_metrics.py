"""Logs and metrics of a real sync between two SeaweedFS servers: JSON log lines in a file
with the run's events, the Prometheus endpoint scraped while the run goes, the textfile with
the final totals, and a log path or a port that cannot be used stopping the command before
anything is copied."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from longbow_testkit.faultproxy import FaultProxy, Request
from longbow_testkit.servers import LocalServer
from longbow_testkit.servers.ports import free_port_block

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket

pytestmark = pytest.mark.timeout(300)

SIZE = 3000


def longbow(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3longbow", *map(str, args)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


def seed(bucket: Bucket, count: int) -> list[str]:
    keys = [f"in/object-{n:02d}" for n in range(count)]
    for key in keys:
        bucket.put(key, os.urandom(SIZE))
    return keys


def samples(text: str) -> dict[str, float]:
    """name{label="value"} -> value, as Prometheus' own parser reads the text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_a_sync_writes_its_events_as_json_lines_to_the_log_file(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    keys = seed(src_bucket, 4)
    log = tmp_path / "sync.log"
    args: list[str | Path] = [
        "sync",
        f"{src_bucket.url}/in/",
        f"{dst_bucket.url}/out/",
        "--db",
        tmp_path / "jobs.db",
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
        "--json",
    ]
    env = cli_env(src_bucket.endpoint, dst_bucket.endpoint)
    done = longbow(*args, "--log-file", log, "--log-format", "json", "-v", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert done.stderr == ""  # every log line went to the file

    lines = [json.loads(text) for text in log.read_text().splitlines()]  # each line parses
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    events: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        events.setdefault(line.get("event", ""), []).append(line)
    (start,) = events["start"]
    assert start["run_id"] == summary["run_id"] and start["resumed"] is False
    assert start["pairs"] == [[f"{src_bucket.url}/in/", f"{dst_bucket.url}/out/"]]
    jobs = events["job"]
    assert sorted(job["key"] for job in jobs) == keys
    assert {(job["state"], job["size"], job["bytes_sent"]) for job in jobs} == {
        ("done", SIZE, SIZE)
    }
    assert all(job["level"] == "INFO" and job["run_id"] == summary["run_id"] for job in jobs)
    (end,) = events["end"]
    assert end["ok"] is True and end["objects_copied"] == summary["copied"]["objects"] == 4
    assert end["bytes_sent"] == summary["bytes_sent"] == 4 * SIZE

    # At the most verbose level (botocore's debug lines too) no secret key and no request
    # signature reaches the file (tests/integration/test_secrets.py checks every command).
    debug = tmp_path / "debug.log"
    args[2:5] = [f"{dst_bucket.url}/again/", "--db", tmp_path / "again.db"]
    done = longbow(*args, "--log-file", debug, "--log-format", "json", "-vvv", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(dst_bucket.keys("again/")) == 4
    text = debug.read_text()
    assert '"level": "DEBUG"' in text
    assert src_bucket.endpoint.secret_key not in text
    assert not re.search(r"[0-9a-f]{64}", text)  # a SigV4 signature is 64 hex digits


def test_the_endpoint_serves_counts_that_rise_while_the_sync_runs_and_end_at_its_totals(
    src_bucket: Bucket, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    count = 5
    seed(src_bucket, count)
    dst = new_bucket(seaweed_dst, "metrics-dst")
    dst.put("out/stale", b"not at the source")  # deleted once every copy is done
    port = free_port_block(1, grpc_offset=None)
    url = f"http://127.0.0.1:{port}/metrics"
    scrapes: list[tuple[str, dict[str, float]]] = []

    def scrape(moment: str) -> None:
        with urllib.request.urlopen(url, timeout=30) as reply:
            scrapes.append((moment, samples(reply.read().decode())))

    # Each request to the destination waits for a scrape: one object at a time, the counts
    # seen at the n-th upload are those of n-1 objects copied, and at the deletion (after
    # every copy) those of the whole run.
    def hook(request: Request) -> None:
        if request.method == "PUT" and request.key.startswith("out/object-"):
            scrape("upload")
        elif request.method == "POST" and "delete" in request.query:
            scrape("delete")

    with FaultProxy(seaweed_dst.endpoint.url) as proxy:
        proxy.on_request(hook)
        done = longbow(
            "sync",
            f"{src_bucket.url}/in/",
            f"{dst.url}/out/",
            "--db",
            tmp_path / "jobs.db",
            *endpoint_args(src_bucket.endpoint, None),
            "--dst-endpoint-url",
            proxy.url,
            "--dst-path-style",
            "--workers",
            "1",
            "--no-autotune",
            "--delete",
            "--force",
            "--metrics-port",
            str(port),
            "--json",
            env=cli_env(src_bucket.endpoint, dst.endpoint),
        )
        assert not proxy.hook_errors, proxy.hook_errors
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["copied"]["objects"] == count and summary["extra"]["deleted"] == 1

    assert [moment for moment, _ in scrapes] == ["upload"] * count + ["delete"]
    for n, (_, seen) in enumerate(scrapes[:count]):
        assert seen["longbow_objects_copied_total"] == n
        assert seen["longbow_bytes_copied_total"] == n * SIZE
        assert seen["longbow_jobs_in_flight"] == 1
        assert seen["longbow_concurrency_limit"] == 1
    requests = [seen["longbow_requests_total"] for _, seen in scrapes]
    assert requests == sorted(set(requests))  # every object's requests counted as they came
    _, last = scrapes[-1]
    assert last["longbow_objects_copied_total"] == summary["copied"]["objects"]
    assert last["longbow_bytes_copied_total"] == summary["copied"]["bytes"] == count * SIZE
    assert last["longbow_bytes_sent_total"] == summary["bytes_sent"]
    assert last["longbow_objects_planned_total"] == count
    assert last["longbow_jobs_in_flight"] == 0
    assert last['longbow_objects_skipped_total{reason="ignored"}'] == 0
    assert last["longbow_objects_failed_total"] == 0


def test_the_metrics_file_holds_the_final_totals(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(src_bucket, 3)
    dst_bucket.put("out/object-00", os.urandom(SIZE))  # same size: already present
    config = tmp_path / "longbow.toml"
    config.write_text('metrics_file = "node/longbow.prom"\n')  # relative to the file
    (tmp_path / "node").mkdir()
    done = longbow(
        "sync",
        f"{src_bucket.url}/in/",
        f"{dst_bucket.url}/out/",
        "--config",
        config,
        "--db",
        tmp_path / "jobs.db",
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
        "--json",
        env=cli_env(src_bucket.endpoint, dst_bucket.endpoint),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert [p.name for p in (tmp_path / "node").iterdir()] == ["longbow.prom"]
    final = samples((tmp_path / "node" / "longbow.prom").read_text())
    assert final["longbow_objects_copied_total"] == summary["copied"]["objects"] == 2
    assert final["longbow_bytes_copied_total"] == summary["copied"]["bytes"] == 2 * SIZE
    assert final["longbow_bytes_sent_total"] == summary["bytes_sent"]
    assert final["longbow_objects_already_present_total"] == 1
    assert final["longbow_bytes_already_present_total"] == SIZE
    assert final["longbow_objects_planned_total"] == 2
    assert final["longbow_requests_total"] >= 4  # two reads and two writes at least
    assert final["longbow_jobs_in_flight"] == 0


@pytest.fixture()
def taken_port() -> Any:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("problem", ["log file", "port in use", "metrics file"])
def test_a_log_path_or_port_that_cannot_be_used_stops_before_anything_is_copied(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path, taken_port: int, problem: str
) -> None:
    seed(src_bucket, 2)
    option, said = {
        "log file": (
            ["--log-file", tmp_path / "no-such-dir" / "sync.log"],
            f"cannot open the log file {tmp_path / 'no-such-dir' / 'sync.log'}",
        ),
        "port in use": (
            ["--metrics-port", str(taken_port)],
            f"cannot serve metrics on 127.0.0.1 port {taken_port}",
        ),
        "metrics file": (
            ["--metrics-file", tmp_path / "no-such-dir" / "longbow.prom"],
            f"cannot write the metrics file {tmp_path / 'no-such-dir' / 'longbow.prom'}",
        ),
    }[problem]
    done = longbow(
        "sync",
        f"{src_bucket.url}/in/",
        f"{dst_bucket.url}/out/",
        "--db",
        tmp_path / "jobs.db",
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
        *option,
        env=cli_env(src_bucket.endpoint, dst_bucket.endpoint),
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert said in done.stderr and "hint:" in done.stderr
    assert "Traceback" not in done.stderr
    assert dst_bucket.keys() == [] and not (tmp_path / "jobs.db").exists()


def test_a_port_can_be_left_to_the_system_and_is_logged(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    seed(src_bucket, 1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "s3longbow",
            "sync",
            f"{src_bucket.url}/in/",
            f"{dst_bucket.url}/out/",
            "--db",
            str(tmp_path / "jobs.db"),
            *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
            "--metrics-port",
            "0",
            "--log-format",
            "json",
            "-v",
        ],
        env={**os.environ, **cli_env(src_bucket.endpoint, dst_bucket.endpoint)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(line) for line in proc.stderr or ())
    )
    reader.start()
    assert proc.wait(timeout=240) == 0
    reader.join()
    (served,) = [line for line in lines if "metrics_url" in line]
    assert served["metrics_url"].startswith("http://127.0.0.1:")
    assert not served["metrics_url"].endswith(":0/metrics")
