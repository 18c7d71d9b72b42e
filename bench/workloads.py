"""The benchmark's data sets, scaled for smoke runs, and how they are written to local files.

A workload is a list of (key, size). ``scale`` shrinks each set in the way that keeps its
character: the large set's object sizes, the small, mixed and planning sets' object counts.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from pathlib import Path

MiB = 1024 * 1024
NAMES = ("large", "small", "mixed", "planning")
# The planning set is the one workload where nothing is copied: it times listing and diffing.
NOTHING_TO_COPY = frozenset({"planning"})


def _count(full: int, scale: float, least: int) -> int:
    return max(least, round(full * scale))


def large(scale: float = 1.0) -> list[tuple[str, int]]:
    """One 1 GiB object and four of 256 MiB (sizes scaled, at least 1 MiB)."""
    big, quarter = (max(MiB, int(size * scale)) for size in (1024 * MiB, 256 * MiB))
    return [("large/one-gib.bin", big)] + [(f"large/quarter-{i}.bin", quarter) for i in range(4)]


def small(scale: float = 1.0) -> list[tuple[str, int]]:
    """2,000 objects of 64 KiB (count scaled)."""
    return [(f"small/{i:05d}.bin", 64 * 1024) for i in range(_count(2000, scale, 20))]


def mixed(scale: float = 1.0, seed: int = 20261126) -> list[tuple[str, int]]:
    """100 objects, sizes log-uniform from 1 KiB to 64 MiB with a fixed seed (count scaled).

    The first objects of the sequence are the same at every scale, so a smaller set is a
    prefix of the full one.
    """
    rnd = random.Random(seed)
    low, high = math.log(1024), math.log(64 * MiB)
    count = _count(100, scale, 10)
    return [(f"mixed/{i:04d}.bin", int(math.exp(rnd.uniform(low, high)))) for i in range(count)]


def planning(scale: float = 1.0) -> list[tuple[str, int]]:
    """100,000 zero-byte keys in folders of 1,000 (count scaled), seeded on both sides."""
    count = _count(100_000, scale, 100)
    return [(f"planning/{i // 1000:03d}/{i:06d}.bin", 0) for i in range(count)]


def build(scale: float = 1.0) -> dict[str, list[tuple[str, int]]]:
    """Every workload at ``scale`` (1.0 is the full benchmark)."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    return {
        "large": large(scale),
        "small": small(scale),
        "mixed": mixed(scale),
        "planning": planning(scale),
    }


def write_files(root: Path, objects: list[tuple[str, int]]) -> dict[str, str]:
    """Write each object as ``root/key`` with random bytes; return key -> MD5 hex."""
    digests: dict[str, str] = {}
    chunk = 64 * MiB
    for key, size in objects:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5()
        with path.open("wb") as out:
            left = size
            while left:
                block = os.urandom(min(chunk, left))
                digest.update(block)
                out.write(block)
                left -= len(block)
        digests[key] = digest.hexdigest()
    return digests
