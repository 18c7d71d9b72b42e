"""--max-duration and --max-transfer on SeaweedFS: the run stops at its limit as Ctrl-C stops
it (exit codes 10 and 8, the report says which limit), and the same command without the
limit copies the rest."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..conftest import Bucket
from .test_sync import env_for, run, sync_args

MiB = 1024 * 1024


def seed(bucket: Bucket, count: int) -> dict[str, bytes]:
    data = {f"k{i}": os.urandom(MiB) for i in range(count)}
    for key, body in data.items():
        bucket.put(key, body)
    return data


def test_max_transfer_stops_the_run_and_the_next_one_goes_on(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    data = seed(src_bucket, 6)
    env = env_for(src_bucket, dst_bucket)
    # One object at a time at 4 MiB/s: the limit is met part way through.
    base = [*sync_args(src_bucket, dst_bucket, tmp_path / "j.db"), "--workers", "1"]
    code, summary, err = run(
        [*base, "--no-autotune", "--bwlimit", "4MiB/s", "--max-transfer", "2MiB"], env
    )
    assert code == 8, err
    assert summary["interrupted"] is True and summary["stopped_by"] == "max-transfer"
    copied = summary["copied"]["objects"]
    assert 2 <= copied < 6 and summary["bytes_sent"] >= 2 * MiB
    assert "stopping the run at --max-transfer" in err

    code, summary, err = run(base, env)
    assert code == 0, err
    assert summary["stopped_by"] is None and summary["resumed"] is True
    assert copied + summary["copied"]["objects"] == 6
    assert {k: dst_bucket.get(k) for k in data} == data


def test_max_duration_stops_the_run_and_the_next_one_goes_on(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    data = seed(src_bucket, 4)
    env = env_for(src_bucket, dst_bucket)
    base = [*sync_args(src_bucket, dst_bucket, tmp_path / "j.db"), "--bwlimit", "1MiB/s"]
    started = time.monotonic()
    code, summary, err = run([*base, "--max-duration", "1s"], env)
    took = time.monotonic() - started
    assert code == 10, err
    assert summary["interrupted"] is True and summary["stopped_by"] == "max-duration"
    assert summary["copied"]["objects"] < 4 and took < 3.5  # 4 MiB at 1 MiB/s take 4 s

    code, summary, err = run(base, env)
    assert code == 0, err
    assert {k: dst_bucket.get(k) for k in data} == data


def test_limits_are_checked_before_anything_runs(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    base = sync_args(src_bucket, dst_bucket, tmp_path / "j.db")
    env = env_for(src_bucket, dst_bucket)
    code, _, err = run([*base, "--max-duration", "soon"], env)
    assert code == 2 and "'soon' is not a duration" in err
    code, _, err = run([*base, "--max-duration", "0s"], env)
    assert code == 2 and "is no time at all" in err
    code, _, err = run([*base, "--max-transfer", "lots"], env)
    assert code == 2 and "is not a size" in err
