"""Benchmark `longbow sync` against `rclone copy` between two local SeaweedFS endpoints.

Workloads: one 1 GiB object plus four of 256 MiB (`large`), 2,000 objects of 64 KiB (`small`),
and a mixed set with sizes drawn log-uniformly from 1 KiB to 64 MiB with a fixed seed
(`mixed`). Tools run in turn on the same data and endpoints (A B A B ...). Each run reports wall
time, MB/s, objects/s, client CPU seconds (user + sys of the tool's process) and its peak RSS,
and checks the destination's content (MD5s read back) rather than trusting the tool's report.

    python bench/run.py                       # every workload, longbow and rclone, 1 round
    python bench/run.py --workload small --rounds 3 --tools longbow --json results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import shutil
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


def _mixed(count: int = 100, seed: int = 20261126) -> list[tuple[str, int]]:
    rnd = random.Random(seed)
    low, high = math.log(1024), math.log(64 * MiB)
    return [(f"mixed/{i:04d}.bin", int(math.exp(rnd.uniform(low, high)))) for i in range(count)]


WORKLOADS = {
    "large": [("large/one-gib.bin", 1024 * MiB)]
    + [(f"large/quarter-{i}.bin", 256 * MiB) for i in range(4)],
    "small": [(f"small/{i:05d}.bin", 64 * 1024) for i in range(2000)],
    "mixed": _mixed(),
}
# rclone's best flags for each case (as measured on this kind of machine).
RCLONE_FLAGS = {
    "large": [
        "--transfers",
        "4",
        "--s3-upload-concurrency",
        "8",
        "--s3-chunk-size",
        "8M",
        "--size-only",
        "--s3-no-head",
    ],
    "small": ["--transfers", "64", "--checkers", "16", "--size-only", "--s3-no-head"],
    "mixed": [
        "--transfers",
        "16",
        "--checkers",
        "16",
        "--s3-upload-concurrency",
        "4",
        "--s3-chunk-size",
        "8M",
        "--size-only",
        "--s3-no-head",
    ],
}


@dataclass
class Result:
    tool: str
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


def measured(argv: list[str], env: dict[str, str]) -> tuple[str, dict[str, float]]:
    """Run a command under bench/measure.py; return (its output, its usage)."""
    # A small wrapper starts the tool and reports its rusage: a child forked straight from this
    # (large) process would inherit this process's peak RSS in ru_maxrss.
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("measure.py")), *argv],
        env=env,
        capture_output=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr.decode()[-2000:]}")
    lines = done.stdout.decode().strip().splitlines()
    return "\n".join(lines[:-1]), json.loads(lines[-1])


def run_rclone(
    src: Endpoint, dst: Endpoint, prefix: str, workload: str, extra: list[str]
) -> tuple[float, float, float]:
    """Run `rclone copy` between the two endpoints; return (wall s, CPU s, peak RSS MiB)."""
    env = dict(os.environ)
    for name, ep in (("SRC", src), ("DST", dst)):
        env.update(
            {
                f"RCLONE_CONFIG_{name}_TYPE": "s3",
                f"RCLONE_CONFIG_{name}_PROVIDER": "Other",
                f"RCLONE_CONFIG_{name}_ENDPOINT": ep.url,
                f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": ep.access_key,
                f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": ep.secret_key,
                f"RCLONE_CONFIG_{name}_REGION": ep.region,
                f"RCLONE_CONFIG_{name}_FORCE_PATH_STYLE": "true",
            }
        )
    rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or "rclone"
    argv = [
        rclone,
        "copy",
        f"src:bench-src/{workload}/",
        f"dst:bench-dst/{prefix}{workload}/",
        *RCLONE_FLAGS[workload],
        *extra,
    ]
    _, usage = measured(argv, env)
    return usage["wall_s"], usage["cpu_s"], usage["peak_rss_mib"]


def run_longbow(
    src: Endpoint, dst: Endpoint, prefix: str, workload: str, db: Path, extra: list[str]
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
    out, usage = measured(argv, env)
    summary = json.loads(out)
    if summary["failed"]:
        raise SystemExit(f"longbow reported failures: {summary['failed'][:3]}")
    return usage["wall_s"], usage["cpu_s"], usage["peak_rss_mib"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--tools", default="longbow,rclone", help="comma-separated, in turn")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("longbow_args", nargs="*", help="extra flags for longbow sync")
    args = parser.parse_args()
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="longbow-bench-") as tmp:
        work = Path(tmp)
        with start_seaweedfs(work / "src") as src, start_seaweedfs(work / "dst") as dst:
            s3_src, s3_dst = src.endpoint.client(), dst.endpoint.client()
            s3_src.create_bucket(Bucket="bench-src")
            s3_dst.create_bucket(Bucket="bench-dst")
            for name in names:
                objects = WORKLOADS[name]
                print(f"seeding {name}: {len(objects)} objects", flush=True)
                digests = seed(s3_src, "bench-src", objects)
                total = sum(size for _, size in objects)
                for rnd in range(1, args.rounds + 1):
                    for tool in tools:  # interleaved: A B A B
                        prefix = f"{tool}-r{rnd}/"
                        if tool == "longbow":
                            db = work / f"{name}-{rnd}.db"
                            wall, cpu, rss = run_longbow(
                                src.endpoint, dst.endpoint, prefix, name, db, args.longbow_args
                            )
                        elif tool == "rclone":
                            wall, cpu, rss = run_rclone(
                                src.endpoint, dst.endpoint, prefix, name, []
                            )
                        else:
                            raise SystemExit(f"unknown tool {tool!r}")
                        verify(s3_dst, "bench-dst", digests, prefix)
                        result = Result(
                            tool=tool,
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
                s3_src_prefix_cleanup(s3_src, name)
    report(results, names, tools)
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


FIELDS = (
    "mb_per_s",
    "objects_per_s",
    "cpu_s",
    "cpu_ms_per_object",
    "cpu_s_per_gib",
    "peak_rss_mib",
)


def report(results: list[Result], names: list[str], tools: list[str]) -> None:
    """Medians (min-max) per tool and workload, and longbow/rclone ratios."""
    print()
    print(
        f"{'workload':8} {'tool':8} {'MB/s':>14} {'obj/s':>14} {'CPU s':>6} {'ms/obj':>7} "
        f"{'CPU s/GiB':>9} {'RSS MiB':>8}"
    )
    medians: dict[tuple[str, str], dict[str, float]] = {}
    for name in names:
        for tool in tools:
            rows = [r for r in results if r.workload == name and r.tool == tool]
            if not rows:
                continue
            med = {f: statistics.median(getattr(r, f) for r in rows) for f in FIELDS}
            medians[(name, tool)] = med
            lo_hi = {
                f: (min(getattr(r, f) for r in rows), max(getattr(r, f) for r in rows))
                for f in ("mb_per_s", "objects_per_s")
            }
            print(
                f"{name:8} {tool:8} "
                f"{med['mb_per_s']:6.1f} ({lo_hi['mb_per_s'][0]:.0f}-{lo_hi['mb_per_s'][1]:.0f}) "
                f"{med['objects_per_s']:6.1f} ({lo_hi['objects_per_s'][0]:.0f}-"
                f"{lo_hi['objects_per_s'][1]:.0f}) "
                f"{med['cpu_s']:6.2f} {med['cpu_ms_per_object']:7.2f} "
                f"{med['cpu_s_per_gib']:9.2f} {med['peak_rss_mib']:8.1f}"
            )
        ours, theirs = medians.get((name, "longbow")), medians.get((name, "rclone"))
        if ours and theirs:
            print(
                f"{name:8} longbow/rclone: speed {ours['mb_per_s'] / theirs['mb_per_s']:.2f}x, "
                f"CPU {ours['cpu_s'] / theirs['cpu_s']:.2f}x, "
                f"RSS {ours['peak_rss_mib'] / theirs['peak_rss_mib']:.2f}x"
            )


def s3_src_prefix_cleanup(client: Any, prefix: str) -> None:
    """Delete a workload's source objects so later workloads list only their own."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket="bench-src", Prefix=f"{prefix}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket="bench-src", Delete={"Objects": keys})


if __name__ == "__main__":
    sys.exit(main())
