"""Secrets never reach any output, log, metric line or job record, whatever the command, at
the most verbose log level, on success and on failure.

Every key below is fake and recognisable. moto accepts any keys, so the success paths run
with them; SeaweedFS checks keys, so it gives the "credentials refused" path. The cluster's
destination keys come from an SSM SecureString, as in a real deployment.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from longbow_testkit.servers import LocalServer
from s3longbow.handlers import sqs_worker

from ..cluster.conftest import Cluster, cluster  # noqa: F401 - fixture used below
from ..cluster.test_cluster_lambda import FakeContext, receive_event, settle_like_lambda
from ..conftest import Bucket, endpoint_args, new_bucket

SRC_KEY = "AKIALBSRCFAKE7Q2W9XZ"
SRC_SECRET = "lbSrcSecret/FAKE+9f8e7d6c5b4a3210zyxwv"
SRC_TOKEN = "lbSrcSessionToken/FAKE+" + "Qw3rTy" * 12
DST_KEY = "AKIALBDSTFAKE4R5T6YU"
DST_SECRET = "lbDstSecret/FAKE+0a1b2c3d4e5f6a7b8c9d0"
DST_TOKEN = "lbDstSessionToken/FAKE+" + "As4dFg" * 12
CONTROL_KEY = "AKIALBCTLFAKE1Z2X3C4V"
CONTROL_SECRET = "lbControlSecret/FAKE+5e6f7a8b9c0d1e2f3a"
SSM_KEY = "AKIALBSSMFAKE8I9O0P1Q"
SSM_SECRET = "lbSsmSecret/FAKE+7f6e5d4c3b2a1f0e9d8c7"
SSM_TOKEN = "lbSsmSessionToken/FAKE+" + "Zx6cVb" * 12
# SSE-C keys (base64 of 32 bytes); moto takes and ignores them, so every path runs with them.
SRC_SSE_C = "bGJTcmNTc2VDS2V5RkFLRS0tMzJieXRlcy1sb25nISE="
DST_SSE_C = "bGJEc3RTc2VDS2V5RkFLRS0tMzJieXRlcy1sb25nISE="
SSM_VALUE = json.dumps(
    {"access_key_id": SSM_KEY, "secret_access_key": SSM_SECRET, "session_token": SSM_TOKEN}
)
SECRETS = {
    "source access key": SRC_KEY,
    "source secret key": SRC_SECRET,
    "source session token": SRC_TOKEN,
    "destination access key": DST_KEY,
    "destination secret key": DST_SECRET,
    "destination session token": DST_TOKEN,
    "control-plane access key": CONTROL_KEY,
    "control-plane secret key": CONTROL_SECRET,
    "SSM access key": SSM_KEY,
    "SSM secret key": SSM_SECRET,
    "SSM session token": SSM_TOKEN,
    "source SSE-C key": SRC_SSE_C,
    "destination SSE-C key": DST_SSE_C,
}

SIDE_ENV = {
    "LONGBOW_SRC_ACCESS_KEY_ID": SRC_KEY,
    "LONGBOW_SRC_SECRET_ACCESS_KEY": SRC_SECRET,
    "LONGBOW_SRC_SESSION_TOKEN": SRC_TOKEN,
    "LONGBOW_DST_ACCESS_KEY_ID": DST_KEY,
    "LONGBOW_DST_SECRET_ACCESS_KEY": DST_SECRET,
    "LONGBOW_DST_SESSION_TOKEN": DST_TOKEN,
    "LONGBOW_SRC_SSE_C_KEY": SRC_SSE_C,
    "LONGBOW_DST_SSE_C_KEY": DST_SSE_C,
}


def leaked(text: str | bytes) -> list[str]:
    """The names of the secrets `text` holds, whole or as a 12-character piece."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [
        name
        for name, secret in SECRETS.items()
        if secret in text or secret[4:16] in text or json.dumps(secret)[1:-1] in text
    ]


def longbow(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run a command; return its exit code and everything it wrote (stdout and stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "s3longbow", *args],
        env={**os.environ, **env},
        capture_output=True,
        timeout=150,
    )
    output = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in output, output[-3000:]
    return done.returncode, output


def job_database_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("jobs.db*")))


@pytest.fixture()
def src_bucket(moto: LocalServer) -> Bucket:
    """Source and destination on moto, which accepts the fake keys."""
    return new_bucket(moto, "secsrc")


@pytest.fixture()
def dst_bucket(moto: LocalServer) -> Bucket:
    return new_bucket(moto, "secdst")


