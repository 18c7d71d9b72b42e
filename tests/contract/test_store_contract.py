"""One contract for every store adapter: the local filesystem and four real S3 servers.

Each server's known deviations are stated as facts of the fixture (not skipped), so the
contract asserts what Longbow relies on and what it must cope with.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from s3longbow.config import MiB, SideSettings
from s3longbow.errors import (
    FatalError,
    SourceChangedError,
    TransientError,
    UnsafeKeyError,
    UploadMissingError,
)
from s3longbow.model import ObjectProperties, PartInfo
from s3longbow.plan.order import order_key
from s3longbow.stores.base import ObjectStore
from s3longbow.stores.local import LocalStore
from s3longbow.stores.s3 import S3Store
from s3longbow.transfer.engine import multipart_etag

from ..conftest import new_bucket


@dataclass
class Case:
    store: ObjectStore
    validates_md5: bool
    enforces_if_match: bool
    files: bool = False  # objects are files: "a" and "a/1" cannot both exist
    complete_etag: bool = True  # Complete reports the AWS multipart ETag, md5(part md5s)-N


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture(
    params=[
        "local",
        "seaweedfs",
        "moto",
        "rclone",
        pytest.param("rgw", marks=pytest.mark.rgw),
    ]
)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    kind = request.param
    if kind == "local":
        store: ObjectStore = LocalStore(tmp_path / "root", create=True)
        store.check()
        yield Case(store, validates_md5=True, enforces_if_match=True, files=True)
        return
    server = request.getfixturevalue({"seaweedfs": "seaweed_src"}.get(kind, kind))
    bucket = new_bucket(server, "contract")
    ep = server.endpoint
    side = SideSettings(
        endpoint_url=ep.url,
        region=ep.region,
        path_style=True,
        access_key_id=ep.access_key,
        secret_access_key=ep.secret_key,
    )
    store = S3Store(bucket.name, side)
    store.check()
    # moto accepts any Content-MD5. rclone serve s3 ignores If-Match, but its reply names the
    # ETag of what it sends, which the store checks against the pinned one.
    yield Case(
        store,
        validates_md5=kind != "moto",
        enforces_if_match=True,
        files=kind == "rclone",
        complete_etag=kind != "rgw",  # Ceph RGW's reply has an empty ETag; HEAD has it
    )
    store.close()


def put(store: ObjectStore, key: str, data: bytes) -> str:
    return store.put_object(key, data, md5_b64=md5_b64(data))


def test_listing_is_in_key_order_and_filtered_by_prefix(case: Case) -> None:
    store = case.store
    keys = ["b/2", "a", "b/1", "b-c", "c/d/e", "ab", "é"]
    for key in keys:
        put(store, key, key.encode())
    listed = [o.key for o in store.list_objects("")]
    key = order_key(store.capabilities.listing_order)
    assert listed == sorted(keys, key=key)
    assert sorted(o.key for o in store.list_objects("b")) == ["b-c", "b/1", "b/2"]
    assert [o.key for o in store.list_objects("b/")] == ["b/1", "b/2"]
    assert [o.size for o in store.list_objects("c/")] == [5]


def test_put_head_and_ranged_reads(case: Case) -> None:
    store = case.store
    data = os.urandom(1000)
    etag = put(store, "obj", data)
    assert etag == hashlib.md5(data).hexdigest()
    head = store.head("obj")
    assert head is not None and head.size == 1000
    assert store.head("missing") is None
    assert store.get_range("obj", 0, 1000, etag=head.etag) == data
    assert store.get_range("obj", 10, 90, etag=head.etag) == data[10:100]
    assert store.get_range("obj", 999, 1, etag=head.etag) == data[999:]


def test_a_ranged_read_into_a_buffer_shows_every_piece_in_order(case: Case) -> None:
    # Larger than one network piece, so a streaming store shows several.
    data = os.urandom(3 * MiB // 2 + 7)
    put(store := case.store, "obj", data)
    head = store.head("obj")
    assert head is not None
    buffer = bytearray(b"\xff" * (2 * MiB))
    pieces: list[bytes] = []
    got = store.get_range(
        "obj", 5, len(data) - 5, etag=head.etag, into=buffer, each=lambda p: pieces.append(bytes(p))
    )
    assert bytes(got) == data[5:]
    assert b"".join(pieces) == data[5:]
    # Only the first bytes of the buffer may be written; the rest is left as it was.
    assert buffer[len(data) - 5 :] == b"\xff" * (len(buffer) - len(data) + 5)


def test_zero_byte_object(case: Case) -> None:
    etag = put(case.store, "empty", b"")
    assert etag == hashlib.md5(b"").hexdigest()
    head = case.store.head("empty")
    assert head is not None and head.size == 0


def test_pinned_read_of_a_changed_object(case: Case) -> None:
    store = case.store
    put(store, "obj", b"first version")
    old = store.head("obj")
    assert old is not None
    if isinstance(store, LocalStore):
        os.utime(store.path_for("obj"), ns=(1, 1))  # same size, new identity
    put(store, "obj", b"other version")
    if case.enforces_if_match:
        with pytest.raises(SourceChangedError):
            store.get_range("obj", 0, 13, etag=old.etag)
    else:
        # Without If-Match support only a HEAD can notice; the bytes are the new version's.
        assert store.get_range("obj", 0, 13, etag=old.etag) == b"other version"


def test_read_of_a_deleted_object(case: Case) -> None:
    put(case.store, "gone", b"x")
    if isinstance(case.store, LocalStore):
        case.store.path_for("gone").unlink()
    else:
        case.store.client.delete_object(Bucket=case.store.bucket, Key="gone")  # type: ignore[attr-defined]
    with pytest.raises(SourceChangedError):
        case.store.get_range("gone", 0, 1)


def test_wrong_content_md5_is_rejected(case: Case) -> None:
    if case.validates_md5:
        with pytest.raises(TransientError):
            case.store.put_object("bad", b"payload", md5_b64=md5_b64(b"other"))
        assert case.store.head("bad") is None
    else:
        case.store.put_object("bad", b"payload", md5_b64=md5_b64(b"other"))
        head = case.store.head("bad")
        assert head is not None and head.size == 7


def test_multipart_upload_resume_and_complete(case: Case) -> None:
    store = case.store
    part1, part2, part3 = os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)
    upload = store.create_upload("big")
    e1 = store.upload_part("big", upload, 1, part1, md5_b64=md5_b64(part1))
    e2 = store.upload_part("big", upload, 2, part2, md5_b64=md5_b64(part2))
    assert e1 == hashlib.md5(part1).hexdigest()
    # What a resuming process sees: the parts already on the destination.
    listed = store.list_parts("big", upload)
    assert listed == [PartInfo(1, 5 * MiB, e1), PartInfo(2, 5 * MiB, e2)]
    e3 = store.upload_part("big", upload, 3, part3, md5_b64=md5_b64(part3))
    parts = [PartInfo(1, 5 * MiB, e1), PartInfo(2, 5 * MiB, e2), PartInfo(3, 1234, e3)]
    reported = store.complete_upload("big", upload, parts)
    head = store.head("big")
    assert head is not None and head.size == 10 * MiB + 1234
    sent = multipart_etag([bytes.fromhex(p.etag) for p in parts])
    assert reported == (sent if case.complete_etag else "")
    assert store.get_range("big", 5 * MiB - 2, 4) == part1[-2:] + part2[:2]
    assert store.list_parts("big", upload) is None  # finished uploads are gone


def test_aborted_upload_is_gone(case: Case) -> None:
    store = case.store
    upload = store.create_upload("abandoned")
    data = os.urandom(1000)
    store.upload_part("abandoned", upload, 1, data, md5_b64=md5_b64(data))
    store.abort_upload("abandoned", upload)
    assert store.list_parts("abandoned", upload) is None
    # Some servers answer 500 here (Ceph RGW); what counts is that the upload reads as gone.
    with pytest.raises(UploadMissingError):
        store.complete_upload(
            "abandoned", upload, [PartInfo(1, 1000, hashlib.md5(data).hexdigest())]
        )
    store.abort_upload("abandoned", upload)  # aborting twice is harmless
    assert store.head("abandoned") is None


def test_missing_bucket_or_directory_is_fatal(case: Case, tmp_path: Path) -> None:
    if isinstance(case.store, LocalStore):
        missing: ObjectStore = LocalStore(tmp_path / "no-such-dir")
    else:
        s3 = case.store
        assert isinstance(s3, S3Store)
        missing = S3Store(
            "no-such-bucket-longbow",
            SideSettings(
                endpoint_url=s3.client.meta.endpoint_url,
                region="us-east-1",
                path_style=True,
                access_key_id="longbow",
                secret_access_key="longbow-secret",
            ),
        )
    with pytest.raises(FatalError):
        missing.check()


@pytest.mark.parametrize("order", ["bytes", "segments"])
def test_local_store_lists_in_either_order(tmp_path: Path, order: str) -> None:
    store = LocalStore(tmp_path, create=True)
    store.use_listing_order(order)
    keys = ["b/2", "a", "b/1", "b-c", "c/d/e", "ab", "é", "b.x", "b0", "b/-"]
    for key in keys:
        put(store, key, b"x")
    assert [o.key for o in store.list_objects("")] == sorted(keys, key=order_key(order))


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/./b", ""])
def test_local_store_refuses_keys_that_are_not_safe_paths(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "root", create=True)
    store.check()
    with pytest.raises(UnsafeKeyError):
        store.put_object(key, b"x", md5_b64=md5_b64(b"x"))
    assert not (tmp_path / "x").exists()
    assert list(store.list_objects("")) == []


def test_concurrent_listing_equals_the_plain_listing(case: Case) -> None:
    from s3longbow.plan.listing import list_concurrently

    store = case.store
    keys = [
        "a",
        "a-b",
        "a.c",
        "a/1",
        "a/2/x",
        "a/2/y",
        "a/3",
        "a0",
        "b/",
        "b/c",
        "b-c/d",
        "c/d/e/f",
        "root-1",
        "z/" + "k" * 100,
        "é/ü",
        "sp ace/x",
    ]
    for key in keys:
        if case.files and key in ("a", "b/"):
            continue  # a file cannot end in "/", nor share its name with a folder
        put(store, key, b"x")
    for prefix in ("", "a", "a/", "b", "zz"):
        plain = [o.key for o in store.list_objects(prefix)]
        for threads in (1, 3, 8):
            got = [o.key for o in list_concurrently(store, prefix, threads=threads, depth=2)]
            assert got == plain, (prefix, threads)


def test_lean_client_serves_a_copy_without_botocore(case: Case) -> None:
    # botocore's client costs ~0.3 CPU-s to build; what a plain copy needs must not build it.
    store = case.store
    if not isinstance(store, S3Store) or store.data is None:
        assert not isinstance(store, S3Store) or store._client is not None
        return
    put(store, "k", b"data")
    assert [o.key for o in store.list_objects("")] == ["k"]
    info = store.head("k")
    assert info is not None and info.size == 4
    data, _ = store.read_object("k", 4, etag=info.etag)
    assert data == b"data"
    assert store._client is None
    # A control-plane call builds it on first use.
    store.abort_upload("k", "no-such-upload")
    assert store._client is not None


def test_metadata_that_is_not_ascii_is_written_and_read_back_as_its_bytes(case: Case) -> None:
    store = case.store
    properties = ObjectProperties(
        content_disposition='attachment; filename="résumé.pdf"',
        metadata=(("author", "José 字"),),
    )
    store.put_object("meta", b"x", md5_b64=md5_b64(b"x"), properties=properties)
    assert store.get_range("meta", 0, 1) == b"x"
    if isinstance(store, LocalStore):
        return  # files keep no user metadata
    details = store.details("meta", None)
    assert dict(details.properties.metadata)["author"] == "José 字"
    assert details.properties.content_disposition == 'attachment; filename="résumé.pdf"'
    _, read = store.read_object("meta", 1)
    assert dict(read.metadata)["author"] == "José 字"
