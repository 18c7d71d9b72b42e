"""S3 stores and copiers of a cluster worker, opened on first use per bucket.

Job messages name their buckets, so a worker needs no list of pairs to run them: the first job
of a bucket opens (and checks) its store, and each (source bucket, destination bucket) gets one
copier, whose number is the jobs' `pair`.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor

from s3longbow.config import SideSettings, TransferSettings
from s3longbow.errors import ConfigError
from s3longbow.jobs.base import SharedUploadLedger, UploadLedger
from s3longbow.meter import RequestMeter
from s3longbow.plan.inventory import snapshot_name
from s3longbow.progress.stats import Stats
from s3longbow.stores import open_store, parse_location
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer.bandwidth import BandwidthLimit
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.engine import Copier


class StoreCache:
    """Stores by side and bucket, each opened and checked once (thread-safe).

    Args:
        source: How to reach source buckets.
        destination: How to reach destination buckets.
        max_connections: HTTP connections per store.
        min_rate: Bytes per second an exchange must keep up once it flows.
        meter: Where the stores record their replies' waits and requests to slow down.
        open_ahead: Connections a store opens at once, ahead of need, when its first one
            shows a long path.
    """

    def __init__(
        self,
        source: SideSettings,
        destination: SideSettings,
        *,
        max_connections: int,
        min_rate: float = 0,
        meter: RequestMeter | None = None,
        open_ahead: int = 0,
    ) -> None:
        self.sides = {"src": source, "dst": destination}
        self.max_connections = max_connections
        self.min_rate = min_rate
        self.meter = meter
        self.open_ahead = open_ahead
        self._stores: dict[tuple[str, str], ObjectStore] = {}
        self._lock = threading.Lock()

    def source(self, bucket: str) -> ObjectStore:
        return self._open("src", bucket)

    def destination(self, bucket: str) -> ObjectStore:
        return self._open("dst", bucket)

    def _open(self, role: str, bucket: str) -> ObjectStore:
        with self._lock:
            store = self._stores.get((role, bucket))
        if store is not None:
            return store
        location = parse_location(f"s3://{bucket}/")
        if not location.is_s3:  # pragma: no cover - parse_location of s3:// is always S3
            raise ConfigError(f"{bucket!r} is not a bucket")
        store = open_store(
            location,
            self.sides[role],
            destination=role == "dst",
            max_connections=self.max_connections,
            min_rate=self.min_rate,
            meter=self.meter,
            open_ahead=self.open_ahead,
        )
        try:
            store.check()  # a failed check is not cached: the next job tries again
        except BaseException:
            store.close()
            raise
        with self._lock:
            existing = self._stores.setdefault((role, bucket), store)
        if existing is not store:
            store.close()
        return existing

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()


class Copiers:
    """One copier per (source bucket, destination bucket, inventory report) for one run of
    a worker.

    Args:
        stores: Where the stores come from.
        settings: Transfer settings.
        budget: The bound on object bytes in memory.
        part_pool: Threads that move parts.
        stats: Progress counters.
        stop: Set when the run stops (copiers release their jobs).
    """

    def __init__(
        self,
        stores: StoreCache,
        *,
        settings: TransferSettings,
        budget: ByteBudget,
        part_pool: Executor,
        stats: Stats,
        stop: threading.Event,
    ) -> None:
        self.stores = stores
        self.settings = settings
        self.budget = budget
        self.part_pool = part_pool
        self.stats = stats
        self.stop = stop
        # One limit for the whole worker process, shared by every copier.
        self.bandwidth = (
            BandwidthLimit(settings.bandwidth_limit) if settings.bandwidth_limit else None
        )
        self._ledger: UploadLedger | None = None
        self._shared: SharedUploadLedger | None = None
        self._index: dict[tuple[str, str, float | None], int] = {}
        self._copiers: list[Copier] = []
        self._lock = threading.Lock()

    def use_ledger(self, ledger: UploadLedger, *, shared: SharedUploadLedger | None = None) -> None:
        """Where copiers record uploads and parts (the job queue, created after this), and
        where the ranges of fanned-out objects meet."""
        self._ledger = ledger
        self._shared = shared

    def index(self, src_bucket: str, dst_bucket: str, *, inventory: float | None = None) -> int:
        """The copier number of a bucket pair, opening its stores when new; `inventory`: when
        the report that listed the job was made (its copier skips a source gone since)."""
        ident = (src_bucket, dst_bucket, inventory)
        with self._lock:
            found = self._index.get(ident)
        if found is not None:
            return found
        if self._ledger is None:  # pragma: no cover - wiring error
            raise RuntimeError("Copiers.use_ledger was not called")
        copier = Copier(
            self.stores.source(src_bucket),
            self.stores.destination(dst_bucket),
            ledger=self._ledger,
            settings=self.settings,
            budget=self.budget,
            part_pool=self.part_pool,
            stats=self.stats,
            stop=self.stop,
            bandwidth=self.bandwidth,
            snapshot=None if inventory is None else snapshot_name(inventory),
            shared=self._shared,
        )
        with self._lock:
            found = self._index.get(ident)
            if found is not None:
                return found
            self._copiers.append(copier)
            self._index[ident] = len(self._copiers) - 1
            return len(self._copiers) - 1

    def get(self, index: int) -> Copier:
        with self._lock:
            return self._copiers[index]


__all__ = ["Copiers", "StoreCache"]
