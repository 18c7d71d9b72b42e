"""SSE-C on SeaweedFS (it takes customer keys in its recent versions): a source read with its
key, copies written with the destination's, between two endpoints (one PUT and parts) and on
the server; proofs that never lean on an ETag; keys never printed, at any log level."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket
from .test_integrity import job_verdicts

MiB = 1024 * 1024
SRC_KEY, DST_KEY = os.urandom(32), os.urandom(32)


def keyed(key: bytes) -> dict[str, Any]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def seed(src: Bucket) -> dict[str, bytes]:
    bodies = {
        "small": os.urandom(3000),
        "big": os.urandom(11 * MiB),  # copied in parts of ours
        "no-checksum": os.urandom(2000),
    }
    for key, body in bodies.items():
        checksum = {} if key == "no-checksum" else {"ChecksumAlgorithm": "CRC32C"}
        src.client.put_object(Bucket=src.name, Key=key, Body=body, **checksum, **keyed(SRC_KEY))
    return bodies


def read(bucket: Bucket, key: str, customer_key: bytes) -> bytes:
    reply = bucket.client.get_object(Bucket=bucket.name, Key=key, **keyed(customer_key))
    return bytes(reply["Body"].read())


def longbow(src: Bucket, dst: Bucket, db: Path, key_file: Path, *extra: str) -> tuple[int, str]:
    env = {
        **os.environ,
        **cli_env(src.endpoint, dst.endpoint),
        "LONGBOW_SRC_SSE_C_KEY": base64.b64encode(SRC_KEY).decode(),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "s3longbow",
            "sync",
            f"{src.url}/",
            f"{dst.url}/",
            "--db",
            str(db),
            "--json",
            "--part-size",
            "5MiB",
            "--dst-sse-c-key-file",
            str(key_file),
            *endpoint_args(src.endpoint, dst.endpoint),
            *extra,
        ],
        env=env,
        capture_output=True,
        timeout=300,
    )
    return done.returncode, done.stdout.decode() + done.stderr.decode()


def never_shown(output: str) -> None:
    for key in (SRC_KEY, DST_KEY):
        text = base64.b64encode(key).decode()
        assert text not in output and text[4:16] not in output


@pytest.mark.parametrize("server_side", [False, True], ids=["two-endpoints", "server-side"])
def test_customer_keys_on_both_sides(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path, server_side: bool
) -> None:
    src = new_bucket(seaweed_src, "ssec-src")
    dst = new_bucket(seaweed_src if server_side else seaweed_dst, "ssec-dst")
    bodies = seed(src)
    key_file = tmp_path / "dst.key"
    key_file.write_text(base64.b64encode(DST_KEY).decode() + "\n")
    code, output = longbow(src, dst, tmp_path / "j.db", key_file, "-vvv")
    assert code == 0, output[-3000:]
    assert "DEBUG" in output
    never_shown(output)
    for key, body in bodies.items():
        assert read(dst, key, DST_KEY) == body, key  # written with the destination's key
        with pytest.raises(ClientError):
            dst.client.get_object(Bucket=dst.name, Key=key)  # and unreadable without it
    verdicts = job_verdicts(tmp_path / "j.db")
    if server_side:
        # The server copied: no byte came here, and no ETag proves anything under SSE-C.
        assert all(state == "done" and "customer key" in v for state, v in verdicts.values())
        return
    # Proven by the source's CRC32C recomputed over the bytes read (with the destination
    # checking each body against the Content-MD5 and checksum sent), never by an ETag.
    assert verdicts["small"] == ("done", "source-crc32c")
    assert verdicts["big"] == ("done", "source-crc32c")
    state, verdict = verdicts["no-checksum"]
    assert state == "done" and verdict.startswith("unverified") and "checksum" in verdict


def test_a_bad_key_stops_the_run_naming_where_it_came_from(
    seaweed_src: LocalServer, tmp_path: Path
) -> None:
    src, dst = new_bucket(seaweed_src, "ssec-bad"), tmp_path / "out"
    half = base64.b64encode(SRC_KEY[:16]).decode()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "s3longbow",
            "sync",
            f"{src.url}/",
            str(dst),
            "--db",
            str(tmp_path / "j.db"),
            *endpoint_args(src.endpoint, None),
        ],
        env={**os.environ, **cli_env(src.endpoint, None), "LONGBOW_SRC_SSE_C_KEY": half},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "LONGBOW_SRC_SSE_C_KEY is not an SSE-C key" in done.stderr
    assert half not in done.stderr + done.stdout


def test_a_wrong_source_key_fails_each_object_with_the_reason(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    src, dst = new_bucket(seaweed_src, "ssec-wrong"), new_bucket(seaweed_dst, "ssec-wrong-d")
    src.client.put_object(Bucket=src.name, Key="a", Body=b"secret", **keyed(DST_KEY))
    key_file = tmp_path / "dst.key"
    key_file.write_bytes(DST_KEY)  # 32 raw bytes work too
    code, output = longbow(src, dst, tmp_path / "j.db", key_file, "--max-attempts", "1")
    assert code == 1
    failed = json.loads(output[: output.rindex("}") + 1])["failed"]
    assert [f["key"] for f in failed] == ["a"] and "denied" in failed[0]["reason"].lower()
    never_shown(output)
