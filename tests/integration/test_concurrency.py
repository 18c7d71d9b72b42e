"""How many objects a run keeps in flight, against real servers behind a slow path.

Every request through the proxies waits DELAY first, as if the servers were a long round trip
away: a run that starts at 16 objects in flight must find that more pay, and a run told not to
tune must keep exactly --workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.chaos import Location, seed_source
from longbow_testkit.faultproxy import FaultProxy, Request
from longbow_testkit.servers import LocalServer

from ..conftest import cli_env, new_bucket

pytestmark = pytest.mark.timeout(300)

DELAY = 0.04  # seconds before each request is forwarded, on each leg
OBJECTS = 600


@pytest.fixture(scope="module")
def small_objects(seaweed_src: LocalServer) -> Location:
    where = Location(seaweed_src.endpoint, new_bucket(seaweed_src, "many-src").name, "")
    seed_source(where, {f"o/{n:04d}": 512 for n in range(OBJECTS)}, seed=3)
    return where


@pytest.fixture()
def slow_legs(
    seaweed_src: LocalServer, seaweed_dst: LocalServer
) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    with (
        FaultProxy(seaweed_src.endpoint.url, max_connections=1024) as src,
        FaultProxy(seaweed_dst.endpoint.url, max_connections=1024) as dst,
    ):
        for proxy in (src, dst):
            proxy.on_request(_wait)
        yield src, dst
    assert src.errors == [] and dst.errors == [] and not src.hook_errors


def _wait(request: Request) -> None:
    time.sleep(DELAY)


def _sync(
    src: Location,
    dst: Location,
    legs: tuple[FaultProxy, FaultProxy],
    db: Path,
    *extra: str,
) -> dict[str, Any]:
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
        legs[0].url,
        "--src-path-style",
        "--dst-endpoint-url",
        legs[1].url,
        "--dst-path-style",
        *extra,
    ]
    env = {**os.environ, **cli_env(src.endpoint, dst.endpoint)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    assert summary["copied"]["objects"] == OBJECTS
    return summary


def test_a_slow_path_is_filled_with_more_objects_than_the_start(
    small_objects: Location,
    seaweed_dst: LocalServer,
    slow_legs: tuple[FaultProxy, FaultProxy],
    tmp_path: Path,
) -> None:
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "many-dst").name, "")
    summary = _sync(small_objects, dst, slow_legs, tmp_path / "jobs.db")
    # It starts at 16; on a path where each object waits several delays, doubling pays.
    assert summary["concurrency"]["highest"] >= 32, summary["concurrency"]


def test_without_autotune_exactly_the_workers_run(
    small_objects: Location,
    seaweed_dst: LocalServer,
    slow_legs: tuple[FaultProxy, FaultProxy],
    tmp_path: Path,
) -> None:
    dst = Location(seaweed_dst.endpoint, new_bucket(seaweed_dst, "fixed-dst").name, "")
    summary = _sync(
        small_objects, dst, slow_legs, tmp_path / "jobs.db", "--workers", "24", "--no-autotune"
    )
    assert summary["concurrency"] == {"final": 24, "highest": 24, "parts_per_object": 16}
