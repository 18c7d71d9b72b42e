"""Secrets never reach the output or the job database, even at the most verbose log level."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import Bucket, endpoint_args


def test_keys_and_tokens_stay_out_of_debug_logs(src_bucket: Bucket, tmp_path: Path) -> None:
    src_bucket.put("a", b"data")
    secret = src_bucket.endpoint.secret_key
    token = "FAKE-SESSION-TOKEN-0123456789abcdef"

    def sync(**extra_env: str) -> tuple[int, str]:
        env = {
            **os.environ,
            "LONGBOW_SRC_ACCESS_KEY_ID": src_bucket.endpoint.access_key,
            "LONGBOW_SRC_SECRET_ACCESS_KEY": secret,
            **extra_env,
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "s3longbow",
                "sync",
                f"{src_bucket.url}/",
                str(tmp_path / "out"),
                "--db",
                str(tmp_path / "j.db"),
                "-vvv",
                *endpoint_args(src_bucket.endpoint, None),
            ],
            env=env,
            capture_output=True,
            timeout=120,
        )
        return done.returncode, done.stdout.decode() + done.stderr.decode()

    code, output = sync()
    assert code == 0, output[-2000:]
    assert "DEBUG" in output  # the most verbose level really was on
    assert secret not in output
    assert secret.encode() not in (tmp_path / "j.db").read_bytes()
    # A session token the server refuses: the failure is reported without the token.
    code, output = sync(LONGBOW_SRC_SESSION_TOKEN=token)
    assert "DEBUG" in output
    assert token not in output and secret not in output
