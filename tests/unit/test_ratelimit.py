"""Per-prefix request rates: the prefix of a key, the pacing of a prefix, and a SlowDown's cut
and the climb back (pure logic, on a clock the test moves)."""

from __future__ import annotations

import pytest

from s3longbow.errors import ConfigError
from s3longbow.ratelimit import PrefixDepth, PrefixRates


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def rates(clock: Clock, **kwargs: object) -> PrefixRates:
    return PrefixRates(clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("depth", "key", "prefix"),
    [
        ("segments:1", "logs/2024/a.gz", "logs/"),
        ("segments:2", "logs/2024/a.gz", "logs/2024/"),
        ("segments:3", "logs/2024/a.gz", "logs/2024/"),  # fewer folders: its own folder
        ("segments:1", "top.txt", ""),  # keys at the root share the root's prefix
        ("chars:4", "abcdefg", "abcd"),
        ("chars:10", "abc", "abc"),
    ],
)
def test_a_keys_prefix_is_its_first_folders_or_characters(
    depth: str, key: str, prefix: str
) -> None:
    assert PrefixRates(depth=PrefixDepth.parse(depth)).prefix(key) == prefix


def test_the_prefix_is_taken_under_the_longest_root_the_key_is_in() -> None:
    limiter = PrefixRates(roots=["data/", "data/deep/"])
    assert limiter.prefix("data/deep/x/y") == "data/deep/x/"
    assert limiter.prefix("data/z/y") == "data/z/"
    assert limiter.prefix("other/q/r") == "other/"


@pytest.mark.parametrize("text", ["segments", "chars:0", "folders:2", "chars:x", ""])
def test_a_bad_prefix_depth_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PrefixDepth.parse(text)
    assert "segments:N" in (caught.value.hint or "")


def test_a_prefix_is_paced_at_its_cap_and_others_are_not_held() -> None:
    clock = Clock()
    limiter = rates(clock, writes=10)
    start = clock.now
    for _ in range(31):
        limiter.wait("hot/k", write=True)
    # 31 requests at 10/s: a small burst, then one every 0.1 s.
    assert 2.8 <= clock.now - start <= 3.1
    before = clock.now
    limiter.wait("cold/k", write=True)
    assert clock.now == before  # another prefix has its own schedule
    limiter.wait("hot/k", write=False)  # reads have their own (default) cap
    assert clock.now == before


def test_no_cap_means_no_waiting() -> None:
    clock = Clock()
    limiter = rates(clock, writes=0)
    for _ in range(1000):
        assert limiter.wait("a/b", write=True) == 0.0
    assert clock.slept == 0.0
    assert not limiter.slow_down("a/b", write=True)


def test_a_slow_down_halves_what_the_prefix_carried_and_it_climbs_back() -> None:
    clock = Clock()
    limiter = rates(clock, writes=3500)
    # The prefix carries about 100 requests a second, far below its cap.
    for _ in range(300):
        limiter.wait("hot/k", write=True)
        clock.now += 0.01
    assert limiter.slow_down("hot/k", write=True)
    slowed = limiter.rate("hot/k", write=True)
    assert 40 <= slowed <= 60  # half of ~100, not half of 3,500
    # Replies to requests sent before the cut do not halve it again: each lowers it only
    # to half of what the server took.
    assert not limiter.slow_down("hot/k", write=True)
    assert slowed - 1 <= limiter.rate("hot/k", write=True) <= slowed
    slowed = limiter.rate("hot/k", write=True)
    assert limiter.rate("cold/k", write=True) == 3500
    # The next requests wait for the slower schedule.
    start = clock.now
    for _ in range(20):
        limiter.wait("hot/k", write=True)
    assert clock.now - start >= 19 / slowed * 0.9
    # Without another SlowDown it climbs back, a step a second, to the cap and no further.
    clock.now += 10
    assert slowed < limiter.rate("hot/k", write=True) < 3500
    clock.now += 120
    assert limiter.rate("hot/k", write=True) == 3500


def test_repeated_slow_downs_never_stop_a_prefix() -> None:
    clock = Clock()
    limiter = rates(clock, writes=100)
    for _ in range(50):
        limiter.wait("p/k", write=True)
        limiter.slow_down("p/k", write=True)
        clock.now += 1.0
    assert limiter.rate("p/k", write=True) >= 1.0
    assert limiter.cuts > 5


def test_a_slow_down_early_in_a_burst_halves_the_bursts_rate() -> None:
    clock = Clock()
    limiter = rates(clock, writes=3500)
    for _ in range(32):  # 32 requests within a tenth of a second
        limiter.wait("hot/k", write=True)
        clock.now += 0.003
    limiter.slow_down("hot/k", write=True)
    assert 14 <= limiter.rate("hot/k", write=True) <= 18


def test_the_refusals_of_a_burst_lower_the_rate_to_half_of_what_got_through() -> None:
    """A burst of 84 requests of which the server took 20: the first refusal halves the
    burst's rate, the 63 after it bring it down to half of the 20 that got through."""
    clock = Clock()
    limiter = rates(clock, writes=3500)
    for _ in range(84):  # within 84 ms
        limiter.wait("hot/k", write=True)
        clock.now += 0.001
    assert limiter.slow_down("hot/k", write=True)
    assert 40 <= limiter.rate("hot/k", write=True) <= 43
    for _ in range(63):
        assert not limiter.slow_down("hot/k", write=True)
    assert 9 <= limiter.rate("hot/k", write=True) <= 11
    assert limiter.cuts == 1
    # Another prefix is not touched, and a refusal a while later halves the rate again.
    assert limiter.rate("cold/k", write=True) == 3500
    clock.now += 1.0
    assert limiter.slow_down("hot/k", write=True)
    assert limiter.rate("hot/k", write=True) <= 5.5
