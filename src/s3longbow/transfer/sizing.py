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


def range_count(size: int, part_size: int, parts_per_range: int) -> int:
    """How many ranges of at most `parts_per_range` parts an object of `size` bytes is split
    into at `part_size` (at least one)."""
    return -(-part_count(size, part_size) // max(1, parts_per_range))


def range_parts(index: int, count: int, parts: int) -> range:
    """The part numbers (1-based) of range `index` of `count` over `parts` parts: the parts
    are shared out evenly, in order, so the ranges together hold every part once. A range
    holds none when there are fewer parts than ranges (the part size chosen by the worker
    that began the upload can differ from the one the ranges were counted with)."""
    if not 0 <= index < count:
        raise ValueError(f"range {index} of {count} does not exist")
    first = index * parts // count
    return range(first + 1, (index + 1) * parts // count + 1)
