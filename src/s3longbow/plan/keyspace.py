"""The key space of a prefix as a line to cut: strings between two keys, the boundaries a
listing probe finds there, and how wide a range is. Pure: the probe is a function handed in.

Keys are compared as S3 lists them, in UTF-8 byte order, which for valid text is the order of
code points, so Python's own string order. A range is written (after, until]: the keys
greater than `after` (every key when None) and at most `until` (no limit when None), so a
listing of it is a ListObjectsV2 with `start-after`, read until a key passes `until`.
"""

from __future__ import annotations

from collections.abc import Callable

# A probe: up to `count` keys (suffixes after the pair's prefix) greater than `after`.
Probe = Callable[[str, int], list[str]]

_MAX_CODE = 0x110000
_TOP = chr(_MAX_CODE - 1)  # the highest character: a prefix followed by it ends its keys
_SURROGATES = range(0xD800, 0xE000)
# Probes one split may spend before it gives up: each halves the space searched.
MAX_PROBES = 48
# Characters compared when ranges' widths are ranked, after those all of them share.
_DIGITS = 8
_BASE = _MAX_CODE + 1  # a digit is a code point + 1; 0 stands for "the string ended"


def _ceiling(code: int) -> int:
    """The end of the UTF-8 length class above `code` (-1: no character), at least two past
    it. Bisecting toward the end of the whole space would spend a probe on each empty half
    above the keys most stores hold (ASCII), so the open end is approached class by class."""
    for top in (0x80, 0x800, 0x10000):
        if code + 1 < top:
            return top
    return _MAX_CODE


def _between(low: int, high: int) -> int | None:
    """A code point strictly between `low` (-1: none) and `high` that UTF-8 can encode."""
    if high - low < 2:
        return None
    middle = (low + high) // 2
    if middle in _SURROGATES:
        if low < _SURROGATES.start - 1:
            return _SURROGATES.start - 1
        if _SURROGATES.stop < high:
            return _SURROGATES.stop
        return None
    return middle


def midpoint(low: str, high: str | None) -> str | None:
    """A short string strictly between `low` and `high` (None: the end of the key space), or
    None when no string lies between them (`high` is `low` + "\\x00", or not above it)."""
    if high is not None and high <= low:
        return None
    i = 0
    while True:
        a = ord(low[i]) if i < len(low) else -1
        # `high` > `low` and both agree up to i, so `high` still has a character here.
        b = _MAX_CODE if high is None else ord(high[i])
        if a == b:
            i += 1
            continue
        # Approach a far end class by class (see `_ceiling`): still below `high`.
        b = min(b, _ceiling(a))
        between = _between(a, b)
        if between is not None:
            return low[:i] + chr(between)
        if a < 0:
            # `low` ended and `high` holds the lowest character here: `low` + that
            # character lies between only when `high` goes on after it.
            candidate = low[:i] + chr(b)
            return candidate if high is not None and candidate < high else None
        # No character fits between: keep `low`'s (the next one is `high`'s, or the top of
        # the code space), and anything above the rest of `low` is still below `high`.
        rest = midpoint(low[i + 1 :], None)
        return None if rest is None else low[: i + 1] + rest


def _few_above(probe: Probe, bound: str, until: str | None) -> bool:
    """Whether fewer than two keys of the range lie above `bound`."""
    return len([key for key in probe(bound, 2) if until is None or key <= until]) < 2


def _shared_upper(
    probe: Probe, position: str, until: str | None, budget: int
) -> tuple[str | None, int]:
    """An upper end for the keys after `position`: `position`'s longest prefix that the keys
    above it share, followed by the highest character, found by binary search on the
    prefix's length. Bisecting one character at a time would spend a few probes on each
    character of a long shared prefix ("logs/2024/app-..."). Returns (upper, probes left)."""
    low, high = 0, len(position) + 1  # the answer k holds at `low`, never at `high`
    found: str | None = None
    while high - low > 1 and budget > 0:
        k = (low + high) // 2
        bound = position[:k] + _TOP
        budget -= 1
        if _few_above(probe, bound, until):
            low, found = k, bound
        else:
            high = k
    return found, budget


def find_boundary(
    probe: Probe, position: str, until: str | None, upper: str | None
) -> tuple[str | None, str | None]:
    """A real key that cuts (position, until] in two parts that each hold a key.

    First the prefix the keys after `position` share is found (see `_shared_upper`); then
    bisection: a probe at the midpoint between `position` and `upper` (the highest the keys
    are thought to go; None: unknown) that finds two keys within the range cuts at the first;
    one that finds fewer shows that the range's keys sit below the midpoint, which becomes the
    new upper end.

    Returns:
        (boundary, upper): the boundary (None when none was found within MAX_PROBES probes)
        and the highest the range's keys are now known to go (None: unknown).
    """
    if until is not None and (upper is None or upper > until):
        upper = until
    shared, budget = _shared_upper(probe, position, until, MAX_PROBES)
    if shared is not None and (upper is None or shared < upper):
        upper = shared
    for _ in range(budget):
        middle = midpoint(position, upper)
        if middle is None:
            return None, upper
        found = [key for key in probe(middle, 2) if until is None or key <= until]
        if len(found) >= 2 and found[0] > position:
            return found[0], upper
        upper = middle
    return None, upper


def _value(key: str | None, start: int) -> int:
    """`key`'s digits from `start` as one number (None: the end of the key space)."""
    if key is None:
        return int(_BASE**_DIGITS)
    value = 0
    for j in range(start, start + _DIGITS):
        value = value * _BASE + (ord(key[j]) + 1 if j < len(key) else 0)
    return value


def shared_length(keys: list[str]) -> int:
    """How many leading characters all `keys` share."""
    if not keys:
        return 0
    low, high = min(keys), max(keys)
    n = 0
    for x, y in zip(low, high, strict=False):
        if x != y:
            break
        n += 1
    return n


def gap(low: str, high: str | None, start: int) -> int:
    """The width of the key space between `low` and `high` (None: its end), measured on the
    characters from `start` (where the keys compared begin to differ) as digits of one
    number. The same measure as `midpoint`'s, so the widest range is the one whose midpoint
    is furthest from its ends; keys spread unevenly, so it only ranks ranges."""
    return max(0, _value(high, start) - _value(low, start))


__all__ = ["MAX_PROBES", "Probe", "find_boundary", "gap", "midpoint", "shared_length"]
