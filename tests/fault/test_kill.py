"""kill -9 in the middle of a transfer, then the same command again."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

from s3longbow.config import MiB

from ..conftest import Bucket, cli_env
from ..integration.test_integrity import sync_argv
from ..killing import kill_after_parts


def test_sigkill_mid_transfer_then_resume_sends_less(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    data = {f"big/{i}.bin": os.urandom(24 * MiB + i) for i in range(4)}
    for key, body in data.items():
        src_bucket.put(key, body)
    total = sum(map(len, data.values()))
    db = tmp_path / "jobs.db"
    argv = sync_argv(
        src_bucket, dst_bucket, db, "--part-size", "5MiB", "--workers", "2", "--part-threads", "1"
    )
    env = {**os.environ, **cli_env(src_bucket.endpoint, dst_bucket.endpoint)}
    killed_after = kill_after_parts(argv, env, db, parts=4)
    assert killed_after >= 4
    assert len(dst_bucket.keys()) < len(data)  # really interrupted

    rerun = subprocess.run(argv, env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()
    summary = json.loads(rerun.stdout)
    assert summary["resumed"] is True
    assert summary["bytes_reused"] >= killed_after * 4 * MiB  # every part recorded before the kill
    assert summary["bytes_sent"] < total
    assert summary["bytes_sent"] + summary["bytes_reused"] <= total
    assert dst_bucket.digests() == {k: hashlib.md5(v).hexdigest() for k, v in data.items()}


def test_parts_stored_but_never_recorded_are_checked_and_kept(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    # A kill between a part's upload and its record in the ledger leaves parts the
    # destination holds and the database does not know: the rerun reads them again, and
    # keeps those whose bytes have the MD5 the destination lists.
    body = os.urandom(30 * MiB)
    src_bucket.put("big.bin", body)
    db = tmp_path / "jobs.db"
    argv = sync_argv(src_bucket, dst_bucket, db, "--part-size", "5MiB", "--part-threads", "1")
    env = {**os.environ, **cli_env(src_bucket.endpoint, dst_bucket.endpoint)}
    recorded = kill_after_parts(argv, env, db, parts=3)
    assert recorded >= 3
    with sqlite3.connect(db) as conn:  # the state such a kill leaves: the records are gone
        conn.execute("DELETE FROM parts")

    rerun = subprocess.run(argv, env=env, capture_output=True, timeout=300)

    assert rerun.returncode == 0, rerun.stderr.decode()
    summary = json.loads(rerun.stdout)
    assert summary["bytes_reused"] >= recorded * 5 * MiB
    assert summary["bytes_sent"] + summary["bytes_reused"] == len(body)
    assert hashlib.md5(dst_bucket.get("big.bin")).hexdigest() == hashlib.md5(body).hexdigest()
