"""The benchmark's figures: per-run derivation, medians, ratios, the limit and scaled sets."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    # bench/ is a folder of scripts, not a package: load its modules by path.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


stats = _load("stats")
workloads = _load("workloads")
GiB = 1024**3


def usage(wall: float, cpu: float, rss: float = 100.0) -> dict[str, float]:
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss}


def test_result_derives_rates_and_cpu_per_unit() -> None:
    result = stats.make_result("longbow", "large", 1, 4, 2 * GiB, usage(10.0, 5.0))
    assert result.mb_per_s == pytest.approx(2 * GiB / 10 / 1e6, abs=0.1)
    assert result.objects_per_s == 0.4
    assert result.cpu_ms_per_object == 1250.0
    assert result.cpu_s_per_gib == 2.5


def test_zero_byte_set_has_no_cpu_per_gib() -> None:
    result = stats.make_result("rclone", "planning", 1, 1000, 0, usage(2.0, 0.5))
    assert result.cpu_s_per_gib is None
    assert result.mb_per_s == 0.0
    assert result.objects_per_s == 500.0
    assert result.cpu_ms_per_object == 0.5


def test_limit_is_the_slower_side_with_both_sides_cpu() -> None:
    limit = stats.concurrent_limit(usage(2.0, 0.5, 30.0), usage(3.5, 0.7, 20.0))
    assert limit == {"wall_s": 3.5, "cpu_s": pytest.approx(1.2), "peak_rss_mib": 30.0}


def rows() -> list[object]:
    make = stats.make_result
    return [
        make("longbow", "small", 1, 100, 100, usage(10.0, 2.0)),
        make("longbow", "small", 2, 100, 100, usage(20.0, 3.0)),
        make("longbow", "small", 3, 100, 100, usage(40.0, 4.0)),
        make("rclone", "small", 1, 100, 100, usage(5.0, 1.0, 50.0)),
        make("limit", "small", 1, 100, 100, usage(4.0, 1.0)),
    ]


def test_medians_group_by_workload_and_tool_with_spread() -> None:
    meds = stats.medians(rows())
    ours = meds[("small", "longbow")]
    assert ours["rounds"] == 3
    assert ours["wall_s"] == 20.0
    assert (ours["objects_per_s_min"], ours["objects_per_s_max"]) == (2.5, 10.0)
    assert ours["cpu_s_per_gib"] is not None


def test_medians_accept_records_read_back_from_json() -> None:
    assert stats.medians(asdict(r) for r in rows()) == stats.medians(rows())


def test_ratios_against_rclone_and_limit() -> None:
    # Speed ratios come from wall times (same work for every tool): 5 s, 20 s and 4 s here.
    found = stats.ratios(stats.medians(rows()), "small")
    assert found["speed_vs_rclone"] == pytest.approx(5.0 / 20.0)
    assert found["cpu_vs_rclone"] == pytest.approx(3.0)
    assert found["rss_vs_rclone"] == pytest.approx(2.0)
    assert found["speed_vs_limit"] == pytest.approx(5.0 / 25.0)


def test_ratios_missing_tools_or_zero() -> None:
    assert stats.ratios({}, "small") == {}
    assert stats.ratio(1.0, 0.0) is None
    assert stats.ratio(None, 2.0) is None


def test_full_scale_sets_match_the_specification() -> None:
    sets = workloads.build(1.0)
    assert [size for _, size in sets["large"]] == [GiB] + [GiB // 4] * 4
    assert len(sets["small"]) == 2000
    assert len(sets["mixed"]) == 100
    assert all(1024 <= size <= 64 * 1024**2 for _, size in sets["mixed"])
    assert len(sets["planning"]) == 100_000
    assert {size for _, size in sets["planning"]} == {0}
    assert len({key for key, _ in sets["planning"]}) == 100_000


def test_scaled_sets_keep_their_character() -> None:
    quick = workloads.build(0.05)
    assert len(quick["small"]) == 100
    assert len(quick["planning"]) == 5000
    # The smaller mixed set is the start of the full one, so results stay comparable.
    assert quick["mixed"] == workloads.build(1.0)["mixed"][: len(quick["mixed"])]
    assert len(quick["large"]) == 5 and quick["large"][0][1] < GiB


@pytest.mark.parametrize("scale", [0.0, -1.0, 1.5])
def test_scale_out_of_range_is_refused(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        workloads.build(scale)


def test_written_files_match_their_digests(tmp_path: Path) -> None:
    digests = workloads.write_files(tmp_path, [("a/x.bin", 0), ("a/b/y.bin", 3000)])
    assert (tmp_path / "a/x.bin").stat().st_size == 0
    assert digests["a/b/y.bin"] == hashlib.md5((tmp_path / "a/b/y.bin").read_bytes()).hexdigest()


def test_speed_ratio_is_not_hidden_by_rounded_rates() -> None:
    # Five large objects in 23 s and in 25 s both round to 0.2 objects/s.
    make = stats.make_result
    meds = stats.medians(
        [
            make("longbow", "large", 1, 5, 2 * GiB, usage(23.0, 3.6)),
            make("rclone", "large", 1, 5, 2 * GiB, usage(25.0, 8.2)),
        ]
    )
    assert meds[("large", "longbow")]["objects_per_s"] == meds[("large", "rclone")]["objects_per_s"]
    assert stats.ratios(meds, "large")["speed_vs_rclone"] == pytest.approx(25.0 / 23.0)
