"""Parts relayed by the kernel from one SeaweedFS endpoint to another over plain HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from longbow_testkit.faultproxy import FaultProxy, Faults
from longbow_testkit.servers import LocalServer
from s3longbow.cli.app import cli
from s3longbow.config import MiB, SideSettings
from s3longbow.errors import SourceChangedError, TransientError
from s3longbow.model import PartInfo
from s3longbow.stores.s3 import S3Store, splice

from ..conftest import Bucket, cli_env, endpoint_args
from .test_integrity import job_verdicts, put_multipart

pytestmark = pytest.mark.skipif(not splice.AVAILABLE, reason="splice(2) is Linux-only")


def open_s3(server: LocalServer, bucket: str, url: str | None = None) -> S3Store:
    ep = server.endpoint
    side = SideSettings(
        endpoint_url=url or ep.url,
        region=ep.region,
        path_style=True,
        access_key_id=ep.access_key,
        secret_access_key=ep.secret_key,
    )
    return S3Store(bucket, side)


@pytest.fixture()
def pair(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, src_bucket: Bucket, dst_bucket: Bucket
) -> Iterator[tuple[S3Store, S3Store]]:
    src, dst = open_s3(seaweed_src, src_bucket.name), open_s3(seaweed_dst, dst_bucket.name)
    yield src, dst
    src.close()
    dst.close()


def relay_part(
    src: S3Store,
    dst: S3Store,
    src_key: str,
    key: str,
    upload_id: str,
    number: int,
    start: int,
    length: int,
    *,
    etag: str,
) -> str | None:
    """Part `number` of an upload made from a byte range of `src_key`, relayed."""
    body = src.open_range(src_key, start, length, etag=etag)
    if body is None:
        return None
    with body:
        return dst.upload_part(key, upload_id, number, body, md5_b64=None)


def put(store: S3Store, key: str, data: bytes) -> str:
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    return store.put_object(key, data, md5_b64=md5)


def test_relayed_parts_are_the_ranges_they_were_cut_from(
    pair: tuple[S3Store, S3Store], dst_bucket: Bucket
) -> None:
    src, dst = pair
    data = os.urandom(11 * MiB + 7)
    etag = put(src, "obj", data)
    assert dst.can_relay_from(src) and not src.can_relay_from(object())
    upload = dst.create_upload("copy")
    cuts = [(1, 0, 6 * MiB), (2, 6 * MiB, len(data) - 6 * MiB)]
    parts = []
    for number, start, length in cuts:
        part_etag = relay_part(src, dst, "obj", "copy", upload, number, start, length, etag=etag)
        assert part_etag == hashlib.md5(data[start : start + length]).hexdigest()
        parts.append(PartInfo(number, length, part_etag))
    dst.complete_upload("copy", upload, parts)
    assert dst_bucket.get("copy") == data
    # Each relay left both connections reusable: one of each was opened for all of it.
    assert src.get_range("obj", 5, 10, etag=etag) == data[5:15]
    assert src.data is not None and dst.data is not None
    assert (src.data.connections_opened, dst.data.connections_opened) == (1, 1)


def test_an_opened_object_is_relayed_into_a_put_or_read_into_memory(
    pair: tuple[S3Store, S3Store], src_bucket: Bucket, dst_bucket: Bucket
) -> None:
    src, dst = pair
    data = os.urandom(2 * MiB + 3)
    src_bucket.client.put_object(
        Bucket=src_bucket.name,
        Key="obj",
        Body=data,
        ContentType="text/x-relay",
        Metadata={"a": "b"},
    )
    etag = hashlib.md5(data).hexdigest()
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    opened = src.open_object("obj", len(data), etag=etag)
    assert opened is not None
    body, properties = opened
    assert (properties.content_type, properties.metadata) == ("text/x-relay", (("a", "b"),))
    with body:
        assert dst.put_object("relayed", body, md5_b64=md5, properties=properties) == etag
    assert dst_bucket.get("relayed") == data
    head = dst_bucket.client.head_object(Bucket=dst_bucket.name, Key="relayed")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-relay", {"a": "b"})
    opened = src.open_object("obj", len(data), etag=etag)
    assert opened is not None
    with opened[0] as body:
        assert body.read() == data
    # Both replies were read to their end: the source's one connection carries the next.
    assert src.get_range("obj", 0, 4, etag=etag) == data[:4]
    assert src.data is not None and src.data.connections_opened == 1
    assert src.open_object("empty-is-never-relayed", 0) is None


def test_a_changed_source_is_not_relayed(pair: tuple[S3Store, S3Store]) -> None:
    src, dst = pair
    old = put(src, "obj", os.urandom(MiB))
    put(src, "obj", os.urandom(MiB))
    upload = dst.create_upload("copy")
    with pytest.raises(SourceChangedError):
        relay_part(src, dst, "obj", "copy", upload, 1, 0, MiB, etag=old)
    assert dst.list_parts("copy", upload) == []
    dst.abort_upload("copy", upload)


def test_a_source_reset_mid_part_fails_that_part_and_the_next_one_goes(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, src_bucket: Bucket, dst_bucket: Bucket
) -> None:
    data = os.urandom(6 * MiB)
    with FaultProxy(seaweed_src.endpoint.url) as proxy:
        src = open_s3(seaweed_src, src_bucket.name, proxy.url)
        dst = open_s3(seaweed_dst, dst_bucket.name)
        try:
            etag = put(src, "obj", data)
            upload = dst.create_upload("copy")
            proxy.set_faults(Faults(reset_mid_body=1.0, only_methods={"GET"}, max_faults=1))
            with pytest.raises(TransientError, match="reading s3://"):
                relay_part(src, dst, "obj", "copy", upload, 1, 0, len(data), etag=etag)
            assert proxy.faults_injected["reset_mid_body"] == 1
            # Both broken connections were dropped: the same part now goes through.
            part_etag = relay_part(src, dst, "obj", "copy", upload, 1, 0, len(data), etag=etag)
            dst.complete_upload("copy", upload, [PartInfo(1, len(data), part_etag or "")])
            assert dst_bucket.get("copy") == data
        finally:
            src.close()
            dst.close()


@pytest.fixture()
def relayed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every body the kernel relays from now on."""
    lengths: list[int] = []
    real_relay = splice.relay

    def counted(src: Any, dst: Any, length: int, moved: Any = None) -> None:
        lengths.append(length)
        real_relay(src, dst, length, moved)

    monkeypatch.setattr(splice, "relay", counted)
    return lengths


