"""Chaos, bounded for CI: a mixed data set copied while Longbow processes are SIGKILLed.

The long form of the same runs is `scripts/chaos.py` (see tests/fault/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from longbow_testkit.chaos import ChaosReport, Location, mixed_dataset, run_cluster, run_single
from longbow_testkit.chaos import seed_source as seed_objects
from longbow_testkit.servers import LocalServer

from ..conftest import new_bucket

pytestmark = pytest.mark.timeout(300)

KILLS = 5
SEED = 20261126


@pytest.fixture(scope="module")
def dataset(seaweed_src: LocalServer) -> tuple[Location, dict[str, int]]:
    """A few hundred objects, three of them multipart, seeded once for both modes."""
    sizes = mixed_dataset(200, seed=SEED, large=3, large_max=11 * 1024 * 1024)
    where = Location(seaweed_src.endpoint, new_bucket(seaweed_src, "chaos-src").name, "data/")
    seed_objects(where, sizes, seed=SEED)
    return where, sizes


def assert_survived(report: ChaosReport, sizes: dict[str, int]) -> None:
    print(report.text())  # the figures, in the test log
    assert report.kills == KILLS
    assert report.objects == len(sizes) * report.rounds
    assert report.missing == [] and report.corrupt == [] and report.unexpected == []
    assert report.exact == report.objects
    assert report.jobs_not_final == 0 and report.failed == []
    assert report.jobs.get("done", 0) + report.jobs.get("skipped", 0) == report.objects
    assert set(report.exit_codes) == {0}
    # Every byte went up at least once; what went again is what the kills cut short.
    assert report.bytes_uploaded >= report.source_bytes > 0


def test_sync_killed_five_times_loses_nothing(
    dataset: tuple[Location, dict[str, int]], seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    src, sizes = dataset
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "chaos-dst").name)
    report = run_single(
        src,
        dst,
        sizes,
        kills=KILLS,
        seconds=150,
        seed=SEED,
        workdir=tmp_path,
        extra_args=("--workers", "8"),
    )
    assert_survived(report, sizes)


def test_cluster_workers_killed_five_times_lose_nothing(
    dataset: tuple[Location, dict[str, int]],
    seaweed_dst: LocalServer,
    moto: LocalServer,
    tmp_path: Path,
) -> None:
    src, sizes = dataset
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "chaos-cdst").name)
    report = run_cluster(
        src, dst, sizes, moto.endpoint, kills=KILLS, seconds=150, seed=SEED, workdir=tmp_path
    )
    assert_survived(report, sizes)
    assert report.messages_left == 0
