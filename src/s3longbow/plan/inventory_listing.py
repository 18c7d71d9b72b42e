"""An S3 Inventory report as a pair's source listing (--src-inventory): its manifest read and
checked, each data file fetched to a temporary file and checked against the manifest's MD5,
and the objects under the pair's prefix sorted on disk into the order the merge needs.

A report of 10^9 keys is read in a few thousand GETs where a listing takes a million requests
(one a page of 1,000 keys), one after the other within each prefix; but it is a snapshot:
objects written since are not in it (not copied), objects changed since are found out by the
copy's pin on the ETag (and copied as they are now), and objects deleted since are recorded as
gone by the copy (see Copier's `snapshot`). Reports are not promised sorted (not even one data
file), so every entry goes through an external sort: memory stays flat however many keys.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from s3longbow.config import PairSettings, TransferSettings
from s3longbow.errors import ConfigError, ObjectError, SourceChangedError
from s3longbow.model import ObjectInfo
from s3longbow.pairs import PairRuntime
from s3longbow.plan.inventory import (
    InventoryError,
    Manifest,
    parse_manifest,
    read_data_file,
)
from s3longbow.plan.order import ListingOrder, resorted
from s3longbow.retry import with_retries
from s3longbow.stores.base import ObjectStore

log = logging.getLogger(__name__)

# A manifest names each data file in ~200 bytes: this is room for hundreds of thousands.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# Data files are fetched in ranges of this size (each fetch holds one in memory at a time).
_RANGE = 8 * 1024 * 1024
_ATTEMPTS = 5
# Data files fetched at once, ahead of the one being read: a report of 10^9 keys has thousands,
# and one after another each costs its round trips. Each is a temporary file until it is read.
_FETCHES = 4


def load_manifest(pair: PairRuntime) -> Manifest:
    """Read and check the pair's manifest: readable, an inventory of the pair's source bucket.

    Raises:
        InventoryError: It is missing, unreadable, or describes another bucket or format.
        FatalError: Its bucket cannot be reached.
    """
    assert pair.inventory is not None and pair.inventory_store is not None
    store, key = pair.inventory_store, pair.inventory.prefix
    where = store.describe(key)
    info = _head(store, key, where, "inventory manifest")
    if info.size > MAX_MANIFEST_BYTES:
        raise InventoryError(
            f"inventory manifest {where} is {info.size} bytes, more than a manifest holds",
            hint="give the manifest.json of an S3 Inventory report",
        )
    body = _fetch(store, key, 0, info.size, where) if info.size else b""
    manifest = parse_manifest(body, where)
    if manifest.source_bucket != pair.src.bucket:
        raise InventoryError(
            f"inventory manifest {where} lists bucket {manifest.source_bucket!r}, not the "
            f"source bucket {pair.src.bucket!r}",
            hint=f"give a manifest of a report of {pair.src.bucket!r} (its key names the "
            "bucket it lists), or the source that report lists",
        )
    return manifest


def inventory_snapshots(pairs: list[PairRuntime]) -> dict[int, str]:
    """What lists each pair that has an inventory report (`Manifest.snapshot`), by pair index,
    each manifest read and checked: bad input stops the run before anything is planned or
    copied."""
    return {
        pair.index: load_manifest(pair).snapshot for pair in pairs if pair.inventory is not None
    }


def inventory_listing(
    pair: PairRuntime,
    order: ListingOrder,
    *,
    folder: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[ObjectInfo]:
    """The objects of the pair's inventory under its source prefix, in `order`.

    Every data file is fetched and checked before the first object comes out (the sort needs
    them all), so a damaged report stops the run before anything of it is copied.

    Args:
        pair: A pair with an inventory.
        order: The order the merge needs (the destination's listing order).
        folder: Where the temporary files go (default: the system's temporary directory).
        should_stop: Stop fetching when it says so (the run is interrupted).

    Raises:
        InventoryError: The manifest, a data file, or a row of one is not usable.
    """
    import tempfile  # only a run with a report needs it (see order.resorted)

    manifest = load_manifest(pair)
    log.info(
        "listing %s from %s: %d data file(s) in %s",
        pair.src,
        manifest.snapshot,
        len(manifest.files),
        manifest.file_format,
    )
    with tempfile.TemporaryDirectory(dir=folder, prefix="longbow-inventory-") as tmp:
        entries = _entries(pair, manifest, Path(tmp), should_stop)
        yield from _unique(resorted(entries, order, folder=folder), pair)


def _entries(
    pair: PairRuntime, manifest: Manifest, folder: Path, should_stop: Callable[[], bool]
) -> Iterator[ObjectInfo]:
    """The entries of every data file, file after file in the manifest's order, while the
    next ones are fetched."""
    assert pair.inventory_store is not None
    store = pair.inventory_store
    files = iter(enumerate(manifest.files))
    fetching: deque[tuple[Future[None], Path, str]] = deque()
    stopped = threading.Event()  # the reading ended: fetches still running end early
    pool = ThreadPoolExecutor(_FETCHES, thread_name_prefix="inventory-fetch")

    def fetch_next() -> None:
        for index, data_file in files:
            where = store.describe(data_file.key)
            path = folder / f"data-{index}"
            future = pool.submit(
                _download,
                store,
                data_file.key,
                data_file.size,
                data_file.md5,
                path,
                where,
                stopped.is_set,
            )
            fetching.append((future, path, where))
            return

    try:
        for _ in range(_FETCHES):
            fetch_next()
        while fetching:
            if should_stop():
                return
            future, path, where = fetching.popleft()
            try:
                future.result()  # its own InventoryError, in the manifest's order
                fetch_next()
                yield from read_data_file(path, manifest, prefix=pair.src.prefix, where=where)
            finally:
                path.unlink(missing_ok=True)
    finally:
        stopped.set()
        pool.shutdown(wait=True, cancel_futures=True)
        for _, path, _ in fetching:
            path.unlink(missing_ok=True)


def _download(
    store: ObjectStore,
    key: str,
    size: int,
    md5: str,
    path: Path,
    where: str,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Fetch a data file to `path` in ranges, hashing it on the way; refuse one whose size or
    MD5 is not the manifest's. Ends early, the file unchecked, once `stopped` says so."""
    found = _head(store, key, where, "inventory data file")
    if found.size != size:
        raise InventoryError(
            f"inventory data file {where} is {found.size} bytes; its manifest says {size}",
            hint="the report is damaged or incomplete: use a complete report",
        )
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("wb") as out:
        for start in range(0, size, _RANGE):
            if stopped():
                return
            piece = _fetch(store, key, start, min(_RANGE, size - start), where)
            digest.update(piece)
            out.write(piece)
    if digest.hexdigest() != md5:
        raise InventoryError(
            f"inventory data file {where} fails its MD5 check: its manifest says {md5}, its "
            f"bytes hash to {digest.hexdigest()}",
            hint="the report is damaged (or was changed since S3 wrote it): use an undamaged "
            "report; nothing was copied",
        )


def _head(store: ObjectStore, key: str, where: str, what: str) -> ObjectInfo:
    try:
        found = with_retries(lambda: store.head(key), attempts=_ATTEMPTS, what=f"HEAD {where}")
    except ObjectError as exc:
        raise InventoryError(f"cannot read {what} {where}: {exc}") from None
    if found is None:
        raise InventoryError(
            f"{what} {where} does not exist",
            hint="check the --src-inventory location (s3://bucket/key of manifest.json, on "
            "the source's endpoint)",
        )
    return found


def _fetch(store: ObjectStore, key: str, start: int, length: int, where: str) -> bytes:
    try:
        data = with_retries(
            lambda: store.get_range(key, start, length),
            attempts=_ATTEMPTS,
            what=f"reading {where}",
        )
    except SourceChangedError:
        raise InventoryError(f"{where} disappeared while it was read") from None
    except ObjectError as exc:
        raise InventoryError(f"cannot read {where}: {exc}") from None
    return bytes(data)


def _unique(listing: Iterator[ObjectInfo], pair: PairRuntime) -> Iterator[ObjectInfo]:
    # A report lists each key once (its current version once): one listed twice is damaged,
    # and the merge would take it for a listing out of order.
    previous: str | None = None
    for obj in listing:
        if obj.key == previous:
            raise InventoryError(
                f"the inventory of {pair.src} lists {obj.key!r} twice",
                hint="the report is damaged: use an undamaged report",
            )
        previous = obj.key
        yield obj


def check_inventory_options(
    pairs: tuple[PairSettings, ...], transfer: TransferSettings, *, delete: bool
) -> None:
    """Refuse what cannot go with an inventory report as the source's listing.

    A report is a snapshot of the past: objects written to the source after it are not in it,
    so their copies would look like objects the source lacks. Deleting them would lose data,
    and telling them apart would take a request per destination object (what the report
    spares), so --delete needs a live listing. A report gives no version ids to compare.
    """
    if not any(pair.src_inventory for pair in pairs):
        return
    if delete:
        raise ConfigError(
            "--delete cannot go with --src-inventory: the report is a past snapshot, and "
            "objects written to the source since it would look deleted",
            hint="copy from the report without --delete, then run a sync that lists the "
            "source (without --src-inventory) with --delete",
        )
    if transfer.compare == "version":
        raise ConfigError(
            "--compare version cannot go with --src-inventory: a report's version ids are "
            "not compared",
            hint="use --compare size, etag or mtime",
        )


__all__ = [
    "MAX_MANIFEST_BYTES",
    "check_inventory_options",
    "inventory_listing",
    "inventory_snapshots",
    "load_manifest",
]
