"""The repeated task behind the progress views, samples and metrics writers."""

from __future__ import annotations

import threading
import time

from s3longbow.periodic import Every


def test_it_repeats_until_stopped_and_never_after() -> None:
    calls: list[float] = []
    every = Every(lambda: calls.append(time.monotonic()), lambda: 0.01, "test")
    every.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    every.stop()
    seen = len(calls)
    assert seen >= 3
    time.sleep(0.05)
    assert len(calls) == seen


def test_the_interval_is_read_before_each_wait() -> None:
    intervals = [0.01, 0.01, 60.0]  # the third wait would outlast the test
    reached = threading.Event()
    calls: list[int] = []

    def task() -> None:
        calls.append(1)
        if len(calls) == 2:
            reached.set()

    every = Every(task, lambda: intervals.pop(0) if len(intervals) > 1 else intervals[0], "t")
    every.start()
    assert reached.wait(5)
    started = time.monotonic()
    every.stop()  # wakes the long wait at once
    assert time.monotonic() - started < 5
    assert len(calls) == 2


def test_stopping_what_never_started_is_harmless() -> None:
    Every(lambda: None, lambda: 1.0, "idle").stop()
