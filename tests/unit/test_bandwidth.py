"""The bandwidth limit paces bytes so that no stretch of a copy exceeds the rate."""

from __future__ import annotations

import threading
import time

import pytest

from s3longbow.config import MiB, parse_rate
from s3longbow.errors import ConfigError
from s3longbow.transfer.bandwidth import BandwidthLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bytes_wait_for_their_time_at_the_rate() -> None:
    clock = FakeClock()
    limit = BandwidthLimit(10 * MiB, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limit.take(5 * MiB)
    # 25 MiB at 10 MiB/s: the last part may go only after 2.5 s.
    assert clock.now == pytest.approx(102.5)


def test_idle_time_is_not_saved_up_for_a_burst() -> None:
    clock = FakeClock()
    limit = BandwidthLimit(1 * MiB, clock=clock, sleep=clock.sleep)
    clock.now += 60  # a minute with nothing to send
    limit.take(2 * MiB)
    assert clock.now == pytest.approx(162.0)


def test_rates_parse_with_or_without_per_second() -> None:
    assert parse_rate("200MiB/s") == 200 * MiB
    assert parse_rate("10MB/s") == 10_000_000
    assert parse_rate("1GiB") == 1024 * MiB
    with pytest.raises(ConfigError):
        parse_rate("fast/s")
    with pytest.raises(ValueError):
        BandwidthLimit(0)


def test_a_stop_ends_the_wait_for_a_turn() -> None:
    limit = BandwidthLimit(1 * MiB)
    stopped = threading.Event()
    stopped.set()
    started = time.monotonic()
    limit.take(10 * MiB, stopped)  # its turn is 10 s away; the run stops: no wait
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    limit.take(MiB, stop)  # 11 s away; stopped after 0.1 s
    assert time.monotonic() - started < 5
