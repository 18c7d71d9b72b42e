"""Benchmark `longbow sync` between two local SeaweedFS endpoints.

Workloads: one 1 GiB object (`large`) and 2,000 objects of 64 KiB (`small`). For each run it
reports wall time, MB/s, objects/s, client CPU seconds (user + sys of the longbow process) and
its peak RSS, and checks the destination's content (sizes, and MD5s read back) rather than
trusting the tool's own report.

    python bench/run.py                       # both workloads, 1 round
    python bench/run.py --workload small --rounds 3 --json results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from s3longbow.testing.servers import Endpoint, start_seaweedfs

MiB = 1024 * 1024
WORKLOADS = {
    "large": [("large/one-gib.bin", 1024 * MiB)],
    "small": [(f"small/{i:05d}.bin", 64 * 1024) for i in range(2000)],
}


@dataclass
class Result:
    workload: str
    round: int
    objects: int
    bytes: int
    wall_s: float
    mb_per_s: float
    objects_per_s: float
    cpu_s: float
    cpu_ms_per_object: float
    cpu_s_per_gib: float
    peak_rss_mib: float


def seed(client: Any, bucket: str, objects: list[tuple[str, int]]) -> dict[str, str]:
    """Upload random objects; return key -> md5."""
    digests: dict[str, str] = {}
    block = os.urandom(MiB)

    def put(item: tuple[str, int]) -> tuple[str, str]:
        key, size = item
        if size > 64 * MiB:
            import io

            body = (block * (size // MiB + 1))[:size]
            client.upload_fileobj(io.BytesIO(body), bucket, key)
            return key, hashlib.md5(body).hexdigest()
        body = os.urandom(size)
        client.put_object(Bucket=bucket, Key=key, Body=body)
        return key, hashlib.md5(body).hexdigest()

    with ThreadPoolExecutor(16) as pool:
        for key, digest in pool.map(put, objects):
            digests[key] = digest
    return digests


def verify(client: Any, bucket: str, digests: dict[str, str], prefix: str) -> None:
    """Read every object back from the destination and compare its MD5."""

    def check(key: str) -> bool:
        body = client.get_object(Bucket=bucket, Key=prefix + key)["Body"]
        h = hashlib.md5()
        for chunk in iter(lambda: body.read(MiB), b""):
            h.update(chunk)
        return h.hexdigest() == digests[key]

    with ThreadPoolExecutor(16) as pool:
        bad = [k for k, ok in zip(digests, pool.map(check, digests), strict=True) if not ok]
    if bad:
        raise SystemExit(f"destination content wrong for {len(bad)} objects, e.g. {bad[:3]}")


def run_longbow(
    src: Endpoint, dst: Endpoint, prefix: str, db: Path, extra: list[str]
) -> tuple[float, float, float]:
    """Run one sync as a child process; return (wall seconds, CPU seconds, peak RSS MiB)."""
    env = {
        **os.environ,
        "LONGBOW_SRC_ACCESS_KEY_ID": src.access_key,
        "LONGBOW_SRC_SECRET_ACCESS_KEY": src.secret_key,
        "LONGBOW_DST_ACCESS_KEY_ID": dst.access_key,
        "LONGBOW_DST_SECRET_ACCESS_KEY": dst.secret_key,
    }
    argv = [
        sys.executable,
        "-m",
        "s3longbow",
        "sync",
        "s3://bench-src/",
        f"s3://bench-dst/{prefix}",
        "--src-endpoint-url",
        src.url,
        "--src-path-style",
        "--dst-endpoint-url",
        dst.url,
        "--dst-path-style",
        "--db",
        str(db),
        "--json",
        *extra,
    ]
    # A small wrapper starts longbow and reports its rusage: a child forked straight from this
    # (large) process would inherit this process's peak RSS in ru_maxrss.
    measured = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("measure.py")), *argv],
        env=env,
        capture_output=True,
    )
    if measured.returncode != 0:
        raise SystemExit(f"longbow failed: {measured.stderr.decode()[-2000:]}")
    lines = measured.stdout.decode().strip().splitlines()
    usage = json.loads(lines[-1])
    summary = json.loads("\n".join(lines[:-1]))
    if summary["failed"]:
        raise SystemExit(f"longbow reported failures: {summary['failed'][:3]}")
    return usage["wall_s"], usage["cpu_s"], usage["peak_rss_mib"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("longbow_args", nargs="*", help="extra flags for longbow sync")
    args = parser.parse_args()
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="longbow-bench-") as tmp:
        work = Path(tmp)
        with start_seaweedfs(work / "src") as src, start_seaweedfs(work / "dst") as dst:
            s3_src, s3_dst = src.endpoint.client(), dst.endpoint.client()
            s3_src.create_bucket(Bucket="bench-src")
            s3_dst.create_bucket(Bucket="bench-dst")
            for name in names:
                objects = WORKLOADS[name]
                for key, _ in objects:
                    assert key.startswith(f"{name}/")
                print(f"seeding {name}: {len(objects)} objects", flush=True)
                digests = seed(s3_src, "bench-src", objects)
                total = sum(size for _, size in objects)
                for rnd in range(1, args.rounds + 1):
                    prefix = f"r{rnd}/"
                    wall, cpu, rss = run_longbow(
                        src.endpoint,
                        dst.endpoint,
                        prefix,
                        work / f"{name}-{rnd}.db",
                        args.longbow_args,
                    )
                    verify(s3_dst, "bench-dst", digests, prefix)
                    result = Result(
                        workload=name,
                        round=rnd,
                        objects=len(objects),
                        bytes=total,
                        wall_s=round(wall, 3),
                        mb_per_s=round(total / wall / 1e6, 1),
                        objects_per_s=round(len(objects) / wall, 1),
                        cpu_s=round(cpu, 2),
                        cpu_ms_per_object=round(cpu * 1000 / len(objects), 2),
                        cpu_s_per_gib=round(cpu / (total / (1024 * MiB)), 2),
                        peak_rss_mib=round(rss, 1),
                    )
                    results.append(result)
                    print(json.dumps(asdict(result)), flush=True)
                # Each workload copies into its own prefixes; the next one lists only its own.
                s3_src_prefix_cleanup(s3_src, name)
    print()
    print(
        f"{'workload':8} {'MB/s':>7} {'obj/s':>7} {'CPU s':>6} {'ms/obj':>7} "
        f"{'CPU s/GiB':>9} {'RSS MiB':>8}"
    )
    for name in names:
        rows = [r for r in results if r.workload == name]
        med = {
            f: statistics.median(getattr(r, f) for r in rows)
            for f in (
                "mb_per_s",
                "objects_per_s",
                "cpu_s",
                "cpu_ms_per_object",
                "cpu_s_per_gib",
                "peak_rss_mib",
            )
        }
        print(
            f"{name:8} {med['mb_per_s']:7.1f} {med['objects_per_s']:7.1f} {med['cpu_s']:6.2f} "
            f"{med['cpu_ms_per_object']:7.2f} {med['cpu_s_per_gib']:9.2f} "
            f"{med['peak_rss_mib']:8.1f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
        )
    return 0


def s3_src_prefix_cleanup(client: Any, prefix: str) -> None:
    """Delete a workload's source objects so later workloads list only their own."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket="bench-src", Prefix=f"{prefix}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket="bench-src", Delete={"Objects": keys})


if __name__ == "__main__":
    sys.exit(main())
