"""Listing orders. S3 lists keys in UTF-8 byte order; some stores built on a filer (SeaweedFS)
list folder by folder, which sorts "/" before every other character. The merge needs both
sides in one order, so each store declares its order and a listing can be re-sorted."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from s3longbow.model import ObjectInfo
from s3longbow.stores.base import BYTES, SEGMENTS, ListingOrder, order_key

_INSERT = "INSERT INTO listing VALUES (?, ?, ?, ?, ?, ?, ?)"

__all__ = ["BYTES", "SEGMENTS", "ListingOrder", "order_key", "resorted"]


def resorted(
    listing: Iterable[ObjectInfo], order: ListingOrder, *, folder: Path | None = None
) -> Iterator[ObjectInfo]:
    """The listing in another order, sorted on disk (a temporary SQLite file), so memory stays
    flat however many keys there are. Used when two stores list in different orders, and for
    inventory reports, which come in no promised order."""
    import tempfile  # rarely needed, and its import costs more than the rest of this module

    key_of = order_key(order) or (lambda k: k)
    with tempfile.TemporaryDirectory(dir=folder, prefix="longbow-sort-") as tmp:
        db = sqlite3.connect(Path(tmp) / "sort.db")
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(
                "CREATE TABLE listing (sort BLOB, key TEXT, size INTEGER, etag TEXT, "
                "modified REAL, version TEXT, class TEXT)"
            )
            batch: list[tuple[object, ...]] = []
            for obj in listing:
                batch.append(
                    (
                        key_of(obj.key).encode("utf-8", "surrogatepass"),
                        obj.key,
                        obj.size,
                        obj.etag,
                        obj.last_modified,
                        obj.version_id,
                        obj.storage_class,
                    )
                )
                if len(batch) >= 5000:
                    db.executemany(_INSERT, batch)
                    batch.clear()
            db.executemany(_INSERT, batch)
            for row in db.execute(
                "SELECT key, size, etag, modified, version, class FROM listing ORDER BY sort"
            ):
                yield ObjectInfo(*row)
        finally:
            db.close()
