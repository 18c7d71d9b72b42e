"""Integrity under real faults: corrupted reads and writes, a source replaced mid-copy."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from longbow_testkit.faultproxy import FaultProxy, Faults, Request
from longbow_testkit.servers import LocalServer
from s3longbow.cli.app import cli
from s3longbow.config import MiB
from s3longbow.jobs.sqlite import JobDatabase

from ..conftest import Bucket, cli_env
from ..integration.test_integrity import job_verdicts, open_uploads, put_multipart


@pytest.fixture()
def src_proxy(seaweed_src: LocalServer) -> Iterator[FaultProxy]:
    with FaultProxy(seaweed_src.endpoint.url) as proxy:
        yield proxy


@pytest.fixture()
def dst_proxy(seaweed_dst: LocalServer) -> Iterator[FaultProxy]:
    with FaultProxy(seaweed_dst.endpoint.url) as proxy:
        yield proxy


def sync_via(
    src: Bucket, dst: Bucket, db: Path, src_url: str, dst_url: str, *extra: str
) -> tuple[int, dict[str, Any]]:
    args = [
        "sync",
        f"{src.url}/",
        f"{dst.url}/",
        "--db",
        str(db),
        "--json",
        "--src-endpoint-url",
        src_url,
        "--src-path-style",
        "--dst-endpoint-url",
        dst_url,
        "--dst-path-style",
        "--part-size",
        "5MiB",
        *extra,
    ]
    result = CliRunner().invoke(cli, args, env=cli_env(src.endpoint, dst.endpoint))
    return result.exit_code, json.loads(result.stdout)


def flip_one_object_read(proxy: FaultProxy) -> None:
    """Flip one byte in the body of one object read, sparing the listing before it (a listing
    is a GET too): the fault is armed by the first object read and fires once."""

    def arm(request: Request) -> None:
        if request.kind in ("GET", "GET-range") and proxy.faults.flip_response_byte == 0:
            proxy.set_faults(Faults(flip_response_byte=1.0, max_faults=1, seed=1))

    proxy.on_request(arm)


def seed_mixed(src: Bucket) -> dict[str, str]:
    src.put("small", os.urandom(3000))
    src.put("empty", b"")
    src.put("single-part-big", os.urandom(11 * MiB))
    put_multipart(src, "multipart", [os.urandom(6 * MiB), os.urandom(6 * MiB), os.urandom(99)])
    return src.digests()


def test_a_run_without_resume_reads_every_byte_once_and_verifies_everything(
    src_bucket: Bucket, dst_bucket: Bucket, src_proxy: FaultProxy, tmp_path: Path
) -> None:
    digests = seed_mixed(src_bucket)
    src_proxy.reset_counts()
    code, summary = sync_via(
        src_bucket, dst_bucket, tmp_path / "j.db", src_proxy.url, dst_bucket.endpoint.url
    )
    assert code == 0, summary
    counts = src_proxy.counts
    # empty and small: 1 read each; single-part-big: 3 parts; multipart: 3 parts.
    assert counts["GET"] + counts["GET-range"] == 1 + 1 + 3 + 3
    # The bucket check, the multipart source's layout, and each multipart copy's properties.
    assert counts["HEAD"] == 4
    assert dst_bucket.digests() == digests
    assert sum(summary["verification"].values()) == 4
    assert all(v.startswith("verified") for v in summary["verification"])


@pytest.mark.parametrize("key", ["small", "single-part-big", "multipart"])
def test_bytes_flipped_on_the_read_leg_are_detected_and_read_again(
    src_bucket: Bucket, dst_bucket: Bucket, src_proxy: FaultProxy, tmp_path: Path, key: str
) -> None:
    digests = seed_mixed(src_bucket)
    others = [k for k in digests if k != key]
    for other in others:  # only the object under test is copied
        src_bucket.client.delete_object(Bucket=src_bucket.name, Key=other)
    flip_one_object_read(src_proxy)
    code, summary = sync_via(
        src_bucket, dst_bucket, tmp_path / "j.db", src_proxy.url, dst_bucket.endpoint.url
    )
    assert src_proxy.faults_injected["flip_response_byte"] == 1
    assert code == 0, summary
    assert dst_bucket.digests() == {key: digests[key]}
    (state, verify) = job_verdicts(tmp_path / "j.db")[key]
    assert state == "done" and verify.startswith("source-")
    if key != "small":  # a multipart copy found the bad part at the proof and sent it again
        assert "read corrupted and sent again" in verify


def test_bytes_flipped_on_the_upload_leg_are_rejected_by_the_server_and_resent(
    src_bucket: Bucket, dst_bucket: Bucket, dst_proxy: FaultProxy, tmp_path: Path
) -> None:
    digests = seed_mixed(src_bucket)
    dst_proxy.set_faults(Faults(flip_request_byte=1.0, max_faults=3, seed=3))
    code, summary = sync_via(
        src_bucket, dst_bucket, tmp_path / "j.db", src_bucket.endpoint.url, dst_proxy.url
    )
    assert dst_proxy.faults_injected["flip_request_byte"] == 3
    assert code == 0, summary
    assert dst_bucket.digests() == {k: v for k, v in digests.items()}


def test_source_overwritten_during_a_multipart_copy_is_never_mixed(
    src_bucket: Bucket, dst_bucket: Bucket, src_proxy: FaultProxy, tmp_path: Path
) -> None:
    first = os.urandom(30 * MiB)
    second = os.urandom(30 * MiB)  # same size: only the ETag pin can tell them apart
    src_bucket.put("video", first)
    ranged = 0

    def overwrite_on_third_part(request: Request) -> None:
        nonlocal ranged
        if request.kind == "GET-range" and request.key == "video":
            ranged += 1
            if ranged == 3:
                src_bucket.put("video", second)

    src_proxy.on_request(overwrite_on_third_part)
    code, summary = sync_via(
        src_bucket,
        dst_bucket,
        tmp_path / "j.db",
        src_proxy.url,
        dst_bucket.endpoint.url,
        "--part-threads",
        "1",
    )
    assert code == 0, summary
    assert hashlib.md5(dst_bucket.get("video")).hexdigest() == hashlib.md5(second).hexdigest()
    assert open_uploads(dst_bucket) == []
    _, verify = job_verdicts(tmp_path / "j.db")["video"]
    assert "source changed during the copy" in verify and verify.startswith("source-md5")
    db = JobDatabase(tmp_path / "j.db")
    run = db.get_run()
    assert run is not None
    job = db.job(run.id, "video")
    db.close()
    assert job is not None and job.restarts == 1


def test_source_that_keeps_changing_fails_with_a_reason(
    src_bucket: Bucket, dst_bucket: Bucket, src_proxy: FaultProxy, tmp_path: Path
) -> None:
    src_bucket.put("flapping", os.urandom(12 * MiB))
    seen = 0

    def overwrite_every_second_read(request: Request) -> None:
        nonlocal seen
        if request.kind == "GET-range" and request.key == "flapping":
            seen += 1
            if seen % 2 == 0 and seen <= 8:
                src_bucket.put("flapping", os.urandom(12 * MiB))

    src_proxy.on_request(overwrite_every_second_read)
    code, summary = sync_via(
        src_bucket,
        dst_bucket,
        tmp_path / "j.db",
        src_proxy.url,
        dst_bucket.endpoint.url,
        "--part-threads",
        "1",
        "--max-attempts",
        "1",
    )
    assert code == 1
    assert [f["key"] for f in summary["failed"]] == ["flapping"]
    assert "changed during the copy again" in summary["failed"][0]["reason"]
    assert dst_bucket.keys() == [] and open_uploads(dst_bucket) == []
