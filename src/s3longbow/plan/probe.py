"""The pre-flight estimate's network side: what each pair's stores are (regions, AWS or not),
and a short probe of their latency and throughput. The probe only reads: three HEADs of each
remote bucket, and one ranged GET of at most 8 MiB of the largest object to copy (none when
nothing is to be copied). The numbers are `estimate` and `preflight`'s."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from s3longbow.config import MiB, TransferSettings
from s3longbow.errors import LongbowError
from s3longbow.pairs import PairRuntime
from s3longbow.plan.estimate import Estimator
from s3longbow.plan.preflight import Estimate, Probe, estimate
from s3longbow.plan.prices import PriceTable, builtin_table, read_price_table
from s3longbow.stores.base import EndpointFacts, ObjectStore, RemoteStore
from s3longbow.transfer.proof import Link

log = logging.getLogger(__name__)

HEADS_PER_SIDE = 3  # bucket HEADs per remote store; their median is its round trip
SAMPLE_MOST = 8 * MiB  # the most bytes the throughput sample reads


def price_table(path: Path | None) -> tuple[PriceTable, bool]:
    """The table to price with, and whether it was given (a file) rather than built in.

    Raises:
        ConfigError: The file given cannot be read or is not a price table.
    """
    if path is None:
        return builtin_table(), False
    return read_price_table(path), True


def facts(store: ObjectStore) -> EndpointFacts | None:
    """Where a store's requests go; None for a store reached by no network (a directory)."""
    return store.endpoint_facts() if isinstance(store, RemoteStore) else None


def link(pair: PairRuntime, settings: TransferSettings) -> Link:
    """The pair's stores as the engine's choice of path will see them (see Copier)."""
    src, dst = pair.src_store, pair.dst_store
    return Link(
        src=src.capabilities,
        dst=dst.capabilities,
        server_copy=settings.server_side_copy and dst.can_copy_from(src),
        relay=settings.relay and dst.can_relay_from(src),
    )


def start(pairs: Sequence[PairRuntime], settings: TransferSettings) -> Estimator:
    """An estimator with every pair registered (before planning hands it objects)."""
    estimator = Estimator(settings)
    for pair in pairs:
        estimator.pair(
            pair.index, link(pair, settings), facts(pair.src_store), facts(pair.dst_store)
        )
    return estimator


def finish(
    estimator: Estimator,
    pairs: Sequence[PairRuntime],
    table: PriceTable,
    *,
    explicit: bool,
    planning_seconds: float,
    parallel_lists: bool = True,
) -> Estimate:
    """Count the listing requests planning made, probe the stores, and estimate.

    Args:
        estimator: What planning counted.
        pairs: The pairs planned (their stores still open).
        table: The prices.
        explicit: The table was given, not built in (every endpoint is then priced).
        planning_seconds: How long planning took (the listing of a real run takes as long).
        parallel_lists: A real run copies while it lists (sync), or after (send's workers).
    """
    counted: set[int] = set()
    for pair in pairs:
        tally = estimator.pairs[pair.index]
        tally.listed(*(_listings(s, counted) for s in (pair.src_store, pair.dst_store)))
    probe = run_probe(estimator, pairs)
    return estimate(
        estimator,
        probe,
        table,
        explicit=explicit,
        planning_seconds=planning_seconds,
        parallel_lists=parallel_lists,
    )


def _listings(store: ObjectStore, counted: set[int]) -> int:
    """The store's listing requests, once per store however many pairs share it."""
    if not isinstance(store, RemoteStore) or id(store) in counted:
        return 0
    counted.add(id(store))
    return store.listing_requests()


def run_probe(estimator: Estimator, pairs: Sequence[PairRuntime]) -> Probe:
    """Three bucket HEADs of each remote store (once per store), and one ranged GET of at
    most SAMPLE_MOST bytes of the largest object to copy."""
    failed: list[str] = []
    medians: dict[int, float | None] = {}

    def latency(store: ObjectStore) -> float | None:
        if not isinstance(store, RemoteStore):
            return None
        if id(store) not in medians:
            medians[id(store)] = _round_trips(store, failed)
        return medians[id(store)]

    latencies = {p.index: (latency(p.src_store), latency(p.dst_store)) for p in pairs}
    sample_bytes, sample_seconds = 0, 0.0
    largest = estimator.largest
    if largest is not None and not failed:
        store = next(p.src_store for p in pairs if p.index == largest.pair)
        length = min(largest.size, SAMPLE_MOST)
        started = time.monotonic()
        try:
            store.get_range(largest.key, 0, length, etag=largest.etag)
        except LongbowError as exc:
            failed.append(f"reading {store.describe(largest.key)}: {exc.message}")
        else:
            sample_bytes, sample_seconds = length, time.monotonic() - started
    log.debug(
        "probe: round trips %s, %d bytes read in %.3fs", latencies, sample_bytes, sample_seconds
    )
    return Probe(
        latency=latencies,
        sample_bytes=sample_bytes,
        sample_seconds=sample_seconds,
        failed=tuple(failed),
    )


def _round_trips(store: RemoteStore, failed: list[str]) -> float | None:
    seconds = []
    for _ in range(HEADS_PER_SIDE):
        try:
            seconds.append(store.round_trip())
        except LongbowError as exc:
            where = store.endpoint_facts().endpoint
            failed.append(f"a HEAD of the bucket at {where}: {exc.message}")
            return None
    return statistics.median(seconds)


__all__ = [
    "HEADS_PER_SIDE",
    "SAMPLE_MOST",
    "facts",
    "finish",
    "link",
    "price_table",
    "run_probe",
    "start",
]