@pytest.mark.parametrize(
    "extra",
    [[], ["--checksum-algorithm", "CRC32C"], ["--no-relay"]],
    ids=["relayed", "checksum-wanted", "no-relay"],
)
def test_sync_relays_what_needs_no_checksum_of_ours(
    src_bucket: Bucket,
    dst_bucket: Bucket,
    tmp_path: Path,
    relayed: list[int],
    extra: list[str],
) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    etag = put_multipart(src_bucket, "layered", parts)
    src_bucket.put("single", os.urandom(6 * MiB))  # one PUT under its own MD5
    src_bucket.put("tiny", os.urandom(1000))  # below the relay's minimum: read into memory
    db = tmp_path / "j.db"
    args = ["sync", f"{src_bucket.url}/", f"{dst_bucket.url}/", "--db", str(db), "--json"]
    args += [*endpoint_args(src_bucket.endpoint, dst_bucket.endpoint), *extra]
    result = CliRunner().invoke(cli, args, env=cli_env(src_bucket.endpoint, dst_bucket.endpoint))
    assert result.exit_code == 0, result.output
    assert dst_bucket.digests() == src_bucket.digests()
    head = dst_bucket.client.head_object(Bucket=dst_bucket.name, Key="layered")
    assert head["ETag"].strip('"') == etag
    assert job_verdicts(db) == {
        "layered": ("done", "source-etag"),
        "single": ("done", "source-md5"),
        "tiny": ("done", "source-md5"),
    }
    if extra:
        # A checksum of ours wanted on every write (the bytes must pass through here), or
        # relaying turned off.
        assert relayed == []
        return
    # Every part and the single object went through the kernel, less the bytes read along
    # with each reply's head.
    assert len(relayed) == 4
    assert sum(len(p) for p in parts) + 6 * MiB - sum(relayed) < 4 * 8192


def test_a_source_s_own_checksum_goes_on_with_its_relayed_bytes(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path, relayed: list[int]
) -> None:
    """An object written with a CRC32 of all its bytes (as current SDKs write by default) is
    relayed: the write carries the source's own CRC32, which the destination checks, so the
    bytes need not pass through memory here."""
    data = os.urandom(3 * MiB)
    src_bucket.client.put_object(
        Bucket=src_bucket.name, Key="crc", Body=data, ChecksumAlgorithm="CRC32"
    )
    args = ["sync", f"{src_bucket.url}/", f"{dst_bucket.url}/", "--db", str(tmp_path / "j.db")]
    args += [*endpoint_args(src_bucket.endpoint, dst_bucket.endpoint), "--json"]
    result = CliRunner().invoke(cli, args, env=cli_env(src_bucket.endpoint, dst_bucket.endpoint))
    assert result.exit_code == 0, result.output
    assert len(relayed) == 1 and 3 * MiB - relayed[0] < 8192
    assert dst_bucket.get("crc") == data
    heads = [
        b.client.head_object(Bucket=b.name, Key="crc", ChecksumMode="ENABLED")
        for b in (src_bucket, dst_bucket)
    ]
    assert heads[0]["ChecksumCRC32"] and heads[1]["ChecksumCRC32"] == heads[0]["ChecksumCRC32"]
    assert job_verdicts(tmp_path / "j.db") == {"crc": ("done", "source-md5")}
