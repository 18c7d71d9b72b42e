"""How many objects are in flight: found while the run goes, not guessed before it.

On a long path (a round trip of 150 ms between continents) a copy waits for its replies far
longer than it works, so many objects must be in flight; on loopback the servers' CPU is the
limit and more objects only queue. The right number depends on the path, the servers and
the objects, and changes during a run. The controller measures the work done in each interval
(requests answered, and bytes moved) and climbs towards the number that pays:

- a slow start doubles the number each interval while the work done grows with it; it
  begins higher on a far path, whose round trip the buckets' checks measured (see
  :meth:`Controller.path`);
- then it probes: a step up is kept only when it does more work, a step down is kept when
  it does as much (the same work with fewer objects in flight costs less);
- a server that asks to slow down (503 SlowDown, 429) cuts the number at once, and probing
  up waits a while;
- the slow start also ends where the replies already queue (their median wait several
  times the quickest reply ever, at every endpoint): on loopback the servers' or this
  process's CPU is then the limit and more objects would only queue, where on a long path
  the waits stay near the round trip while the number doubles;
- the slow start stops doubling at 64 objects per CPU: each object in flight is a thread,
  and past that many the threads' hand-offs of the interpreter lock cost more CPU than they
  bring (a two-core machine at 150 and 250 ms: 256 objects in flight copied small objects no
  sooner than 128, for a fifth more CPU); the probes still climb past it where that pays;
- the ceiling (the user's --workers, the file descriptors, a hard maximum) is never passed,
  nor the memory budget (parts wait for their buffers);
- while most requests wait for their key prefix's turn (a rate cap per prefix, see
  :mod:`s3longbow.ratelimit`), the number does not go up: more objects would only wait.

The logic is pure (no clock, no threads): :class:`Controller.step` takes one interval's
measures and returns the next number; the worker applies it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from s3longbow.config import TransferSettings

try:
    import resource
except ImportError:  # pragma: no cover - not on POSIX
    resource = None  # type: ignore[assignment]

# Where a tuned run starts, in objects in flight. Starting every run at 128 cost a quarter
# more CPU per small object on loopback (a TLS handshake per object in flight) and slowed
# the mixed set at 0 and 50 ms in the real-link matrix.
START = 64
# Where it starts on a path whose round trip is FAR_ROUND_TRIP or more, known from the
# buckets' checks before the first job: the objects in flight a rate needs grow with the
# round trip (Little's law), and at 250 ms the slow start's climb from 64 was most of a
# short run (500 small objects: 0.80x rclone's best from 64, 0.88x from 128; the 250 ms bed
# 3.75-3.9 s against 3.4-3.6 s).
FAR_START = 128
FAR_ROUND_TRIP = 0.1
# The slow start doubles up to this many objects in flight per CPU at most (see above).
OBJECTS_PER_CPU = 64
# Parts in flight per object where the servers are a few milliseconds away (a round trip
# under NEAR_PARTS_ROUND_TRIP: the same network). There the servers' CPU is the limit long
# before the path, and the more uploads a server holds open, the more CPU each byte costs
# it: two SeaweedFS on two cores took 1 GiB in five objects over TLS in 8.1 s with 4 parts
# each in flight and in 8.5 s with 16 each, for 12% less of our CPU and 9% less of the
# servers'; the mixed set was 5% sooner. (One bound shared by all objects did worse on the
# mixed set: the largest objects waited behind the others' parts.) Further away every
# stream counts, each held by its window and a round trip per part: at 50 ms, 3 each took
# 13.4 s against 9.7 s with 16.
NEAR_PART_WINDOW = 4
NEAR_PARTS_ROUND_TRIP = 0.01
# Open files kept for the database, logs, listings and the interpreter's own.
_RESERVED_FILES = 64
# The most parts moving at once, all objects together: each is a thread and two connections.
MOST_PARTS = 256
# Connections a store keeps beyond its objects' and parts' (listings, checks).
_SPARE_CONNECTIONS = 4

# What one request is worth, in bytes moved, when small and large work are added up: a
# request of a small object costs about as much as this many bytes of a large one.
REQUEST_WORTH = 256 * 1024
# A step up is kept when it does this much more work; a step down when it keeps this much.
_GAIN = 1.08
_KEEP = 0.97
# The slow start goes on while doubling brings at least this much more.
_SLOW_START_GAIN = 1.2
# Replies whose median wait is this many times the quickest are queueing: the slow start ends.
_QUEUEING = 3.0
# Seconds between two decisions: shorter while the slow start climbs (a long path is filled
# sooner), longer once settled (a probe's effect stands out of the noise).
_SLOW_START_INTERVAL = 0.5
_SETTLED_INTERVAL = 1.0
# Intervals without probing up after a server asked to slow down.
_COOL_DOWN = 8
# Every so many steady intervals, a probe (up, then the next time down).
_PROBE_EVERY = 3


@dataclass
class Controller:
    """The number of objects in flight, between `floor` and `ceiling`.

    Args:
        ceiling: The most, ever (the user's --workers and the process's limits).
        start: Where it begins.
        floor: The least it goes down to.
        tuned: False keeps `start` (capped by the ceiling) throughout.
        knee: The most the slow start doubles to (None: the ceiling); probes may go past.
    """

    ceiling: int
    start: int = 16
    floor: int = 2
    tuned: bool = True
    knee: int | None = None
    limit: int = field(init=False)
    highest: int = field(init=False)
    _slow_start: bool = field(default=True, init=False)
    _stalled: bool = field(default=False, init=False)  # the slow start's last step did not pay
    _warm: bool = field(default=False, init=False)  # an interval with work has gone by
    _settled: float = field(default=0.0, init=False)  # the work done at the settled limit
    _trial: int | None = field(default=None, init=False)  # the limit before a probe
    _since_probe: int = field(default=0, init=False)
    _probe_up: bool = field(default=True, init=False)
    _cool: int = field(default=0, init=False)
    _previous: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.floor = max(1, min(self.floor, self.ceiling))
        self.limit = max(self.floor, min(self.start, self.ceiling))
        self.highest = self.limit

    def path(self, round_trip: float | None) -> None:
        """The path's round trip, measured before the first job (None: not known). On a far
        path the slow start begins at FAR_START (within the knee and the ceiling)."""
        if not (self.tuned and self._slow_start) or (round_trip or 0.0) < FAR_ROUND_TRIP:
            return
        far = min(FAR_START, self.ceiling, self.knee or self.ceiling)
        self._set(max(self.limit, far))

    @property
    def interval(self) -> float:
        """Seconds until the next step."""
        return _SLOW_START_INTERVAL if self._slow_start and self.tuned else _SETTLED_INTERVAL

    def step(
        self,
        work: float,
        *,
        throttled: int = 0,
        busy: int | None = None,
        capped: bool = False,
        queueing: float = 0.0,
    ) -> int:
        """The limit for the next interval.

        Args:
            work: The work done in the interval just ended, per second (see
                :func:`work_done`).
            throttled: Replies in it that asked to slow down.
            busy: Objects that were in flight at its end; a limit not used (the queue was
                short of jobs) is no evidence of what more would do.
            capped: Most of its requests waited for their prefix's rate: a ceiling for now.
            queueing: How far its replies' waits were above the path's own (see
                meter.Reading.queueing; 0: not known).
        """
        if not self.tuned:
            return self.limit
        used = busy is None or busy >= 0.8 * self.limit
        if throttled:
            self._slow_start = False
            self._trial = None
            self._cool = _COOL_DOWN
            self._set(int(self.limit * 0.7))
            self._settled = 0.0
            self._previous = work
            return self.limit
        if self._cool:
            self._cool -= 1
        if capped:
            # The prefixes' rates hold the work, not the objects in flight: stay, no probe up.
            self._slow_start = False
            self._trial = None
            self._cool = max(self._cool, 1)
            self._previous = work
            return self.limit
        if self._slow_start:
            if not self._warm and work > 0:
                # The first interval with work began part-way through (listing, connecting):
                # measured against it, the next one would look like growth, and the number
                # would double past its knee at once.
                self._warm = True
                return self.limit
            if not used:
                # The queue was short of jobs: no evidence of what more would do.
                self._previous = max(self._previous, work)
                return self.limit
            if queueing >= _QUEUEING:
                # The replies queue already: more objects would wait longer, not do more.
                # Settle here; the probes find out whether a little more pays.
                self._slow_start = False
                self._settled = 0.0
                self._previous = work
                return self.limit
            if self._previous == 0.0 or work >= self._previous * _SLOW_START_GAIN:
                self._previous = work
                self._stalled = False
                top = min(self.ceiling, self.knee or self.ceiling)
                if self.limit < top:
                    self._set(min(self.limit * 2, top))
                else:
                    self._slow_start = False
                    self._settled = 0.0
                return self.limit
            if not self._stalled:
                # Objects started by the last doubling may not have finished yet: one
                # interval that did not grow is a lag, two are the knee.
                self._stalled = True
                return self.limit
            # Doubling stopped paying: the knee is between the last two numbers.
            self._slow_start = False
            self._set(max(self.floor, self.limit * 3 // 4))
            self._settled = 0.0
            self._previous = work
            return self.limit
        self._previous = work
        if self._trial is not None:
            # The interval just ended ran at a probe: keep it only if it paid.
            before, self._trial = self._trial, None
            up = self.limit > before
            if (up and work >= self._settled * _GAIN) or (not up and work >= self._settled * _KEEP):
                self._settled = work
            else:
                self._set(before)
            return self.limit
        # Settled: remember what it does (the mean of recent intervals), and sometimes probe.
        self._settled = work if not self._settled else 0.5 * (self._settled + work)
        self._since_probe += 1
        if self._since_probe >= _PROBE_EVERY and used:
            self._since_probe = 0
            up = self._probe_up and not self._cool and self.limit < self.ceiling
            self._probe_up = not self._probe_up
            target = self.limit + max(1, self.limit // 4) if up else self.limit * 4 // 5
            target = max(self.floor, min(self.ceiling, target))
            if target != self.limit:
                self._trial = self.limit
                self._set(target)
        return self.limit

    def _set(self, value: int) -> None:
        self.limit = max(self.floor, min(self.ceiling, value))
        self.highest = max(self.highest, self.limit)


def files_allowed() -> int:
    """How many files this process may open, after raising its soft limit to the hard one
    (each connection is a file; a run with hundreds of objects in flight needs them)."""
    if resource is None:  # pragma: no cover - not on POSIX
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # the soft limit stays; the ceiling below respects it
    return soft if soft != resource.RLIM_INFINITY else 1 << 16


@dataclass(frozen=True)
class Limits:
    """What a run may hold at once, from its settings and the process's open-file limit.

    Attributes:
        objects: Objects in flight, at most (the controller's ceiling).
        parts: Parts moving at once, all objects together (the part pool's threads).
    """

    objects: int
    parts: int

    @property
    def connections(self) -> int:
        """Connections each store may keep: one per object and part in flight, and spares."""
        return self.objects + self.parts + _SPARE_CONNECTIONS


def limits_for(settings: TransferSettings) -> Limits:
    """The limits of a run. Objects and parts each use a connection to each of the two
    stores, so each may have a quarter of the open files left once some are reserved."""
    room = max(1, (files_allowed() - _RESERVED_FILES) // 4 - _SPARE_CONNECTIONS)
    return Limits(
        objects=min(settings.workers, room),
        parts=min(settings.workers * settings.part_threads, room, MOST_PARTS),
    )


def part_window(settings: TransferSettings, round_trip: float | None) -> int:
    """Parts in flight per object on a path whose round trip the buckets' checks measured:
    --part-threads, or at most NEAR_PART_WINDOW where the servers are on the same network
    (with autotune on: --part-threads is then a ceiling)."""
    near = round_trip is not None and round_trip < NEAR_PARTS_ROUND_TRIP
    if settings.autotune and near:
        return min(settings.part_threads, NEAR_PART_WINDOW)
    return settings.part_threads


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def controller_for(settings: TransferSettings, limits: Limits | None = None) -> Controller:
    """The controller of a run: up to `settings.workers` objects in flight (fewer when the
    process may not open the files they need), tuned unless `settings.autotune` is off."""
    ceiling = (limits or limits_for(settings)).objects
    start = min(START, ceiling) if settings.autotune else ceiling
    knee = max(start, OBJECTS_PER_CPU * cpus())
    return Controller(ceiling=ceiling, start=start, tuned=settings.autotune, knee=knee)


def work_done(requests: int, bytes_moved: int) -> float:
    """One interval's work: requests answered and bytes moved, in one measure."""
    return requests + bytes_moved / REQUEST_WORTH


__all__ = [
    "FAR_ROUND_TRIP",
    "FAR_START",
    "MOST_PARTS",
    "NEAR_PARTS_ROUND_TRIP",
    "NEAR_PART_WINDOW",
    "OBJECTS_PER_CPU",
    "REQUEST_WORTH",
    "START",
    "Controller",
    "Limits",
    "controller_for",
    "cpus",
    "files_allowed",
    "limits_for",
    "part_window",
    "work_done",
]
