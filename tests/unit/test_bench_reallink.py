"""The real-link bed's choices that need no servers: which grid points can differ on a set."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def reallink() -> Iterator[ModuleType]:
    # bench/ is a folder of scripts that import each other by their plain names.
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("reallink")
    finally:
        sys.path.remove(str(BENCH))


def test_the_grid_is_the_fixed_one(reallink: ModuleType) -> None:
    assert len(reallink.GRID) == 16
    assert {p.transfers for p in reallink.GRID} == {16, 64, 128, 256}
    assert {p.concurrency for p in reallink.GRID} == {4, 16}
    assert {p.chunk for p in reallink.GRID} == {"8M", "64M"}
    assert reallink.GridPoint(64, 16, "8M").flags() == [
        "--transfers",
        "64",
        "--s3-upload-concurrency",
        "16",
        "--s3-chunk-size",
        "8M",
        "--s3-no-head",
    ]


def test_large_objects_differ_only_by_their_multipart_flags(reallink: ModuleType) -> None:
    # Five objects, four of them multipart: every --transfers runs all five at once.
    points = reallink.distinct_points(reallink.GRID, reallink.workloads.large(1.0))
    assert len(points) == 4
    assert {(p.concurrency, p.chunk) for p, _ in points} == {
        (4, "8M"),
        (4, "64M"),
        (16, "8M"),
        (16, "64M"),
    }
    assert all(p.transfers == 16 and len(same) == 3 for p, same in points)


def test_small_objects_differ_only_by_transfers(reallink: ModuleType) -> None:
    points = reallink.distinct_points(reallink.GRID, reallink.workloads.small(1.0))
    assert [p.transfers for p, _ in points] == [16, 64, 128, 256]
    assert all(len(same) == 3 for _, same in points)


def test_transfers_beyond_the_object_count_are_one_point(reallink: ModuleType) -> None:
    # 100 mixed objects, none reaching rclone's 200 MiB upload cutoff: 128 and 256 are alike.
    points = reallink.distinct_points(reallink.GRID, reallink.workloads.mixed(1.0))
    assert [p.transfers for p, _ in points] == [16, 64, 128]
    assert len(points[-1][1]) == 7


def test_a_large_set_scaled_below_the_cutoff_has_one_point(reallink: ModuleType) -> None:
    points = reallink.distinct_points(reallink.GRID, reallink.workloads.large(0.1))
    assert len(points) == 1 and len(points[0][1]) == 15


def test_scales_and_quick_case_arguments(reallink: ModuleType) -> None:
    args = reallink.parse_args(["--rtts", "0,250", "--scales", "250=0.25", "--window", "2"])
    assert args.rtts == [0, 250] and args.sets == ["large", "small", "mixed"]
    assert args.scales == {250: 0.25} and args.window == 2 * 1024 * 1024
    quick = reallink.parse_args(["--quick"])
    assert (quick.rtts, quick.sets, quick.rounds) == ([50], ["small"], 1)
    assert quick.scales == {50: 0.05} and len(quick.grid) == 2
    with pytest.raises(SystemExit):
        reallink.parse_args(["--sets", "planning"])
