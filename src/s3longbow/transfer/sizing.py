"""Part sizing: deterministic from (object size, configured part size), within S3's limits."""

from __future__ import annotations

from s3longbow.config import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, MiB


def part_size_for(size: int, configured: int) -> int:
    """The part size for an object: the configured one, grown (in whole MiB) only as much as
    needed to keep the object within 10,000 parts."""
    part = max(configured, MIN_PART_SIZE)
    if size > part * MAX_PARTS:
        needed = -(-size // MAX_PARTS)
        part = -(-needed // MiB) * MiB
    if part > MAX_PART_SIZE:
        raise ValueError(f"an object of {size} bytes is larger than S3's 5 TiB limit")
    return part


def part_count(size: int, part_size: int) -> int:
    """How many parts an object of `size` bytes has at `part_size` (at least one)."""
    return max(1, -(-size // part_size))


def part_range(number: int, size: int, part_size: int) -> tuple[int, int]:
    """(offset, length) of part `number` (1-based)."""
    start = (number - 1) * part_size
    return start, min(part_size, size - start)
