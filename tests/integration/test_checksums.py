"""Additional checksums: sources whose ETags are no MD5s are proven by CRC32C/CRC32/SHA-256
and the destination is written with the same algorithm (real SeaweedFS on both sides; the
source seen through a proxy that makes it look KMS-encrypted)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from longbow_testkit.sealproxy import SealProxy, seal_proxy
from longbow_testkit.servers import LocalServer
from s3longbow import checksums
from s3longbow.cli.app import cli
from s3longbow.config import MiB

from ..conftest import Bucket, cli_env, endpoint_args, new_bucket
from .test_integrity import job_verdicts, put_multipart, run_sync


@pytest.fixture()
def sealed(seaweed_src: LocalServer) -> Iterator[tuple[SealProxy, Bucket]]:
    """A source bucket, and the proxy through which its objects look KMS-encrypted."""
    bucket = new_bucket(seaweed_src, "sealed")
    with seal_proxy(seaweed_src.endpoint) as proxy:
        yield proxy, bucket


def put_with_checksum(bucket: Bucket, key: str, data: bytes, algorithm: str) -> str:
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=data, ChecksumAlgorithm=algorithm)
    return checksums.checksum_b64(algorithm, data)


def put_composite(bucket: Bucket, key: str, parts: list[bytes], algorithm: str) -> str:
    c = bucket.client
    upload = c.create_multipart_upload(Bucket=bucket.name, Key=key, ChecksumAlgorithm=algorithm)
    listed = []
    for number, body in enumerate(parts, 1):
        value = checksums.checksum_b64(algorithm, body)
        resp = c.upload_part(
            Bucket=bucket.name,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
            **{f"Checksum{algorithm}": value},
        )
        listed.append({"PartNumber": number, "ETag": resp["ETag"], f"Checksum{algorithm}": value})
    c.complete_multipart_upload(
        Bucket=bucket.name, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": listed}
    )
    head = c.head_object(Bucket=bucket.name, Key=key, ChecksumMode="ENABLED")
    return str(head[f"Checksum{algorithm}"])


def dst_checksum(bucket: Bucket, key: str) -> dict[str, str]:
    head = bucket.client.head_object(Bucket=bucket.name, Key=key, ChecksumMode="ENABLED")
    headers = head["ResponseMetadata"]["HTTPHeaders"]
    return {k: v for k, v in headers.items() if k.startswith("x-amz-checksum-")}


def test_sealed_sources_are_proven_by_their_checksums(
    sealed: tuple[SealProxy, Bucket], dst_bucket: Bucket, tmp_path: Path
) -> None:
    proxy, src = sealed
    small = os.urandom(200_000)
    sha = os.urandom(300_000)
    big = os.urandom(7 * MiB)  # one PUT at the source, copied in parts: CRCs combine
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1 * MiB)]
    expected = {
        "crc32c.bin": put_with_checksum(src, "crc32c.bin", small, "CRC32C"),
        "sha256.bin": put_with_checksum(src, "sha256.bin", sha, "SHA256"),
        "big-crc32.bin": put_with_checksum(src, "big-crc32.bin", big, "CRC32"),
        "composite.bin": put_composite(src, "composite.bin", parts, "CRC32C"),
    }
    src.put("plain.bin", os.urandom(1000))  # no checksum: nothing can prove a sealed copy
    sealed_src = Bucket(proxy.endpoint(), src.name, src.client)
    # The proxy really hides the MD5s.
    real = [o["ETag"] for o in src.client.list_objects_v2(Bucket=src.name)["Contents"]]
    seen = proxy.endpoint().client().list_objects_v2(Bucket=src.name)["Contents"]
    assert len(seen) == len(real) and not set(real) & {o["ETag"] for o in seen}

    code, summary = run_sync(sealed_src, dst_bucket, tmp_path / "jobs.db", "--part-size", "5MiB")
    assert code == 0, summary

    verdicts = job_verdicts(tmp_path / "jobs.db")
    assert verdicts["crc32c.bin"] == ("done", "source-crc32c")
    assert verdicts["sha256.bin"] == ("done", "source-sha256")
    assert verdicts["big-crc32.bin"] == ("done", "source-crc32")
    assert verdicts["composite.bin"] == ("done", "source-crc32c")
    state, reason = verdicts["plain.bin"]
    assert state == "done" and reason.startswith("unverified:") and "not an MD5" in reason
    assert dst_bucket.digests() == src.digests()
    # The destination was written with the source's algorithm, and checked it.
    assert dst_checksum(dst_bucket, "crc32c.bin")["x-amz-checksum-crc32c"] == expected["crc32c.bin"]
    assert dst_checksum(dst_bucket, "sha256.bin")["x-amz-checksum-sha256"] == expected["sha256.bin"]
    assert (
        dst_checksum(dst_bucket, "composite.bin")["x-amz-checksum-crc32c"]
        == (expected["composite.bin"])
    )
    assert "x-amz-checksum-crc32" in dst_checksum(dst_bucket, "big-crc32.bin")


def test_a_corrupted_read_of_a_sealed_source_is_caught_and_read_again(
    sealed: tuple[SealProxy, Bucket], dst_bucket: Bucket, tmp_path: Path
) -> None:
    proxy, src = sealed
    data = os.urandom(100_000)
    put_with_checksum(src, "one.bin", data, "CRC32C")
    proxy.corrupt_once.add(f"{src.name}/one.bin")
    sealed_src = Bucket(proxy.endpoint(), src.name, src.client)

    code, summary = run_sync(sealed_src, dst_bucket, tmp_path / "jobs.db")

    assert code == 0, summary
    assert proxy.corrupted == 1
    assert hashlib.md5(dst_bucket.get("one.bin")).hexdigest() == hashlib.md5(data).hexdigest()
    assert job_verdicts(tmp_path / "jobs.db")["one.bin"] == ("done", "source-crc32c")


def test_md5_only_destination_gets_no_checksum_headers(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    put_with_checksum(src_bucket, "a.bin", os.urandom(5000), "CRC32C")

    code, summary = run_sync(
        src_bucket, dst_bucket, tmp_path / "jobs.db", "--checksum-algorithm", "MD5"
    )

    assert code == 0, summary
    assert dst_checksum(dst_bucket, "a.bin") == {}
    assert job_verdicts(tmp_path / "jobs.db")["a.bin"] == ("done", "source-md5")


def test_a_configured_algorithm_is_written_on_every_object(
    src_bucket: Bucket, dst_bucket: Bucket, tmp_path: Path
) -> None:
    small, large = os.urandom(3000), os.urandom(6 * MiB)
    src_bucket.put("small.bin", small)
    src_bucket.put("large.bin", large)

    code, summary = run_sync(
        src_bucket,
        dst_bucket,
        tmp_path / "jobs.db",
        "--checksum-algorithm",
        "sha256",
        "--part-size",
        "5MiB",
    )

    assert code == 0, summary
    assert dst_checksum(dst_bucket, "small.bin")["x-amz-checksum-sha256"] == (
        checksums.checksum_b64("SHA256", small)
    )
    expected = checksums.composite(
        "SHA256",
        [
            checksums.checksum_b64("SHA256", large[: 5 * MiB]),
            checksums.checksum_b64("SHA256", large[5 * MiB :]),
        ],
    )
    assert dst_checksum(dst_bucket, "large.bin")["x-amz-checksum-sha256"] == (
        f"{expected.value}-{expected.parts}"
    )


def test_verify_compares_checksums_where_etags_prove_nothing(
    sealed: tuple[SealProxy, Bucket], dst_bucket: Bucket, tmp_path: Path
) -> None:
    proxy, src = sealed
    put_with_checksum(src, "sum.bin", os.urandom(3000), "CRC32C")
    src.put("bare.bin", os.urandom(3000))
    sealed_src = Bucket(proxy.endpoint(), src.name, src.client)
    code, summary = run_sync(sealed_src, dst_bucket, tmp_path / "j.db")
    assert code == 0, summary
    args = [
        "verify",
        f"{src.url}/",
        f"{dst_bucket.url}/",
        *endpoint_args(sealed_src.endpoint, dst_bucket.endpoint),
        "--json",
    ]
    env = cli_env(sealed_src.endpoint, dst_bucket.endpoint)

    result = CliRunner().invoke(cli, args, env=env)

    report = json.loads(result.stdout)
    assert report["counts"]["match"] == 1, report  # the checksums agree, not the ETags
    assert [u["key"] for u in report["unverifiable"]] == ["bare.bin"]
    assert "encrypted" in report["unverifiable"][0]["reason"]
    assert result.exit_code == 1

    deep = CliRunner().invoke(cli, [*args, "--deep"], env=env)
    assert json.loads(deep.stdout)["counts"]["match"] == 2 and deep.exit_code == 0


def sync_recording_parts(
    src: Bucket,
    dst: Bucket,
    server: LocalServer,
    db: Path,
    *extra: str,
    hide_reply_headers: frozenset[str] = frozenset(),
) -> tuple[int, dict[str, Any], list[dict[str, str]]]:
    """Sync into `dst` through a recording proxy; return the exit code, the summary and the
    headers of every UploadPart request."""
    with seal_proxy(server.endpoint, seal=False) as proxy:
        proxy.hide_reply_headers = set(hide_reply_headers)
        recorded = Bucket(proxy.endpoint(), dst.name, dst.client)
        code, summary = run_sync(src, recorded, db, *extra)
        requests = list(proxy.requests)
    parts = [h for m, p, h in requests if m == "PUT" and "partNumber=" in p]
    return code, summary, parts


@pytest.mark.parametrize(
    ("source_checksum", "verdict"),
    [(None, "source-md5"), ("CRC32C", "source-crc32c")],
    ids=["md5-proof", "crc-proof"],
)
def test_parts_of_a_single_part_source_travel_under_a_crc_alone(
    src_bucket: Bucket,
    dst_bucket: Bucket,
    seaweed_dst: LocalServer,
    tmp_path: Path,
    source_checksum: str | None,
    verdict: str,
) -> None:
    # Its bytes are proven by its MD5 ETag, hashed whole in order, or, when it carries one (as
    # S3 now stores for every upload), by its CRC of all its bytes, combined from the parts'
    # CRCs. Either way a second MD5 per part is replaced by a CRC32C the destination checks.
    data = os.urandom(11 * MiB)
    if source_checksum is None:
        src_bucket.put("big.bin", data)
    else:
        put_with_checksum(src_bucket, "big.bin", data, source_checksum)
    code, summary, parts = sync_recording_parts(
        src_bucket, dst_bucket, seaweed_dst, tmp_path / "j.db", "--part-size", "5MiB"
    )

    assert code == 0, summary
    assert dst_bucket.get("big.bin") == data
    assert len(parts) == 3
    assert all("content-md5" not in h and "x-amz-checksum-crc32c" in h for h in parts)
    assert job_verdicts(tmp_path / "j.db") == {"big.bin": ("done", verdict)}
    assert dst_checksum(dst_bucket, "big.bin")["x-amz-checksum-crc32c"].endswith("-3")


def test_a_part_read_corrupted_under_a_crc_proof_is_read_and_sent_again(
    sealed: tuple[SealProxy, Bucket], dst_bucket: Bucket, tmp_path: Path
) -> None:
    # Copied in parts under CRCs alone: the destination accepts a corrupted part (its CRC is
    # of the bytes read), so the proof against the source's CRC must catch it before the
    # object is completed.
    proxy, src = sealed
    data = os.urandom(11 * MiB)
    put_with_checksum(src, "crc.bin", data, "CRC32C")
    proxy.corrupt_once.add(f"{src.name}/crc.bin")  # one read comes back with a byte flipped
    sealed_src = Bucket(proxy.endpoint(), src.name, src.client)

    code, summary = run_sync(sealed_src, dst_bucket, tmp_path / "j.db", "--part-size", "5MiB")

    assert code == 0, summary
    assert proxy.corrupted == 1
    assert dst_bucket.get("crc.bin") == data
    # Repaired within the attempt: the proof is made again on the checksums read again.
    state, verify = job_verdicts(tmp_path / "j.db")["crc.bin"]
    assert state == "done" and verify is not None
    assert re.fullmatch(r"source-crc32c; parts \[\d\] were read corrupted and sent again", verify)


def test_parts_go_with_md5_once_the_destination_does_not_confirm_their_crc(
    src_bucket: Bucket, dst_bucket: Bucket, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    data = os.urandom(16 * MiB)
    src_bucket.put("big.bin", data)
    code, summary, parts = sync_recording_parts(
        src_bucket,
        dst_bucket,
        seaweed_dst,
        tmp_path / "j.db",
        "--part-size",
        "5MiB",
        "--part-threads",
        "1",
        hide_reply_headers=frozenset({"x-amz-checksum-crc32c"}),  # as if checksums were ignored
    )

    assert code == 0, summary
    assert dst_bucket.get("big.bin") == data
    # The first part went without an MD5, was not confirmed, and went again with one; so did
    # every later part.
    assert "content-md5" not in parts[0]
    assert all("content-md5" in h for h in parts[1:])
    assert len(parts) == 5
    assert job_verdicts(tmp_path / "j.db") == {"big.bin": ("done", "source-md5")}


def test_parts_of_a_multipart_source_are_proven_by_the_destinations_own_md5s(
    src_bucket: Bucket, dst_bucket: Bucket, seaweed_dst: LocalServer, tmp_path: Path
) -> None:
    # The destination hashes each part it takes (its ETag); a CRC proves it took the bytes
    # read, and its ETags must reproduce the source's multipart ETag: no MD5 of ours. (Not
    # relayed: over HTTPS, or with --no-relay, the parts pass through memory.)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(2 * MiB)]
    etag = put_multipart(src_bucket, "multi.bin", parts)
    code, summary, uploads = sync_recording_parts(
        src_bucket, dst_bucket, seaweed_dst, tmp_path / "j.db", "--no-relay"
    )

    assert code == 0, summary
    assert dst_bucket.get("multi.bin") == b"".join(parts)
    assert len(uploads) == 3
    assert all("content-md5" not in h and "x-amz-checksum-crc32c" in h for h in uploads)
    assert job_verdicts(tmp_path / "j.db") == {"multi.bin": ("done", "source-etag")}
    head = dst_bucket.client.head_object(Bucket=dst_bucket.name, Key="multi.bin")
    assert head["ETag"].strip('"') == etag
