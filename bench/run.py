"""Benchmark `longbow sync` against `rclone copy` and the endpoints' limit, on two SeaweedFS.

Workloads: one 1 GiB object plus four of 256 MiB (`large`), 2,000 objects of 64 KiB (`small`),
a mixed set with sizes drawn log-uniformly from 1 KiB to 64 MiB with a fixed seed (`mixed`),
and 100,000 zero-byte keys present on both sides, so that only listing and diffing are timed
(`planning`). Tools run in turn on the same data and endpoints (A B C A B C ...): `longbow`,
`rclone` and `limit` (s5cmd's raw GET from the source and raw PUT to the destination of the
same bytes, at the same time). Each run reports wall time, MB/s, objects/s, client CPU seconds
(user + sys of the tool's processes) and peak RSS, and checks the destination (MD5s read back;
for `planning`, that no key was written) rather than trusting the tool's report.

    python bench/run.py                          # every workload and tool, 1 round
    python bench/run.py --quick --json r.json --chart r.png     # smoke run, a few minutes
    python bench/run.py --workload small --rounds 3 --tools longbow,rclone
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import s5
import workloads
from stats import Result, concurrent_limit, make_result, medians, ratios

from longbow_testkit.servers import Endpoint, start_seaweedfs

MiB = 1024 * 1024
TOOLS = ("longbow", "rclone", "limit")
QUICK_SCALE = 0.05
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
    # `copy` with nothing to copy is what an incremental run of rclone does, so it is compared
    # with longbow's own incremental run. --fast-list makes it list each side in one recursive
    # walk, as longbow does, instead of one listing per folder.
    "planning": ["--checkers", "16", "--size-only", "--fast-list"],
}


def listing(client: Any, bucket: str, prefix: str) -> dict[str, tuple[int, dt.datetime]]:
    """key -> (size, last modified) of every object under ``prefix``."""
    out: dict[str, tuple[int, dt.datetime]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            out[item["Key"]] = (item["Size"], item["LastModified"])
    return out


def check_seeded(
    client: Any,
    bucket: str,
    prefix: str,
    workload: str,
    objects: list[tuple[str, int]],
    hint: str = "",
) -> None:
    """The bulk loader's result, checked key by key and size by size."""
    found = listing(client, bucket, f"{prefix}{workload}/")
    listed = {key[len(prefix) :]: size for key, (size, _) in found.items()}
    if listed != dict(objects):
        missing = sorted(set(dict(objects)) - set(listed))
        raise SystemExit(
            f"seeding {bucket}/{prefix}{workload}/ incomplete: {len(listed)} keys listed, "
            f"{len(missing)} missing, e.g. {missing[:3]}" + (f"; {hint}" if hint else "")
        )


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


def verify_untouched(client: Any, target: str, count: int, since: dt.datetime) -> None:
    """The planning set's destination still holds its keys, none written since ``since``."""
    bucket, prefix = target.split("/", 1)
    listed = listing(client, bucket, prefix)
    written = [k for k, (_, modified) in listed.items() if modified >= since]
    if len(listed) != count or written:
        raise SystemExit(
            f"planning destination changed: {len(listed)} keys (expected {count}), "
            f"{len(written)} written during the run, e.g. {written[:3]}"
        )


def verify_local(root: Path, digests: dict[str, str], workload: str) -> None:
    """Files fetched by the raw GET are the seeded bytes."""
    bad = []
    for key, digest in digests.items():
        path = root / key[len(workload) + 1 :]
        h = hashlib.md5()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(8 * MiB), b""):
                h.update(chunk)
        if h.hexdigest() != digest:
            bad.append(key)
    if bad:
        raise SystemExit(f"raw GET returned wrong content for {len(bad)} objects: {bad[:3]}")


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


def rclone_env(src: Endpoint, dst: Endpoint) -> dict[str, str]:
    """The environment that configures rclone's remotes ``src:`` and ``dst:``."""
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
    return env


def run_rclone(
    src: Endpoint,
    dst: Endpoint,
    target: str,
    workload: str,
    extra: list[str],
    *,
    flags: list[str] | None = None,
    bucket: str = "bench-src",
) -> dict[str, float]:
    """Run `rclone copy` of ``bucket``'s workload folder into ``target`` ("bucket/prefix/")
    with ``flags`` (the workload's best flags when None); return its usage.

    An https endpoint's certificate authority is passed with ``--ca-cert``."""
    rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or "rclone"
    authorities = dict.fromkeys(str(ep.ca_bundle) for ep in (src, dst) if ep.ca_bundle)
    argv = [
        rclone,
        "copy",
        f"src:{bucket}/{workload}/",
        f"dst:{target}{workload}/",
        *(RCLONE_FLAGS[workload] if flags is None else flags),
        *(arg for ca in authorities for arg in ("--ca-cert", ca)),
        *extra,
    ]
    _, usage = measured(argv, rclone_env(src, dst))
    return usage


