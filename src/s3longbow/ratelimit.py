"""Requests per second per key prefix, and a prefix that asked to slow down kept slower.

S3 serves about 3,500 writes (PUT, POST, DELETE, COPY) and 5,500 reads (GET, HEAD) per second
per partitioned prefix of a bucket, and answers 503 SlowDown beyond what a prefix's partitions
take at the moment (a new bucket, or a prefix that suddenly gets busy, starts with fewer).
Retrying such a request blindly keeps the prefix throttled while other prefixes could go on.
:class:`PrefixRates` keeps one rate per prefix (the first N folders or characters of a key
under the pair's root): each request waits for its prefix's next slot; a SlowDown halves the
prefix's rate (from what the server really took from it, not from its cap), and the rate
climbs back by a small step each second without one, as TCP's window does. What the server
took is what the prefix sent in the last second less what was refused: after a burst, the
refusals that follow the first one lower the rate further, to half of what got through.

One :class:`PrefixRates` serves one store (one side): the source's reads, the destination's
writes. The caps are per process: cluster workers each keep their own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from s3longbow.errors import ConfigError

# AWS's documented request rates per partitioned prefix.
READS_PER_PREFIX = 5500
WRITES_PER_PREFIX = 3500
# A slowed prefix never goes below this many requests per second.
_FLOOR = 1.0
# Each second without a SlowDown, a slowed prefix's rate grows by this factor (a slowed
# prefix probes gently: from half its rate back to it in about 7 s, from the floor to 3,500 in
# about a minute and a half, as S3 adds partitions over minutes, not seconds).
_RECOVERY = 1.1
# Replies to requests sent before a cut say nothing new: one cut per this many seconds.
_CUT_GUARD = 0.5
# A prefix idle for a while may send this many seconds' worth of requests at once.
_BURST = 0.1
# Prefixes remembered, at most (a bucket of 10^8 keys has as many prefixes at depth "chars:N"
# as it likes); the least recently used is forgotten, which only resets it to its cap.
_MOST_PREFIXES = 65_536

PrefixUnit = Literal["segments", "chars"]


@dataclass(frozen=True)
class PrefixDepth:
    """How much of a key (under the pair's root) names its prefix.

    `segments:N` is the first N folders (a key with fewer folders is in its own folder's
    prefix); `chars:N` is the first N characters.
    """

    unit: PrefixUnit = "segments"
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> PrefixDepth:
        unit, _, count = text.strip().partition(":")
        if unit not in ("segments", "chars") or not count.isdigit() or int(count) < 1:
            raise ConfigError(
                f"rate-prefix {text!r} is not a prefix depth",
                hint="give segments:N (the first N folders of each key, e.g. segments:1) or "
                "chars:N (the first N characters, e.g. chars:4)",
            )
        return cls("segments" if unit == "segments" else "chars", int(count))

    def __str__(self) -> str:
        return f"{self.unit}:{self.count}"

    def cut(self, rest: str) -> str:
        """The prefix part of a key's `rest` (the key after its pair's root)."""
        if self.unit == "chars":
            return rest[: self.count]
        end = 0
        for _ in range(self.count):
            slash = rest.find("/", end)
            if slash < 0:
                break
            end = slash + 1
        return rest[:end]


class _Prefix:
    """One prefix's schedule: the time its next request may go, and its rate."""

    __slots__ = (
        "cap",
        "rate",
        "next",
        "cut_at",
        "grown",
        "window",
        "count",
        "previous",
        "refused",
        "refused_before",
    )

    def __init__(self, cap: float, now: float) -> None:
        self.cap = cap
        self.rate = cap
        self.next = now
        self.cut_at = -1e18  # when its rate was last cut
        self.grown = now  # when it last climbed towards its cap
        self.window = now  # the start of the second being counted
        self.count = 0  # requests in that second
        self.previous = 0  # requests in the second before it
        self.refused = 0  # requests refused in the second being counted
        self.refused_before = 0  # and in the second before it


