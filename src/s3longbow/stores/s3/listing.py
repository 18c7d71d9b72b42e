"""Listing an S3 bucket: ListObjectsV2 pages through the data plane, read until the server says
the last one came (see :mod:`paging`), and ListObjectVersions through botocore.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from s3longbow.errors import (
    CredentialsRejectedError,
    FatalError,
    Interrupted,
    LongbowError,
    PermanentError,
)
from s3longbow.model import (
    ObjectInfo,
    ObjectVersion,
)
from s3longbow.retry import with_retries
from s3longbow.stores.base import BYTES, order_key
from s3longbow.stores.s3 import paging
from s3longbow.stores.s3.session import (
    _parse_timestamp,
)
from s3longbow.stores.s3.wire import (
    ListedObject,
    ListPage,
    restore_status,
    storage_class,
    unquote_etag,
)

if TYPE_CHECKING:
    pass
from s3longbow.stores.s3.common import StoreBase, _one_object

log = logging.getLogger(__name__)

T = TypeVar("T")

_LIST_ATTEMPTS = 5  # a listing page, through the lean client
_PAGE = 1000  # keys per listing page (S3's most)
# A first page asked for early (see Listing.list_early) waits this long, at most, for the
# request it answers; an older one is dropped and the request goes to the server.
_EARLY_FOR = 30.0

# A listing request, as an early page is kept for it: prefix, delimiter, restore statuses.
_EarlyKey = tuple[str, str | None, bool]


class Listing(StoreBase):
    """The listing calls of the store port (a part of S3Store)."""

    _versioned_listing = False
    # Listings ask for each archived object's restore status (S3 answers only for objects a
    # restore was asked for), so archived sources are told apart without a HEAD per object.
    # A store that refuses the request with it is asked without it from then on.
    _restore_status = True

    def list_early(self, prefix: str) -> None:
        """Ask now, each on a thread of its own, for the first page of `prefix`'s two
        listings (the whole, and folder by folder), and keep each reply for the first
        identical request within _EARLY_FOR seconds. Asked beside the bucket's check, they
        spare the listing that follows one round trip (150 ms between continents) whichever
        way the check says it lists. A page that fails is forgotten: the request that would
        have taken it goes to the server."""
        for delimiter in (None, "/"):
            key: _EarlyKey = (prefix, delimiter, self._restore_status)
            reply: Future[ListPage] = Future()
            with self._early_lock:
                if key in self._early:
                    continue
                self._early[key] = (time.monotonic(), reply)
            threading.Thread(
                target=self._fetch_early, args=(key, reply), name="list-early", daemon=True
            ).start()

    def _fetch_early(self, key: _EarlyKey, reply: Future[ListPage]) -> None:
        prefix, delimiter, restore_status = key
        try:
            page = self._counted(self.data.list_page)(
                self.bucket,
                prefix,
                delimiter=delimiter,
                restore_status=restore_status,
                max_keys=_PAGE,
            )
        except BaseException as exc:  # noqa: BLE001 - the request is sent again when it comes
            reply.set_exception(exc)
        else:
            reply.set_result(page)

    def _early_page(self, prefix: str, delimiter: str | None) -> ListPage | None:
        """The page asked for early for this first-page request, if one is kept (taken: it
        answers one request only), still young, and answered."""
        with self._early_lock:
            kept = self._early.pop((prefix, delimiter, self._restore_status), None)
        if kept is None:
            return None
        asked_at, reply = kept
        if time.monotonic() - asked_at > _EARLY_FOR:
            return None
        try:
            return reply.result()
        except BaseException as exc:  # noqa: BLE001 - asked again, where its failure counts
            log.debug("listing s3://%s/%s early failed: %s", self.bucket, prefix, exc)
            return None

    def _list_page(
        self, prefix: str, delimiter: str | None, asked: paging.NextPage, max_keys: int = _PAGE
    ) -> ListPage:
        if asked == paging.FIRST and max_keys == _PAGE:
            early = self._early_page(prefix, delimiter)
            if early is not None:
                return early
        # The lean client does not retry; a listing that fails ends the run, so it gets the
        # attempts botocore would have given it, and a refusal stops the run at once.
        data = self.data
        restore_status = self._restore_status
        try:
            return with_retries(
                lambda: self._counted(data.list_page)(
                    self.bucket,
                    prefix,
                    delimiter=delimiter,
                    token=asked.token,
                    start_after=asked.start_after,
                    marker=asked.marker,
                    restore_status=restore_status,
                    max_keys=max_keys,
                ),
                attempts=_LIST_ATTEMPTS,
                what=f"listing s3://{self.bucket}/{prefix}",
            )
        except Interrupted:
            raise
        except LongbowError as exc:
            if restore_status:
                self._without_restore_status(exc)
                return self._list_page(prefix, delimiter, asked, max_keys)
            if isinstance(exc, PermanentError):
                raise FatalError(exc.message, hint=exc.hint) from None
            raise

    def _counted(self, call: Callable[..., T]) -> Callable[..., T]:
        """`call`, counted as one listing request (a pre-flight estimate reports them)."""
        with self._listings_lock:
            self._listings += 1
        return call

    def listing_requests(self) -> int:
        with self._listings_lock:
            return self._listings

    def _without_restore_status(self, exc: LongbowError) -> None:
        """A listing that asked for restore statuses failed: the next asks without them."""
        if self._restore_status:
            self._restore_status = False
            log.info(
                "%s: listing without restore statuses after a refusal (%s)", self.describe(), exc
            )

    def _pages(
        self, prefix: str, delimiter: str | None, start_after: str | None = None
    ) -> Iterator[tuple[list[ObjectInfo], list[str]]]:
        """The pages of a listing (ListObjectsV2): each page's objects and common prefixes,
        each list in the store's order, every page read until the server says it was the
        last (see :mod:`s3longbow.stores.paging`); with `start_after`, only the names after
        it."""
        where = f"listing s3://{self.bucket}/{prefix}"
        byte_order = self.capabilities.listing_order == BYTES
        asked = paging.FIRST if start_after is None else paging.NextPage(start_after=start_after)
        # The greatest name handed out (or to start after), once pages are asked by name.
        last: str | None = start_after
        first = True
        while True:
            page = self._list_page(prefix, delimiter, asked)
            if page.v1 and asked.start_after is not None:
                # A server of the older ListObjects ignores start-after: ask it by marker.
                asked = paging.NextPage(marker=asked.start_after)
                page = self._list_page(prefix, delimiter, asked)
            objects = list(map(_listed, page.objects))
            prefixes = page.prefixes
            floor = paging.after(asked, last)
            if floor is not None:
                objects = [o for o in objects if o.key > floor]
                prefixes = [p for p in prefixes if p > floor]
                # The first page after `start_after` may hold nothing: nothing follows it.
                if not objects and not prefixes and not first:
                    raise paging.no_progress(where, floor)
            first = False
            names = [o.key for o in objects[-1:]] + prefixes[-1:]
            page_last = max(names) if names else None
            yield objects, prefixes
            asked_next = paging.next_page(
                where,
                truncated=page.truncated,
                token=page.next_token,
                next_marker=page.next_marker,
                v1=page.v1,
                last_name=page_last,
                byte_order=byte_order,
            )
            if asked_next is None:
                return
            if asked_next.by_name and page_last is not None:
                last = page_last if last is None else max(last, page_last)
            asked = asked_next

    def use_current_versions(self) -> None:
        """List each key's current version with its version id (ListObjectVersions), so
        planning can tell a new version of the same size (--compare version)."""
        self._versioned_listing = True
        # ListObjectVersions pages by key and version markers: no ranges of its own.
        self.capabilities = dataclasses.replace(self.capabilities, ranged_listing=False)

    def _version_pages(
        self, prefix: str, delimiter: str | None, where: str, *, source: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The pages of ListObjectVersions, each read until the server says it was the last.

        A truncated page that names no next key goes on after its last version where the
        server lists in byte order (see :mod:`s3longbow.stores.paging`); never silently ends.
        """
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        byte_order = self.capabilities.listing_order == BYTES
        previous: tuple[str, str] | None = None
        while True:
            if self._restore_status:
                kwargs["OptionalObjectAttributes"] = ["RestoreStatus"]
            try:
                with self._errors(where, fatal=not source, source=source):
                    page = self._counted(self.client.list_object_versions)(**kwargs)
            except LongbowError as exc:
                if "OptionalObjectAttributes" not in kwargs:
                    raise
                del kwargs["OptionalObjectAttributes"]
                self._without_restore_status(exc)
                continue
            yield page
            if not page.get("IsTruncated"):
                return
            if page.get("NextKeyMarker"):
                kwargs["KeyMarker"] = page["NextKeyMarker"]
                kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker") or ""
                continue
            entries = [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
            found = max(((e["Key"], str(e.get("VersionId") or "")) for e in entries), default=None)
            last_key = found[0] if found is not None else None
            # Raises where going on after the last version could skip versions.
            paging.next_page(
                where, truncated=True, token=None, last_name=last_key, byte_order=byte_order
            )
            assert found is not None and last_key is not None  # next_page raised otherwise
            if found == previous:
                raise paging.no_progress(where, last_key)
            previous = found
            kwargs["KeyMarker"], kwargs["VersionIdMarker"] = found

    def _list_versions_level(
        self, prefix: str, delimiter: str | None
    ) -> Iterator[ObjectInfo | str]:
        """Current versions (a key whose latest entry is a delete marker is left out) and,
        with a delimiter, the sub-prefixes, merged in the store's order page by page."""
        sort = order_key(self.capabilities.listing_order) or (lambda k: k)
        where = f"listing the versions of s3://{self.bucket}/{prefix}"
        for page in self._version_pages(prefix, delimiter, where):
            yield from _in_order(
                [_current(v) for v in page.get("Versions", ()) if v.get("IsLatest")],
                [p["Prefix"] for p in page.get("CommonPrefixes", ())],
                sort,
            )

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        if self._versioned_listing:
            yield from (
                o for o in self._list_versions_level(prefix, None) if not isinstance(o, str)
            )
            return
        for objects, _ in self._pages(prefix, None):
            yield from objects

    def list_after(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        if self._versioned_listing:
            raise ValueError("a listing of current versions cannot start after a key")
        for objects, _ in self._pages(prefix, None, start_after):
            yield from objects

    def keys_after(self, prefix: str, start_after: str, count: int) -> list[str]:
        page = self._list_page(prefix, None, paging.NextPage(start_after=start_after), count)
        # A server that ignores start-after answers from the start: nothing found past it.
        return [item[0] for item in page.objects if item[0] > start_after][:count]

    def list_level(self, prefix: str) -> Iterator[ObjectInfo | str]:
        if self._versioned_listing:
            yield from self._list_versions_level(prefix, "/")
            return
        sort = order_key(self.capabilities.listing_order) or (lambda k: k)
        for objects, prefixes in self._pages(prefix, "/"):
            yield from _in_order(objects, prefixes, sort)

    def versioning(self) -> str | None:
        with self._errors(f"reading the versioning of s3://{self.bucket}", fatal=True):
            resp = self.client.get_bucket_versioning(Bucket=self.bucket)
        return resp.get("Status") or None

    @_one_object
    def list_versions(self, key: str) -> list[ObjectVersion]:
        where = f"listing the versions of {self.describe(key)}"
        newest_first: list[ObjectVersion] = []
        try:
            for page in self._version_pages(key, None, where, source=True):
                # A key's versions come newest first. Delete markers come in a list of their
                # own, whose place among the versions only timestamps could tell (too coarse
                # to trust): they are left out.
                items = page.get("Versions", ())
                newest_first += [_version(item) for item in items if item["Key"] == key]
                if (
                    any(item["Key"] > key for item in items)
                    or (page.get("NextKeyMarker") or key) > key
                ):
                    break  # past the key: the rest are other keys' versions
        except CredentialsRejectedError:
            raise
        except FatalError as exc:
            # A history that cannot be listed whole fails this job, not the run.
            raise PermanentError(exc.message, hint=exc.hint) from None
        return newest_first[::-1]


def _in_order(
    objects: list[ObjectInfo], prefixes: list[str], sort: Callable[[str], str]
) -> list[ObjectInfo | str]:
    """One page of a delimited listing as one stream: its keys and its sub-prefixes come in two
    lists, each in order, merged here by the store's own order."""
    items: list[tuple[str, ObjectInfo | str]] = [(sort(o.key), o) for o in objects]
    items += [(sort(p), p) for p in prefixes]
    items.sort(key=lambda pair: pair[0])
    return [item for _, item in items]


def _current(item: dict[str, Any]) -> ObjectInfo:
    """The current version of a key, from a ListObjectVersions page."""
    restore = item.get("RestoreStatus") or {}
    in_progress = restore.get("IsRestoreInProgress")
    return ObjectInfo(
        key=item["Key"],
        size=int(item["Size"]),
        etag=unquote_etag(item.get("ETag")),
        last_modified=item["LastModified"].timestamp() if "LastModified" in item else None,
        version_id=item.get("VersionId"),
        storage_class=storage_class(item.get("StorageClass")),
        restore=restore_status(None if in_progress is None else str(in_progress)),
    )


def _version(item: dict[str, Any]) -> ObjectVersion:
    """An entry of a ListObjectVersions page."""
    return ObjectVersion(
        key=item["Key"],
        version_id=str(item.get("VersionId") or "null"),
        size=int(item.get("Size") or 0),
        etag=unquote_etag(item.get("ETag")),
        last_modified=item["LastModified"].timestamp() if "LastModified" in item else None,
    )


def _listed(item: ListedObject) -> ObjectInfo:
    """An entry of a listing page."""
    key, size, etag, modified, listed_class, restore = item
    return ObjectInfo(
        key=key,
        size=size,
        etag=etag,
        last_modified=_parse_timestamp(modified).timestamp() if modified else None,
        storage_class=listed_class,
        restore=restore,
    )
