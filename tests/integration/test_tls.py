"""Copies over https between real servers: every kind of object arrives exact and proven, and
the bytes that need no checksum of ours are relayed as they arrive (through a small buffer,
since TLS must decrypt and encrypt them here), never held whole in memory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from longbow_testkit.servers import Endpoint, LocalServer
from s3longbow.config import MiB

from ..conftest import Bucket, cli_env, new_bucket


def _https(server: LocalServer) -> Endpoint:
    assert server.https_endpoint is not None, "the fixture serves https beside http"
    return server.https_endpoint


def _sync(
    src: Bucket, dst: Bucket, prefix: str, db: Path, *extra: str
) -> tuple[dict[str, Any], int]:
    """`longbow sync` over https in a child process; its summary and its peak RSS in KiB."""
    s, d = _https_of(src), _https_of(dst)
    argv = [
        "longbow",
        "sync",
        f"s3://{src.name}/",
        f"s3://{dst.name}/{prefix}",
        "--db",
        str(db),
        "--json",
        *("--src-endpoint-url", s.url, "--src-ca-bundle", str(s.ca_bundle), "--src-path-style"),
        *("--dst-endpoint-url", d.url, "--dst-ca-bundle", str(d.ca_bundle), "--dst-path-style"),
        *extra,
    ]
    # The peak resident memory of the run itself, told by the child as it exits (VmHWM: the
    # peak of this program's memory; ru_maxrss would include the forking parent's).
    code = (
        "import atexit, re, runpy, sys\n"
        "atexit.register(lambda: sys.stderr.write('\\npeak-rss-kib=' + re.search("
        "r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1] + '\\n'))\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_module('s3longbow', run_name='__main__')\n"
    )
    env = {**os.environ, **cli_env(s, d)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak = int(done.stderr.rsplit("peak-rss-kib=", 1)[1].split()[0])
    return json.loads(done.stdout), peak


_endpoints: dict[str, Endpoint] = {}


def _https_of(bucket: Bucket) -> Endpoint:
    return _endpoints[bucket.name]


def _bucket(server: LocalServer, stem: str) -> Bucket:
    bucket = new_bucket(server, stem)
    _endpoints[bucket.name] = _https(server)
    return bucket


def _put_multipart(bucket: Bucket, key: str, parts: list[bytes]) -> None:
    client = bucket.client
    upload = client.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
    done = [
        {
            "PartNumber": n,
            "ETag": client.upload_part(
                Bucket=bucket.name, Key=key, UploadId=upload, PartNumber=n, Body=data
            )["ETag"],
        }
        for n, data in enumerate(parts, 1)
    ]
    client.complete_multipart_upload(
        Bucket=bucket.name, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
    )


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_every_kind_of_object_arrives_exact_and_proven_over_https(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    src, dst = _bucket(seaweed_src, "tls-src"), _bucket(seaweed_dst, "tls-dst")
    singles = {
        "empty": b"",
        "small.bin": os.urandom(100 * 1024),
        "relayed-single.bin": os.urandom(2 * MiB + 3),  # one PUT from the source's reply
        "one-put-source.bin": os.urandom(13 * MiB),  # copied in parts of ours, hashed in order
    }
    for key, data in singles.items():
        src.put(key, data)
    parts = [os.urandom(5 * MiB) for _ in range(3)] + [os.urandom(MiB + 1)]
    _put_multipart(src, "multipart-source.bin", parts)  # its own part boundaries, relayed
    expected = {k: _md5(v) for k, v in singles.items()}
    expected["multipart-source.bin"] = _md5(b"".join(parts))

    summary, _ = _sync(src, dst, "", tmp_path / "jobs.db")

    assert summary["ok"] and summary["copied"]["objects"] == len(expected)
    assert dst.digests() == expected
    assert summary["verification"] == {
        "verified: source-md5": 4,
        "verified: source-etag": 1,
    }, summary["verification"]


def test_a_multipart_source_is_relayed_over_https_in_little_memory(
    seaweed_src: LocalServer, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    src, dst = _bucket(seaweed_src, "tls-big-src"), _bucket(seaweed_dst, "tls-big-dst")
    parts = [os.urandom(8 * MiB) for _ in range(10)]
    _put_multipart(src, "big.bin", parts)
    digest = _md5(b"".join(parts))

    # Every part in flight at once (--part-threads as given: with tuning on, servers this
    # near would get 4 per object).
    every = "--no-autotune"
    relayed, relayed_peak = _sync(src, dst, "relayed/", tmp_path / "a.db", every)
    buffered, buffered_peak = _sync(src, dst, "buffered/", tmp_path / "b.db", every, "--no-relay")

    for summary in (relayed, buffered):
        assert summary["ok"] and summary["verification"] == {"verified: source-etag": 1}
    assert dst.digests("relayed/") == {"big.bin": digest}
    assert dst.digests("buffered/") == {"big.bin": digest}
    # All ten parts are in flight at once: read into memory they hold 80 MiB of buffers;
    # relayed, a few small ones.
    assert relayed_peak + 40 * 1024 < buffered_peak, (relayed_peak, buffered_peak)
