"""Key-range listing against real servers: a prefix whose keys all sit in one folder lists on
several threads at a server that lists in byte order (rclone serve s3), with exactly the
result of one listing; SeaweedFS, which lists folder by folder, keeps the folder split; a
`longbow sync` killed while listing resumes without listing finished ranges again.

The source's requests pass through a proxy that records every ListObjectsV2 (probes ask for
two keys, listings for pages of 1,000) and can slow the listing pages down."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.faultproxy import FaultProxy, Request
from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, cli_env, new_bucket

KEYS = 5000  # all in one folder: five pages of a listing


@dataclass
class Listings:
    """The source's ListObjectsV2 requests, as the proxy saw them."""

    bucket: str
    page_delay: float = 0.0  # seconds each listing page waits (probes do not)
    probes: list[str] = field(default_factory=list)  # start-after of each probe
    firsts: list[str | None] = field(default_factory=list)  # start-after of each first page
    pages: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, request: Request) -> None:
        if request.method != "GET" or request.query.get("list-type") != "2":
            return
        if request.bucket != self.bucket:
            return
        if request.query.get("delimiter"):
            return  # the folder-by-folder first page asked beside the check: not a range's
        after = request.query.get("start-after")
        with self.lock:
            if request.query.get("max-keys") == "2":
                self.probes.append(after or "")
                return
            self.pages += 1
            if "continuation-token" not in request.query:
                self.firsts.append(after)
        if self.page_delay:
            time.sleep(self.page_delay)

    def reset(self) -> None:
        with self.lock:
            self.probes.clear()
            self.firsts.clear()
            self.pages = 0


def write_objects(server: LocalServer, bucket: str, objects: dict[str, bytes]) -> None:
    """Objects written straight into rclone's directory (thousands in a second, where
    thousands of PUTs would take minutes); only before the bucket is first listed, since
    rclone keeps what it listed for a while."""
    root = server.data_dir / "root" / bucket
    for key, body in objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def source_objects() -> dict[str, bytes]:
    return {f"f/{n:05d}.bin": b"x%d" % n for n in range(KEYS)}


def destination_objects() -> dict[str, bytes]:
    # Every 50th object missing, every 77th of another size, and some the source lacks.
    present = {
        f"f/{n:05d}.bin": (b"other-%d" % n if n % 77 == 0 else b"x%d" % n)
        for n in range(KEYS)
        if n % 50
    }
    extras = {f"f/{n:05d}.old": b"old" for n in range(0, KEYS, 500)}
    return present | extras


MISSING_OR_DIFFERENT = {f"f/{n:05d}.bin" for n in range(KEYS) if n % 50 == 0 or n % 77 == 0}
EXTRAS = {f"f/{n:05d}.old" for n in range(0, KEYS, 500)}


@pytest.fixture()
def proxied(rclone: LocalServer) -> Iterator[tuple[FaultProxy, Listings, Bucket, Bucket]]:
    src, dst = new_bucket(rclone, "ranges-src"), new_bucket(rclone, "ranges-dst")
    write_objects(rclone, src.name, source_objects())
    write_objects(rclone, dst.name, destination_objects())
    listings = Listings(src.name)
    with FaultProxy(rclone.endpoint.url, max_connections=256) as proxy:
        proxy.on_request(listings.hook)
        yield proxy, listings, src, dst
        assert proxy.errors == [] and proxy.hook_errors == []


def argv(proxy: FaultProxy, src: Bucket, dst: Bucket, db: Path, *extra: str) -> list[str]:
    endpoint = src.endpoint
    return [
        sys.executable,
        "-m",
        "s3longbow",
        "sync",
        f"{src.url}/f/",
        f"{dst.url}/f/",
        "--db",
        str(db),
        "--json",
        "--src-endpoint-url",
        proxy.url,
        "--src-region",
        endpoint.region,
        "--src-path-style",
        "--dst-endpoint-url",
        endpoint.url,
        "--dst-region",
        endpoint.region,
        "--dst-path-style",
        *extra,
    ]


