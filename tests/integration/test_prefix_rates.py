"""Request rates per key prefix, against a real SeaweedFS behind a proxy that throttles one
prefix as S3 throttles a busy partition (503 SlowDown beyond its rate).

A prefix that is asked to slow down is slowed, so the run ends with every object exact and
few refusals, while other prefixes go on at their own pace; a cap per prefix is kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.chaos import ChaosReport, Location, compare, seed_source
from longbow_testkit.faultproxy import FaultProxy, Request
from longbow_testkit.servers import LocalServer

from ..conftest import cli_env, new_bucket

pytestmark = pytest.mark.timeout(300)

HOT_RATE = 20  # writes a second the throttled prefix takes
PER_PREFIX = 100
# Seconds after the first refusal by which the slowed rate must have stopped the refusals.
LATE = 1.5


class PrefixThrottle:
    """A proxy hook: object PUTs under `hot/` beyond `rate` in any second get 503 SlowDown;
    every PUT let through is recorded with its time, by prefix."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.accepted: dict[str, list[float]] = defaultdict(list)
        self.refused = 0
        self.refused_at: list[float] = []

    def __call__(self, request: Request) -> str | None:
        if request.method != "PUT" or not request.key:
            return None
        prefix = request.key.split("/", 1)[0]
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.accepted[prefix] if now - t < 1.0]
            if self.rate is not None and prefix == "hot" and len(recent) >= self.rate:
                self.refused += 1
                self.refused_at.append(now)
                return "slow_down"
            self.accepted[prefix].append(now)
        return None

    def busiest_second(self, prefix: str) -> int:
        """The most PUTs of a prefix let through within any one second."""
        times = sorted(self.accepted[prefix])
        most, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most


@pytest.fixture(scope="module")
def two_prefixes(seaweed_src: LocalServer) -> Location:
    where = Location(seaweed_src.endpoint, new_bucket(seaweed_src, "prefixes-src").name, "")
    sizes = {f"{p}/{n:04d}": 1024 for p in ("hot", "cold") for n in range(PER_PREFIX)}
    seed_source(where, sizes, seed=11)
    return where


def _sync(
    src: Location, dst: Location, proxy: FaultProxy, db: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
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
        "--src-endpoint-url",
        src.endpoint.url,
        "--src-path-style",
        "--dst-endpoint-url",
        proxy.url,
        "--dst-path-style",
        *extra,
    ]
    env = {**os.environ, **cli_env(src.endpoint, dst.endpoint)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)


def _exact(src: Location, dst: Location) -> ChaosReport:
    report = ChaosReport(mode="prefix-rates", seed=11)
    keys = [f"{p}/{n:04d}" for p in ("hot", "cold") for n in range(PER_PREFIX)]
    compare(src, dst, keys, report)
    return report


def test_a_prefix_asked_to_slow_down_is_slowed_and_the_others_go_on(
    two_prefixes: Location, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "prefixes-dst").name, "")
    throttle = PrefixThrottle(HOT_RATE)
    with FaultProxy(seaweed_dst.endpoint.url, max_connections=512) as proxy:
        proxy.on_request(throttle)
        done = _sync(two_prefixes, dst, proxy, tmp_path / "jobs.db")
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    assert summary["copied"]["objects"] == 2 * PER_PREFIX and summary["failed"] == []
    report = _exact(two_prefixes, dst)
    assert report.exact == 2 * PER_PREFIX, report
    # Slowed after the first refusals: a run that retried blindly at its full concurrency
    # would be refused for most of the hot prefix's objects, again and again (the test
    # below: more refusals than objects, and many late). What was in flight when the first
    # refusal came is refused too, and so is what goes in the throttle's next second at the
    # slowed rate; after that, hardly anything.
    assert 0 < throttle.refused <= PER_PREFIX, throttle.refused
    first = throttle.refused_at[0]
    late = [round(t - first, 2) for t in throttle.refused_at if t - first > LATE]
    assert len(late) <= PER_PREFIX // 10, late
    # The cold prefix was not held to the hot one's pace: it was done long before.
    assert max(throttle.accepted["cold"]) < max(throttle.accepted["hot"]) - 1.0


def test_without_prefix_rates_the_hot_prefix_is_refused_far_more(
    two_prefixes: Location, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    """The same run with the rates turned off: what the test above is measured against."""
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "blind-dst").name, "")
    throttle = PrefixThrottle(HOT_RATE)
    with FaultProxy(seaweed_dst.endpoint.url, max_connections=512) as proxy:
        proxy.on_request(throttle)
        _sync(two_prefixes, dst, proxy, tmp_path / "jobs.db", "--prefix-write-rate", "0")
    assert throttle.refused > PER_PREFIX, throttle.refused
    first = throttle.refused_at[0]
    late = [t for t in throttle.refused_at if t - first > LATE]
    assert len(late) > PER_PREFIX // 10, (throttle.refused, len(late))


def test_a_prefix_never_gets_more_writes_a_second_than_its_cap(
    two_prefixes: Location, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "capped-dst").name, "")
    throttle = PrefixThrottle(None)  # the server takes everything; the cap is ours
    cap = 25
    with FaultProxy(seaweed_dst.endpoint.url, max_connections=512) as proxy:
        proxy.on_request(throttle)
        done = _sync(
            two_prefixes,
            dst,
            proxy,
            tmp_path / "jobs.db",
            "--prefix-write-rate",
            str(cap),
            "--rate-prefix",
            "segments:1",
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _exact(two_prefixes, dst).exact == 2 * PER_PREFIX
    for prefix in ("hot", "cold"):
        # A tenth of a second's burst after an idle spell, and one for the timing of the
        # proxy's own clock against ours.
        assert throttle.busiest_second(prefix) <= cap + cap // 10 + 2, prefix


def test_a_bad_prefix_depth_is_refused_before_anything_is_copied(
    two_prefixes: Location, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "refused-dst").name, "")
    with FaultProxy(seaweed_dst.endpoint.url) as proxy:
        done = _sync(two_prefixes, dst, proxy, tmp_path / "jobs.db", "--rate-prefix", "folders")
        assert proxy.counts["PUT"] == 0
    assert done.returncode != 0
    assert "rate-prefix 'folders'" in done.stderr and "segments:N" in done.stderr
