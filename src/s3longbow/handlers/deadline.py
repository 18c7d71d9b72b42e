"""Stop work before a Lambda function's time runs out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger(__name__)


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


@contextmanager
def stop_before_deadline(
    context: LambdaContext, margin_seconds: float, stop: threading.Event, why: str
) -> Iterator[None]:
    """Within the block, set `stop` once less than `margin_seconds` of the invocation remain,
    so the work in hand can end cleanly (released, recorded) instead of being cut off."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.2):
            if context.get_remaining_time_in_millis() < margin_seconds * 1000:
                log.warning("time is running out: %s", why)
                stop.set()
                return

    watcher = threading.Thread(target=watch, name="deadline", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()
