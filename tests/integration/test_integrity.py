"""Integrity: source pinning, validated resume, verification of every object, `longbow verify`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from s3longbow.cli.app import cli
from s3longbow.config import MiB
from s3longbow.jobs.sqlite import JobDatabase

from ..conftest import Bucket, cli_env, endpoint_args
from ..killing import kill_after_parts


def sync_argv(src: Bucket, dst: Bucket, db: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "s3longbow",
        "sync",
        f"{src.url}/",
        f"{dst.url}/",
        "--db",
        str(db),
        "--json",
        *endpoint_args(src.endpoint, dst.endpoint),
        *extra,
    ]


def run_sync(src: Bucket, dst: Bucket, db: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, **cli_env(src.endpoint, dst.endpoint)}
    done = subprocess.run(
        sync_argv(src, dst, db, *extra), env=env, capture_output=True, timeout=300
    )
    summary = json.loads(done.stdout) if done.stdout.strip() else {}
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.returncode, summary


def put_multipart(bucket: Bucket, key: str, parts: list[bytes]) -> str:
    """Upload `parts` as a multipart object (as another tool would); return its ETag."""
    c = bucket.client
    upload = c.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
    etags = [
        c.upload_part(Bucket=bucket.name, Key=key, UploadId=upload, PartNumber=i, Body=p)["ETag"]
        for i, p in enumerate(parts, 1)
    ]
    c.complete_multipart_upload(
        Bucket=bucket.name,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]},
    )
    return str(c.head_object(Bucket=bucket.name, Key=key)["ETag"]).strip('"')


def open_uploads(bucket: Bucket) -> list[str]:
    resp = bucket.client.list_multipart_uploads(Bucket=bucket.name)
    return [u["Key"] for u in resp.get("Uploads", [])]


def job_verdicts(db: Path) -> dict[str, tuple[str, str | None]]:
    jobs = JobDatabase(db)
    try:
        run = jobs.get_run()
        assert run is not None
        with jobs._lock:  # noqa: SLF001 - a test reads the table directly
            rows = jobs._conn.execute(  # noqa: SLF001
                "SELECT src_key, state, verify, verified FROM jobs WHERE run_id=?", (run.id,)
            ).fetchall()
    finally:
        jobs.close()
    return {r[0]: (r[1], r[2] if r[3] else f"unverified: {r[2]}") for r in rows}


def test_multipart_source_keeps_its_etag_and_every_object_is_verified(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    # Another tool's multipart objects: 6 MiB parts (not our default), and a single-part one.
    mp_etag = put_multipart(src_bucket, "mp/six", [os.urandom(6 * MiB)] * 2 + [os.urandom(99)])
    one_etag = put_multipart(src_bucket, "mp/one-part", [os.urandom(1000)])
    assert mp_etag.endswith("-3") and one_etag.endswith("-1")
    src_bucket.put("plain/big", os.urandom(11 * MiB))
    src_bucket.put("plain/small", os.urandom(2000))
    src_bucket.put("plain/empty", b"")
    db = tmp_path / "j.db"
    code, summary = run_sync(src_bucket, dst_bucket, db, "--part-size", "5MiB")
    assert code == 0, summary
    heads = {
        k: dst_bucket.client.head_object(Bucket=dst_bucket.name, Key=k)["ETag"].strip('"')
        for k in ("mp/six", "mp/one-part")
    }
    assert heads == {"mp/six": mp_etag, "mp/one-part": one_etag}
    verdicts = job_verdicts(db)
    assert verdicts == {
        "mp/six": ("done", "source-etag"),
        "mp/one-part": ("done", "source-etag"),
        "plain/big": ("done", "source-md5"),
        "plain/small": ("done", "source-md5"),
        "plain/empty": ("done", "source-md5"),
    }
    assert summary["verification"] == {"verified: source-etag": 2, "verified: source-md5": 3}
    assert dst_bucket.digests() == src_bucket.digests()


def test_resume_after_the_part_size_setting_changed(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    data = {f"obj{i}": os.urandom(30 * MiB + i) for i in range(2)}
    for key, body in data.items():
        src_bucket.put(key, body)
    db = tmp_path / "j.db"
    env = {**os.environ, **cli_env(src_bucket.endpoint, dst_bucket.endpoint)}
    argv = sync_argv(
        src_bucket, dst_bucket, db, "--part-size", "5MiB", "--workers", "1", "--part-threads", "1"
    )
    assert kill_after_parts(argv, env, db, parts=2) >= 2
    code, summary = run_sync(src_bucket, dst_bucket, db, "--part-size", "7MiB")
    assert code == 0
    # The open upload kept its own 5 MiB plan; no object mixes two plans, none is left open.
    assert dst_bucket.digests() == {k: hashlib.md5(v).hexdigest() for k, v in data.items()}
    assert open_uploads(dst_bucket) == []
    assert summary["bytes_reused"] >= 2 * 5 * MiB
    assert set(job_verdicts(db).values()) == {("done", "source-md5")}


def test_an_object_that_fits_in_one_part_goes_in_one_put(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    # Above the 5 MiB resumable threshold but within one 8 MiB part: an upload of one part
    # would give nothing to resume, so the object travels in one PUT under the source's MD5.
    body = os.urandom(7 * MiB)
    src_bucket.put("seven", body)
    code, summary = run_sync(src_bucket, dst_bucket, tmp_path / "j.db")
    assert code == 0, summary
    head = dst_bucket.client.head_object(Bucket=dst_bucket.name, Key="seven")
    assert head["ETag"].strip('"') == hashlib.md5(body).hexdigest()  # no "-1": not multipart
    assert job_verdicts(tmp_path / "j.db") == {"seven": ("done", "source-md5")}


def test_an_upload_left_open_is_aborted_when_the_object_now_goes_in_one_put(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    body = os.urandom(20 * MiB)
    src_bucket.put("twenty", body)
    db = tmp_path / "j.db"
    env = {**os.environ, **cli_env(src_bucket.endpoint, dst_bucket.endpoint)}
    argv = sync_argv(src_bucket, dst_bucket, db, "--part-size", "5MiB", "--part-threads", "1")
    assert kill_after_parts(argv, env, db, parts=1) >= 1
    assert open_uploads(dst_bucket) == ["twenty"]
    # A raised threshold puts the object under it: its parts are not resumed but dropped.
    code, summary = run_sync(src_bucket, dst_bucket, db, "--resumable-threshold", "64MiB")
    assert code == 0, summary
    assert dst_bucket.get("twenty") == body
    assert open_uploads(dst_bucket) == []  # the earlier run's upload does not linger
    assert summary["bytes_reused"] == 0


def test_resume_after_the_source_changed_between_runs(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("moving", os.urandom(30 * MiB))
    db = tmp_path / "j.db"
    env = {**os.environ, **cli_env(src_bucket.endpoint, dst_bucket.endpoint)}
    argv = sync_argv(src_bucket, dst_bucket, db, "--part-size", "5MiB", "--part-threads", "1")
    assert kill_after_parts(argv, env, db, parts=2) >= 2
    assert len(open_uploads(dst_bucket)) == 1
    new_version = os.urandom(31 * MiB)
    src_bucket.put("moving", new_version)
    code, summary = run_sync(src_bucket, dst_bucket, db, "--part-size", "5MiB")
    assert code == 0, summary
    assert dst_bucket.get("moving") == new_version  # only the new version, never a mix
    assert open_uploads(dst_bucket) == []  # the stale upload was aborted
    assert summary["bytes_reused"] == 0


def test_longbow_verify_finds_missing_extra_and_different(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    for key in ("a", "b", "c", "d"):
        src_bucket.put(key, key.encode() * 100)
    put_multipart(src_bucket, "mp", [os.urandom(5 * MiB), os.urandom(10)])
    code, _ = run_sync(src_bucket, dst_bucket, tmp_path / "j.db")
    assert code == 0
    args = [
        "verify",
        f"{src_bucket.url}/",
        f"{dst_bucket.url}/",
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
        "--json",
    ]
    env = cli_env(src_bucket.endpoint, dst_bucket.endpoint)

    def verify(*extra: str) -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(cli, [*args, *extra], env=env)
        return result.exit_code, json.loads(result.stdout)

    code, report = verify()
    assert code == 0 and report["counts"]["match"] == 5 and report["ok"]

    dst_bucket.client.delete_object(Bucket=dst_bucket.name, Key="a")  # missing
    dst_bucket.put("zz-extra", b"extra")  # extra
    dst_bucket.put("c", b"C" * 100)  # same size, other bytes
    code, report = verify()
    assert code == 1
    assert [m["key"] for m in report["missing"]] == ["a"]
    assert [m["key"] for m in report["extra"]] == ["zz-extra"]
    assert [m["key"] for m in report["different"]] == ["c"]
    assert report["counts"]["match"] == 3


def test_verify_hashes_the_files_of_a_folder_without_deep(
    src_bucket: Bucket, tmp_path: Path
) -> None:
    src_bucket.put("x", b"exact")
    src_bucket.put("y", b"other")
    local = tmp_path / "copy"
    local.mkdir()
    (local / "x").write_bytes(b"exact")
    (local / "y").write_bytes(b"OTHER")
    args = [
        "verify",
        f"{src_bucket.url}/",
        str(local),
        *endpoint_args(src_bucket.endpoint, None),
        "--json",
    ]
    env = cli_env(src_bucket.endpoint, None)
    for extra in ([], ["--deep"]):
        result = CliRunner().invoke(cli, [*args, *extra], env=env)
        report = json.loads(result.stdout)
        assert result.exit_code == 1
        assert report["counts"]["match"] == 1 and report["counts"]["unverifiable"] == 0
        assert [d["key"] for d in report["different"]] == ["y"]
        assert "MD5" in report["different"][0]["reason"]
