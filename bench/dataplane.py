"""Micro-benchmark of the data path alone: botocore's S3 client against the lean S3DataPlane.

Starts two SeaweedFS endpoints on 127.0.0.1, seeds the source, then copies every object
(GET, MD5, PUT with Content-MD5) with a pool of threads, once per client, into a fresh
destination bucket each time. Prints objects/s (mostly a measure of the machine: the servers
share its cores) and the client's CPU milliseconds per object (this process only: user + sys
of all its threads), which is what separates the clients. Every copy is checked: the
destination's listing must show every key with the source's MD5 as its ETag.

    .venv/bin/python bench/dataplane.py [--objects 2000] [--size 65536] [--threads 32]
        [--rounds 3] [--workload small|large|both] [--clients boto3,dataplane:botocore,...]

The ``large`` workload copies one 256 MiB object in 8 MiB parts (ranged GET, UploadPart) and
reports client CPU seconds per GiB. With awscrt importable, the data plane is also measured
with its crt signer.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.credentials import Credentials

from longbow_testkit.servers import Endpoint, LocalServer, start_seaweedfs
from s3longbow.config import SideSettings
from s3longbow.stores.s3.lean import S3DataPlane
from s3longbow.stores.s3.session import make_s3_client, make_session
from s3longbow.stores.s3.signing import crt_available

MiB = 1024 * 1024
_bucket_ids = itertools.count(1)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def side(endpoint: Endpoint) -> SideSettings:
    return SideSettings(
        endpoint_url=endpoint.url,
        region=endpoint.region,
        path_style=True,
        access_key_id=endpoint.access_key,
        secret_access_key=endpoint.secret_key,
    )


class Copier:
    """get(bucket, key, start, length) and put(bucket, key, data, md5) for one client kind."""

    def __init__(self, kind: str, src: Endpoint, dst: Endpoint, threads: int) -> None:
        self.kind = kind
        self._src_ep, self._dst_ep, self._threads = src, dst, threads
        self._closers: list[Callable[[], None]] = []
        if kind == "boto3":
            self.src_client = self._botocore(src)
            self.dst_client = self._botocore(dst)
        else:
            signer = kind.split(":")[1]
            self.src = self._plane(src, signer)
            self.dst = self._plane(dst, signer)

    def _plane(self, endpoint: Endpoint, signer: str) -> S3DataPlane:
        plane = S3DataPlane(
            endpoint.url,
            endpoint.region,
            True,
            Credentials(endpoint.access_key, endpoint.secret_key),
            max_connections=self._threads,
            signer=signer,  # type: ignore[arg-type]
        )
        self._closers.append(plane.close)
        return plane

    def _botocore(self, endpoint: Endpoint) -> Any:
        """botocore's S3 client as the store's control plane builds it (tuned: no payload
        hashing, no Expect: 100-continue, a pool as large as the threads)."""
        settings = side(endpoint)
        client = make_s3_client(
            settings, make_session(settings), endpoint.region, max_connections=self._threads
        )
        self._closers.append(client.close)
        return client

    def prepare(self, src_bucket: str, dst_bucket: str) -> None:
        pass  # every client is built before the clock starts

    def get(self, bucket: str, key: str, start: int, length: int) -> bytes:
        if self.kind == "boto3":
            reply = self.src_client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
            )
            return bytes(reply["Body"].read())
        return bytes(self.src.get_range(bucket, key, start, length))

    def put(self, bucket: str, key: str, data: bytes, md5: str) -> str:
        if self.kind == "boto3":
            reply = self.dst_client.put_object(Bucket=bucket, Key=key, Body=data, ContentMD5=md5)
            return str(reply["ETag"]).strip('"')
        return self.dst.put_object(bucket, key, data, md5_b64=md5)

    def part(self, bucket: str, key: str, upload: str, n: int, data: bytes, md5: str) -> str:
        if self.kind == "boto3":
            reply = self.dst_client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=data, ContentMD5=md5
            )
            return str(reply["ETag"]).strip('"')
        return self.dst.upload_part(bucket, key, upload, n, data, md5_b64=md5)

    def close(self) -> None:
        for close in self._closers:
            close()


def seed_small(src: Any, bucket: str, count: int, size: int) -> dict[str, str]:
    """Write ``count`` random objects; return key -> md5 hex."""
    plane = S3DataPlane(
        src.endpoint.url,
        src.endpoint.region,
        True,
        Credentials(src.endpoint.access_key, src.endpoint.secret_key),
        max_connections=16,
    )
    digests: dict[str, str] = {}

    def write(n: int) -> None:
        data = os.urandom(size)
        key = f"obj/{n:06d}"
        plane.put_object(bucket, key, data, md5_b64=md5_b64(data))
        digests[key] = hashlib.md5(data).hexdigest()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(count)))
    plane.close()
    return digests


def listed_etags(endpoint: Endpoint, bucket: str) -> dict[str, str]:
    out: dict[str, str] = {}
    client = endpoint.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            out[item["Key"]] = item["ETag"].strip('"')
    return out


def copy_small(
    copier: Copier, dst: LocalServer, src_bucket: str, digests: dict[str, str], size: int
) -> tuple[float, float]:
    dst_bucket = f"dst-{os.getpid()}-{next(_bucket_ids)}"
    dst.endpoint.client().create_bucket(Bucket=dst_bucket)
    copier.prepare(src_bucket, dst_bucket)

    def copy(key: str) -> None:
        data = copier.get(src_bucket, key, 0, size)
        copier.put(dst_bucket, key, data, md5_b64(data))

    keys = sorted(digests)
    with ThreadPoolExecutor(copier._threads) as pool:
        cpu, wall = cpu_seconds(), time.monotonic()
        list(pool.map(copy, keys))
        wall, cpu = time.monotonic() - wall, cpu_seconds() - cpu
    if listed_etags(dst.endpoint, dst_bucket) != digests:
        raise SystemExit(f"{copier.kind}: the destination does not match the source")
    return wall, cpu


def copy_large(
    copier: Copier, dst: LocalServer, src_bucket: str, key: str, size: int, part: int
) -> tuple[float, float]:
    dst_bucket = f"dst-{os.getpid()}-{next(_bucket_ids)}"
    client = dst.endpoint.client()
    client.create_bucket(Bucket=dst_bucket)
    copier.prepare(src_bucket, dst_bucket)
    upload = client.create_multipart_upload(Bucket=dst_bucket, Key=key)["UploadId"]
    starts = list(range(0, size, part))

    def copy(n: int) -> dict[str, Any]:
        start = starts[n]
        data = copier.get(src_bucket, key, start, min(part, size - start))
        etag = copier.part(dst_bucket, key, upload, n + 1, data, md5_b64(data))
        return {"PartNumber": n + 1, "ETag": f'"{etag}"'}

    with ThreadPoolExecutor(4) as pool:
        cpu, wall = cpu_seconds(), time.monotonic()
        parts = list(pool.map(copy, range(len(starts))))
        wall, cpu = time.monotonic() - wall, cpu_seconds() - cpu
    client.complete_multipart_upload(
        Bucket=dst_bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    head = client.head_object(Bucket=dst_bucket, Key=key)
    if head["ContentLength"] != size:
        raise SystemExit(f"{copier.kind}: the copied object has the wrong size")
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workload", choices=["small", "large", "both"], default="small")
    parser.add_argument(
        "--clients",
        default="boto3,dataplane:botocore,dataplane:crt",
        help="comma-separated; dataplane:crt is left out when awscrt is not importable",
    )
    args = parser.parse_args()

    kinds = [k for k in args.clients.split(",") if k != "dataplane:crt" or crt_available()]
    with tempfile.TemporaryDirectory(prefix="longbow-dataplane-") as tmp:
        with start_seaweedfs(Path(tmp) / "src") as src, start_seaweedfs(Path(tmp) / "dst") as dst:
            src_bucket = "src"
            src.endpoint.client().create_bucket(Bucket=src_bucket)
            print(f"# {os.cpu_count()} cores, {args.threads} threads, SeaweedFS src and dst")
            if args.workload in ("small", "both"):
                digests = seed_small(src, src_bucket, args.objects, args.size)
                print(f"## {args.objects} x {args.size // 1024} KiB, medians of {args.rounds}")
                print("| client | objects/s | client CPU ms/object |")
                print("|---|---|---|")
                for kind in kinds:
                    runs = []
                    for _ in range(args.rounds):
                        copier = Copier(kind, src.endpoint, dst.endpoint, args.threads)
                        runs.append(copy_small(copier, dst, src_bucket, digests, args.size))
                        copier.close()
                    wall = statistics.median(r[0] for r in runs)
                    cpu = statistics.median(r[1] for r in runs)
                    print(
                        f"| {kind} | {args.objects / wall:.0f} | {cpu / args.objects * 1e3:.2f} |"
                    )
                    sys.stdout.flush()
            if args.workload in ("large", "both"):
                size, part = 256 * MiB, 8 * MiB
                data = os.urandom(size)
                client = src.endpoint.client()
                client.put_object(Bucket=src_bucket, Key="large", Body=data)
                del data
                print(f"## 1 x 256 MiB in 8 MiB parts, 4 threads, medians of {args.rounds}")
                print("| client | MB/s | client CPU s/GiB |")
                print("|---|---|---|")
                for kind in kinds:
                    runs = []
                    for _ in range(args.rounds):
                        copier = Copier(kind, src.endpoint, dst.endpoint, 4)
                        runs.append(copy_large(copier, dst, src_bucket, "large", size, part))
                        copier.close()
                    wall = statistics.median(r[0] for r in runs)
                    cpu = statistics.median(r[1] for r in runs)
                    print(f"| {kind} | {size / wall / 1e6:.0f} | {cpu / (size / 2**30):.2f} |")
                    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
