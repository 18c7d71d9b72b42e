"""--storage-class keep on SeaweedFS: each copy in its source's own class, by every path
(one PUT, parts, a copy on the server); a STANDARD source's copy names no class."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, new_bucket
from .test_integrity import job_verdicts, run_sync

MiB = 1024 * 1024


def seed(src: Bucket) -> None:
    for key, size, storage_class in (
        ("ia-small", 3000, "STANDARD_IA"),
        ("ia-big", 11 * MiB, "STANDARD_IA"),
        ("std-small", 3000, None),
        ("std-big", 11 * MiB, None),
    ):
        extra = {"StorageClass": storage_class} if storage_class else {}
        src.client.put_object(Bucket=src.name, Key=key, Body=os.urandom(size), **extra)


def classes(bucket: Bucket) -> dict[str, str | None]:
    return {
        key: bucket.client.head_object(Bucket=bucket.name, Key=key).get("StorageClass")
        for key in bucket.keys()
    }


@pytest.mark.parametrize("server_side", [False, True], ids=["two-endpoints", "server-side"])
def test_keep_copies_each_object_in_its_source_s_class(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path, server_side: bool
) -> None:
    src = new_bucket(seaweed_src, "keep-src")
    dst = new_bucket(seaweed_src if server_side else seaweed_dst, "keep-dst")
    seed(src)
    assert classes(src)["ia-small"] == "STANDARD_IA"
    code, summary = run_sync(
        src, dst, tmp_path / "j.db", "--storage-class", "keep", "--part-size", "5MiB"
    )
    assert code == 0, summary["failed"]
    assert classes(dst) == {
        "ia-small": "STANDARD_IA",
        "ia-big": "STANDARD_IA",
        "std-small": None,
        "std-big": None,
    }
    notes = {key: verdict for key, (_, verdict) in job_verdicts(tmp_path / "j.db").items()}
    assert ("copied on the server" in notes["ia-big"]) is server_side
