"""The request meter: each endpoint's replies against its own quickest one."""

from __future__ import annotations

from s3longbow.meter import RequestMeter


def test_queueing_is_judged_at_the_endpoint_that_queues_least() -> None:
    meter = RequestMeter()
    meter.record(0.001, "near")  # the path's own time: a reply with nothing ahead of it
    meter.record(0.150, "far")
    meter.take()
    for _ in range(9):
        meter.record(0.030, "near")  # 30 times its quickest: queueing for CPU
        meter.record(0.165, "far")  # 1.1 times: the round trip itself
    reading = meter.take()
    assert reading.requests == 18
    assert 1.09 < reading.queueing < 1.11


def test_an_endpoint_silent_for_an_interval_leaves_queueing_unknown() -> None:
    meter = RequestMeter()
    meter.record(0.001, "near")
    meter.record(0.150, "far")
    meter.take()
    for _ in range(5):
        meter.record(0.030, "near")  # the far side's parts are still on their way
    meter.record(0.5)  # no endpoint named: counted, not judged
    reading = meter.take()
    assert (reading.requests, reading.queueing) == (6, 0.0)
    meter.record(0.004, "near")
    meter.record(0.300, "far")
    assert meter.take().queueing == 2.0  # against the quickest ever, not this interval's
    assert meter.take().requests == 0


def test_the_round_trip_is_the_slowest_endpoints_quickest_reply() -> None:
    meter = RequestMeter()
    assert meter.round_trip() is None
    meter.record(0.5)  # no endpoint named: not a path's own time
    assert meter.round_trip() is None
    meter.record(0.002, "near")
    meter.record(0.180, "far")
    meter.record(0.150, "far")
    assert meter.round_trip() == 0.150
