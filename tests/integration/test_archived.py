"""Archived sources end to end: a moto bucket holding GLACIER and DEEP_ARCHIVE objects (moto
refuses their reads with InvalidObjectState until RestoreObject, which it completes at once:
its "s3::keyrestore" state manager moves a restore straight to RESTORED) copied to SeaweedFS,
and to moto itself (the server copies)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from longbow_testkit.sealproxy import seal_proxy
from longbow_testkit.servers import LocalServer
from s3longbow import retry
from s3longbow.cli.app import cli
from s3longbow.config import MiB
from s3longbow.jobs.sqlite import JobDatabase
from s3longbow.model import JobState

from ..conftest import Bucket, new_bucket
from .test_sync import env_for, run, sync_args

BIG = 6 * MiB  # over the threshold below: copied in parts, after a HEAD
SMALL_PARTS = ["--part-size", "5MiB", "--resumable-threshold", "5MiB"]


def seed(bucket: Bucket) -> dict[str, bytes]:
    """Two readable objects, three archived ones (one of them multipart)."""
    objects = {
        "warm/a.txt": b"standard bytes",
        "warm/ir.bin": os.urandom(2048),
        "cold/glacier.txt": b"glacier bytes",
        "cold/deep.bin": os.urandom(4096),
        "cold/big.bin": os.urandom(BIG),
    }
    classes = {
        "warm/ir.bin": "GLACIER_IR",  # instant retrieval: read like any other
        "cold/glacier.txt": "GLACIER",
        "cold/deep.bin": "DEEP_ARCHIVE",
    }
    client = bucket.client
    for key, data in objects.items():
        if key == "cold/big.bin":
            upload = client.create_multipart_upload(
                Bucket=bucket.name, Key=key, StorageClass="GLACIER"
            )["UploadId"]
            parts = []
            for number, start in enumerate(range(0, len(data), 5 * MiB), 1):
                etag = client.upload_part(
                    Bucket=bucket.name,
                    Key=key,
                    UploadId=upload,
                    PartNumber=number,
                    Body=data[start : start + 5 * MiB],
                )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            client.complete_multipart_upload(
                Bucket=bucket.name, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        else:
            client.put_object(
                Bucket=bucket.name,
                Key=key,
                Body=data,
                StorageClass=classes.get(key, "STANDARD"),
            )
    return objects


ARCHIVED = ["cold/big.bin", "cold/deep.bin", "cold/glacier.txt"]


def keys(summary: dict[str, Any], which: str) -> list[str]:
    return sorted(item["key"] for item in summary["archived"][which])


def restored(bucket: Bucket, key: str) -> bool:
    head = bucket.client.head_object(Bucket=bucket.name, Key=key)
    return 'ongoing-request="false"' in head.get("Restore", "")


def test_archived_objects_are_skipped_and_reported_not_failed(
    moto: LocalServer, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src = new_bucket(moto, "cold")
    objects = seed(src)
    with seal_proxy(moto.endpoint, seal=False) as proxy:
        watched = Bucket(proxy.endpoint(), src.name, src.client)
        args = sync_args(watched, dst_bucket, tmp_path / "jobs.db") + SMALL_PARTS
        code, summary, err = run(args, env_for(src, dst_bucket))
        # Told by the listing, which asked for restore statuses: no request per object.
        listings = [h for m, p, h in proxy.requests if m == "GET" and "list-type=2" in p]
        assert listings
        assert all(h["x-amz-optional-object-attributes"] == "RestoreStatus" for h in listings)
        reads = [p for _, p, _ in proxy.requests if "list-type" not in p]
        assert reads and not any("/cold/" in p for p in reads)

    # Not a failure: the exit code says every job ended as it should.
    assert code == 0, err
    assert summary["ok"] is True and summary["failed"] == []
    assert summary["jobs"]["archived"] == 3 and summary["jobs"]["done"] == 2
    assert keys(summary, "needs_restore") == ARCHIVED
    assert summary["archived"]["restore_requested"] == []
    reasons = {item["key"]: item["reason"] for item in summary["archived"]["needs_restore"]}
    assert reasons["cold/deep.bin"] == (
        "archived (DEEP_ARCHIVE): needs a restore before it can be read"
    )
    assert "permission" not in err
    assert summary["to_restore"] == 3  # told by the listing, before any read
    assert dst_bucket.keys() == ["warm/a.txt", "warm/ir.bin"]
    assert dst_bucket.get("warm/ir.bin") == objects["warm/ir.bin"]
    assert not any(restored(src, key) for key in ARCHIVED)  # nothing asked of the source

    # A rerun finds them as they were: still archived, still no failure.
    args = sync_args(src, dst_bucket, tmp_path / "jobs.db") + SMALL_PARTS
    code, summary, err = run(args, env_for(src, dst_bucket))
    assert code == 0, err
    assert keys(summary, "needs_restore") == ARCHIVED
    assert summary["copied"]["objects"] == 0

    # The human summary says how many, and how to get them copied.
    human = run_human(args, env_for(src, dst_bucket))
    assert "archived: needs restore" in human and "--restore-days" in human
    assert "restores take hours and are billed" in human


def run_human(args: list[str], env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return " ".join(result.stdout.split())


def test_restores_are_requested_and_a_second_run_copies_them(
    moto: LocalServer, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src = new_bucket(moto, "cold")
    objects = seed(src)
    db_path = tmp_path / "jobs.db"
    args = sync_args(src, dst_bucket, db_path) + SMALL_PARTS
    restoring = [*args, "--restore-days", "2", "--restore-tier", "bulk"]
    code, summary, err = run(restoring, env_for(src, dst_bucket))
    assert code == 0, err
    assert keys(summary, "restore_requested") == ARCHIVED
    assert summary["archived"]["needs_restore"] == []
    reasons = {i["key"]: i["reason"] for i in summary["archived"]["restore_requested"]}
    assert reasons["cold/glacier.txt"] == "archived (GLACIER): restore requested (Bulk, 2 day(s))"
    assert all(restored(src, key) for key in ARCHIVED)  # moto restores at once
    assert sorted(dst_bucket.keys()) == ["warm/a.txt", "warm/ir.bin"]
    db = JobDatabase(db_path)
    try:
        run_id = summary["run_id"]
        for key in ARCHIVED:
            job = db.job(run_id, key)
            assert job is not None and job.state is JobState.ARCHIVED
            assert job.restore_requested is not None
    finally:
        db.close()

    # The same command again: each object is readable now, and copied.
    code, summary, err = run(restoring, env_for(src, dst_bucket))
    assert code == 0, err
    assert summary["copied"]["objects"] == 3
    assert summary["archived"] == {"needs_restore": [], "restore_requested": []}
    assert summary["jobs"]["done"] == 5 and summary["jobs"]["archived"] == 0
    assert dst_bucket.digests() == {k: _md5(v) for k, v in objects.items()}
    assert summary["verification"] == {"verified: source-md5": 4, "verified: source-etag": 1}


def test_a_restore_asked_for_earlier_is_copied_without_the_option_once_readable(
    moto: LocalServer, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src = new_bucket(moto, "cold")
    src.client.put_object(Bucket=src.name, Key="k", Body=b"frozen", StorageClass="GLACIER")
    args = sync_args(src, dst_bucket, tmp_path / "jobs.db")
    code, summary, err = run([*args, "--restore-days", "1"], env_for(src, dst_bucket))
    assert code == 0 and keys(summary, "restore_requested") == ["k"], err
    # Run without --restore-days: the record of the restore asked for makes it try a read,
    # and the read (the final word) succeeds.
    code, summary, err = run(args, env_for(src, dst_bucket))
    assert code == 0, err
    assert summary["copied"]["objects"] == 1 and dst_bucket.get("k") == b"frozen"


def test_the_server_copies_an_archived_object_once_restored(
    moto: LocalServer, tmp_path: Path
) -> None:
    src, dst = new_bucket(moto, "cold"), new_bucket(moto, "copy")
    src.client.put_object(Bucket=src.name, Key="k", Body=b"frozen", StorageClass="GLACIER")
    args = sync_args(src, dst, tmp_path / "jobs.db")
    code, summary, err = run(args, env_for(src, dst))
    assert code == 0 and keys(summary, "needs_restore") == ["k"], err
    code, summary, err = run([*args, "--restore-days", "1"], env_for(src, dst))
    assert code == 0 and keys(summary, "restore_requested") == ["k"], err
    code, summary, err = run([*args, "--restore-days", "1"], env_for(src, dst))
    assert code == 0, err
    assert summary["copied"] == {"objects": 1, "bytes": 6} and dst.get("k") == b"frozen"
    assert list(summary["verification"]) == ["verified: source-md5; copied on the server"]


def test_status_lists_archived_jobs(moto: LocalServer, dst_bucket: Bucket, tmp_path: Path) -> None:
    src = new_bucket(moto, "cold")
    src.client.put_object(Bucket=src.name, Key="k", Body=b"frozen", StorageClass="DEEP_ARCHIVE")
    db_path = tmp_path / "jobs.db"
    code, _, err = run(sync_args(src, dst_bucket, db_path), env_for(src, dst_bucket))
    assert code == 0, err
    code, status, err = run(["status", "--db", str(db_path)])
    assert code == 0, err  # waiting for a restore is no failure
    assert status["jobs"]["archived"] == 1
    assert [i["key"] for i in status["archived"]["needs_restore"]] == ["k"]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_store_that_refuses_the_restore_status_is_listed_without_it(
    moto: LocalServer, dst_bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "backoff_delay", lambda attempt: 0.0)
    src = new_bucket(moto, "cold")
    src.put("warm", b"w")
    src.client.put_object(Bucket=src.name, Key="cold", Body=b"c", StorageClass="GLACIER")
    with seal_proxy(moto.endpoint, seal=False) as proxy:
        proxy.before = lambda method, path, headers: (
            400 if "x-amz-optional-object-attributes" in headers else None
        )
        watched = Bucket(proxy.endpoint(), src.name, src.client)
        code, summary, err = run(
            sync_args(watched, dst_bucket, tmp_path / "jobs.db"), env_for(src, dst_bucket)
        )
    assert code == 0, err
    assert dst_bucket.keys() == ["warm"]
    assert keys(summary, "needs_restore") == ["cold"]  # its storage class still tells
