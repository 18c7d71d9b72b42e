"""Local folders as first-class sides, against SeaweedFS: `longbow verify` hashes the files it
needs in the form of the bucket's ETags (plain or multipart), both ways and without --deep;
--preserve-mtime keeps files' modification times through a bucket (x-amz-meta-mtime as rclone
writes it) and back; --compare mtime reads that metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from s3longbow.config import MiB
from s3longbow.mtimes import format_mtime

from ..conftest import Bucket, cli_env, endpoint_args
from .test_integrity import put_multipart

# Modification times in the past, with nanoseconds, so that nothing the run does could give
# a file the same time by chance.
OLD = 1_600_000_000_123_456_789
OLDER = 1_500_000_000_987_654_321


def longbow(*args: str, bucket: Bucket) -> tuple[int, dict[str, Any]]:
    """Run `longbow ARGS --json` against `bucket`'s endpoint (as either side); exit code and
    the JSON it printed."""
    ep = bucket.endpoint
    src_local = not args[1].startswith("s3://")
    side_args = endpoint_args(None, ep) if src_local else endpoint_args(ep, None)
    env = {**os.environ, **(cli_env(None, ep) if src_local else cli_env(ep, None))}
    done = subprocess.run(
        [sys.executable, "-m", "s3longbow", *args, "--json", *side_args],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def write(path: Path, data: bytes, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.mark.parametrize("direction", ["folder-to-bucket", "bucket-to-folder"])
def test_verify_hashes_local_files_in_the_form_of_the_etags(
    src_bucket: Bucket, tmp_path: Path, direction: str
) -> None:
    folder = tmp_path / "folder"
    small, large = os.urandom(70_000), os.urandom(12 * MiB + 5)
    write(folder / "small.bin", small, OLD)
    write(folder / "deep/large.bin", large, OLD)
    write(folder / "empty", b"", OLD)
    src_bucket.put("small.bin", small)
    src_bucket.put("empty", b"")
    # Another tool's multipart upload, in 5 MiB parts: 3 parts, the last one short.
    etag = put_multipart(
        src_bucket,
        "deep/large.bin",
        [large[: 5 * MiB], large[5 * MiB : 10 * MiB], large[10 * MiB :]],
    )
    assert etag.endswith("-3")

    def verify() -> tuple[int, dict[str, Any]]:
        sides = [str(folder), f"{src_bucket.url}/"]
        if direction == "bucket-to-folder":
            sides.reverse()
        return longbow("verify", *sides, bucket=src_bucket)

    code, report = verify()
    assert (code, report["counts"]) == (
        0,
        {"match": 3, "missing": 0, "extra": 0, "different": 0, "unverifiable": 0},
    ), report

    # One byte changed in each file, sizes kept: both are found different, by their hashes.
    write(folder / "small.bin", b"X" + small[1:], OLD)
    write(folder / "deep/large.bin", large[:-1] + b"X", OLD)
    code, report = verify()
    assert code == 1
    assert sorted(d["key"] for d in report["different"]) == ["deep/large.bin", "small.bin"]
    assert report["counts"]["match"] == 1


def test_folders_keep_modification_times_through_a_bucket(
    src_bucket: Bucket, tmp_path: Path
) -> None:
    origin, back = tmp_path / "origin", tmp_path / "back"
    write(origin / "a.txt", b"alpha", OLD)
    write(origin / "photos/big.bin", os.urandom(11 * MiB), OLDER)  # goes in parts
    code, summary = longbow(
        "sync",
        str(origin),
        f"{src_bucket.url}/",
        "--preserve-mtime",
        "--db",
        str(tmp_path / "up.db"),
        bucket=src_bucket,
    )
    assert code == 0, summary
    for key, ns in (("a.txt", OLD), ("photos/big.bin", OLDER)):
        head = src_bucket.client.head_object(Bucket=src_bucket.name, Key=key)
        assert head["Metadata"]["mtime"] == format_mtime(ns)  # rclone's form: 1600000000.123456789
    # An object written by another tool, without the metadata: its Last-Modified is used.
    src_bucket.put("plain.txt", b"plain")
    modified = src_bucket.client.head_object(Bucket=src_bucket.name, Key="plain.txt")[
        "LastModified"
    ]

    code, summary = longbow(
        "sync",
        f"{src_bucket.url}/",
        str(back),
        "--preserve-mtime",
        "--db",
        str(tmp_path / "down.db"),
        bucket=src_bucket,
    )
    assert code == 0, summary
    assert (back / "a.txt").stat().st_mtime_ns == OLD
    assert (back / "photos/big.bin").stat().st_mtime_ns == OLDER
    assert (back / "photos/big.bin").read_bytes() == (origin / "photos/big.bin").read_bytes()
    assert (back / "plain.txt").stat().st_mtime == modified.timestamp()

    # Without the option, a download is dated when it is written.
    code, _ = longbow(
        "sync",
        f"{src_bucket.url}/",
        str(tmp_path / "plain"),
        "--db",
        str(tmp_path / "p.db"),
        bucket=src_bucket,
    )
    assert code == 0
    assert (tmp_path / "plain/a.txt").stat().st_mtime_ns != OLD


def test_compare_mtime_reads_the_mtime_metadata(src_bucket: Bucket, tmp_path: Path) -> None:
    origin, back = tmp_path / "origin", tmp_path / "back"
    write(origin / "a.txt", b"alpha", OLD)
    write(origin / "b.txt", b"bravo", OLD)
    up = ("sync", str(origin), f"{src_bucket.url}/", "--preserve-mtime", "--compare", "mtime")
    down = ("sync", f"{src_bucket.url}/", str(back), "--preserve-mtime", "--compare", "mtime")
    assert longbow(*up, "--db", str(tmp_path / "up1.db"), bucket=src_bucket)[0] == 0
    assert longbow(*down, "--db", str(tmp_path / "down1.db"), bucket=src_bucket)[0] == 0

    # The objects' Last-Modified is long after the files' times, but their metadata states
    # the files' own: a new run (a new job database) finds nothing newer either way.
    code, summary = longbow(*down, "--db", str(tmp_path / "down2.db"), bucket=src_bucket)
    assert (code, summary["copied"]["objects"], summary["already_present"]["objects"]) == (
        0,
        0,
        2,
    ), summary

    # A file changed after its upload, same size: newer than the object's stated time (and
    # than its Last-Modified), so it goes up again, with its new time.
    now = OLD + 10**18  # some 30 years on
    write(origin / "b.txt", b"BRAVO", now)
    code, summary = longbow(*up, "--db", str(tmp_path / "up2.db"), bucket=src_bucket)
    assert (code, summary["copied"]["objects"]) == (0, 1), summary
    assert src_bucket.get("b.txt") == b"BRAVO"
    head = src_bucket.client.head_object(Bucket=src_bucket.name, Key="b.txt")
    assert head["Metadata"]["mtime"] == format_mtime(now)
    # And it comes down again: its stated time is newer than the file's.
    code, summary = longbow(*down, "--db", str(tmp_path / "down3.db"), bucket=src_bucket)
    assert (code, summary["copied"]["objects"]) == (0, 1), summary
    assert (back / "b.txt").read_bytes() == b"BRAVO"
    assert (back / "b.txt").stat().st_mtime_ns == now
