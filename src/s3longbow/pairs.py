"""The pairs of a run with their stores open: what planning, copying, `verify` and `send`
work on. Opening checks every store once (fail fast on bad input) and closing closes each
store once, however many pairs share it."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from s3longbow.config import Settings, SideSettings
from s3longbow.errors import ConfigError
from s3longbow.meter import RequestMeter
from s3longbow.ratelimit import PrefixDepth, PrefixRates
from s3longbow.stores import open_store
from s3longbow.stores.base import (
    CurrentVersionListing,
    EarlyListing,
    ObjectStore,
    ReorderableListing,
)
from s3longbow.stores.location import Location, parse_location


@dataclass(frozen=True)
class PairRuntime:
    """A pair with its stores opened.

    `inventory` is the manifest of the S3 Inventory report that stands for the source's
    listing (--src-inventory), read through `inventory_store`, a store of its bucket opened
    with the source's settings; both None when the source is listed.
    """

    index: int
    src: Location
    dst: Location
    src_store: ObjectStore
    dst_store: ObjectStore
    inventory: Location | None = None
    inventory_store: ObjectStore | None = None

    @property
    def src_prefix(self) -> str:
        return self.src.prefix

    @property
    def dst_prefix(self) -> str:
        return self.dst.prefix

    @property
    def ignore_bucket(self) -> str:
        """What ignore patterns see before the key: the bucket, or the directory path."""
        return self.src.bucket if self.src.is_s3 else str(self.src.root)


def run_signature(settings: Settings) -> str:
    """A run is identified by its pairs and endpoints: the same command continues it."""
    body = json.dumps(
        {
            "pairs": [[p.src, p.dst] for p in settings.pairs],
            "src": settings.source.endpoint_url,
            "dst": settings.destination.endpoint_url,
        },
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@contextmanager
def open_pairs(
    settings: Settings,
    *,
    read_only: bool = False,
    meter: RequestMeter | None = None,
    connections: int | None = None,
    open_ahead: int = 0,
) -> Iterator[list[PairRuntime]]:
    """Parse and open every pair's stores, checking each once; close them all at the end
    (also when opening one fails).

    Args:
        settings: The pairs and how to reach each side.
        read_only: Nothing will be written (a dry run, `verify`): a missing local destination
            lists as empty instead of being created.
        meter: Where the S3 stores record their replies' waits and requests to slow down.
        connections: How many connections each store keeps, at most (by default one per
            worker, and a few).
        open_ahead: Connections an S3 store opens at once, ahead of need, when its first one
            shows a long path (the objects a run starts with).

    Raises:
        ConfigError: No pairs, or a pair copies a location onto itself.
        FatalError: A store cannot be used (its check failed).
    """
    if not settings.pairs:
        raise ConfigError(
            "nothing to copy: no source and destination given",
            hint="run `longbow sync SRC DST`, or list [[pairs]] in a --config file",
        )
    t = settings.transfer
    if connections is None:
        connections = t.workers + 4
    stores: dict[tuple[str, str], ObjectStore] = {}
    unchecked: list[tuple[ObjectStore, bool]] = []  # opened, not yet checked; remote?
    rates: dict[tuple[str, str], PrefixRates] = {}

    def store_for(location: Location, side: SideSettings, role: str) -> ObjectStore:
        ident = (role, location.bucket if location.is_s3 else str(location.root))
        if ident in rates:
            rates[ident].add_root(location.prefix)
        elif location.is_s3 and (t.prefix_read_rate or t.prefix_write_rate):
            # One schedule per bucket and side; each pair's keys count from its own root.
            rates[ident] = PrefixRates(
                reads=t.prefix_read_rate,
                writes=t.prefix_write_rate,
                depth=PrefixDepth.parse(t.rate_prefix),
                roots=[location.prefix],
            )
        if ident not in stores:
            stores[ident] = open_store(
                location,
                side,
                destination=role == "dst",
                max_connections=connections,
                read_only=read_only,
                min_rate=t.min_rate,
                meter=meter,
                rates=rates.get(ident),
                preserve_mtime=t.preserve_mtime,
                open_ahead=open_ahead,
            )
            unchecked.append((stores[ident], location.is_s3))
        return stores[ident]

    try:
        pairs = []
        for i, pair in enumerate(settings.pairs):
            src, dst = parse_location(pair.src), parse_location(pair.dst)
            if not src.is_s3 and not dst.is_s3 and src.root == dst.root:
                raise ConfigError("source and destination are the same directory")
            if (
                src.is_s3
                and dst.is_s3
                and (src.bucket, src.prefix) == (dst.bucket, dst.prefix)
                and (settings.source.endpoint_url == settings.destination.endpoint_url)
            ):
                raise ConfigError("source and destination are the same location")
            inventory = _inventory_location(pair.src_inventory, src)
            src_store = store_for(src, settings.source, "src")
            dst_store = store_for(dst, settings.destination, "dst")
            # On the source's endpoint, with its credentials: S3 delivers a report to a
            # bucket of the source bucket's account and region.
            report = None if inventory is None else store_for(inventory, settings.source, "src")
            # The listings' first pages are asked for beside the checks (a round trip each).
            listed = [(dst_store, dst)] + ([(src_store, src)] if inventory is None else [])
            for store, location in listed:
                if isinstance(store, EarlyListing):
                    store.list_early(location.prefix)
            # Buckets first, at once (a check is a round trip or more); folders after, so a
            # source that cannot be read leaves no destination folder made.
            check_all([store for store, remote in unchecked if remote])
            for store, remote in unchecked:
                if not remote:
                    store.check()
            unchecked.clear()
            match_listing_orders(src_store, dst_store)
            pairs.append(PairRuntime(i, src, dst, src_store, dst_store, inventory, report))
        yield pairs
    finally:
        for store in stores.values():
            store.close()


def check_all(stores: list[ObjectStore]) -> None:
    """Check the stores at once: each check is a connection and a request or two, and on a
    long path (a round trip of 150 ms, a TLS handshake) one takes half a second. The first
    store's failure (in the order given) is the one raised, as one check after another
    would.
    """
    if len(stores) < 2:
        for store in stores:
            store.check()
        return
    failures: list[BaseException | None] = [None] * len(stores)

    def check(index: int) -> None:
        try:
            stores[index].check()
        except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
            failures[index] = exc

    threads = [
        threading.Thread(target=check, args=(i,), name=f"check-{i}", daemon=True)
        for i in range(1, len(stores))
    ]
    for thread in threads:
        thread.start()
    check(0)
    for thread in threads:
        thread.join()
    for failure in failures:
        if failure is not None:
            raise failure


def _inventory_location(manifest: str | None, src: Location) -> Location | None:
    """Where a pair's inventory manifest is, checked; None without one."""
    if manifest is None:
        return None
    location = parse_location(manifest)
    if not location.is_s3 or not location.prefix or location.prefix.endswith("/"):
        raise ConfigError(
            f"--src-inventory {manifest!r} does not name a manifest object",
            hint="give the manifest.json of an S3 Inventory report: "
            "s3://inventory-bucket/prefix/source-bucket/config/2024-05-01T00-00Z/manifest.json",
        )
    if not src.is_s3:
        raise ConfigError(
            f"--src-inventory lists a bucket, but the source {src} is a directory",
            hint="leave --src-inventory out for a local source",
        )
    return location


