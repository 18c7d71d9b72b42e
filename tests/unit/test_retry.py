"""Bounded retries with full-jitter backoff."""

from __future__ import annotations

import pytest

from s3longbow.errors import PermanentError, TransientError, UploadMissingError
from s3longbow.retry import backoff_delay, with_retries
from s3longbow.transfer.budget import ByteBudget


def test_transient_errors_are_retried_until_success() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("reset")
        return "ok"

    assert with_retries(flaky, attempts=5, what="x", sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2


def test_retries_are_bounded_and_permanent_errors_are_not_retried() -> None:
    sleeps: list[float] = []

    def always(exc: Exception):  # type: ignore[no-untyped-def]
        def action() -> None:
            raise exc

        return action

    with pytest.raises(TransientError):
        with_retries(always(TransientError("x")), attempts=4, what="x", sleep=sleeps.append)
    assert len(sleeps) == 3
    sleeps.clear()
    with pytest.raises(PermanentError):
        with_retries(always(PermanentError("x")), attempts=4, what="x", sleep=sleeps.append)
    with pytest.raises(UploadMissingError):
        with_retries(
            always(UploadMissingError("gone")),
            attempts=4,
            what="x",
            sleep=sleeps.append,
            give_up_on=(UploadMissingError,),
        )
    assert sleeps == []


def test_backoff_is_jittered_and_capped() -> None:
    delays = [backoff_delay(10, base=0.5, cap=30.0) for _ in range(200)]
    assert all(0 <= d <= 30.0 for d in delays)
    assert len(set(delays)) > 100  # jittered, not a fixed schedule
    assert all(backoff_delay(0, base=0.5) <= 0.5 for _ in range(50))


def test_byte_budget_bounds_and_admits_oversized_requests() -> None:
    budget = ByteBudget(100)
    with budget.hold(60), budget.hold(40):
        assert budget.peak == 100
    with budget.hold(500):  # larger than the budget: takes all of it, alone
        pass
    assert budget.peak == 100


def test_byte_budget_reuses_part_buffers_and_keeps_them_within_its_limit() -> None:
    budget = ByteBudget(100)
    first = budget.buffer(40)
    budget.give_back(first)
    assert budget.buffer(40) is first  # the next part of that size gets the same memory
    second = budget.buffer(40)
    assert second is not first
    budget.give_back(first)
    budget.give_back(second)
    # A new size: kept buffers of other sizes are dropped until it fits in the limit.
    assert len(budget.buffer(30)) == 30
    ids = {id(first), id(second)}
    assert id(budget.buffer(40)) in ids  # one of the two was kept
    assert id(budget.buffer(40)) not in ids  # the other was dropped for the 30


def test_a_part_buffer_larger_than_the_budget_is_not_kept() -> None:
    budget = ByteBudget(100)
    huge = budget.buffer(300)  # a part larger than the whole budget still gets its buffer
    budget.give_back(huge)
    again = budget.buffer(300)
    assert again is not huge  # dropped, not held beyond the budget
    budget.give_back(again)
    small = budget.buffer(40)
    budget.give_back(small)
    assert budget.buffer(40) is small