def run(args: list[str], src: Bucket) -> dict[str, Any]:
    env = {**os.environ, **cli_env(src.endpoint, src.endpoint)}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def contents(bucket: Bucket, prefix: str) -> dict[str, tuple[int, str]]:
    """key (after the prefix) -> (size, ETag), from a listing (rclone's ETags are MD5s)."""
    found: dict[str, tuple[int, str]] = {}
    for page in bucket.client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket.name, Prefix=prefix
    ):
        for item in page.get("Contents", ()):
            found[item["Key"][len(prefix) :]] = (item["Size"], item["ETag"])
    return found


def ranges_of(db: Path) -> list[tuple[str | None, str | None, str | None, int]]:
    """The ranges the last planning pass recorded: (after, until, position, done)."""
    with sqlite3.connect(db, timeout=5) as conn:
        rows = conn.execute(
            "SELECT after, until, position, done FROM listing_ranges "
            "WHERE generation = (SELECT MAX(generation) FROM listing_ranges)"
        ).fetchall()
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def test_one_folder_lists_on_several_threads_as_one_listing_would(
    proxied: tuple[FaultProxy, Listings, Bucket, Bucket], tmp_path: Path
) -> None:
    proxy, listings, src, dst = proxied
    listings.page_delay = 1.0  # a page costs more than the probes that cut a range
    one = run(
        argv(
            proxy, src, dst, tmp_path / "dry.db", "--dry-run", "--delete", "--listing-threads", "1"
        ),
        src,
    )
    assert listings.probes == [] and listings.firsts == [None]  # one range, never cut
    assert one["to_copy"]["objects"] == len(MISSING_OR_DIFFERENT)
    assert one["extra"]["objects"] == len(EXTRAS)

    listings.reset()
    db = tmp_path / "jobs.db"
    summary = run(argv(proxy, src, dst, db, "--delete", "--listing-threads", "4"), src)

    recorded = ranges_of(db)
    assert len(recorded) >= 3 and all(done for *_, done in recorded)
    assert len(listings.probes) > 0
    # Each range's listing started after its lower bound, on its own thread.
    assert sorted(a for a in listings.firsts if a) == sorted(
        f"f/{after}" for after, *_ in recorded if after is not None
    )
    assert summary["ok"] is True
    assert summary["to_copy"]["objects"] == one["to_copy"]["objects"]
    assert summary["copied"]["objects"] == len(MISSING_OR_DIFFERENT)
    assert summary["extra"] == {"objects": len(EXTRAS), "deleted": len(EXTRAS)}
    assert contents(dst, "f/") == contents(src, "f/")


