"""Hostile keys and paths at a local directory: links out of the root, control characters,
keys at S3's 1,024-byte limit, a destination that turns read-only and one that fills up.
Each ends with the right exit code, and every job that did not copy is failed with its reason
(or, for a full disk, left to the next run) in `longbow status --json`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from longbow_testkit.servers import LocalServer
from s3longbow.errors import UnsafeKeyError
from s3longbow.stores.local import LocalStore

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket
from .conftest import db_args, longbow

EXIT_JOBS_FAILED = 1
EXIT_FATAL = 3


def status(tmp_path: Path) -> dict[str, object]:
    done = longbow("status", *db_args(tmp_path), "--json")
    return dict(json.loads(done.stdout))


def failures(tmp_path: Path) -> dict[str, str]:
    report = status(tmp_path)
    return {f["key"]: f["reason"] for f in report["failed"]}  # type: ignore[attr-defined]


@pytest.fixture()
def mount_point(tmp_path: Path) -> Iterator[Path]:
    """A directory to mount a small tmpfs on; unmounted at the end whatever happens."""
    point = tmp_path / "out" / "mnt"
    point.mkdir(parents=True)
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def mount_tmpfs(point: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True)


def test_a_source_link_to_a_file_outside_the_root_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "passwords.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0")
    src = tmp_path / "src"
    src.mkdir()
    (src / "plain.txt").write_text("plain")
    (src / "inside-link.txt").symlink_to(src / "plain.txt")
    (src / "leak.txt").symlink_to(secret)
    (src / "leak-dir").symlink_to(secret.parent, target_is_directory=True)
    out = tmp_path / "out"

    done = longbow("sync", str(src), str(out), *db_args(tmp_path), "-v")

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["inside-link.txt", "plain.txt"]
    assert (out / "inside-link.txt").read_text() == "plain"
    assert f"skipping {src / 'leak.txt'}: it links outside {src}" in done.stderr


def test_a_destination_link_out_of_the_root_is_refused(src_bucket: Bucket, tmp_path: Path) -> None:
    src_bucket.put("escape/file.txt", b"must not land outside")
    src_bucket.put("fine.txt", b"fine")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "escape").symlink_to(outside, target_is_directory=True)

    done = longbow(
        "sync",
        src_bucket.url,
        str(out),
        *db_args(tmp_path),
        *endpoint_args(src_bucket.endpoint, None),
        env=cli_env(src_bucket.endpoint, None),
    )

    assert done.returncode == EXIT_JOBS_FAILED, done.stderr
    assert list(outside.iterdir()) == []
    assert (out / "fine.txt").read_bytes() == b"fine"
    reason = failures(tmp_path)["escape/file.txt"]
    assert "leads out of" in reason and "symbolic link" in reason


def test_keys_with_control_characters_reach_a_directory_and_come_back(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    keys = ["tab\there", "bell\x07", "new\nline", "esc\x1b[31mred", "del\x7f"]
    for i, key in enumerate(keys):
        src_bucket.put(key, f"body {i}".encode())
    out = tmp_path / "out"
    ep = src_bucket.endpoint
    there = longbow(
        "sync",
        src_bucket.url,
        str(out),
        *db_args(tmp_path),
        *endpoint_args(ep, None),
        env=cli_env(ep, None),
    )
    assert there.returncode == 0, there.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(keys)
    back = longbow(
        "sync",
        str(out),
        dst_bucket.url,
        "--db",
        str(tmp_path / "back.db"),
        *endpoint_args(None, dst_bucket.endpoint),
        env=cli_env(None, dst_bucket.endpoint),
    )
    assert back.returncode == 0, back.stderr
    assert {k: dst_bucket.get(k) for k in keys} == {k: src_bucket.get(k) for k in keys}


def test_keys_at_the_1024_byte_limit_into_a_directory(moto: LocalServer, tmp_path: Path) -> None:
    # A directory cannot hold a 1,024-byte file name (255 bytes at most): that job fails with
    # the reason and the rest copy, including a 1,024-byte key made of short segments.
    bucket = new_bucket(moto, "long")
    long_key = "k" * 1024
    segmented = "/".join(["s" * 200] * 5) + "/" + "t" * 19
    assert len(long_key.encode()) == len(segmented.encode()) == 1024
    for key in (long_key, segmented, "short"):
        bucket.put(key, key.encode()[:10])
    out = tmp_path / "out"
    ep = bucket.endpoint
    done = longbow(
        "sync",
        bucket.url,
        str(out),
        *db_args(tmp_path),
        *endpoint_args(ep, None),
        env=cli_env(ep, None),
    )
    assert done.returncode == EXIT_JOBS_FAILED, done.stderr
    assert (out / segmented).read_bytes() == segmented.encode()[:10]
    assert (out / "short").read_bytes() == b"short"
    (failed,) = status(tmp_path)["failed"]  # type: ignore[misc]
    assert failed["key"] == long_key and "File name too long" in failed["reason"]


def test_a_destination_that_turns_read_only_fails_those_jobs_with_the_reason(
    tmp_path: Path, mount_point: Path
) -> None:
    src = tmp_path / "src"
    (src / "mnt").mkdir(parents=True)
    for i in range(3):
        (src / f"ok-{i}.txt").write_text(f"ok {i}")
        (src / "mnt" / f"locked-{i}.txt").write_text(f"locked {i}")
    # The destination's "mnt" folder is a file system that turns read-only after one file
    # was written there.
    mount_tmpfs(mount_point, "1m")
    (mount_point / "locked-0.txt").write_text("old")
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
    out = mount_point.parent
    done = longbow("sync", str(src), str(out), "--db", str(tmp_path / "ro.db"))

    assert done.returncode == EXIT_JOBS_FAILED, done.stderr
    assert [(out / f"ok-{i}.txt").read_text() for i in range(3)] == ["ok 0", "ok 1", "ok 2"]
    report = json.loads(longbow("status", "--db", str(tmp_path / "ro.db"), "--json").stdout)
    reasons = {f["key"]: f["reason"] for f in report["failed"]}
    assert set(reasons) == {f"mnt/locked-{i}.txt" for i in range(3)}
    assert all("Read-only file system" in r for r in reasons.values())


def test_a_destination_that_fills_up_stops_the_run_and_keeps_the_rest(
    tmp_path: Path, mount_point: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(os.urandom(700 * 1024))
    mount_tmpfs(mount_point, "2m")
    db = ["--db", str(tmp_path / "full.db")]

    done = longbow("sync", str(src), str(mount_point), *db, "--workers", "1")

    assert done.returncode == EXIT_FATAL, done.stderr
    assert f"the destination {mount_point} is full" in done.stderr
    assert "free some space" in done.stderr
    report = json.loads(longbow("status", *db, "--json").stdout)
    jobs = report["jobs"]
    assert jobs["failed"] == 0  # nothing is given up on: the rest waits for the next run
    assert jobs["done"] >= 1 and jobs["done"] + jobs["pending"] == 6
    # With room again, the same command finishes the job.
    subprocess.run(["mount", "-o", "remount,size=8m", str(mount_point)], check=True)
    again = longbow("sync", str(src), str(mount_point), *db)
    assert again.returncode == 0, again.stderr
    assert all((mount_point / p.name).read_bytes() == p.read_bytes() for p in src.iterdir())


def test_reading_or_deleting_through_a_link_swapped_in_after_listing_is_refused(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    (root / "a.txt").write_text("mine")
    store = LocalStore(root)
    (listed,) = list(store.list_objects(""))
    (root / "a.txt").unlink()
    (root / "a.txt").symlink_to(outside)  # swapped in between listing and copying
    with pytest.raises(UnsafeKeyError, match="leads out of"):
        store.read_object("a.txt", listed.size)
    with pytest.raises(UnsafeKeyError, match="leads out of"):
        store.delete_object("a.txt")
    assert outside.read_text() == "not yours"
