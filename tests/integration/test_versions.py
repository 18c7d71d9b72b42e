"""Versioned sources: reads are pinned to the version a copy started with, so an overwrite of
the key during the copy changes nothing in it (moto's versioned S3 as the source)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from longbow_testkit.sealproxy import seal_proxy
from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, cli_env, new_bucket
from .test_integrity import job_verdicts, run_sync, sync_argv

MiB = 1024 * 1024


def test_an_overwrite_during_a_copy_leaves_the_pinned_version_intact(
    moto: LocalServer, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src = new_bucket(moto, "versioned")
    src.client.put_bucket_versioning(Bucket=src.name, VersioningConfiguration={"Status": "Enabled"})
    first = os.urandom(11 * MiB)
    src.put("big", first)
    overwritten = []

    def overwrite_during_part_two(method: str, path: str, headers: dict[str, str]) -> None:
        if method == "GET" and headers.get("range", "").startswith(f"bytes={5 * MiB}-"):
            if not overwritten:
                overwritten.append(path)
                src.put("big", os.urandom(11 * MiB))  # same size: only pinning can tell
        return None

    with seal_proxy(moto.endpoint, seal=False) as proxy:
        proxy.before = overwrite_during_part_two
        code, summary = run_sync(
            Bucket(proxy.endpoint(), src.name, src.client),
            dst_bucket,
            tmp_path / "j.db",
            "--part-size",
            "5MiB",
            "--part-threads",
            "1",
        )
        reads = [p for m, p, h in proxy.requests if m == "GET" and "range" in h]

    assert code == 0, summary
    assert overwritten, "the overwrite never happened"
    assert all("versionId=" in p for p in reads)
    assert hashlib.md5(dst_bucket.get("big")).hexdigest() == hashlib.md5(first).hexdigest()
    assert job_verdicts(tmp_path / "j.db")["big"] == ("done", "source-md5")
    versions = src.client.list_object_versions(Bucket=src.name, Prefix="big")["Versions"]
    assert len(versions) == 2  # the source really holds a newer version now


def history(bucket: Bucket, key: str) -> list[bytes]:
    """Every version of `key`, oldest first (versions are listed newest first)."""
    resp = bucket.client.list_object_versions(Bucket=bucket.name, Prefix=key)
    versions = [v for v in resp.get("Versions", []) if v["Key"] == key][::-1]
    return [
        bytes(
            bucket.client.get_object(Bucket=bucket.name, Key=key, VersionId=v["VersionId"])[
                "Body"
            ].read()
        )
        for v in versions
    ]


@pytest.mark.parametrize("server_side", [True, False])
def test_all_versions_reproduces_each_history_in_order(
    moto: LocalServer, tmp_path: Path, server_side: bool
) -> None:
    src, dst = new_bucket(moto, "hist-src"), new_bucket(moto, "hist-dst")
    for bucket in (src, dst):
        bucket.client.put_bucket_versioning(
            Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"}
        )
    src.put("doc", b"version one")
    src.put("doc", os.urandom(6 * MiB))  # copied in parts
    src.client.delete_object(Bucket=src.name, Key="doc")  # a delete marker is not copied
    src.put("doc", b"version three, after a delete")
    src.put("single", b"only one version")
    extra = [] if server_side else ["--no-server-side-copy"]
    args = [tmp_path / "j.db", "--all-versions", "--part-size", "5MiB", *extra]

    code, summary = run_sync(src, dst, *args)

    assert code == 0, summary
    assert history(dst, "doc") == history(src, "doc")
    assert len(history(dst, "doc")) == 3
    assert history(dst, "single") == [b"only one version"]

    src.put("single", b"a second version")
    code, summary = run_sync(src, dst, *args)

    assert code == 0, summary
    assert history(dst, "doc") == history(src, "doc")  # nothing appended twice
    assert history(dst, "single") == [b"only one version", b"a second version"]


def test_all_versions_refuses_an_unversioned_destination(moto: LocalServer, tmp_path: Path) -> None:
    src, dst = new_bucket(moto, "hist-src"), new_bucket(moto, "plain-dst")
    src.client.put_bucket_versioning(Bucket=src.name, VersioningConfiguration={"Status": "Enabled"})
    src.put("a", b"x")

    done = subprocess.run(
        sync_argv(src, dst, tmp_path / "j.db", "--all-versions"),
        env={**os.environ, **cli_env(src.endpoint, dst.endpoint)},
        capture_output=True,
        timeout=120,
    )

    assert done.returncode == 2
    assert b"versioning is not enabled on the destination" in done.stderr
    assert dst.keys() == []


def test_compare_version_copies_a_same_size_overwrite(
    moto: LocalServer, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src = new_bucket(moto, "cv")
    src.client.put_bucket_versioning(Bucket=src.name, VersioningConfiguration={"Status": "Enabled"})
    src.put("k", b"a" * 10)
    src.put("other", b"stays")
    db = tmp_path / "j.db"
    code, summary = run_sync(src, dst_bucket, db, "--compare", "version")
    assert code == 0 and summary["to_copy"]["objects"] == 2, summary

    src.put("k", b"b" * 10)  # a new version of the same size
    code, summary = run_sync(src, dst_bucket, db)  # by size: nothing to do
    assert code == 0 and summary["to_copy"]["objects"] == 0, summary

    code, summary = run_sync(src, dst_bucket, db, "--compare", "version")

    assert code == 0, summary
    assert summary["to_copy"]["objects"] == 1
    assert dst_bucket.get("k") == b"b" * 10
    code, summary = run_sync(src, dst_bucket, db, "--compare", "version")
    assert summary["to_copy"]["objects"] == 0  # the copied version is now the current one
