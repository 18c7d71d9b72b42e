"""Parts in flight per object: where the servers are near (loopback), `longbow sync` sends no
more than NEAR_PART_WINDOW of an object's parts at once, below --part-threads, and says so in
its summary. The destination is SeaweedFS behind a proxy that holds every UploadPart a while
and counts how many it holds at once."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

from longbow_testkit.faultproxy import FaultProxy, Request
from s3longbow.worker.concurrency import NEAR_PART_WINDOW

from ..conftest import Bucket, sync_cli

MiB = 1024 * 1024
PREFIX = "parts/"
PARTS = 6  # of 5 MiB, in one object: more than the window near servers allow
HOLD = 0.4  # seconds each part waits at the proxy


class Held:
    """How many UploadParts the proxy holds now, and the most at once."""

    def __init__(self) -> None:
        self.now = self.most = self.parts = 0
        self.lock = threading.Lock()

    def hook(self, request: Request) -> str | None:
        if request.method != "PUT" or "partNumber" not in request.query:
            return None
        with self.lock:
            self.now += 1
            self.parts += 1
            self.most = max(self.most, self.now)
        time.sleep(HOLD)
        with self.lock:
            self.now -= 1
        return None


def test_near_servers_get_fewer_of_an_objects_parts_at_once(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    data = os.urandom(PARTS * 5 * MiB)
    src_bucket.put(f"{PREFIX}big", data)
    held = Held()
    src, dst = src_bucket.endpoint, dst_bucket.endpoint
    with FaultProxy(dst.url) as proxy:
        proxy.on_request(held.hook)
        # The destination as the CLI reaches it: through the proxy, with the same keys.
        through = dataclasses.replace(dst, url=proxy.url)
        done = sync_cli(
            f"{src_bucket.url}/{PREFIX}",
            f"{dst_bucket.url}/{PREFIX}",
            tmp_path / "run.db",
            src,
            through,
            "--part-size",
            "5MiB",
        )
        assert proxy.hook_errors == []
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["copied"]["objects"] == 1
    assert summary["concurrency"]["parts_per_object"] == NEAR_PART_WINDOW
    assert held.parts == PARTS
    # --part-threads (16 by default) would have let all six go at once.
    assert held.most == NEAR_PART_WINDOW
    assert dst_bucket.get(f"{PREFIX}big") == data
