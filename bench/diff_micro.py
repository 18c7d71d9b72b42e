"""Micro-benchmark of the pure listing merge: N synthetic keys on each side, streamed.

Both listings are generators, so nothing is held in memory but the current keys; the run
reports keys per second and the process's peak RSS. One key in 100 is missing at the
destination and one in 1,000 differs in size, so every branch of the merge is exercised.

    python bench/diff_micro.py --keys 10000000
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator

from s3longbow.model import ObjectInfo
from s3longbow.plan.diff import Action, diff


def source(n: int) -> Iterator[ObjectInfo]:
    for i in range(n):
        yield ObjectInfo(f"data/{i // 1000:06d}/object-{i:09d}.bin", 1024)


def destination(n: int) -> Iterator[ObjectInfo]:
    for i in range(n):
        if i % 100 == 7:
            continue  # missing at the destination
        yield ObjectInfo(f"data/{i // 1000:06d}/object-{i:09d}.bin", 999 if i % 1000 == 3 else 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000_000)
    args = parser.parse_args()
    # The synthetic listings cost as much as the merge: time them alone first.
    started = time.perf_counter()
    for _ in source(args.keys):
        pass
    for _ in destination(args.keys):
        pass
    generation = time.perf_counter() - started
    started = time.perf_counter()
    counts = dict.fromkeys(Action, 0)
    for decision in diff(source(args.keys), destination(args.keys), src_prefix="", dst_prefix=""):
        counts[decision.action] += 1
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    expected_copy = args.keys // 100 + args.keys // 1000
    assert counts[Action.COPY] == expected_copy, counts
    merge = max(elapsed - generation, 1e-9)
    print(
        f"{args.keys:,} keys per side: {elapsed:.1f}s with the listings, {generation:.1f}s of "
        f"them generating keys; merge alone {args.keys / merge:,.0f} keys/s "
        f"(end to end {args.keys / elapsed:,.0f}); {counts[Action.COPY]:,} to copy; "
        f"peak RSS {peak:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
