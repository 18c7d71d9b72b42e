"""Benchmark longbow against rclone where users run them: HTTPS, long round trips, defaults.

Both SeaweedFS endpoints serve https with a certificate from a throwaway authority. The
destination is the far side: it is reached through a latency proxy (the test kit's
``latencyproxy``) that holds each direction's bytes for half the round trip and lets at most
``--window`` bytes be in flight per connection and direction, as a long path's windows cap
each TCP stream. Round trips of 0 (TLS alone, no proxy), 50, 150 and 250 ms; the large, small
and mixed sets of ``run.py`` (scaled down at long round trips, see ``--scales``).

Per case (set, round trip), three tools on the same data:

- ``longbow``: ``longbow sync`` with its defaults (only endpoint, CA and credential arguments);
- ``rclone-default``: ``rclone copy`` with its defaults;
- ``rclone-best``: ``rclone copy`` with the fastest point of a fixed grid (``--transfers``
  16/64/128/256 x ``--s3-upload-concurrency`` 4/16 x ``--s3-chunk-size`` 8M/64M), chosen once
  per case on a short run (the first quarter of the set's objects, ``--grid-fraction``),
  every point with ``--s3-no-head`` (no HEAD after each upload: rclone still checks a single
  PUT's ETag against its MD5, the proof longbow takes).

rclone always runs with ``--disable-http2``: SeaweedFS offers HTTP/2 over TLS, S3 does not, and
rclone on one HTTP/2 connection is held to a few MB/s by its flow-control window on long round
trips. Then ``--rounds`` rounds of the three, interleaved. Every copy is read back (MD5s)
from the destination directly; wall time, MB/s, objects/s, client CPU and peak RSS are those
of ``run.py``; the proxy's own CPU is reported per case.

    python bench/reallink.py                                   # the full matrix, ~1 hour
    python bench/reallink.py --quick --json q.json --chart q.png  # one small case, ~1 minute
    python bench/reallink.py --rtts 150 --sets small --rounds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import run
import workloads
from stats import Result, medians, versus

from longbow_testkit.latencyproxy import ProxyProcess, start_process
from longbow_testkit.servers import LocalServer, start_seaweedfs
from longbow_testkit.tls import ServerCertificate, certificate_authority

MiB = 1024 * 1024
GiB = 1024 * MiB
SETS = ("large", "small", "mixed")
RTTS = (0, 50, 150, 250)
TOOLS = ("longbow", "rclone-default", "rclone-best")
# Each set's scale at each round trip (run.py's --scale: sizes of the large set, counts of the
# others), so that the whole matrix takes about an hour on a 2-core machine.
SCALES = {0: 1.0, 50: 1.0, 150: 1.0, 250: 0.25}
WINDOW = MiB
GRID_FRACTION = 0.25
# rclone on every run: HTTP/1.1 over TLS, as S3 speaks it.
RCLONE_ALWAYS = ["--disable-http2"]
# On every point of the grid: no HEAD after each upload. rclone still checks a single PUT's
# ETag against the MD5 it sent, which is the proof longbow takes too; the HEAD is one more
# round trip per object that only a fresh destination's copy would pay for nothing.
RCLONE_BEST_ALWAYS = ["--s3-no-head"]
# rclone's default --s3-upload-cutoff: smaller objects go in one PUT, so the multipart flags
# (--s3-upload-concurrency, --s3-chunk-size) do not apply to them.
RCLONE_UPLOAD_CUTOFF = 200 * MiB
# The CI-sized case (--quick): one set at one round trip, one round, a 2-point grid.
QUICK_RTT, QUICK_SET, QUICK_SCALE = 50, "small", 0.05


@dataclass(frozen=True)
class GridPoint:
    """One rclone configuration of the grid."""

    transfers: int
    concurrency: int
    chunk: str

    def flags(self) -> list[str]:
        return [
            "--transfers",
            str(self.transfers),
            "--s3-upload-concurrency",
            str(self.concurrency),
            "--s3-chunk-size",
            self.chunk,
            *RCLONE_BEST_ALWAYS,
        ]


GRID = [
    GridPoint(transfers, concurrency, chunk)
    for transfers in (16, 64, 128, 256)
    for concurrency in (4, 16)
    for chunk in ("8M", "64M")
]
QUICK_GRID = [GridPoint(16, 4, "8M"), GridPoint(64, 4, "8M")]


def distinct_points(
    grid: Sequence[GridPoint], objects: Sequence[tuple[str, int]]
) -> list[tuple[GridPoint, list[GridPoint]]]:
    """The grid's points that can behave differently on this set, each with the points that
    cannot differ from it (measured once, under the first of them).

    ``--transfers`` at or above the number of objects all run every object at once; the
    multipart flags do nothing when no object reaches rclone's upload cutoff.
    """
    multipart = any(size >= RCLONE_UPLOAD_CUTOFF for _, size in objects)
    groups: dict[tuple[int, int | None, str | None], list[GridPoint]] = {}
    for point in grid:
        key = (
            min(point.transfers, len(objects)),
            point.concurrency if multipart else None,
            point.chunk if multipart else None,
        )
        groups.setdefault(key, []).append(point)
    return [(members[0], members[1:]) for members in groups.values()]


@dataclass
class Case:
    """One set at one round trip, and what was measured on it besides the rounds."""

    set: str
    rtt_ms: int
    scale: float
    objects: list[tuple[str, int]]
    grid: list[dict[str, Any]] = field(default_factory=list)
    best_flags: list[str] = field(default_factory=list)
    proxy: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.set}@{self.rtt_ms}ms"

    def describe(self, window: int) -> str:
        total = sum(size for _, size in self.objects)
        link = (
            f"{self.rtt_ms} ms round trips, {window / MiB:g} MiB window per connection"
            if self.rtt_ms
            else "no added delay"
        )
        return (
            f"case {self.name}: {len(self.objects)} objects, {total / MiB:,.1f} MiB "
            f"(scale {self.scale:g}), https, {link}"
        )

    def record(self) -> dict[str, Any]:
        return {
            "case": self.name,
            "set": self.set,
            "rtt_ms": self.rtt_ms,
            "scale": self.scale,
            "objects": len(self.objects),
            "bytes": sum(size for _, size in self.objects),
            "grid": self.grid,
            "best_flags": self.best_flags,
            "proxy": self.proxy,
        }


class Bed:
    """The two https endpoints of a case, the far one behind the latency proxy."""

    def __init__(self, src: LocalServer, dst: LocalServer, proxy: ProxyProcess | None) -> None:
        self.src_server, self.dst_server, self.proxy = src, dst, proxy
        assert src.https_endpoint is not None and dst.https_endpoint is not None
        self.src = src.https_endpoint
        far = dst.https_endpoint
        # The far side as the tools see it: through the proxy, same certificate and keys.
        self.dst = dataclasses.replace(far, url=f"https://127.0.0.1:{proxy.port}") if proxy else far
        self.proxy_cpu_s = 0.0
        self.objects_relayed = 0

    def timed(
        self, work: Callable[[], dict[str, float]], objects: int
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Run one tool that copies ``objects``; return its usage and the proxy's CPU seconds
        during the run."""
        before = self.proxy.cpu_seconds() if self.proxy else 0.0
        usage = work()
        if not self.proxy:
            return usage, {}
        spent = self.proxy.cpu_seconds() - before
        self.proxy_cpu_s += spent
        self.objects_relayed += objects
        return usage, {"proxy_cpu_s": spent}

    def check_and_clear(self, digests: dict[str, str], prefix: str) -> None:
        """Read every copy back from the destination (directly, not over the long path), then
        delete them so that the destination's disk holds one run at a time."""
        client = self.dst_server.endpoint.client()
        run.verify(client, "bench-dst", digests, prefix)
        delete_prefix(client, "bench-dst", prefix)


