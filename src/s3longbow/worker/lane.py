"""The worker's lane for small objects: jobs that fit (see :mod:`s3longbow.transfer.lane`)
run on one thread's non-blocking loop instead of a job thread each.

A job given to the lane stays the worker's: it is held (its lease beaten) until its outcome
is recorded. The lane records nothing itself: a finished copy goes to the worker's recorder
thread, a job it hands back to the job threads, which run it as any other. So the loop never
waits for the job table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from s3longbow.errors import LongbowError
from s3longbow.model import Job, JobResult
from s3longbow.stores.s3.nonblocking import Direct, WireError
from s3longbow.stores.s3.tasks import Loop
from s3longbow.transfer import lane
from s3longbow.transfer.context import Context
from s3longbow.transfer.engine import Copier
from s3longbow.transfer.proof import CopyMethod

log = logging.getLogger(__name__)

# Seconds an exchange on the loop may wait for its socket (as the client's read timeout).
_TIMEOUT = 60.0


@dataclass(frozen=True)
class Planned:
    """How a job runs on the lane: its pair's context, its method, both endpoints."""

    ctx: Context
    method: CopyMethod
    ways: tuple[Direct, Direct]


@dataclass(frozen=True)
class Finished:
    """A job the lane copied, for a job thread to record."""

    job: Job
    result: JobResult


class Lane:
    """Runs the jobs that fit on a loop's thread; a copy done goes to `finished`, a job the
    job threads must run to `handed_back`.

    Args:
        finished: Takes the copies done (called on the lane's thread; must not block).
        handed_back: Takes the jobs handed back, with the source's refusal of the read
            when that is why (likewise).
        timeout: Seconds an exchange may wait for its socket.
    """

    def __init__(
        self,
        finished: Callable[[Finished], None],
        handed_back: Callable[[Job, Exception | None], None],
        timeout: float = _TIMEOUT,
    ):
        self._finished = finished
        self._handed = handed_back
        self._loop = Loop(timeout)
        self._thread = threading.Thread(target=self._loop.run, name="lane", daemon=True)
        self._thread.start()
        self._closed = False
        self._warned: set[str] = set()

    def plan(self, job: Job, copier: Copier) -> Planned | None:
        """How `job` would run on the lane, or None where it cannot."""
        ctx = copier.context
        method = None if self._closed else lane.plan(ctx, job)
        ways = lane.directs(ctx) if method is not None else None
        return None if method is None or ways is None else Planned(ctx, method, ways)

    def start(self, job: Job, planned: Planned) -> bool:
        """Start `job` as planned if its memory is free now; False: run it on a job
        thread."""
        ctx = planned.ctx
        # The reply's bytes and the body cut from them are both held for a moment.
        taken = ctx.budget.try_acquire(2 * job.size)
        if taken is None:
            return False  # a job thread waits for memory; the loop must not
        ctx.stats.started()

        def done(result: JobResult | None, error: BaseException | None) -> None:
            ctx.budget.release(taken)
            if result is not None:
                ctx.stats.sent(job.size)
                self._finished(Finished(job, result))
                return
            self._handed_back(job, error)
            ctx.stats.released(0)
            self._handed(job, error.error if isinstance(error, lane.Refused) else None)

        self._loop.spawn(lane.copy(ctx, job, planned.method, *planned.ways), done)
        return True

    def _handed_back(self, job: Job, error: BaseException | None) -> None:
        if isinstance(error, lane.HandBack | WireError | LongbowError):
            log.debug("%s: to a job thread: %s", job.src_key, error)
            return
        # Not a reason the lane knows: a fault of its own, said once per kind.
        kind = type(error).__name__
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(
                "%s: the small-object lane failed (%s: %s); the job runs on a job thread",
                job.src_key,
                kind,
                error,
            )

    def close(self) -> None:
        """Stop the lane: jobs still on it are handed back; returns once they all are."""
        self._closed = True
        self._loop.close()
        self._thread.join()


__all__ = ["Finished", "Lane"]