class PrefixRates:
    """The request rate of each prefix of one store, shared by every thread (thread-safe).

    Args:
        reads: Reads per second per prefix at most (0: no cap).
        writes: Writes per second per prefix at most (0: no cap).
        depth: What names a key's prefix.
        roots: The pairs' roots in this store (a key's prefix is taken after the longest root
            it starts with).
        clock, sleep: Time, replaceable in unit tests.
    """

    def __init__(
        self,
        *,
        reads: float = READS_PER_PREFIX,
        writes: float = WRITES_PER_PREFIX,
        depth: PrefixDepth | None = None,
        roots: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._caps = {False: float(reads), True: float(writes)}
        self.depth = depth or PrefixDepth()
        self._roots = sorted(set(roots), key=len, reverse=True)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._prefixes: OrderedDict[tuple[bool, str], _Prefix] = OrderedDict()
        self.waits = 0  # requests that waited for their prefix's slot
        self.cuts = 0  # times a prefix's rate was cut

    def add_root(self, root: str) -> None:
        """Another pair's root in this store."""
        with self._lock:
            self._roots = sorted({*self._roots, root}, key=len, reverse=True)

    def prefix(self, key: str) -> str:
        """The prefix a key's requests count against."""
        for root in self._roots:
            if key.startswith(root):
                return root + self.depth.cut(key[len(root) :])
        return self.depth.cut(key)

    def wait(self, key: str, *, write: bool) -> float:
        """Take the next slot of the key's prefix, sleeping until it comes; return the seconds
        slept (0 when the prefix is under its rate)."""
        delay = self.reserve(key, write=write)
        if delay > 0:
            self._sleep(delay)
        return delay

    def reserve(self, key: str, *, write: bool) -> float:
        """Take the next slot of the key's prefix without sleeping; return the seconds until
        it comes (the caller waits them before its request)."""
        cap = self._caps[write]
        if cap <= 0:
            return 0.0
        name = self.prefix(key)
        with self._lock:
            now = self._clock()
            state = self._state(write, name, cap, now)
            self._count(state, now)
            self._recover(state, now)
            interval = 1.0 / state.rate
            # A prefix idle for a while may send a small burst, not a second's worth at once.
            start = max(state.next, now - _BURST)
            state.next = start + interval
            delay = start - now
            if delay > 0:
                self.waits += 1
        return max(0.0, delay)

    def slow_down(self, key: str, *, write: bool) -> bool:
        """The server asked this key's prefix to slow down: halve its rate, once per guard
        interval (replies to requests already sent do not halve it again, but each lowers it
        to half of what the server took). True when it was cut."""
        cap = self._caps[write]
        if cap <= 0:
            return False
        name = self.prefix(key)
        with self._lock:
            now = self._clock()
            state = self._state(write, name, cap, now)
            self._tick(state, now)
            state.refused += 1
            # Half of what got through: halving an unreached cap would change nothing, and
            # a burst's refused requests are not a rate the server took.
            took = max(0.0, self._carried(state, now) - self._refusals(state, now))
            target = max(_FLOOR, took / 2)
            if now - state.cut_at < _CUT_GUARD:
                state.rate = min(state.rate, target)
                state.next = max(state.next, now + 1.0 / state.rate)
                return False
            state.rate = max(_FLOOR, min(state.rate / 2, target))
            state.cut_at = state.grown = now
            state.next = max(state.next, now + 1.0 / state.rate)
            self.cuts += 1
            return True

    def rate(self, key: str, *, write: bool) -> float:
        """The rate a key's prefix may use now (its cap when it was never slowed)."""
        cap = self._caps[write]
        with self._lock:
            state = self._prefixes.get((write, self.prefix(key)))
            if state is None:
                return cap
            self._recover(state, self._clock())
            return state.rate

    def _state(self, write: bool, name: str, cap: float, now: float) -> _Prefix:
        key = (write, name)
        state = self._prefixes.get(key)
        if state is None:
            state = self._prefixes[key] = _Prefix(cap, now)
            if len(self._prefixes) > _MOST_PREFIXES:
                self._prefixes.popitem(last=False)
        else:
            self._prefixes.move_to_end(key)
        return state

    @classmethod
    def _count(cls, state: _Prefix, now: float) -> None:
        """Count the prefix's requests, second by second."""
        cls._tick(state, now)
        state.count += 1

    @staticmethod
    def _tick(state: _Prefix, now: float) -> None:
        """Start a new second of counting when the last one is over."""
        if now - state.window >= 1.0:
            recent = now - state.window < 2.0
            state.previous = state.count if recent else 0
            state.refused_before = state.refused if recent else 0
            state.window, state.count, state.refused = now, 0, 0

    @staticmethod
    def _last_second(now: float, window: float, count: int, before: int) -> float:
        """About how many of something in the last second, from the counts of the second
        being counted and the one before it."""
        elapsed = now - window
        if elapsed >= 2.0:
            return 0.0
        if elapsed >= 1.0:
            return count * max(0.0, 2.0 - elapsed)
        return count + before * (1.0 - elapsed)

    @classmethod
    def _carried(cls, state: _Prefix, now: float) -> float:
        """About how many requests the prefix sent in the last second."""
        return cls._last_second(now, state.window, state.count, state.previous)

    @classmethod
    def _refusals(cls, state: _Prefix, now: float) -> float:
        """About how many of them were refused."""
        return cls._last_second(now, state.window, state.refused, state.refused_before)

    @staticmethod
    def _recover(state: _Prefix, now: float) -> None:
        """A slowed prefix climbs back towards its cap, a second after its last cut."""
        if state.rate < state.cap:
            start = max(state.cut_at + 1.0, state.grown)
            if now > start:
                state.rate = min(state.cap, state.rate * _RECOVERY ** (now - start))
                state.grown = now


__all__ = [
    "READS_PER_PREFIX",
    "WRITES_PER_PREFIX",
    "PrefixDepth",
    "PrefixRates",
]
