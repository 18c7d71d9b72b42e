"""Cutting a key space: strings between two keys, and real keys found by probing a sorted
list of keys (a listing's StartAfter, MaxKeys=2) that cut a range in even parts."""

from __future__ import annotations

import bisect
import random

import pytest

from s3longbow.plan.keyspace import MAX_PROBES, find_boundary, gap, midpoint, shared_length


class SortedKeys:
    """A fake listing: the keys of a prefix in byte order, probed as ListObjectsV2 would be."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = sorted(keys)
        self.probes = 0

    def probe(self, after: str, count: int) -> list[str]:
        self.probes += 1
        start = bisect.bisect_right(self.keys, after)
        return self.keys[start : start + count]


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("", None),
        ("a", None),
        ("a", "b"),
        ("a", "a\x00x"),
        ("app-001000.log", None),
        ("f/0999", "f/2399"),
        ("\x7f", None),
        ("\U0010ffff", None),
        ("\ud7ff", "\ue000x"),
        ("z/中文", "z/日本"),
    ],
)
def test_a_midpoint_lies_strictly_between_and_encodes(low: str, high: str | None) -> None:
    middle = midpoint(low, high)
    assert middle is not None
    assert low < middle
    assert high is None or middle < high
    assert _encodable(middle)


def test_random_midpoints_lie_strictly_between() -> None:
    rng = random.Random(7)
    alphabet = "/-._0123456789abcxyz\x00\x7f\u00e9\u4e2d\U0001f600"
    for _ in range(2000):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        low, high = min(a, b), max(a, b)
        middle = midpoint(low, high)
        if middle is None:
            # Nothing lies between: equal, or `high` is `low` and the lowest character.
            assert high in (low, low + "\x00")
            continue
        assert low < middle < high, (low, high, middle)
        assert _encodable(middle)
        open_ended = midpoint(low, None)
        assert open_ended is not None and low < open_ended


def test_no_midpoint_between_a_key_and_the_next_string() -> None:
    assert midpoint("abc", "abc\x00") is None
    assert midpoint("abc", "abc") is None
    assert midpoint("b", "a") is None


def test_keys_in_one_folder_are_cut_in_the_middle_in_a_few_probes() -> None:
    listing = SortedKeys([f"logs/app-{n:06d}.log" for n in range(100_000)])
    boundary, upper = find_boundary(listing.probe, "logs/app-000999.log", None, None)
    assert boundary is not None
    number = int(boundary[len("logs/app-") : -len(".log")])
    # The cut falls near the middle of what is left (keys 1,000 to 99,999).
    assert 30_000 <= number <= 70_000, boundary
    assert listing.probes <= 30
    assert upper is not None and upper > listing.keys[-1]  # nothing was found above it


def test_a_range_with_an_end_is_cut_inside_it() -> None:
    listing = SortedKeys([f"{n:05d}" for n in range(10_000)])
    boundary, _ = find_boundary(listing.probe, "02000", "04000", None)
    assert boundary is not None and "02000" < boundary < "04000"


def test_a_range_of_one_key_is_not_cut() -> None:
    listing = SortedKeys(["a", "b", "c"])
    boundary, _ = find_boundary(listing.probe, "b", "c", None)
    assert boundary is None
    assert listing.probes <= MAX_PROBES


def test_no_keys_past_the_position_is_found_within_the_probe_budget() -> None:
    listing = SortedKeys(["a"])
    boundary, upper = find_boundary(listing.probe, "a", None, None)
    assert boundary is None and upper is not None
    assert listing.probes <= MAX_PROBES


def test_skewed_keys_are_still_cut_between_two_real_keys() -> None:
    # Most keys sit right after the position: the first cut is uneven, but real.
    keys = [f"a{n:05d}" for n in range(5000)] + ["zz1", "zz2", "zz3"]
    listing = SortedKeys(keys)
    boundary, _ = find_boundary(listing.probe, "a00010", None, None)
    assert boundary in listing.keys
    assert boundary is not None and boundary > "a00010"


def test_the_widest_gap_ranks_first() -> None:
    keys = ["f/00000", "f/10000", "f/50000", "f/90000"]
    start = shared_length(keys)
    assert start == 2
    assert gap("f/50000", "f/90000", start) > gap("f/00000", "f/10000", start)
    assert gap("f/50000", None, start) > gap("f/50000", "f/90000", start)
    assert gap("f/9", "f/1", start) == 0