def match_listing_orders(src: ObjectStore, dst: ObjectStore) -> None:
    """A store that can list in either order (a directory) lists as the one on the other side
    of the pair does (a bucket)."""
    if isinstance(src, ReorderableListing) and not isinstance(dst, ReorderableListing):
        src.use_listing_order(dst.capabilities.listing_order)
    if isinstance(dst, ReorderableListing) and not isinstance(src, ReorderableListing):
        dst.use_listing_order(src.capabilities.listing_order)


def use_current_versions(pairs: list[PairRuntime]) -> None:
    """--compare version: every source is listed with the version ids of its current keys."""
    for pair in pairs:
        if not isinstance(pair.src_store, CurrentVersionListing):
            raise ConfigError(
                f"--compare version: the source {pair.src_store.describe()} is a directory, "
                "which has no versions",
                hint="use --compare size, etag or mtime for a local source",
            )
        pair.src_store.use_current_versions()


def check_versioned(pairs: list[PairRuntime]) -> None:
    """Copying histories needs versioning on both buckets: refuse before anything is copied."""
    for pair in pairs:
        for role, store in (("source", pair.src_store), ("destination", pair.dst_store)):
            status = store.versioning()
            if status != "Enabled" and not (role == "source" and status == "Suspended"):
                raise ConfigError(
                    f"--all-versions: versioning is not enabled on the {role} "
                    f"{store.describe()} (status: {status or 'never enabled'})",
                    hint="enable versioning on that bucket first, or copy without "
                    "--all-versions (current versions only)",
                )


__all__ = [
    "PairRuntime",
    "check_versioned",
    "match_listing_orders",
    "open_pairs",
    "run_signature",
    "use_current_versions",
]
