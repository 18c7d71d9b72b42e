"""Micro-benchmark of the pure listing merge: N synthetic keys on each side, streamed.

Both listings are made in chunks of 100,000 objects as the merge consumes them, so memory
holds two chunks, never the listings; the time spent making the chunks is measured apart and
left out of the merge's. The run reports keys per second (per side) by wall time and by CPU
time (the steadier one on a shared machine) and the process's peak RSS. One key in 100 is
missing at the destination and one in 1,000 differs in size, so every branch of the merge is
exercised.

    python bench/diff_micro.py --keys 10000000
    python bench/diff_micro.py --keys 1000000 --json merge.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from s3longbow.model import ObjectInfo
from s3longbow.plan.diff import Action, diff

CHUNK = 100_000


def _key(i: int) -> str:
    return f"data/{i // 1000:06d}/object-{i:09d}.bin"


def source_chunk(start: int, stop: int) -> list[ObjectInfo]:
    return [ObjectInfo(_key(i), 1024) for i in range(start, stop)]


def destination_chunk(start: int, stop: int) -> list[ObjectInfo]:
    # One key in 100 is missing at the destination, one in 1,000 differs in size.
    return [
        ObjectInfo(_key(i), 999 if i % 1000 == 3 else 1024)
        for i in range(start, stop)
        if i % 100 != 7
    ]


def chunked(
    keys: int, make: Callable[[int, int], list[ObjectInfo]], making: list[float]
) -> Iterator[ObjectInfo]:
    """The listing of `keys` objects, made `CHUNK` at a time; the wall and CPU seconds spent
    making them are added to ``making[0]`` and ``making[1]``."""
    for start in range(0, keys, CHUNK):
        began, began_cpu = time.perf_counter(), time.process_time()
        chunk = make(start, min(keys, start + CHUNK))
        making[0] += time.perf_counter() - began
        making[1] += time.process_time() - began_cpu
        yield from chunk


def peak_rss_mib() -> float:
    """The process's peak resident set so far (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(keys: int) -> dict[str, float | int]:
    """Merge two listings of `keys` synthetic keys; returns what the run measured."""
    making = [0.0, 0.0]
    counts = dict.fromkeys(Action, 0)
    started = time.perf_counter()
    cpu_started = time.process_time()
    merged = diff(
        chunked(keys, source_chunk, making),
        chunked(keys, destination_chunk, making),
        src_prefix="",
        dst_prefix="",
    )
    for decision in merged:
        counts[decision.action] += 1
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    expected_copy = keys // 100 + keys // 1000
    if counts[Action.COPY] != expected_copy or sum(counts.values()) != keys:
        raise AssertionError(f"the merge of {keys} keys decided {counts}")
    merge = max(elapsed - making[0], 1e-9)
    merge_cpu = max(cpu - making[1], 1e-9)
    return {
        "keys": keys,
        "wall_s": round(elapsed, 3),
        "cpu_s": round(cpu, 3),
        "making_listings_s": round(making[0], 3),
        "making_listings_cpu_s": round(making[1], 3),
        "merge_s": round(merge, 3),
        "merge_cpu_s": round(merge_cpu, 3),
        "merge_keys_per_s": round(keys / merge),
        "merge_keys_per_cpu_s": round(keys / merge_cpu),
        "to_copy": counts[Action.COPY],
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000_000)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    result = measure(args.keys)
    print(
        f"{args.keys:,} keys per side: {result['wall_s']:.1f}s in all, "
        f"{result['making_listings_s']:.1f}s of it making the listings; merge alone "
        f"{result['merge_keys_per_s']:,} keys/s ({result['merge_keys_per_cpu_s']:,} per CPU "
        f"second); {result['to_copy']:,} to copy; "
        f"peak RSS {result['peak_rss_mib']:.0f} MiB"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