def _kill_while_listing(args: list[str], env: dict[str, str], db: Path) -> None:
    """Start the sync and SIGKILL it once one range is planned to its end and another is not:
    in the middle of the listing."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    "the sync ended before it could be killed: "
                    + (proc.stderr.read().decode()[-500:] if proc.stderr else "")
                )
            try:
                done = [r[3] for r in ranges_of(db)] if db.exists() else []
            except sqlite3.OperationalError:
                done = []  # the schema is not there yet
            if 1 in done and 0 in done:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("no range was finished within the time allowed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_a_sync_killed_while_listing_resumes_without_listing_finished_ranges(
    proxied: tuple[FaultProxy, Listings, Bucket, Bucket], tmp_path: Path
) -> None:
    proxy, listings, src, dst = proxied
    listings.page_delay = 0.5
    db = tmp_path / "jobs.db"
    args = argv(proxy, src, dst, db, "--delete", "--listing-threads", "4")
    env = {**os.environ, **cli_env(src.endpoint, src.endpoint)}
    _kill_while_listing(args, env, db)
    at_kill = ranges_of(db)
    finished = [(after, until) for after, until, _, done in at_kill if done]
    assert finished and len(finished) < len(at_kill)

    listings.reset()
    listings.page_delay = 0.0
    summary = run(args, src)

    # No listing started inside a range the killed run had finished...
    for first in listings.firsts:
        start = None if first is None else first[len("f/") :]
        for after, until in finished:
            above = after is None or (start is not None and start >= after)
            below = until is None or (start is not None and start < until)
            assert not (above and below), (start, after, until)
    # ...and every other range went on from its checkpoint.
    resumed = sorted(
        f"f/{position or after}"
        for after, _, position, done in at_kill
        if not done
        if (position or after) is not None
    )
    assert resumed and set(resumed) <= {a for a in listings.firsts if a}
    assert summary["ok"] is True and summary["resumed"] is True
    assert summary["extra"]["deleted"] == len(EXTRAS)
    assert contents(dst, "f/") == contents(src, "f/")


def test_seaweedfs_keeps_the_folder_split_and_the_exact_result(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    # SeaweedFS lists folder by folder ("a/b" before "a-c"): its key space is not cut into
    # byte ranges; the pair is listed by folder and recorded as one range.
    names = ["a/b", "a-c", "a/b/c", "a0", "b/x/y", "b-x", "c"]
    for name in names:
        for n in range(3):
            src_bucket.put(f"{name}/{n}", b"s%d" % n)
    dst_bucket.put("a/b/0", b"s0")  # present
    dst_bucket.put("a-c/1", b"different")  # another size
    dst_bucket.put("zz/gone", b"g")  # the source lacks it
    listings = Listings(src_bucket.name)
    with FaultProxy(src_bucket.endpoint.url) as proxy:
        proxy.on_request(listings.hook)
        summary = run(
            [
                sys.executable,
                "-m",
                "s3longbow",
                "sync",
                f"{src_bucket.url}/",
                f"{dst_bucket.url}/",
                "--db",
                str(tmp_path / "jobs.db"),
                "--json",
                "--delete",
                "--force",
                "--listing-threads",
                "4",
                "--src-endpoint-url",
                proxy.url,
                "--src-region",
                src_bucket.endpoint.region,
                "--src-path-style",
                "--dst-endpoint-url",
                dst_bucket.endpoint.url,
                "--dst-region",
                dst_bucket.endpoint.region,
                "--dst-path-style",
            ],
            src_bucket,
        )
    assert listings.probes == []  # no byte ranges probed
    assert ranges_of(tmp_path / "jobs.db") == [(None, None, None, 1)]
    assert summary["ok"] is True
    assert summary["copied"]["objects"] == len(names) * 3 - 1
    assert summary["extra"] == {"objects": 1, "deleted": 1}
    assert sorted(dst_bucket.keys()) == sorted(src_bucket.keys())
    assert dst_bucket.digests() == src_bucket.digests()


def test_verify_lists_by_ranges_too_and_judges_every_key(
    proxied: tuple[FaultProxy, Listings, Bucket, Bucket],
) -> None:
    proxy, listings, src, dst = proxied
    listings.page_delay = 1.0
    args = argv(proxy, src, dst, Path("unused.db"), "--listing-threads", "4")
    args[args.index("sync")] = "verify"
    del args[args.index("--db") : args.index("--db") + 2]
    env = {**os.environ, **cli_env(src.endpoint, src.endpoint)}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]  # not everything matches
    report = json.loads(done.stdout)
    assert len(listings.probes) > 0 and len(listings.firsts) >= 3  # cut into ranges
    missing = {n for n in range(KEYS) if n % 50 == 0}
    different = {n for n in range(KEYS) if n % 77 == 0} - missing
    assert report["counts"]["missing"] == len(missing)
    assert report["counts"]["different"] == len(different)
    assert report["counts"]["extra"] == len(EXTRAS)
    assert report["counts"]["match"] == KEYS - len(missing) - len(different)
    assert {item["key"] for item in report["extra"]} == EXTRAS
