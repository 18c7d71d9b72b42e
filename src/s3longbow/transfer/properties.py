"""--update-properties: fix destination objects whose data matches but whose properties or tags
differ, with a copy of the object onto itself that replaces only its metadata (no data moves
through this machine).

Runs beside planning, on the objects planning found already present; it is not recorded in
the job database: a re-run compares again, and what matches is left alone.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from s3longbow.config import KEEP_CLASS
from s3longbow.errors import LongbowError
from s3longbow.model import ObjectInfo, ObjectProperties
from s3longbow.pairs import PairRuntime
from s3longbow.rewrites import rewrite

log = logging.getLogger(__name__)

# Compared and copied; the checksum, encryption flag and tag count are not properties to copy.
_FIELDS = (
    "content_type",
    "content_encoding",
    "content_disposition",
    "content_language",
    "cache_control",
    "expires",
    "website_redirect",
)


def differences(
    src: ObjectProperties,
    dst: ObjectProperties,
    src_tags: tuple[tuple[str, str], ...] | None = None,
    dst_tags: tuple[tuple[str, str], ...] | None = None,
) -> list[str]:
    """The names of the properties that differ (user metadata names compare without case, as
    S3 stores them in lower case); tags only when both sides' tags are given."""
    found = [name for name in _FIELDS if getattr(src, name) != getattr(dst, name)]
    if {(k.lower(), v) for k, v in src.metadata} != {(k.lower(), v) for k, v in dst.metadata}:
        found.append("metadata")
    if src_tags is not None and dst_tags is not None and sorted(src_tags) != sorted(dst_tags):
        found.append("tags")
    return found


@dataclass
class PropertyReport:
    checked: int = 0
    updated: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # destination key, reason


class PropertyUpdater:
    """Checks present objects on a pool of threads and fixes their properties."""

    def __init__(
        self,
        pool: Executor,
        *,
        copy_tags: bool,
        storage_class: str | None,
        content_types: tuple[tuple[str, str], ...] = (),
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.pool = pool
        self.copy_tags = copy_tags
        self.storage_class = storage_class
        self.content_types = content_types  # the run's rewrites (see s3longbow.rewrites)
        self.metadata = metadata
        self.report = PropertyReport()
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()

    def submit(self, pair: PairRuntime, present: list[tuple[ObjectInfo, ObjectInfo]]) -> None:
        """Check (and fix) each source object and its destination copy, on the pool."""
        futures = [self.pool.submit(self._one, pair, src, dst) for src, dst in present]
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + futures

    def wait(self) -> PropertyReport:
        with self._lock:
            pending = list(self._futures)
        for future in pending:
            future.result()
        return self.report

    def _one(self, pair: PairRuntime, src: ObjectInfo, dst: ObjectInfo) -> None:
        try:
            src_details = pair.src_store.details(src.key, src.etag)
            dst_details = pair.dst_store.details(dst.key, dst.etag)
            # Compared as the run writes them; a retention is no property to update.
            src_props = rewrite(
                dataclasses.replace(src_details.properties, lock=None),
                src.key,
                content_types=self.content_types,
                metadata=self.metadata,
                guessed_type=not pair.src_store.capabilities.keeps_properties,
            )
            dst_props = dst_details.properties
            src_tags = dst_tags = None
            if self.copy_tags and (src_props.tag_count or dst_props.tag_count):
                src_tags = pair.src_store.get_tags(src.key) if src_props.tag_count else ()
                dst_tags = pair.dst_store.get_tags(dst.key) if dst_props.tag_count else ()
            changed = differences(src_props, dst_props, src_tags, dst_tags)
            if changed:
                pair.dst_store.update_properties(
                    dst.key,
                    etag=dst.etag,
                    properties=src_props,
                    tags=src_tags,
                    storage_class=src_details.storage_class
                    if (self.storage_class or "").lower() == KEEP_CLASS
                    else self.storage_class or dst_details.storage_class,
                )
                log.info("%s: updated %s", pair.dst_store.describe(dst.key), ", ".join(changed))
        except LongbowError as exc:
            with self._lock:
                self.report.checked += 1
                self.report.failed.append((dst.key, str(exc)))
            return
        with self._lock:
            self.report.checked += 1
            self.report.updated += bool(changed)


__all__ = ["PropertyReport", "PropertyUpdater", "differences"]
