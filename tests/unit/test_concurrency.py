"""The concurrency controller against paths whose work grows with the objects in flight up to a
knee: it must find the knee, stay near it, and give way when a server asks."""

from __future__ import annotations

import random
from collections.abc import Callable

from s3longbow.config import TransferSettings
from s3longbow.worker.concurrency import (
    FAR_ROUND_TRIP,
    FAR_START,
    NEAR_PART_WINDOW,
    NEAR_PARTS_ROUND_TRIP,
    OBJECTS_PER_CPU,
    REQUEST_WORTH,
    Controller,
    controller_for,
    cpus,
    part_window,
    work_done,
)


def run(
    controller: Controller,
    path: Callable[[int], float],
    steps: int,
    *,
    noise: float = 0.0,
    seed: int = 7,
) -> list[int]:
    """The limits the controller chooses over `steps` intervals of `path`."""
    rng = random.Random(seed)
    limits = []
    for _ in range(steps):
        work = path(controller.limit) * (1 + rng.uniform(-noise, noise))
        controller.step(work, busy=controller.limit)
        limits.append(controller.limit)
    return limits


def long_path(n: int) -> float:
    """150 ms round trips: the work grows with the objects in flight up to 200 of them."""
    return min(n, 200) * 6.0


def loopback(n: int) -> float:
    """The servers' CPU is the limit from 16 objects on; beyond, queues only add overhead."""
    return 1600.0 - max(0, n - 16) * 3.0 if n >= 16 else n * 100.0


def test_a_long_path_is_filled_quickly() -> None:
    limits = run(Controller(ceiling=256), long_path, 40)
    assert limits[4] >= 128  # a slow start doubles while it pays: 16, 32, 64, 128, 256
    assert all(150 <= n <= 256 for n in limits[10:]), limits


def test_loopback_stays_near_its_knee() -> None:
    limits = run(Controller(ceiling=256), loopback, 60)
    assert all(12 <= n <= 40 for n in limits[6:]), limits


def test_noise_does_not_carry_it_away() -> None:
    for seed in range(5):
        limits = run(Controller(ceiling=256), long_path, 80, noise=0.05, seed=seed)
        assert min(limits[12:]) >= 120, (seed, limits)
        limits = run(Controller(ceiling=256), loopback, 80, noise=0.05, seed=seed)
        assert max(limits[12:]) <= 64, (seed, limits)


def test_a_server_asking_to_slow_down_is_heard_at_once() -> None:
    controller = Controller(ceiling=256)
    run(controller, long_path, 20)
    before = controller.limit
    controller.step(long_path(before), throttled=3, busy=before)
    assert controller.limit == int(before * 0.7)
    # No probe up while it cools down, however well the path does.
    cooled = run(controller, lambda n: n * 100.0, 7)
    assert max(cooled) <= int(before * 0.7)


def test_the_ceiling_and_the_floor_hold() -> None:
    assert max(run(Controller(ceiling=24), long_path, 30)) == 24
    controller = Controller(ceiling=256, start=4, floor=2)
    for _ in range(10):
        controller.step(100.0, throttled=1, busy=controller.limit)
    assert controller.limit == 2


def test_a_limit_not_used_is_not_raised() -> None:
    controller = Controller(ceiling=256)
    for _ in range(10):
        controller.step(50.0, busy=3)  # the queue is short of jobs
    assert controller.limit <= 32


def test_a_fixed_number_stays_fixed() -> None:
    controller = Controller(ceiling=256, start=32, tuned=False)
    assert set(run(controller, long_path, 20)) == {32}
    assert Controller(ceiling=8, start=32, tuned=False).limit == 8


def test_work_adds_requests_and_bytes() -> None:
    assert work_done(10, 0) == 10
    assert work_done(0, 4 * REQUEST_WORTH) == 4


def test_a_prefix_rate_that_holds_the_requests_is_a_ceiling() -> None:
    controller = Controller(ceiling=256, start=16)
    for _ in range(10):  # the work would grow with more objects, but requests wait their turn
        controller.step(controller.limit * 100.0, busy=controller.limit, capped=True)
    assert controller.limit == 16 and controller.highest == 16
    # Once the rate no longer holds them, it climbs again.
    limits = run(controller, long_path, 30)
    assert max(limits) > 16