def test_single_machine_commands_keep_every_secret_out(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    for i in range(3):
        src_bucket.put(f"dir/object-{i}", os.urandom(2000 + i))
    src, dst = f"{src_bucket.url}/dir/", f"{dst_bucket.url}/copy/"
    ends = [*endpoint_args(src_bucket.endpoint, dst_bucket.endpoint)]
    db = ["--db", str(tmp_path / "jobs.db")]
    commands = {
        "sync --dry-run": (["sync", src, dst, *db, *ends, "--dry-run", "-vvv"], 0),
        "sync": (["sync", src, dst, *db, *ends, "-vvv"], 0),
        "sync --json": (["sync", src, dst, *db, *ends, "--json", "-vvv"], 0),
        "sync, JSON log file": (
            ["sync", src, f"{dst_bucket.url}/again/", "--db", str(tmp_path / "again.db"), *ends]
            + ["--log-file", str(tmp_path / "sync.log"), "--log-format", "json", "-vvv"],
            0,
        ),
        "status": (["status", *db], 0),
        "status --json --all": (["status", *db, "--json", "--all"], 0),
        "verify --deep": (["verify", src, dst, *ends, "--deep", "-vvv"], 0),
        "sync to an unknown bucket": (
            ["sync", src, "s3://no-such-bucket-here/x/", *db, *ends, "-vvv"],
            3,
        ),
    }
    for name, (args, expected) in commands.items():
        code, output = longbow(*args, env=SIDE_ENV)
        assert code == expected, f"{name}: {output[-2000:]}"
        if "-vvv" in args and "--log-file" not in args:
            assert "DEBUG" in output, name  # the most verbose level really was on
        assert leaked(output) == [], name
    assert dst_bucket.keys("copy/")  # the fake keys really were used for a copy
    assert leaked(job_database_bytes(tmp_path)) == []
    log = (tmp_path / "sync.log").read_text()
    assert '"level": "DEBUG"' in log and len(dst_bucket.keys("again/")) == 3
    assert leaked(log) == []


def test_credentials_refused_keep_every_secret_out(
    seaweed_src: LocalServer, tmp_path: Path
) -> None:
    bucket = new_bucket(seaweed_src, "refused")
    bucket.put("a", b"data")
    db = ["--db", str(tmp_path / "jobs.db")]
    for command in ("sync", "verify"):
        args = [command, bucket.url, str(tmp_path / "out"), *endpoint_args(bucket.endpoint, None)]
        code, output = longbow(*args, *(db if command == "sync" else []), "-vvv", env=SIDE_ENV)
        assert code == 3, output[-2000:]
        assert "denied" in output and "DEBUG" in output
        assert leaked(output) == [], command
    assert leaked(job_database_bytes(tmp_path)) == []


def test_cluster_commands_keep_every_secret_out(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    cluster.ssm.put_parameter(
        Name=cluster.credentials_parameter, Type="SecureString", Value=SSM_VALUE, Overwrite=True
    )
    for i in range(3):
        cluster.src.put(f"data/object-{i}", os.urandom(3000 + i))
    env = {
        "AWS_ACCESS_KEY_ID": CONTROL_KEY,
        "AWS_SECRET_ACCESS_KEY": CONTROL_SECRET,
        **{k: v for k, v in SIDE_ENV.items() if k.startswith("LONGBOW_SRC")},
    }
    config = ["--config", str(cluster.config_path)]
    outputs: dict[str, str] = {}
    for name, args, expected in [
        ("cluster-init", ["cluster-init", *config, "-vvv"], 0),
        ("send --dry-run", ["send", *config, "--dry-run", "-vvv"], 0),
        ("send", ["send", *config, "-vvv"], 0),
        ("worker", ["worker", *config, "--exit-when-idle", "-vvv"], 0),
        ("worker, text logs", ["worker", *config, "--exit-when-idle", "--log-format", "text"], 0),
        (
            "worker, log file",
            ["worker", *config, "--exit-when-idle", "-vvv", "--log-file", str(tmp_path / "w.log")],
            0,
        ),
        ("status --cluster", ["status", "--cluster", *config], 0),
        ("status --cluster --json", ["status", "--cluster", *config, "--json"], 0),
    ]:
        code, outputs[name] = longbow(*args, env=env)
        assert code == expected, f"{name}: {outputs[name][-2000:]}"
        assert leaked(outputs[name]) == [], name
    assert "DEBUG" in outputs["cluster-init"] and "DEBUG" in outputs["send"]
    assert '"level": "DEBUG"' in outputs["worker"] or "DEBUG" in outputs["worker"]
    assert '"_aws"' in outputs["worker"]  # the EMF metric lines were part of what was checked
    assert sorted(cluster.copy_digests()) == [f"object-{i}" for i in range(3)]  # SSM keys used
    items = []
    for page in cluster.dynamodb.get_paginator("scan").paginate(TableName=cluster.table):
        items.extend(page.get("Items", ()))
    assert items and leaked(json.dumps(items)) == []

    # A worker whose SSM parameter is not the JSON it should be: a config error, quoted by
    # name, never by value.
    cluster.ssm.put_parameter(
        Name=cluster.credentials_parameter,
        Type="SecureString",
        Value=SSM_VALUE[:-2],
        Overwrite=True,
    )
    code, output = longbow("worker", *config, "--exit-when-idle", "-vvv", env=env)
    assert code == 2 and cluster.credentials_parameter in output
    assert leaked(output) == []


def test_the_lambda_handler_at_debug_level_keeps_every_secret_out(
    cluster: Cluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster.ssm.put_parameter(
        Name=cluster.credentials_parameter, Type="SecureString", Value=SSM_VALUE, Overwrite=True
    )
    cluster.src.put("data/object", os.urandom(1000))
    assert cluster.send().messages_sent == 1
    monkeypatch.setenv("LONGBOW_CONFIG", str(cluster.config_path))
    monkeypatch.setenv("LONGBOW_TIME_MARGIN_SECONDS", "1.5")
    caplog.set_level(logging.DEBUG)  # what AWS_LAMBDA_LOG_LEVEL=DEBUG does to the root logger
    event = receive_event(cluster)
    try:
        result = sqs_worker.handler(event, FakeContext(60, "req-secrets"))
    finally:
        sqs_worker.close_runtime()
    assert result == {"batchItemFailures": []}
    settle_like_lambda(cluster, event, result)
    assert sorted(cluster.copy_digests()) == ["object"]  # copied with the SSM keys
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert leaked(caplog.text) == []
