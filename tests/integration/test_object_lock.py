"""Object Lock on moto (server mode): retention and legal holds copied where the destination
bucket has Object Lock, by one PUT, in parts and on the server; a destination without it gets
the copies without them, and the summary says so once."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket
from .test_integrity import put_multipart, run_sync

MiB = 1024 * 1024
UNTIL = datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)


def locked_bucket(server: LocalServer, stem: str) -> Bucket:
    client = server.endpoint.client()
    name = f"{stem}-{os.getpid()}-{os.urandom(3).hex()}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return Bucket(server.endpoint, name, client)


def seed(src: Bucket) -> None:
    c = src.client
    body = os.urandom(3000)
    c.put_object(
        Bucket=src.name,
        Key="retained",
        Body=body,
        ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=UNTIL,
    )
    body = os.urandom(2000)
    c.put_object(
        Bucket=src.name,
        Key="held",
        Body=body,
        ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
        ObjectLockLegalHoldStatus="ON",
    )
    put_multipart(src, "big", [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(MiB)])
    c.put_object_retention(
        Bucket=src.name,
        Key="big",
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": UNTIL},
    )
    c.put_object_legal_hold(Bucket=src.name, Key="big", LegalHold={"Status": "ON"})
    src.put("free", b"no lock at all")


def locks(bucket: Bucket) -> dict[str, tuple[str | None, datetime.datetime | None, str | None]]:
    out = {}
    for key in bucket.keys():
        head = bucket.client.head_object(Bucket=bucket.name, Key=key)
        out[key] = (
            head.get("ObjectLockMode"),
            head.get("ObjectLockRetainUntilDate"),
            head.get("ObjectLockLegalHoldStatus"),
        )
    return out


EXPECTED = {
    "retained": ("GOVERNANCE", UNTIL, None),
    "held": (None, None, "ON"),
    "big": ("COMPLIANCE", UNTIL, "ON"),
    "free": (None, None, None),
}


@pytest.mark.parametrize("server_side", [False, True], ids=["streamed", "server-side"])
def test_locks_are_copied_where_the_destination_has_object_lock(
    moto: LocalServer, tmp_path: Path, server_side: bool
) -> None:
    src, dst = locked_bucket(moto, "lock-src"), locked_bucket(moto, "lock-dst")
    seed(src)
    assert locks(src) == EXPECTED
    extra = () if server_side else ("--no-server-side-copy",)
    code, summary = run_sync(src, dst, tmp_path / "j.db", "--part-size", "5MiB", *extra)
    assert code == 0, summary["failed"]
    assert summary["copied"]["objects"] == 4
    assert locks(dst) == EXPECTED
    assert summary["object_lock_not_kept"] == {}


def test_a_destination_without_object_lock_gets_the_copies_without_them(
    moto: LocalServer, tmp_path: Path
) -> None:
    src, dst = locked_bucket(moto, "lock-src"), new_bucket(moto, "plain-dst")
    seed(src)
    argv = [
        sys.executable,
        "-m",
        "s3longbow",
        "sync",
        f"{src.url}/",
        f"{dst.url}/",
        "--db",
        str(tmp_path / "j.db"),
        "--no-server-side-copy",
        "--part-size",
        "5MiB",
        *endpoint_args(src.endpoint, dst.endpoint),
    ]
    done = subprocess.run(
        argv,
        env={**os.environ, **cli_env(src.endpoint, dst.endpoint), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(dst.keys()) == sorted(EXPECTED)
    assert set(locks(dst).values()) == {(None, None, None)}
    said = f"3 object(s) had Object Lock retention or a legal hold; s3://{dst.name}/ has no"
    assert done.stdout.count(said) == 1, done.stdout
    assert done.stderr.count("has no Object Lock") == 1  # warned once, not per object
    code, summary = run_sync(src, dst, tmp_path / "again.db", "--no-server-side-copy")
    assert summary["copied"]["objects"] == 0  # nothing left to copy: no failure either
