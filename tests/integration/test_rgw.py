"""`longbow sync` end to end with a Ceph RADOS Gateway on one side.

RGW is a production S3 server with its own deviations from AWS: CompleteMultipartUpload
answers with an empty ETag, an aborted upload reads as NoSuchKey, only the STANDARD storage
class exists, and the newer checksum headers are ignored. These tests need a local Ceph (see
`start_rgw`); they are deselected without one unless LONGBOW_TEST_RGW=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.servers import LocalServer, start_rgw
from s3longbow.config import MiB, SideSettings
from s3longbow.errors import FatalError
from s3longbow.stores.s3 import S3Store

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket
from ..killing import kill_after_parts
from .test_integrity import job_verdicts, open_uploads


def sync_argv(src: Bucket | Path, dst: Bucket | Path, db: Path, *extra: str) -> list[str]:
    def location(side: Bucket | Path) -> str:
        return f"{side.url}/" if isinstance(side, Bucket) else str(side)

    src_ep = src.endpoint if isinstance(src, Bucket) else None
    dst_ep = dst.endpoint if isinstance(dst, Bucket) else None
    return [
        sys.executable,
        "-m",
        "s3longbow",
        "sync",
        location(src),
        location(dst),
        "--db",
        str(db),
        "--json",
        *endpoint_args(src_ep, dst_ep),
        *extra,
    ]


def sync_env(src: Bucket | Path, dst: Bucket | Path) -> dict[str, str]:
    keys = cli_env(
        src.endpoint if isinstance(src, Bucket) else None,
        dst.endpoint if isinstance(dst, Bucket) else None,
    )
    return {**os.environ, **keys}


def run_sync(
    src: Bucket | Path, dst: Bucket | Path, db: Path, *extra: str
) -> tuple[int, dict[str, Any], str]:
    """Run `longbow sync` as its own process; return (exit code, JSON summary, stderr)."""
    done = subprocess.run(
        sync_argv(src, dst, db, *extra), env=sync_env(src, dst), capture_output=True, timeout=300
    )
    summary = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, summary, done.stderr.decode("utf-8", "replace")


def md5s(data: dict[str, bytes]) -> dict[str, str]:
    return {key: hashlib.md5(body).hexdigest() for key, body in data.items()}


@pytest.fixture()
def rgw_bucket(rgw: LocalServer) -> Bucket:
    return new_bucket(rgw, "rgw")


@pytest.mark.rgw
def test_seaweedfs_to_rgw_and_back_to_a_directory(
    src_bucket: Bucket, rgw_bucket: Bucket, tmp_path: Path
) -> None:
    data = {
        "empty": b"",
        "small/kib.bin": os.urandom(3 * 1024),
        "big/three-parts.bin": os.urandom(12 * MiB + 17),
        "keys/sp ace+plus%25.txt": b"awkward",
        "keys/unicodé-漢字": b"unicode",
    }
    for key, body in data.items():
        src_bucket.put(key, body)
    sizes = ("--part-size", "5MiB", "--resumable-threshold", "5MiB")
    code, summary, err = run_sync(src_bucket, rgw_bucket, tmp_path / "in.db", *sizes)
    assert code == 0, err
    assert summary["copied"]["objects"] == len(data) and summary["failed"] == []
    assert rgw_bucket.digests() == md5s(data)
    # RGW's Complete reply has no ETag; the object's own ETag is the AWS-style one.
    big = rgw_bucket.client.head_object(Bucket=rgw_bucket.name, Key="big/three-parts.bin")
    assert big["ETag"].strip('"').endswith("-3")
    assert {state for state, _ in job_verdicts(tmp_path / "in.db").values()} == {"done"}

    code, summary, err = run_sync(src_bucket, rgw_bucket, tmp_path / "in.db", *sizes)
    assert code == 0, err
    assert summary["copied"]["objects"] == 0
    assert summary["already_present"]["objects"] == len(data)

    # RGW as the source: listing, ranged GETs pinned by If-Match, multipart ETags.
    out = tmp_path / "out"
    code, summary, err = run_sync(rgw_bucket, out, tmp_path / "out.db", *sizes)
    assert code == 0, err
    assert {key: (out / key).read_bytes() for key in data} == data
    assert open_uploads(rgw_bucket) == []


@pytest.mark.rgw
def test_sync_killed_mid_transfer_resumes_on_rgw(
    src_bucket: Bucket, rgw_bucket: Bucket, tmp_path: Path
) -> None:
    data = {"obj": os.urandom(20 * MiB + 1)}  # five parts: the kill comes after two
    for key, body in data.items():
        src_bucket.put(key, body)
    db = tmp_path / "j.db"
    argv = sync_argv(
        src_bucket, rgw_bucket, db, "--part-size", "5MiB", "--workers", "1", "--part-threads", "1"
    )
    assert kill_after_parts(argv, sync_env(src_bucket, rgw_bucket), db, parts=2) >= 2
    assert len(open_uploads(rgw_bucket)) == 1
    code, summary, err = run_sync(src_bucket, rgw_bucket, db, "--part-size", "5MiB")
    assert code == 0, err
    assert summary["bytes_reused"] >= 2 * 5 * MiB  # the parts sent before the kill
    assert rgw_bucket.digests() == md5s(data)
    assert open_uploads(rgw_bucket) == []
    assert set(job_verdicts(db).values()) == {("done", "source-md5")}


@pytest.mark.rgw
def test_a_storage_class_rgw_lacks_stops_the_run_with_a_reason(
    src_bucket: Bucket, rgw_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("a", b"payload")
    code, _, err = run_sync(
        src_bucket, rgw_bucket, tmp_path / "j.db", "--storage-class", "STANDARD_IA"
    )
    assert code != 0
    assert "storage class" in err and "STANDARD_IA" in err
    assert rgw_bucket.keys() == []


@pytest.mark.rgw
@pytest.mark.parametrize("algorithm", ["auto", "CRC32"])
def test_rgw_is_known_to_check_only_content_md5(rgw_bucket: Bucket, algorithm: str) -> None:
    ep = rgw_bucket.endpoint
    side = SideSettings(
        endpoint_url=ep.url,
        region=ep.region,
        path_style=True,
        access_key_id=ep.access_key,
        secret_access_key=ep.secret_key,
        checksum_algorithm=algorithm,
    )
    store = S3Store(rgw_bucket.name, side)
    try:
        if algorithm == "auto":
            store.check()
            assert store.rgw and store.capabilities.checksums == "MD5"
        else:
            # RGW would accept a CRC32 header without checking it: refuse rather than pretend.
            with pytest.raises(FatalError, match="ignores CRC32 checksums"):
                store.check()
    finally:
        store.close()


@pytest.mark.rgw
def test_rgw_serves_objects_and_stops_every_daemon(tmp_path: Path) -> None:
    server = start_rgw(tmp_path / "rgw")
    try:
        assert server.endpoint.kind == "rgw" and server.endpoint.host == "127.0.0.1"
        s3 = server.endpoint.client()
        s3.create_bucket(Bucket="smoke")
        s3.put_object(Bucket="smoke", Key="hello.txt", Body=b"hello, longbow")
        assert s3.get_object(Bucket="smoke", Key="hello.txt")["Body"].read() == b"hello, longbow"
        s3.close()
        daemons = list((tmp_path / "rgw" / "cluster" / "run").glob("*.asok"))
        assert len(daemons) == 3  # monitor, OSD and gateway
    finally:
        server.stop()
    assert not server.running and server.pid is not None
    # The daemons ran in the supervisor's process group: none of them is left.
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)
    for port in server.ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)


def test_start_rgw_without_ceph_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match="apt-get install .*radosgw"):
        start_rgw(tmp_path / "rgw")
    assert not (tmp_path / "rgw").exists()
