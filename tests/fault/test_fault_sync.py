"""Whole `longbow sync` runs through fault proxies on both legs: each fault kind alone at a
rate, all of them together, and endpoints that never work.

The rate is LONGBOW_FAULT_RATE (default 0.1): the probability that a request gets the fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.chaos import ChaosReport, Location, compare, mixed_dataset, seed_source
from longbow_testkit.faultproxy import FAULT_KINDS, FaultProxy, Faults
from longbow_testkit.servers import LocalServer

from ..conftest import cli_env, new_bucket

pytestmark = pytest.mark.timeout(240)

RATE = float(os.environ.get("LONGBOW_FAULT_RATE", "0.1"))
# Longbow's read timeout (60 s) is not configurable, so stalls here are slow bodies, not
# timeouts: long enough to overlap other requests, short enough for CI.
STALL_SECONDS = 1.0
SEED = 7
# Every attempt can meet a fault; give jobs room so the run proves recovery, not luck.
ATTEMPTS = "10"


@dataclass
class Legs:
    """A proxy in front of the source and one in front of the destination."""

    src: FaultProxy
    dst: FaultProxy

    def injected(self) -> dict[str, int]:
        a, b = self.src.faults_injected, self.dst.faults_injected
        return {kind: a[kind] + b[kind] for kind in FAULT_KINDS}

    def set_faults(self, faults: Faults, seed: int) -> None:
        self.src.set_faults(_with_seed(faults, seed))
        self.dst.set_faults(_with_seed(faults, seed + 1))


def _with_seed(faults: Faults, seed: int) -> Faults:
    values = {name: getattr(faults, name) for name in Faults.__dataclass_fields__}
    return Faults(**{**values, "seed": seed})


@pytest.fixture(scope="module")
def dataset(seaweed_src: LocalServer) -> tuple[Location, dict[str, int]]:
    """Eighty objects under awkward keys, one of them multipart, seeded once: enough requests
    that every fault kind fires at the default rate, even when all of them compete."""
    sizes = mixed_dataset(80, seed=SEED, large=1, large_max=11 * 1024 * 1024)
    where = Location(seaweed_src.endpoint, new_bucket(seaweed_src, "faulty-src").name, "d/")
    seed_source(where, sizes, seed=SEED)
    return where, sizes


@pytest.fixture()
def legs(seaweed_src: LocalServer, seaweed_dst: LocalServer) -> Iterator[Legs]:
    with (
        FaultProxy(seaweed_src.endpoint.url) as src,
        FaultProxy(seaweed_dst.endpoint.url) as dst,
    ):
        yield Legs(src, dst)
    assert src.errors == [] and dst.errors == []


def sync(
    src: Location, dst: Location, legs: Legs, db: Path, *extra: str, timeout: float = 180
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    argv = [
        sys.executable,
        "-m",
        "s3longbow",
        "sync",
        src.url(),
        dst.url(),
        "--db",
        str(db),
        "--json",
        "--workers",
        "4",
        "--part-size",
        "5MiB",
        "--src-endpoint-url",
        legs.src.url,
        "--src-path-style",
        "--dst-endpoint-url",
        legs.dst.url,
        "--dst-path-style",
        *extra,
    ]
    env = {**os.environ, **cli_env(src.endpoint, dst.endpoint)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    summary = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done, summary


FAULT_RUNS: dict[str, Faults] = {
    "reset_mid_body": Faults(reset_mid_body=RATE),
    "stall": Faults(stall=RATE, stall_seconds=STALL_SECONDS),
    "slow_down": Faults(slow_down=RATE),
    "internal_error": Faults(internal_error=RATE),
    "flip_response_byte": Faults(flip_response_byte=RATE, data_only=True),
    "flip_request_byte": Faults(flip_request_byte=RATE, data_only=True),
    # Flips are drawn last and only on object data, so they get a higher rate to fire at all;
    # the other kinds also hit listings, where four failures in a row end the whole run.
    "all": Faults(
        reset_mid_body=RATE / 2,
        stall=RATE / 2,
        stall_seconds=STALL_SECONDS,
        slow_down=RATE / 2,
        internal_error=RATE / 2,
        flip_response_byte=min(1.0, RATE * 2),
        flip_request_byte=min(1.0, RATE * 2),
        data_only=True,
    ),
}


@pytest.mark.parametrize("kind", list(FAULT_RUNS))
def test_sync_through_faults_copies_every_object_exactly(
    kind: str,
    dataset: tuple[Location, dict[str, int]],
    seaweed_dst: LocalServer,
    legs: Legs,
    tmp_path: Path,
) -> None:
    src, sizes = dataset
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "faulty-dst").name)
    legs.set_faults(FAULT_RUNS[kind], SEED)
    done, summary = sync(src, dst, legs, tmp_path / "jobs.db", "--max-attempts", ATTEMPTS)
    injected = legs.injected()
    print(f"{kind} at {RATE}: injected {injected}")  # the figures, in the test log

    legs.set_faults(Faults(), SEED)  # read the result back without faults
    report = ChaosReport("faults", SEED)
    compare(src, dst, sizes, report)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["failed"] == []
    assert report.missing == [] and report.corrupt == [] and report.unexpected == []
    assert report.exact == len(sizes)
    kinds = [k for k in FAULT_KINDS if getattr(FAULT_RUNS[kind], k) > 0]
    assert all(injected[k] > 0 for k in kinds), injected
    assert sum(injected.values()) == sum(injected[k] for k in kinds)  # nothing else fired


@pytest.fixture()
def three_objects(seaweed_src: LocalServer) -> Location:
    where = Location(seaweed_src.endpoint, new_bucket(seaweed_src, "dead-src").name)
    seed_source(where, {"a": 10, "b c+%é": 2000, "big": 7 * 1024 * 1024}, seed=SEED)
    return where


def test_destination_refusing_every_write_fails_each_job_with_its_reason(
    three_objects: Location, seaweed_dst: LocalServer, legs: Legs, tmp_path: Path
) -> None:
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "dead-dst").name)
    legs.dst.set_faults(Faults(internal_error=1.0, only_methods=frozenset({"PUT", "POST"})))
    done, summary = sync(three_objects, dst, legs, tmp_path / "jobs.db")
    assert done.returncode == 1, done.stderr[-3000:]
    failed = {f["key"]: f["reason"] for f in summary["failed"]}
    assert sorted(failed) == ["a", "b c+%é", "big"]
    assert all("InternalError" in reason for reason in failed.values()), failed
    assert legs.dst.faults_injected["internal_error"] > 0
    assert dst.endpoint.client().list_objects_v2(Bucket=dst.bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize(("side", "fault"), [("src", "internal_error"), ("dst", "reset_mid_body")])
def test_endpoint_failing_every_request_ends_with_a_clear_error(
    side: str,
    fault: str,
    three_objects: Location,
    seaweed_dst: LocalServer,
    legs: Legs,
    tmp_path: Path,
) -> None:
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "dead-dst").name)
    proxy: FaultProxy = getattr(legs, side)
    proxy.set_faults(Faults(**{fault: 1.0}))
    done, _ = sync(three_objects, dst, legs, tmp_path / "jobs.db")  # bounded by its timeout
    assert done.returncode not in (0, 1), done.stderr[-3000:]  # nothing could even be listed
    assert "Traceback" not in done.stderr
    # The message names what failed: the endpoint, or the bucket and the status it answered.
    bucket = three_objects.bucket if side == "src" else dst.bucket
    named = proxy.url.removeprefix("http://") in done.stderr or bucket in done.stderr
    assert named, done.stderr[-3000:]
    if fault == "internal_error":
        assert "500" in done.stderr, done.stderr[-3000:]
    assert proxy.faults_injected[fault] > 0
