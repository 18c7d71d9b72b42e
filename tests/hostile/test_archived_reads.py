"""A source whose listing shows nothing archived, yet refuses a read with 403
InvalidObjectState (what S3 answers for an object in an Intelligent-Tiering archive tier):
the object is archived, not a permission problem and not a failure; asked to, Longbow asks for
its restore the way that tier needs (no days)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.fakes3 import FakeS3, Request, error, reply

from ..conftest import Bucket, cli_env, endpoint_args
from .conftest import db_args, longbow

REFUSAL = "The operation is not valid for the object's storage class"


@pytest.fixture()
def fake() -> Iterator[FakeS3]:
    with FakeS3() as server:
        server.put("bkt", "tiered", b"deep in the archive tier")
        server.put("bkt", "warm", b"frequent access")
        yield server


def tiered(server: FakeS3) -> list[Request]:
    """Refuse every GET of `tiered` as S3 does an object in an archive tier (its HEAD says so);
    answer RestoreObject with 202 (started). Returns the restore requests received."""
    restores: list[Request] = []
    data = server.objects["bkt", "tiered"]

    def answer(request: Request) -> bytes | None:
        if request.key != "tiered":
            return None
        if request.method == "GET":
            return error(
                403,
                "InvalidObjectState",
                REFUSAL,
                "<StorageClass>INTELLIGENT_TIERING</StorageClass>"
                "<AccessTier>ARCHIVE_ACCESS</AccessTier>",
            )
        if request.method == "HEAD":
            head = {
                "ETag": f'"{hashlib.md5(data).hexdigest()}"',
                "Content-Length": str(len(data)),
                "x-amz-storage-class": "INTELLIGENT_TIERING",
                "x-amz-archive-status": "ARCHIVE_ACCESS",
            }
            return reply(200, headers=head, length=False)
        if request.method == "POST" and "restore" in request.query:
            restores.append(request)
            return reply(202)
        return None

    server.on(answer)
    return restores


def sync(server: FakeS3, dst: Bucket, tmp_path: Path, *extra: str) -> tuple[Any, dict[str, Any]]:
    done = longbow(
        "sync",
        "s3://bkt/",
        f"{dst.url}/",
        *db_args(tmp_path),
        "--src-endpoint-url",
        server.url,
        "--src-path-style",
        "--src-region",
        "us-east-1",
        *endpoint_args(None, dst.endpoint),
        "--json",
        *extra,
        env={
            **cli_env(None, dst.endpoint),
            "LONGBOW_SRC_ACCESS_KEY_ID": "AKIDFAKE",
            "LONGBOW_SRC_SECRET_ACCESS_KEY": "fake-secret",
        },
    )
    return done, json.loads(done.stdout) if done.stdout.strip() else {}


def test_a_read_refused_as_archived_is_archived_not_failed(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    restores = tiered(fake)
    done, summary = sync(fake, dst_bucket, tmp_path)
    assert done.returncode == 0, done.stderr
    assert summary["failed"] == [] and summary["jobs"]["archived"] == 1
    [archived] = summary["archived"]["needs_restore"]
    assert archived["key"] == "tiered"
    assert archived["reason"] == "archived: needs a restore before it can be read"
    assert "permission" not in done.stderr
    assert dst_bucket.keys() == ["warm"]
    assert restores == []  # none asked for without --restore-days
    # One read, refused, and not retried: retrying cannot make it readable.
    assert [r.key for r in fake.of("GET") if r.key == "tiered"] == ["tiered"]


def test_its_restore_is_asked_for_as_an_archive_tier_needs(
    fake: FakeS3, dst_bucket: Bucket, tmp_path: Path
) -> None:
    restores = tiered(fake)
    done, summary = sync(
        fake, dst_bucket, tmp_path, "--restore-days", "3", "--restore-tier", "Bulk"
    )
    assert done.returncode == 0, done.stderr
    assert [i["key"] for i in summary["archived"]["restore_requested"]] == ["tiered"]
    assert summary["archived"]["restore_requested"][0]["reason"] == (
        "archived (INTELLIGENT_TIERING): restore requested (Bulk)"
    )
    [restore] = restores
    body = restore.body.decode()
    # An archive tier's restored object stays restored: its request names no days.
    assert "<Tier>Bulk</Tier>" in body and "<Days>" not in body
    assert dst_bucket.keys() == ["warm"]