def delete_prefix(client: Any, bucket: str, prefix: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def seed_case(
    name: str,
    objects: list[tuple[str, int]],
    short: list[tuple[str, int]],
    src: LocalServer,
    memory: Path,
) -> dict[str, str]:
    """Load a set into the source's ``bench-src`` (alone there: longbow syncs the bucket) and
    its first objects into ``bench-grid`` for the grid's short runs; return key -> MD5."""
    client = src.endpoint.client()
    for bucket in ("bench-src", "bench-grid"):
        delete_prefix(client, bucket, "")
    digests = run.seed(name, objects, src.endpoint, memory / "data", keep_files=False)
    for key, _ in short:
        client.copy_object(
            Bucket="bench-grid", Key=key, CopySource={"Bucket": "bench-src", "Key": key}
        )
    return digests


def choose_best(
    case: Case,
    bed: Bed,
    grid: Sequence[GridPoint],
    short: list[tuple[str, int]],
    digests: dict[str, str],
) -> list[str]:
    """Run each distinct grid point once on the short set; return the fastest's flags."""
    wanted = {key: digests[key] for key, _ in short}
    fastest: tuple[float, GridPoint] | None = None
    for i, (point, same) in enumerate(distinct_points(grid, case.objects), 1):
        target = f"bench-dst/grid-{i}/"
        rclone = partial(
            run.run_rclone,
            bed.src,
            bed.dst,
            target,
            case.set,
            [],
            flags=point.flags() + RCLONE_ALWAYS,
            bucket="bench-grid",
        )
        usage, extra = bed.timed(rclone, len(short))
        bed.check_and_clear(wanted, target.split("/", 1)[1])
        case.grid.append(
            {
                "flags": point.flags(),
                "same_as": [other.flags() for other in same],
                "objects": len(short),
                "wall_s": round(usage["wall_s"], 3),
                "cpu_s": round(usage["cpu_s"], 2),
                **extra,
            }
        )
        print(f"  grid {' '.join(point.flags())}: {usage['wall_s']:.2f} s", flush=True)
        if fastest is None or usage["wall_s"] < fastest[0]:
            fastest = (usage["wall_s"], point)
    assert fastest is not None
    return fastest[1].flags()


def bench_case(
    case: Case,
    src: LocalServer,
    tls: ServerCertificate,
    digests: dict[str, str],
    short: list[tuple[str, int]],
    work: Path,
    args: argparse.Namespace,
) -> list[Result]:
    """A fresh destination (and proxy) for one case: the grid, then the interleaved rounds."""
    home = work / f"dst-{case.name}"
    results: list[Result] = []
    with start_seaweedfs(home, tls=tls) as dst_server:
        dst_server.endpoint.client().create_bucket(Bucket="bench-dst")
        proxy = None
        if case.rtt_ms:
            assert dst_server.https_endpoint is not None
            with (home / "proxy.log").open("w") as log:
                proxy = start_process(
                    (dst_server.https_endpoint.host, dst_server.https_endpoint.port),
                    delay=case.rtt_ms / 2000,
                    window=args.window,
                    stderr=log,
                )
        try:
            bed = Bed(src, dst_server, proxy)
            case.best_flags = choose_best(case, bed, args.grid, short, digests) + RCLONE_ALWAYS
            print(f"  rclone-best: {' '.join(case.best_flags)}", flush=True)
            for rnd in range(1, args.rounds + 1):
                for tool in TOOLS:  # interleaved: A B C A B C
                    target = f"bench-dst/{tool}-r{rnd}/"
                    db = work / f"{case.name}-{rnd}.db"
                    tool_run = partial(run_tool, tool, bed, case, target, db, args)
                    usage, extra = bed.timed(tool_run, len(case.objects))
                    bed.check_and_clear(digests, target.split("/", 1)[1])
                    results.append(run.report_run(tool, case.name, rnd, case.objects, usage, extra))
        finally:
            if proxy is not None:
                relayed = proxy.stop()
                moved = relayed.bytes_up + relayed.bytes_down
                # Over every run of the case, grid included. Small objects cost the proxy per
                # request and connection more than per byte, hence both figures.
                cpu, count = bed.proxy_cpu_s, bed.objects_relayed
                case.proxy = {
                    "cpu_s": round(cpu, 2),
                    "gib_relayed": round(moved / GiB, 3),
                    "cpu_s_per_gib": round(cpu / (moved / GiB), 3) if moved else 0.0,
                    "objects_relayed": count,
                    "cpu_ms_per_object": round(cpu * 1000 / count, 3) if count else 0.0,
                    "connections": relayed.connections,
                    "reads": relayed.reads,
                }
    shutil.rmtree(home, ignore_errors=True)
    return results


def run_tool(
    tool: str, bed: Bed, case: Case, target: str, db: Path, args: argparse.Namespace
) -> dict[str, float]:
    if tool == "longbow":
        return run.run_longbow(
            bed.src,
            bed.dst,
            target,
            db,
            args.longbow_args,
            objects=len(case.objects),
            copies=len(case.objects),
            path_style=False,
        )
    flags = RCLONE_ALWAYS if tool == "rclone-default" else case.best_flags
    return run.run_rclone(bed.src, bed.dst, target, case.set, [], flags=flags)


def parse_scales(text: str) -> dict[int, float]:
    scales: dict[int, float] = {}
    for item in text.split(","):
        rtt, _, scale = item.partition("=")
        scales[int(rtt)] = float(scale)
    return scales


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Arguments after -- go to longbow sync (the benchmark's point is its defaults)",
    )
    parser.add_argument("--rtts", default=",".join(map(str, RTTS)), help="round trips, ms")
    parser.add_argument("--sets", default=",".join(SETS), help="of large, small, mixed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scales",
        type=parse_scales,
        default=SCALES,
        help="each round trip's scale, e.g. 0=1,50=1,150=1,250=0.25 (run.py's --scale); "
        "round trips not listed run at full scale",
    )
    parser.add_argument(
        "--window",
        type=lambda text: int(float(text.lower().removesuffix("mib")) * MiB),
        default=WINDOW,
        help="bytes in flight per connection and direction on the long path, in MiB "
        f"(default {WINDOW / MiB:g})",
    )
    parser.add_argument(
        "--grid-fraction",
        type=float,
        default=GRID_FRACTION,
        help="share of the set's objects in the grid's short runs",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"one case: {QUICK_SET} at {QUICK_RTT} ms, scale {QUICK_SCALE}, one "
        "round, a 2-point grid",
    )
    parser.add_argument("--json", type=Path, help="write every run, the grid and medians here")
    parser.add_argument("--chart", type=Path, help="draw a PNG of the medians here")
    parser.add_argument("longbow_args", nargs="*", help="extra flags for longbow sync")
    args = parser.parse_args(argv)
    args.grid = GRID
    if args.quick:
        args.rtts, args.sets, args.rounds = str(QUICK_RTT), QUICK_SET, 1
        args.scales = {QUICK_RTT: QUICK_SCALE}
        args.grid = QUICK_GRID
    args.rtts = [int(v) for v in str(args.rtts).split(",") if v.strip()]
    args.sets = [v.strip() for v in str(args.sets).split(",") if v.strip()]
    if unknown := sorted(set(args.sets) - set(SETS)):
        parser.error(f"--sets takes some of {', '.join(SETS)}; got {unknown}")
    if any(rtt < 0 for rtt in args.rtts) or not args.rtts:
        parser.error("--rtts takes round trips >= 0 ms")
    if not all(0 < args.scales.get(rtt, 1.0) <= 1 for rtt in args.rtts):
        parser.error("every scale must be in (0, 1]")
    if args.rounds < 1 or not 0 < args.grid_fraction <= 1 or args.window < 1:
        parser.error("--rounds >= 1, 0 < --grid-fraction <= 1 and --window > 0, please")
    if args.chart:
        import chart  # noqa: F401  (fail before the run when matplotlib is missing)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run.compile_product()
    started = time.monotonic()
    cases: list[Case] = []
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="longbow-reallink-") as tmp,
        tempfile.TemporaryDirectory(prefix="longbow-reallink-", dir=run.memory_dir()) as mem,
    ):
        work = Path(tmp)
        tls = certificate_authority(work / "tls")
        with start_seaweedfs(work / "src", tls=tls) as src:
            client = src.endpoint.client()
            for bucket in ("bench-src", "bench-grid"):
                client.create_bucket(Bucket=bucket)
            for name in args.sets:
                seeded: tuple[float, dict[str, str]] | None = None  # (scale, key -> MD5)
                for rtt in args.rtts:
                    scale = args.scales.get(rtt, 1.0)
                    case = Case(name, rtt, scale, workloads.build(scale)[name])
                    short = case.objects[: max(1, round(len(case.objects) * args.grid_fraction))]
                    if seeded is None or seeded[0] != scale:  # the source holds this scale
                        seeded = (scale, seed_case(name, case.objects, short, src, Path(mem)))
                    print(case.describe(args.window), flush=True)
                    results += bench_case(case, src, tls, seeded[1], short, work, args)
                    cases.append(case)
    meds = medians(results)
    names = [case.name for case in cases]
    table(cases, meds, args.window)
    document = {
        "bed": "reallink",
        "date": time.strftime("%Y-%m-%d"),
        "commit": run.git_commit(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "rounds": args.rounds,
        "window_bytes": args.window,
        "rtts_ms": args.rtts,
        "scales": {str(rtt): args.scales.get(rtt, 1.0) for rtt in args.rtts},
        "grid_fraction": args.grid_fraction,
        "grid": [point.flags() for point in args.grid],
        "rclone_always": RCLONE_ALWAYS,
        "rclone_best_always": RCLONE_BEST_ALWAYS,
        "longbow_args": args.longbow_args,
        "cases": [case.record() for case in cases],
        "results": [asdict(r) for r in results],
        "medians": [{"workload": w, "tool": t, **m} for (w, t), m in meds.items()],
        "ratios": {name: case_ratios(meds, name) for name in names},
    }
    if args.json:
        args.json.write_text(json.dumps(document, indent=2))
    if args.chart:
        import chart

        chart.draw_reallink(document, args.chart)
        print(f"chart written to {args.chart}")
    return 0


def case_ratios(
    meds: dict[tuple[str, str], dict[str, Any]], name: str
) -> dict[str, dict[str, float | None]]:
    """longbow against rclone's best point and against its defaults (speed, CPU, RSS)."""
    ours = meds.get((name, "longbow"))
    out: dict[str, dict[str, float | None]] = {}
    for tool in ("rclone-best", "rclone-default"):
        theirs = meds.get((name, tool))
        if ours and theirs:
            out[f"vs_{tool.replace('-', '_')}"] = versus(ours, theirs)
    return out


def table(cases: list[Case], meds: dict[tuple[str, str], dict[str, Any]], window: int) -> None:
    """Medians (min-max) per case and tool, longbow's ratios, and what the proxy cost."""
    print()
    print(
        f"https on both endpoints; the destination behind the latency proxy ({window / MiB:g} "
        "MiB window per connection) at round trips above 0 ms"
    )
    print(
        f"{'case':13} {'tool':14} {'wall s':>7} {'MB/s':>14} {'obj/s':>16} {'CPU s':>6} "
        f"{'ms/obj':>7} {'CPU s/GiB':>9} {'RSS MiB':>8}"
    )
    for case in cases:
        for tool in TOOLS:
            med = meds.get((case.name, tool))
            if not med:
                continue
            per_gib = med["cpu_s_per_gib"]
            print(
                f"{case.name:13} {tool:14} {med['wall_s']:7.2f} "
                f"{med['mb_per_s']:6.1f} ({med['mb_per_s_min']:.0f}-{med['mb_per_s_max']:.0f}) "
                f"{med['objects_per_s']:8.1f} ({med['objects_per_s_min']:.0f}-"
                f"{med['objects_per_s_max']:.0f}) {med['cpu_s']:6.2f} "
                f"{med['cpu_ms_per_object']:7.2f} "
                f"{'—' if per_gib is None else f'{per_gib:.2f}':>9} {med['peak_rss_mib']:8.1f}"
            )
        for against, found in case_ratios(meds, case.name).items():
            figures = ", ".join(f"{k} {v:.2f}x" for k, v in found.items() if v is not None)
            print(f"{case.name:13} longbow {against}: {figures}")
        print(f"{case.name:13} scale {case.scale:g}; rclone-best: {' '.join(case.best_flags)}")
        if case.proxy:
            proxy = case.proxy
            print(
                f"{case.name:13} proxy: {proxy['cpu_s']:.2f} CPU-s for {proxy['gib_relayed']:.2f} "
                f"GiB and {proxy['objects_relayed']} objects ({proxy['cpu_s_per_gib']:.2f} "
                f"CPU-s/GiB, {proxy['cpu_ms_per_object']:.2f} ms/object), "
                f"{proxy['connections']} connections"
            )


if __name__ == "__main__":
    sys.exit(main())