def longbow_endpoint_flags(src: Endpoint, dst: Endpoint, *, path_style: bool) -> list[str]:
    """longbow's flags for the two endpoints: URL, path style if asked, CA bundle if any."""
    flags: list[str] = []
    for side, ep in (("src", src), ("dst", dst)):
        flags += [f"--{side}-endpoint-url", ep.url]
        if path_style:
            flags.append(f"--{side}-path-style")
        if ep.ca_bundle:
            flags += [f"--{side}-ca-bundle", str(ep.ca_bundle)]
    return flags


def run_longbow(
    src: Endpoint,
    dst: Endpoint,
    target: str,
    db: Path,
    extra: list[str],
    *,
    objects: int,
    copies: int,
    path_style: bool = True,
) -> dict[str, float]:
    """Run one sync as a child process, check its counts of copies and of objects already
    present; return its usage. Without ``path_style`` longbow picks the addressing itself."""
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
        f"s3://{target}",
        *longbow_endpoint_flags(src, dst, path_style=path_style),
        "--db",
        str(db),
        "--json",
        *extra,
    ]
    out, usage = measured(argv, env)
    summary = json.loads(out)
    if summary["failed"]:
        raise SystemExit(f"longbow reported failures: {summary['failed'][:3]}")
    copied, present = summary["copied"]["objects"], summary["already_present"]["objects"]
    if not summary["ok"] or (copied, present) != (copies, objects - copies):
        raise SystemExit(
            f"longbow copied {copied} and found {present} present; expected {copies} and "
            f"{objects - copies}: {json.dumps(summary)[:800]}"
        )
    return usage


def run_limit(
    src: Endpoint, dst: Endpoint, target: str, workload: str, data: Path, got: Path
) -> tuple[dict[str, float], dict[str, float]]:
    """s5cmd's concurrent raw GET and PUT of the workload; return (usage, GET/PUT walls)."""
    get, put = s5.raw_get_put(src, dst, workload, data / workload, got, f"s3://{target}{workload}/")
    return concurrent_limit(get, put), {"get_wall_s": get["wall_s"], "put_wall_s": put["wall_s"]}


def seed(
    name: str, objects: list[tuple[str, int]], src: Endpoint, data: Path, *, keep_files: bool
) -> dict[str, str]:
    """Write a workload's files under ``data`` and load them into the source; return key ->
    MD5. The limit's raw PUT reads the same files, so a copying workload keeps them."""
    print(f"seeding {name}: {len(objects)} objects", flush=True)
    started = time.monotonic()
    digests = workloads.write_files(data, objects)
    if s5.available():
        s5.upload(src, name, data / name, f"s3://bench-src/{name}/")
    else:  # (the benchmark's extras are not installed: slower, fine for small sets)
        upload_files(src.client(), data / name, "bench-src", f"{name}/")
    check_seeded(src.client(), "bench-src", "", name, objects)
    if not keep_files:
        shutil.rmtree(data / name)
    print(f"seeded {name} in {time.monotonic() - started:.1f}s", flush=True)
    return digests


def upload_files(client: Any, root: Path, bucket: str, prefix: str) -> None:
    """PUT every file under ``root`` as ``prefix`` + its relative path, 16 at a time."""
    paths = [path for path in sorted(root.rglob("*")) if path.is_file()]

    def put(path: Path) -> None:
        client.upload_file(str(path), bucket, prefix + path.relative_to(root).as_posix())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, paths))


