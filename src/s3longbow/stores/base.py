"""The store port: what the planner and the transfer engine need from any object store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from s3longbow.model import ObjectDetails, ObjectInfo, ObjectProperties, PartInfo

BYTES = "bytes"
SEGMENTS = "segments"


def order_key(order: str) -> Callable[[str], str] | None:
    """The comparison key of an order (None: compare keys as they are)."""
    if order == BYTES:
        return None
    if order == SEGMENTS:
        # "/" becomes the lowest character, so a folder's keys sort before its siblings'.
        return lambda key: key.replace("/", "\x00")
    raise ValueError(f"unknown listing order {order!r}")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can do, so callers choose a path instead of guessing.

    Attributes:
        directory_markers: Keys ending in "/" can be stored as objects.
        multipart_etag_md5: A completed multipart object's ETag is md5(part md5s)-N, as on AWS.
        listing_order: "bytes" (UTF-8 byte order, as S3) or "segments" (folder by folder:
            "/" sorts before every other character, as filer-based stores list).
        content_etag: ETags describe the content (an MD5, or md5-of-parts-N); False where they
            only identify a version (a file's size and modification time).
        delimited_listing: `list_level` is worth using (sub-prefixes can be listed in
            parallel).
    """

    directory_markers: bool = True
    multipart_etag_md5: bool = True
    listing_order: str = "bytes"
    content_etag: bool = True
    delimited_listing: bool = True


class ObjectStore(Protocol):
    """One bucket (or directory tree) that objects are listed in, read from and written to.

    Keys are full keys within the bucket. Listings come in UTF-8 byte order, page by page.
    Reads may be pinned to an ETag; a mismatch raises SourceChangedError. Writes carry the
    part's MD5 so the store rejects a corrupted body.
    """

    name: str
    capabilities: Capabilities

    def describe(self, key: str = "") -> str:
        """A printable location such as s3://bucket/key or /data/key."""
        ...

    def check(self) -> None:
        """Fail fast with a FatalError when the bucket or directory cannot be used."""
        ...

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""
        ...

    def list_level(self, prefix: str) -> Iterator[ObjectInfo | str]:
        """The objects directly under `prefix` and its sub-prefixes (ending in "/"),
        interleaved in listing order: a sub-prefix stands where its keys would."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's current identity, or None when it does not exist."""
        ...

    def get_range(self, key: str, start: int, length: int, *, etag: str | None = None) -> bytes:
        """Exactly `length` bytes from `start` (the whole object when length is its size)."""
        ...

    def read_object(
        self, key: str, size: int, *, etag: str | None = None
    ) -> tuple[bytes, ObjectProperties]:
        """A whole object (pinned like get_range) with its properties, in one request."""
        ...

    def details(self, key: str, etag: str | None, *, part_one: bool = False) -> ObjectDetails:
        """An object's properties (a HEAD, pinned); with `part_one`, also its part layout
        where the store tells it (size of part 1 and the part count)."""
        ...

    def get_tags(self, key: str) -> tuple[tuple[str, str], ...]:
        """The object's tags."""
        ...

    def delete_object(self, key: str) -> None:
        """Remove an object (used only for a copy this run wrote and found wrong)."""
        ...

    def delete_objects(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        """Remove objects (up to 1,000); returns (key, reason) for those that failed."""
        ...

    def put_object(
        self,
        key: str,
        data: bytes,
        *,
        md5_b64: str,
        storage_class: str | None = None,
        properties: ObjectProperties | None = None,
        tags: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Write a whole object in one request, with its properties; return its ETag."""
        ...

    def create_upload(
        self,
        key: str,
        *,
        storage_class: str | None = None,
        properties: ObjectProperties | None = None,
        tags: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Start a multipart upload (the object's properties are set here); return its id."""
        ...

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5_b64: str
    ) -> str:
        """Upload one part; return its ETag."""
        ...

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo] | None:
        """The parts of an open upload, or None when the upload no longer exists."""
        ...

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> str:
        """Join the parts into the object; return the ETag the store reports (may be empty)."""
        ...

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abandon an upload and free its parts; a missing upload is not an error."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
