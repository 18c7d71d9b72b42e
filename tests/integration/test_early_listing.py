"""The first page of a listing asked for beside the bucket's check, on SeaweedFS through a proxy
that records every ListObjectsV2: it answers the first identical request (and only that one),
a page that failed or grew old is asked again, and `longbow sync` sends its listings' first
pages while the bucket's HEAD is still unanswered (on a long path, one round trip less before
the first copy)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from longbow_testkit.faultproxy import FaultProxy, Request
from longbow_testkit.servers import LocalServer
from s3longbow.config import SideSettings
from s3longbow.stores.s3 import S3Store, listing

from ..conftest import Bucket, sync_cli

PREFIX = "p/"


@dataclass
class Seen:
    """The bucket's requests, as the proxy saw them: (seconds since the start, what)."""

    bucket: str
    started: float = field(default_factory=time.monotonic)
    requests: list[tuple[float, str]] = field(default_factory=list)
    fail_lists: int = 0  # first pages to answer with 500 InternalError
    hold_head: float = 0.0  # seconds the bucket's HEAD waits before it is forwarded
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, request: Request) -> str | None:
        if request.bucket != self.bucket:
            return None
        if request.method == "HEAD" and not request.key:
            what = "head-bucket"
        elif request.method == "GET" and request.query.get("list-type") == "2":
            what = "list-folders" if request.query.get("delimiter") else "list"
            if "continuation-token" in request.query:
                what += "-next"
        else:
            what = f"{request.method} {request.key}"
        with self.lock:
            self.requests.append((time.monotonic() - self.started, what))
            failing = what.startswith("list") and self.fail_lists > 0
            if failing:
                self.fail_lists -= 1
        if failing:
            return "internal_error"
        if what == "head-bucket" and self.hold_head:
            time.sleep(self.hold_head)
        return None

    def count(self, what: str) -> int:
        with self.lock:
            return sum(1 for _, seen in self.requests if seen == what)


@pytest.fixture()
def proxied(src_bucket: Bucket) -> Iterator[tuple[FaultProxy, Seen]]:
    seen = Seen(src_bucket.name)
    with FaultProxy(src_bucket.endpoint.url) as proxy:
        proxy.on_request(seen.hook)
        yield proxy, seen
        assert proxy.errors == [] and proxy.hook_errors == []


def open_store(server: LocalServer, bucket: str, url: str) -> S3Store:
    ep = server.endpoint
    side = SideSettings(
        endpoint_url=url,
        region=ep.region,
        path_style=True,
        access_key_id=ep.access_key,
        secret_access_key=ep.secret_key,
    )
    return S3Store(bucket, side)


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def keys(store: S3Store) -> list[str]:
    return [o.key for o in store.list_objects(PREFIX)]


def test_an_early_page_answers_the_first_identical_request_only(
    seaweed_src: LocalServer, src_bucket: Bucket, proxied: tuple[FaultProxy, Seen]
) -> None:
    proxy, seen = proxied
    for name in ("a", "b", "c/d"):
        src_bucket.put(PREFIX + name, b"x")
    store = open_store(seaweed_src, src_bucket.name, proxy.url)
    try:
        store.list_early(PREFIX)
        wait_for(lambda: seen.count("list") == 1 and seen.count("list-folders") == 1)
        # Written after the early pages were answered: only a request sent now sees it.
        src_bucket.put(PREFIX + "e", b"x")
        assert keys(store) == [PREFIX + k for k in ("a", "b", "c/d")]
        level = [o if isinstance(o, str) else o.key for o in store.list_level(PREFIX)]
        assert level == [PREFIX + "a", PREFIX + "b", PREFIX + "c/"]
        assert (seen.count("list"), seen.count("list-folders")) == (1, 1)
        # Each early page answered one request: the next ones go to the server.
        assert keys(store) == [PREFIX + k for k in ("a", "b", "c/d", "e")]
        assert seen.count("list") == 2
    finally:
        store.close()


def test_an_early_page_that_failed_is_asked_again(
    seaweed_src: LocalServer, src_bucket: Bucket, proxied: tuple[FaultProxy, Seen]
) -> None:
    proxy, seen = proxied
    src_bucket.put(PREFIX + "a", b"x")
    seen.fail_lists = 2  # both early pages
    store = open_store(seaweed_src, src_bucket.name, proxy.url)
    try:
        store.list_early(PREFIX)
        wait_for(lambda: seen.count("list") == 1 and seen.count("list-folders") == 1)
        assert keys(store) == [PREFIX + "a"]
        assert seen.count("list") == 2
    finally:
        store.close()


def test_an_early_page_grown_old_is_asked_again(
    seaweed_src: LocalServer,
    src_bucket: Bucket,
    proxied: tuple[FaultProxy, Seen],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, seen = proxied
    monkeypatch.setattr(listing, "_EARLY_FOR", 0.0)
    src_bucket.put(PREFIX + "a", b"x")
    store = open_store(seaweed_src, src_bucket.name, proxy.url)
    try:
        store.list_early(PREFIX)
        wait_for(lambda: seen.count("list") == 1)
        src_bucket.put(PREFIX + "b", b"x")
        assert keys(store) == [PREFIX + "a", PREFIX + "b"]
        assert seen.count("list") == 2
    finally:
        store.close()


def test_sync_asks_for_its_listings_while_the_bucket_is_checked(
    src_bucket: Bucket, dst_bucket: Bucket, proxied: tuple[FaultProxy, Seen], tmp_path: Path
) -> None:
    proxy, seen = proxied
    seen.hold_head = 0.5
    for i in range(3):
        src_bucket.put(f"{PREFIX}{i}", b"x" * 100)
    src, dst = src_bucket.endpoint, dst_bucket.endpoint
    # The source as the CLI reaches it: through the proxy, with the same keys.
    through = dataclasses.replace(src, url=proxy.url)
    done = sync_cli(
        f"{src_bucket.url}/{PREFIX}",
        f"{dst_bucket.url}/{PREFIX}",
        tmp_path / "run.db",
        through,
        dst,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["copied"]["objects"] == 3
    assert sorted(dst_bucket.keys(PREFIX)) == [f"{PREFIX}{i}" for i in range(3)]
    with seen.lock:
        requests = list(seen.requests)
    head = next(at for at, what in requests if what == "head-bucket")
    firsts = [at for at, what in requests if what in ("list", "list-folders")]
    # Both first pages were asked for before the held HEAD was let through (so before its
    # reply), and the listing that followed the check asked for no first page again.
    assert len(firsts) == 2
    assert all(at < head + seen.hold_head for at in firsts), requests