def bench_workload(
    name: str,
    objects: list[tuple[str, int]],
    servers: tuple[Endpoint, Endpoint],
    work: Path,
    memory: Path,
    args: argparse.Namespace,
) -> list[Result]:
    """Seed one workload, run every tool on it for every round, check each run's result."""
    src, dst = servers
    data = memory / "data"
    digests = seed(name, objects, src, data, keep_files=True)
    results: list[Result] = []
    for rnd in range(1, args.rounds + 1):
        for tool in args.tools:  # interleaved: A B C A B C
            target = f"bench-dst/{tool}-r{rnd}/"
            extra: dict[str, float] = {}
            if tool == "longbow":
                db = work / f"{name}-{rnd}.db"
                usage = run_longbow(
                    src,
                    dst,
                    target,
                    db,
                    args.longbow_args,
                    objects=len(objects),
                    copies=len(objects),
                )
            elif tool == "rclone":
                usage = run_rclone(src, dst, target, name, [])
            else:
                got = memory / "got"
                usage, extra = run_limit(src, dst, target, name, data, got)
                verify_local(got, digests, name)
                shutil.rmtree(got)
            bucket, prefix = target.split("/", 1)
            verify(dst.client(), bucket, digests, prefix)
            results.append(report_run(tool, name, rnd, objects, usage, extra))
    cleanup_source(src.client(), name)
    shutil.rmtree(data / name, ignore_errors=True)
    return results


def report_run(
    tool: str,
    name: str,
    rnd: int,
    objects: list[tuple[str, int]],
    usage: dict[str, float],
    extra: dict[str, float] | None = None,
) -> Result:
    total = sum(size for _, size in objects)
    result = make_result(tool, name, rnd, len(objects), total, usage, extra)
    print(json.dumps(asdict(result)), flush=True)
    return result


def seeded_pair(name: str, objects: list[tuple[str, int]], home: Path, memory: Path) -> None:
    """Give a nothing-to-copy workload identical keys on two endpoints kept in ``home``.

    The source is loaded through S3 once; the destination starts as a copy of the stopped
    source's data folder, which halves the slowest part of the set-up. A marker file records
    a finished seeding, so a later run with the same folder starts at once.
    """
    marker = home / "seeded"
    if marker.exists():
        print(f"reusing {name}, seeded earlier in {home}", flush=True)
        return
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with start_seaweedfs(home / "src") as src:
        create_buckets((src.endpoint,))
        seed(name, objects, src.endpoint, memory / "data", keep_files=False)
    shutil.copytree(home / "src", home / "dst")
    marker.write_text(f"{len(objects)} keys\n")


def bench_nothing_to_copy(
    name: str,
    objects: list[tuple[str, int]],
    home: Path,
    work: Path,
    memory: Path,
    args: argparse.Namespace,
) -> list[Result]:
    """Time listing and diffing alone: every key is already at the destination."""
    seeded_pair(name, objects, home, memory)
    results: list[Result] = []
    with start_seaweedfs(home / "src") as src_server, start_seaweedfs(home / "dst") as dst_server:
        src, dst = src_server.endpoint, dst_server.endpoint
        for endpoint in (src, dst):
            check_seeded(endpoint.client(), "bench-src", "", name, objects, hint=f"remove {home}")
        # LastModified has whole seconds: a write during a run must not share the seeding's.
        time.sleep(1.1)
        target = "bench-src/"  # the destination is the source's twin, bucket and keys alike
        for rnd in range(1, args.rounds + 1):
            for tool in args.tools:
                if tool == "limit":
                    continue  # no bytes move: the limit is not defined
                started = dt.datetime.now(dt.UTC).replace(microsecond=0)
                if tool == "longbow":
                    db = work / f"{name}-{rnd}.db"
                    usage = run_longbow(
                        src, dst, target, db, args.longbow_args, objects=len(objects), copies=0
                    )
                else:
                    usage = run_rclone(src, dst, target, name, [])
                verify_untouched(dst.client(), f"{target}{name}/", len(objects), started)
                results.append(report_run(tool, name, rnd, objects, usage))
    return results