def test_a_first_interval_cut_short_by_start_up_is_not_taken_for_growth() -> None:
    controller = Controller(ceiling=256, start=64)
    # Listing and connecting took most of the first interval: a third of the work 64 do.
    controller.step(loopback(64) / 3, busy=64)
    assert controller.limit == 64
    limits = run(controller, loopback, 10)
    assert max(limits) <= 128, limits  # without the rule it doubles to 256 at once


def test_replies_that_already_queue_end_the_slow_start() -> None:
    controller = Controller(ceiling=256, start=64)
    controller.step(loopback(64) / 3, busy=64)  # the first, partial interval
    # Loopback, CPU-bound: the median reply waits 30 times the quickest.
    controller.step(loopback(64), busy=64, queueing=30.0)
    assert controller.limit == 64
    limits = run(controller, loopback, 10)
    assert max(limits) <= 80, limits  # the probes may try a quarter more, no doubling


def test_a_long_path_whose_replies_do_not_queue_keeps_doubling() -> None:
    controller = Controller(ceiling=256, start=64)
    controller.step(long_path(64) / 3, busy=64)
    for _ in range(3):
        controller.step(long_path(controller.limit), busy=controller.limit, queueing=1.2)
    assert controller.limit == 256


def thread_bound(n: int) -> float:
    """A long path on a machine whose CPU holds the work from 128 objects on: more threads
    only add their hand-offs."""
    return min(n, 128) * 6.0 - max(0, n - 128) * 0.5


def test_the_slow_start_doubles_no_further_than_the_knee() -> None:
    controller = Controller(ceiling=256, start=64, knee=128)
    controller.step(long_path(64) / 3, busy=64)  # the first, partial interval
    limits = run(controller, long_path, 4)
    assert limits[:3] == [128, 128, 128], limits  # settled there, not doubled to 256
    # Where more pays (the path holds 200), the probes climb past the knee.
    assert max(run(controller, long_path, 60)) > 160


def test_past_a_knee_that_holds_the_work_the_probes_do_not_stay() -> None:
    controller = Controller(ceiling=256, start=64, knee=128)
    controller.step(thread_bound(64) / 3, busy=64)
    limits = run(controller, thread_bound, 60)
    assert max(limits) <= 160 and limits[-1] <= 128, limits


def test_a_run_doubles_to_64_objects_per_cpu_at_most() -> None:
    controller = controller_for(TransferSettings(workers=4096))
    assert controller.knee == OBJECTS_PER_CPU * cpus()
    # A ceiling below the knee is the ceiling.
    assert controller_for(TransferSettings(workers=32)).limit == 32


def test_a_far_path_starts_with_more_objects_in_flight() -> None:
    far = Controller(ceiling=4096, start=64, knee=256)
    far.path(0.15)
    assert far.limit == FAR_START
    # A near path, an unknown one, or a run already climbing keep their number.
    near = Controller(ceiling=4096, start=64, knee=256)
    near.path(FAR_ROUND_TRIP / 2)
    near.path(None)
    assert near.limit == 64
    # Never past the knee or the ceiling, and never for a fixed number.
    assert _after_path(Controller(ceiling=4096, start=64, knee=96)) == 96
    assert _after_path(Controller(ceiling=80, start=64, knee=256)) == 80
    assert _after_path(Controller(ceiling=4096, start=64, tuned=False)) == 64


def _after_path(controller: Controller) -> int:
    controller.path(0.25)
    return controller.limit


def test_objects_move_fewer_parts_at_once_where_the_servers_are_near() -> None:
    settings = TransferSettings()
    assert settings.part_threads > NEAR_PART_WINDOW
    assert part_window(settings, NEAR_PARTS_ROUND_TRIP / 2) == NEAR_PART_WINDOW
    # Further away, or not known: --part-threads.
    assert part_window(settings, NEAR_PARTS_ROUND_TRIP) == settings.part_threads
    assert part_window(settings, 0.15) == settings.part_threads
    assert part_window(settings, None) == settings.part_threads
    # --part-threads is a ceiling; with tuning off, the number itself.
    assert part_window(TransferSettings(part_threads=2), 0.001) == 2
    assert part_window(TransferSettings(autotune=False), 0.001) == settings.part_threads
