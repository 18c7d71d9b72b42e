"""Backoff with full jitter, bounded in attempts. Only TransientError is retried here."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from s3longbow.errors import TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def with_retries(
    action: Callable[[], T],
    *,
    attempts: int,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
    give_up_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Run `action`, retrying TransientError up to `attempts` times in all.

    botocore already retries throttling and 5xx per request; this loop covers what it cannot
    (a body that breaks mid-stream, a short read, a digest the server rejected) and every
    request of the lean data plane, which does not retry on its own.
    """
    for attempt in range(attempts):
        try:
            return action()
        except TransientError as exc:
            if attempt + 1 >= attempts or should_stop() or isinstance(exc, give_up_on):
                raise
            delay = backoff_delay(attempt)
            log.info(
                "%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt + 1, attempts - 1, delay
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