def create_buckets(servers: tuple[Endpoint, ...]) -> None:
    for endpoint, bucket in zip(servers, ("bench-src", "bench-dst"), strict=False):
        client = endpoint.client()
        if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", ())}:
            client.create_bucket(Bucket=bucket)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Arguments after -- go to longbow sync, e.g. -- --workers 32",
    )
    parser.add_argument("--workload", choices=[*workloads.NAMES, "all"], default="all")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, run in turn")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink every workload (0 < scale <= 1): sizes of the large set, counts of others",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: --scale {QUICK_SCALE}, one round"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep the planning set's seeded endpoints in this folder and reuse them next time",
    )
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    parser.add_argument("--chart", type=Path, help="draw a PNG of the medians here")
    parser.add_argument("longbow_args", nargs="*", help="extra flags for longbow sync")
    args = parser.parse_args()
    if args.quick:
        args.scale, args.rounds = QUICK_SCALE, 1
    if not 0 < args.scale <= 1:
        parser.error(f"--scale must be in (0, 1], got {args.scale}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(args.tools) - set(TOOLS))
    if unknown or not args.tools:
        parser.error(f"--tools takes some of {', '.join(TOOLS)}; got {args.tools}")
    if "limit" in args.tools:
        s5.binary()  # fail before seeding when s5cmd is missing
    if args.chart:
        import chart  # noqa: F401  (fail before the run when matplotlib is missing)
    return args


def memory_dir() -> str | None:
    """tmpfs for the workloads' local copies when the machine has one."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def compile_product() -> None:
    """Compile longbow's bytecode before any timed run.

    An installed package carries compiled bytecode; an editable checkout run with
    PYTHONDONTWRITEBYTECODE set would compile every module of longbow on every run (~0.5 s).
    """
    import s3longbow

    compileall.compile_dir(Path(s3longbow.__file__).parent, quiet=1)


def main() -> int:
    args = parse_args()
    compile_product()
    sets = workloads.build(args.scale)
    names = list(workloads.NAMES) if args.workload == "all" else [args.workload]
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="longbow-bench-") as tmp,
        tempfile.TemporaryDirectory(prefix="longbow-bench-", dir=memory_dir()) as mem,
    ):
        work = Path(tmp)
        with start_seaweedfs(work / "src") as src, start_seaweedfs(work / "dst") as dst:
            servers = (src.endpoint, dst.endpoint)
            create_buckets(servers)
            for name in names:
                if name not in workloads.NOTHING_TO_COPY:
                    results += bench_workload(name, sets[name], servers, work, Path(mem), args)
        for name in names:
            if name in workloads.NOTHING_TO_COPY:
                home = (args.cache or work) / f"{name}-{len(sets[name])}"
                results += bench_nothing_to_copy(name, sets[name], home, work, Path(mem), args)
    meds = medians(results)
    report(meds, names, args.tools)
    document = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "scale": args.scale,
        "rounds": args.rounds,
        "longbow_args": args.longbow_args,
        "rclone_flags": {n: RCLONE_FLAGS[n] for n in names},
        "s5cmd_flags": {n: s5.FLAGS[n] for n in names if n not in workloads.NOTHING_TO_COPY},
        "results": [asdict(r) for r in results],
        "medians": [{"workload": w, "tool": t, **m} for (w, t), m in meds.items()],
        "ratios": {n: ratios(meds, n) for n in names},
    }
    if args.json:
        args.json.write_text(json.dumps(document, indent=2))
    if args.chart:
        import chart

        chart.draw(document, args.chart)
        print(f"chart written to {args.chart}")
    return 0


def git_commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _figure(value: float | None, width: int, digits: int) -> str:
    return f"{'—':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def report(meds: dict[tuple[str, str], dict[str, Any]], names: list[str], tools: list[str]) -> None:
    """Medians (min-max) per tool and workload, and longbow's ratios to rclone and the limit."""
    print()
    print(
        f"{'workload':8} {'tool':8} {'MB/s':>14} {'obj/s':>16} {'CPU s':>6} {'ms/obj':>7} "
        f"{'CPU s/GiB':>9} {'RSS MiB':>8}"
    )
    for name in names:
        for tool in tools:
            med = meds.get((name, tool))
            if not med:
                continue
            print(
                f"{name:8} {tool:8} "
                f"{med['mb_per_s']:6.1f} ({med['mb_per_s_min']:.0f}-{med['mb_per_s_max']:.0f}) "
                f"{med['objects_per_s']:8.1f} ({med['objects_per_s_min']:.0f}-"
                f"{med['objects_per_s_max']:.0f}) "
                f"{med['cpu_s']:6.2f} {med['cpu_ms_per_object']:7.2f} "
                f"{_figure(med['cpu_s_per_gib'], 9, 2)} {med['peak_rss_mib']:8.1f}"
            )
        found = {k: v for k, v in ratios(meds, name).items() if v is not None}
        if found:
            print(f"{name:8} longbow: " + ", ".join(f"{k} {v:.2f}x" for k, v in found.items()))


def cleanup_source(client: Any, prefix: str) -> None:
    """Delete a workload's source objects so later workloads list only their own."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket="bench-src", Prefix=f"{prefix}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket="bench-src", Delete={"Objects": keys})


if __name__ == "__main__":
    sys.exit(main())
