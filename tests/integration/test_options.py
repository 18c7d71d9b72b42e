"""Destination and comparison options against real servers: --sse, --sse-kms-key-id, --acl,
requester-pays on either side, --compare etag|mtime."""

from __future__ import annotations

import os
import time
from pathlib import Path

from longbow_testkit.sealproxy import seal_proxy
from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, new_bucket
from .test_integrity import run_sync


def test_sse_aes256_is_applied_to_single_and_multipart_copies(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("small", os.urandom(1000))
    src_bucket.put("large", os.urandom(11 * 1024 * 1024))

    code, summary = run_sync(
        src_bucket, dst_bucket, tmp_path / "j.db", "--sse", "AES256", "--part-size", "5MiB"
    )

    assert code == 0, summary
    for key in ("small", "large"):
        head = dst_bucket.client.head_object(Bucket=dst_bucket.name, Key=key)
        assert head.get("ServerSideEncryption") == "AES256", key
    assert dst_bucket.digests() == src_bucket.digests()


def test_kms_key_id_and_acl_are_passed_through(
    src_bucket: Bucket, moto: LocalServer, tmp_path: Path
) -> None:
    dst = new_bucket(moto, "kms")
    src_bucket.put("a.txt", b"secret plans")
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    code, summary = run_sync(
        src_bucket,
        dst,
        tmp_path / "j.db",
        "--sse",
        "aws:kms",
        "--sse-kms-key-id",
        key_id,
        "--acl",
        "bucket-owner-full-control",
    )

    assert code == 0, summary
    head = dst.client.head_object(Bucket=dst.name, Key="a.txt")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_id
    grants = dst.client.get_object_acl(Bucket=dst.name, Key="a.txt")["Grants"]
    assert any(g["Permission"] == "FULL_CONTROL" for g in grants)
    assert dst.get("a.txt") == b"secret plans"


def test_requester_pays_is_acknowledged_on_every_request_of_that_side(
    src_bucket: Bucket, dst_bucket: Bucket, seaweed_src: LocalServer, tmp_path: Path
) -> None:
    src_bucket.put("one", os.urandom(100))
    src_bucket.put("two", os.urandom(6 * 1024 * 1024))
    with seal_proxy(seaweed_src.endpoint, seal=False) as proxy:
        recorded = Bucket(proxy.endpoint(), src_bucket.name, src_bucket.client)
        code, summary = run_sync(
            recorded, dst_bucket, tmp_path / "j.db", "--src-requester-pays", "--part-size", "5MiB"
        )
        requests = list(proxy.requests)

    assert code == 0, summary
    assert dst_bucket.digests() == src_bucket.digests()
    methods = {method for method, _, _ in requests}
    assert {"GET", "HEAD"} <= methods  # listing, reads and the multipart object's HEAD
    unpaid = [(m, p) for m, p, h in requests if h.get("x-amz-request-payer") != "requester"]
    assert unpaid == []


def test_compare_etag_copies_same_size_objects_whose_content_differs(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("same-size", b"A" * 100)
    dst_bucket.put("same-size", b"B" * 100)
    src_bucket.put("equal", b"C" * 100)
    dst_bucket.put("equal", b"C" * 100)

    code, summary = run_sync(src_bucket, dst_bucket, tmp_path / "size.db")
    assert code == 0 and summary["to_copy"]["objects"] == 0, summary
    assert dst_bucket.get("same-size") == b"B" * 100  # size-only (the default) left it

    code, summary = run_sync(src_bucket, dst_bucket, tmp_path / "etag.db", "--compare", "etag")

    assert code == 0, summary
    assert summary["to_copy"]["objects"] == 1
    assert dst_bucket.get("same-size") == b"A" * 100


def test_compare_mtime_copies_only_a_newer_source(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    # Last-modified may have a resolution of one second: keep the writes apart.
    src_bucket.put("older-at-source", b"skip")
    time.sleep(1.1)
    dst_bucket.put("changed", b"old!")
    dst_bucket.put("older-at-source", b"keep")
    time.sleep(1.1)
    src_bucket.put("changed", b"new!")

    code, summary = run_sync(src_bucket, dst_bucket, tmp_path / "m.db", "--compare", "mtime")

    assert code == 0, summary
    assert summary["to_copy"]["objects"] == 1
    assert dst_bucket.get("changed") == b"new!"
    assert dst_bucket.get("older-at-source") == b"keep"


def test_update_properties_fixes_metadata_and_tags_without_copying_data(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    body = os.urandom(5000)
    src_bucket.client.put_object(
        Bucket=src_bucket.name,
        Key="page",
        Body=body,
        ContentType="text/html",
        CacheControl="max-age=60",
        Metadata={"owner": "web"},
        Tagging="tier=gold",
    )
    dst_bucket.put("page", body)  # same bytes, none of the properties
    src_bucket.put("same", b"plain")
    dst_bucket.put("same", b"plain")

    code, summary = run_sync(src_bucket, dst_bucket, tmp_path / "p.db", "--update-properties")

    assert code == 0, summary
    assert summary["to_copy"]["objects"] == 0 and summary["bytes_sent"] == 0
    assert summary["properties"] == {"checked": 2, "updated": 1, "failed": []}
    head = dst_bucket.client.head_object(Bucket=dst_bucket.name, Key="page")
    assert head["ContentType"] == "text/html"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"owner": "web"}
    tags = dst_bucket.client.get_object_tagging(Bucket=dst_bucket.name, Key="page")["TagSet"]
    assert tags == [{"Key": "tier", "Value": "gold"}]
    assert dst_bucket.get("page") == body

    code, summary = run_sync(src_bucket, dst_bucket, tmp_path / "p.db", "--update-properties")

    assert code == 0, summary
    assert summary["properties"]["updated"] == 0  # nothing left to fix
