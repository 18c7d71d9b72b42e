"""Long chaos runs: kill Longbow processes at random moments while a mixed data set is copied.

Starts its own servers on 127.0.0.1 in a temporary folder (two SeaweedFS endpoints, and a moto
server for the cluster's queue and job table), seeds the source, then runs
`longbow_testkit.chaos` in the chosen mode(s) and prints the figures. Exits 1 when anything
was lost, corrupt, left unfinished or failed; 0 otherwise.

    python scripts/chaos.py --mode both --kills 20 --seconds 900 --seed 1
    python scripts/chaos.py --mode single --kills 20 --fault-rate 0.02   # kills plus faults
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from longbow_testkit.chaos import (
    ChaosReport,
    Location,
    MiB,
    mixed_dataset,
    run_cluster,
    run_single,
    seed_source,
)
from longbow_testkit.faultproxy import Faults
from longbow_testkit.servers import start_moto, start_seaweedfs


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["single", "cluster", "both"], default="both")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per mode [20]")
    parser.add_argument(
        "--seconds", type=float, default=900, help="time for the kills, per mode [900]"
    )
    parser.add_argument("--seed", type=int, default=1, help="data, kill moments and faults [1]")
    parser.add_argument("--objects", type=int, default=400, help="small and medium objects")
    parser.add_argument("--large", type=int, default=4, help="multipart objects [4]")
    parser.add_argument("--large-mib", type=int, default=40, help="largest object, MiB [40]")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="every fault kind at this rate between Longbow and the destination [0]",
    )
    parser.add_argument("--workers", type=int, default=3, help="cluster worker processes [3]")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)
    if args.kills < 0 or args.seconds <= 0 or args.objects < 0 or args.large < 0:
        parser.error("--kills, --objects and --large must be >= 0 and --seconds > 0")
    if not 0.0 <= args.fault_rate <= 0.5:
        parser.error("--fault-rate must be between 0 and 0.5")
    if args.large_mib < 6:
        parser.error("--large-mib must be at least 6 (above the multipart threshold)")
    return args


def faults_at(rate: float, seed: int) -> Faults | None:
    if rate == 0:
        return None
    return Faults(
        reset_mid_body=rate,
        stall=rate,
        stall_seconds=1.0,
        slow_down=rate,
        internal_error=rate,
        flip_response_byte=rate,
        flip_request_byte=rate,
        data_only=True,
        seed=seed,
    )


def isolate_from_local_aws_setup() -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def healthy(report: ChaosReport) -> bool:
    return (
        not report.missing
        and not report.corrupt
        and not report.unexpected
        and report.jobs_not_final == 0
        and not report.failed
        and set(report.exit_codes) <= {0}
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    isolate_from_local_aws_setup()
    modes = ["single", "cluster"] if args.mode == "both" else [args.mode]
    sizes = mixed_dataset(
        args.objects, seed=args.seed, large=args.large, large_max=args.large_mib * MiB
    )
    faults = faults_at(args.fault_rate, args.seed)
    attempts = 10 if faults else 3  # every attempt can meet a fault
    reports: list[ChaosReport] = []
    with tempfile.TemporaryDirectory(prefix="longbow-chaos-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        print(f"starting servers under {work} ...", file=sys.stderr, flush=True)
        src_server = stack.enter_context(start_seaweedfs(work / "src"))
        dst_server = stack.enter_context(start_seaweedfs(work / "dst"))
        src_server.endpoint.client().create_bucket(Bucket="chaos-src")
        dst_server.endpoint.client().create_bucket(Bucket="chaos-dst")
        src = Location(src_server.endpoint, "chaos-src", "data/")
        total = seed_source(src, sizes, seed=args.seed)
        print(f"seeded {len(sizes)} objects, {total / MiB:.1f} MiB", file=sys.stderr, flush=True)
        for mode in modes:
            dst = Location(dst_server.endpoint, "chaos-dst", f"{mode}/")
            workdir = work / mode
            workdir.mkdir()
            print(f"{mode}: {args.kills} kills ...", file=sys.stderr, flush=True)
            if mode == "single":
                report = run_single(
                    src,
                    dst,
                    sizes,
                    kills=args.kills,
                    seconds=args.seconds,
                    seed=args.seed,
                    workdir=workdir,
                    faults=faults,
                    max_attempts=attempts,
                )
            else:
                moto = stack.enter_context(start_moto())
                report = run_cluster(
                    src,
                    dst,
                    sizes,
                    moto.endpoint,
                    kills=args.kills,
                    seconds=args.seconds,
                    seed=args.seed,
                    workdir=workdir,
                    workers=args.workers,
                    faults=faults,
                    max_attempts=attempts,
                )
            reports.append(report)
            if not args.json:
                print(report.text(), flush=True)
                if not healthy(report):
                    print("problems:", report.missing, report.corrupt, report.failed[:20])
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    return 0 if all(healthy(r) for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
