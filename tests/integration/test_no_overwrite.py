"""--no-overwrite on SeaweedFS: an object the destination has is never replaced, whether
planning finds it or it appears while its copy is under way (If-None-Match: * on the PUT, on
CompleteMultipartUpload and on CopyObject, which SeaweedFS answers with 412)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from longbow_testkit.sealproxy import seal_proxy
from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, new_bucket
from .test_integrity import put_multipart, run_sync

MiB = 1024 * 1024


def test_present_objects_that_differ_are_left_and_reported(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    src, dst = new_bucket(seaweed_src, "now-src"), new_bucket(seaweed_dst, "now-dst")
    src.put("same", b"same bytes")
    src.put("differs", b"the source's newer, longer bytes")
    src.put("new", b"only at the source")
    dst.put("same", b"same bytes")
    dst.put("differs", b"older")
    code, summary = run_sync(src, dst, tmp_path / "j.db", "--no-overwrite")
    assert code == 0, summary
    assert dst.get("differs") == b"older"
    assert dst.get("new") == b"only at the source"
    assert summary["copied"]["objects"] == 1
    assert summary["not_replaced"] == 1
    assert summary["already_present"]["objects"] == 1
    code, dry = run_sync(src, dst, tmp_path / "j.db", "--no-overwrite", "--dry-run")
    assert dry["not_replaced"] == 1 and dry["to_copy"]["objects"] == 0


@pytest.mark.parametrize(
    ("size", "server_side"),
    [(2000, False), (12 * MiB, False), (2000, True)],
    ids=["one-put", "parts", "server-copy"],
)
def test_a_key_that_appears_during_the_copy_is_not_replaced(
    seaweed_src: LocalServer,
    seaweed_dst: LocalServer,
    tmp_path: Path,
    size: int,
    server_side: bool,
) -> None:
    server = seaweed_src if server_side else seaweed_dst
    src, dst = new_bucket(seaweed_src, "race-src"), new_bucket(server, "race-dst")
    src.put("racy", os.urandom(size))
    src.put("calm", b"nobody else writes this one")
    written = threading.Event()

    def someone_else_writes(method: str, path: str, headers: dict[str, str]) -> None:
        # The write that makes the object (PUT of a whole object or a copy, or the POST
        # that completes the upload) arrives after another client wrote the key.
        makes_it = (method == "PUT" and "partNumber=" not in path) or (
            method == "POST" and "uploadId=" in path
        )
        if makes_it and path.split("?")[0].endswith("/racy") and not written.is_set():
            written.set()
            dst.put("racy", b"written by someone else")

    with seal_proxy(server.endpoint, seal=False) as proxy:
        proxy.before = lambda m, p, h: someone_else_writes(m, p, h)
        through = Bucket(proxy.endpoint(), dst.name, dst.client)
        source = Bucket(proxy.endpoint(), src.name, src.client) if server_side else src
        code, summary = run_sync(
            source, through, tmp_path / "j.db", "--no-overwrite", "--part-size", "5MiB"
        )
    assert written.is_set()
    assert code == 0, summary["failed"]
    assert dst.get("racy") == b"written by someone else"
    assert dst.get("calm") == b"nobody else writes this one"
    assert [f["key"] for f in summary["not_replaced_during_copy"]] == ["racy"]
    reason = summary["not_replaced_during_copy"][0]["reason"]
    assert reason.startswith("exists, not replaced") and "during the copy" in reason
    assert summary["not_replaced"] == 1
    if server_side:
        assert any("x-amz-copy-source" in h for _, _, h in proxy.requests)
    assert all(
        h.get("if-none-match") == "*"
        for m, p, h in proxy.requests
        if (m == "PUT" and "partNumber=" not in p and p.count("/") > 1)
        or (m == "POST" and "uploadId=" in p)
    )


@pytest.mark.parametrize(
    ("size", "server_side"),
    [(2000, False), (12 * MiB, False), (2000, True)],
    ids=["one-put", "parts", "server-copy"],
)
def test_a_write_whose_reply_failed_is_found_by_its_retry(
    seaweed_src: LocalServer,
    seaweed_dst: LocalServer,
    tmp_path: Path,
    size: int,
    server_side: bool,
) -> None:
    """The write that makes the object lands, but its reply says it failed (as a reply lost
    on the way would): the retry's If-None-Match finds the key, and the object there is the
    copy's own bytes in the copy's own parts, so the job is done, not "not replaced"."""
    server = seaweed_src if server_side else seaweed_dst
    src, dst = new_bucket(seaweed_src, "lost-src"), new_bucket(server, "lost-dst")
    data = os.urandom(size)
    src.put("k", data)
    landed = threading.Event()

    def lands_then_fails(method: str, path: str, headers: dict[str, str]) -> int | None:
        makes_it = (method == "PUT" and "partNumber=" not in path) or (
            method == "POST" and "uploadId=" in path
        )
        if not makes_it or not path.split("?")[0].endswith("/k") or landed.is_set():
            return None
        landed.set()
        if size < 5 * MiB:
            dst.put("k", data)
        else:  # the parts the copy uploads: 5 MiB each, the last one shorter
            put_multipart(dst, "k", [data[i : i + 5 * MiB] for i in range(0, size, 5 * MiB)])
        return 500

    with seal_proxy(server.endpoint, seal=False) as proxy:
        proxy.before = lands_then_fails
        through = Bucket(proxy.endpoint(), dst.name, dst.client)
        source = Bucket(proxy.endpoint(), src.name, src.client) if server_side else src
        code, summary = run_sync(
            source, through, tmp_path / "j.db", "--no-overwrite", "--part-size", "5MiB"
        )
    assert landed.is_set()
    assert code == 0, summary["failed"]
    assert summary["not_replaced"] == 0 and summary["not_replaced_during_copy"] == []
    assert summary["copied"]["objects"] == 1
    assert dst.get("k") == data
    # The write was tried again and refused (the object was there), not sent a third time.
    makes = [
        h
        for m, p, h in proxy.requests
        if p.split("?")[0].endswith("/k")
        and ((m == "PUT" and "partNumber=" not in p) or (m == "POST" and "uploadId=" in p))
    ]
    assert len(makes) == 2 and all(h.get("if-none-match") == "*" for h in makes)
    if server_side:  # copied on the server both times, never read through this client
        assert all("x-amz-copy-source" in h for h in makes)
    uploads = dst.client.list_multipart_uploads(Bucket=dst.name).get("Uploads", [])
    assert uploads == []  # the copy's own upload was not left open


def test_an_object_of_the_same_size_but_other_bytes_is_not_taken_for_the_copy(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    src, dst = new_bucket(seaweed_src, "other-src"), new_bucket(seaweed_dst, "other-dst")
    src.put("k", b"a" * 2000)
    written = threading.Event()

    def someone_else_writes(method: str, path: str, headers: dict[str, str]) -> int | None:
        if method == "PUT" and path.split("?")[0].endswith("/k") and not written.is_set():
            written.set()
            dst.put("k", b"b" * 2000)  # the same size, other bytes
            return 500
        return None

    with seal_proxy(seaweed_dst.endpoint, seal=False) as proxy:
        proxy.before = someone_else_writes
        through = Bucket(proxy.endpoint(), dst.name, dst.client)
        code, summary = run_sync(src, through, tmp_path / "j.db", "--no-overwrite")
    assert written.is_set() and code == 0, summary["failed"]
    assert dst.get("k") == b"b" * 2000
    assert [f["key"] for f in summary["not_replaced_during_copy"]] == ["k"]
