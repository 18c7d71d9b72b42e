"""kill -9 in the middle of a transfer, then the same command again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from s3longbow.config import MiB

from ..conftest import Bucket, cli_env, endpoint_args


def parts_recorded(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # schema not written yet


def test_sigkill_mid_transfer_then_resume_sends_less(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    data = {f"big/{i}.bin": os.urandom(24 * MiB + i) for i in range(4)}
    for key, body in data.items():
        src_bucket.put(key, body)
    total = sum(map(len, data.values()))
    db = tmp_path / "jobs.db"
    argv = [
        sys.executable,
        "-m",
        "s3longbow",
        "sync",
        f"{src_bucket.url}/",
        f"{dst_bucket.url}/",
        "--db",
        str(db),
        "--part-size",
        "5MiB",
        "--workers",
        "2",
        "--part-threads",
        "1",
        "--json",
        *endpoint_args(src_bucket.endpoint, dst_bucket.endpoint),
    ]
    env = {**os.environ, **cli_env(src_bucket.endpoint, dst_bucket.endpoint)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while parts_recorded(db) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the sync finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    killed_after = parts_recorded(db)
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
