"""The store port: what the planner and the transfer engine need from any object store."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from s3longbow.model import (
    Bytes,
    Checksum,
    ObjectDetails,
    ObjectInfo,
    ObjectLock,
    ObjectProperties,
    ObjectVersion,
    PartInfo,
)

# The most memory a relayed body holds while it passes from one connection to the other
# (a store's relay may hold less: none at all inside the kernel).
RELAY_BUFFER = 64 * 1024


class Relayed(Protocol):
    """An object's bytes still on the source's connection, to be written to another store as
    they arrive, never held whole in memory (see ObjectStore.open_object); a context
    manager."""

    length: int

    def __len__(self) -> int: ...

    def read(self) -> bytes | bytearray:
        """The bytes read into memory instead (when they are not to be relayed after all)."""
        ...

    def __enter__(self) -> Relayed: ...

    def __exit__(self, *exc_info: object) -> None: ...


# How a store orders its listings: UTF-8 byte order (as S3), or folder by folder.
ListingOrder = Literal["bytes", "segments"]
BYTES: ListingOrder = "bytes"
SEGMENTS: ListingOrder = "segments"


def order_key(order: ListingOrder) -> Callable[[str], str] | None:
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
        checksums: S3 additional checksums: "MD5" (none: Content-MD5 only), "auto" (reported
            on reads and accepted on writes), or the algorithm every write must carry.
        write_etags_md5: Objects written here get their MD5 as ETag (not under KMS
            encryption), so a write's ETag can be checked.
        keeps_properties: Objects keep properties and tags (content type, user metadata)
            that `update_properties` can replace; a file keeps none.
        ranged_listing: A listing can start after any key, on the server, in byte order
            (`RangedListing`), so the key space can be cut into ranges listed apart: S3
            and the servers that list as it does, not a filer that lists folder by folder.
        customer_key: Objects here are read and written with a customer-provided key
            (SSE-C): their ETags are not the MD5s of their bytes, whatever they look like.
    """

    directory_markers: bool = True
    multipart_etag_md5: bool = True
    listing_order: ListingOrder = "bytes"
    content_etag: bool = True
    delimited_listing: bool = True
    checksums: str = "MD5"
    write_etags_md5: bool = True
    keeps_properties: bool = True
    ranged_listing: bool = False
    customer_key: bool = False


@runtime_checkable
class ReorderableListing(Protocol):
    """A store that can list in either order (a directory walk): told the order of the store
    on the other side of a pair, it lists in that one, so the two listings merge."""

    def use_listing_order(self, order: ListingOrder) -> None:
        """List in `order` ("bytes" or "segments") from now on."""
        ...


@runtime_checkable
class EarlyListing(Protocol):
    """A store whose listing's first page can be asked for before the listing starts (while
    its bucket is checked), each reply kept for the first request it answers."""

    def list_early(self, prefix: str) -> None:
        """Ask, without waiting, for the first pages the listings of `prefix` will ask for."""
        ...


@runtime_checkable
class RangedListing(Protocol):
    """A store whose listing can start after any key (ListObjectsV2's `start-after`); used
    where its capabilities say `ranged_listing`."""

    def list_after(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` and is greater than `start_after`,
        in key order."""
        ...

    def keys_after(self, prefix: str, start_after: str, count: int) -> list[str]:
        """Up to `count` keys that start with `prefix` and are greater than `start_after`,
        the lowest first (one small request: a probe of the key space)."""
        ...


def lists_ranges(store: ObjectStore) -> bool:
    """Whether `store` can list a range of its keys on its own (see `RangedListing`)."""
    return store.capabilities.ranged_listing and isinstance(store, RangedListing)


@dataclass(frozen=True, slots=True)
class EndpointFacts:
    """Where a remote store's requests go, as a pre-flight estimate prices them.

    Attributes:
        region: The region the requests are signed for (the bucket's, once checked).
        at_aws: The endpoint is AWS's own (no endpoint URL given, or an amazonaws.com one):
            AWS's prices apply to its requests and to the bytes read out of it.
        endpoint: The endpoint as people name it ("AWS", or the URL given).
    """

    region: str
    at_aws: bool
    endpoint: str


@runtime_checkable
class RemoteStore(Protocol):
    """A store reached over a network, whose requests take round trips and may be billed:
    a pre-flight estimate counts them and times them (a directory is no such store)."""

    def endpoint_facts(self) -> EndpointFacts:
        """Where this store's requests go."""
        ...

    def round_trip(self) -> float:
        """One HEAD of the bucket; the seconds until its reply came (a read, changing
        nothing)."""
        ...

    def listing_requests(self) -> int:
        """The listing requests this store has made so far (pages and probes, retries
        included)."""
        ...


@runtime_checkable
class CurrentVersionListing(Protocol):
    """A store that can list each key's current version with its version id (a versioned
    bucket), so planning can tell a new version of the same size (--compare version)."""

    def use_current_versions(self) -> None:
        """List current versions with their version ids from now on."""
        ...


class RestoreAnswer(enum.StrEnum):
    """What a store answered a request to restore an archived object."""

    STARTED = "started"  # a restore began (202)
    IN_PROGRESS = "in_progress"  # one was under way already (409 RestoreAlreadyInProgress)
    READY = "ready"  # a restored copy is readable now (200)
    NOT_ARCHIVED = "not_archived"  # the object needs no restore: it is readable as it is


@runtime_checkable
class Restorable(Protocol):
    """A store whose objects may be archived, and that can be asked to restore one."""

    def restore_object(
        self,
        key: str,
        *,
        days: int | None,
        tier: str,
        version_id: str | None = None,
    ) -> RestoreAnswer:
        """Ask for a readable copy of an archived object, kept `days` days (None for an
        Intelligent-Tiering archive tier, whose restored objects stay readable), fetched at
        `tier` speed (Standard, Bulk or Expedited)."""
        ...


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

    def get_range(
        self,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
        into: bytearray | None = None,
        each: Callable[[memoryview], None] | None = None,
    ) -> Bytes:
        """Exactly `length` bytes from `start` (the whole object when length is its size),
        of the version `version_id` when given (a versioned bucket keeps it however the key
        is overwritten).

        `into`, a buffer of at least `length` bytes, may receive them (the result is then a
        view of it). `each` is called with consecutive pieces that make up exactly the bytes
        returned, in order, as they arrive (pieces of a failed read may have been seen first):
        a checksum of them is computed while they are still in the CPU's cache."""
        ...

    def read_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[bytes | bytearray, ObjectProperties]:
        """A whole object (pinned like get_range) with its properties, in one request."""
        ...

    def open_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[Relayed, ObjectProperties] | None:
        """A whole object's read (as read_object) whose bytes are left on the connection to
        be relayed into a write on a store that can_relay_from this one; None where this
        store cannot (a local file, or a reply without a stated length)."""
        ...

    def open_range(
        self,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> Relayed | None:
        """A ranged read (as get_range) whose bytes are left on the connection, to become a
        part (upload_part) on a store that can_relay_from this one; None as open_object."""
        ...

    def details(
        self,
        key: str,
        etag: str | None,
        *,
        part_one: bool = False,
        version_id: str | None = None,
    ) -> ObjectDetails:
        """An object's properties (a HEAD, pinned) and version id; with `part_one`, also its
        part layout where the store tells it (size of part 1 and the part count)."""
        ...

    def get_tags(self, key: str) -> tuple[tuple[str, str], ...]:
        """The object's tags."""
        ...

    def versioning(self) -> str | None:
        """The bucket's versioning status ("Enabled", "Suspended"), None where it has none."""
        ...

    def list_versions(self, key: str) -> list[ObjectVersion]:
        """Every version of exactly `key`, oldest first (delete markers left out)."""
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
        data: Bytes | Relayed,
        *,
        md5_b64: str,
        storage_class: str | None = None,
        properties: ObjectProperties | None = None,
        tags: tuple[tuple[str, str], ...] = (),
        checksum: Checksum | None = None,
        create_only: bool = False,
    ) -> str:
        """Write a whole object in one request, with its properties (and, where the store
        takes it, the additional checksum it must check); return its ETag. `create_only`:
        only where no object has the key (If-None-Match: *), else NotReplacedError."""
        ...

    def create_upload(
        self,
        key: str,
        *,
        storage_class: str | None = None,
        properties: ObjectProperties | None = None,
        tags: tuple[tuple[str, str], ...] = (),
        checksum_algorithm: str | None = None,
        full_object: bool = False,
    ) -> str:
        """Start a multipart upload (the object's properties are set here); return its id.
        With `checksum_algorithm`, every part carries that checksum and the object gets a
        composite one, or a full-object one with `full_object`."""
        ...

    def upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        data: Bytes | Relayed,
        *,
        md5_b64: str | None,
        checksum: Checksum | None = None,
    ) -> str:
        """Upload one part (with the upload's checksum, if it has an algorithm); return its
        ETag. Without `md5_b64` the checksum alone guards it: a store that cannot confirm it
        checked that checksum raises ChecksumNotConfirmedError."""
        ...

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo] | None:
        """The parts of an open upload, or None when the upload no longer exists."""
        ...

    def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[PartInfo],
        *,
        algorithm: str | None = None,
        full_checksum: Checksum | None = None,
        create_only: bool = False,
    ) -> str:
        """Join the parts into the object; return the ETag the store reports (may be empty).
        An upload with a checksum algorithm lists each part's checksum, and the whole
        object's for a full-object checksum. `create_only`: as for put_object."""
        ...

    def update_properties(
        self,
        key: str,
        *,
        etag: str | None,
        properties: ObjectProperties,
        tags: tuple[tuple[str, str], ...] | None,
        storage_class: str | None,
    ) -> None:
        """Replace an object's properties (and its tags, unless `tags` is None) without
        rewriting its data, pinned to `etag`; its storage class is kept as given."""
        ...

    def can_copy_from(self, source: object) -> bool:
        """Whether this store can copy objects from `source` on the server (the same endpoint,
        reached with the same credentials), so the bytes need not pass through here."""
        ...

    def copy_object(
        self,
        source: ObjectStore,
        src_key: str,
        key: str,
        *,
        etag: str | None,
        version_id: str | None = None,
        storage_class: str | None = None,
        copy_tags: bool = True,
        properties: ObjectProperties | None = None,
        create_only: bool = False,
    ) -> str:
        """Copy a whole object (up to 5 GiB) on the server, pinned to `etag`, with its
        properties (and tags), or with `properties` instead where given (their Object Lock
        too); return the new object's ETag. `create_only`: as for put_object."""
        ...

    def upload_part_copy(
        self,
        source: ObjectStore,
        src_key: str,
        key: str,
        upload_id: str,
        number: int,
        start: int,
        length: int,
        *,
        etag: str | None,
        version_id: str | None = None,
    ) -> str:
        """Make part `number` of an upload from a byte range of `source`'s object, on the
        server, pinned to `etag`; return the part's ETag."""
        ...

    def object_lock(self) -> bool:
        """Whether objects written here can carry Object Lock retention and legal holds (the
        bucket has Object Lock enabled); asked once, then remembered."""
        ...

    def set_lock(self, key: str, lock: ObjectLock) -> None:
        """Give an object the retention and legal hold of `lock` (for a server that kept
        none of what the write carried)."""
        ...

    def can_relay_from(self, source: object) -> bool:
        """Whether `source`'s bytes can reach this store as they arrive, never held whole in
        memory (both S3 stores): see open_range and open_object."""
        ...

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abandon an upload and free its parts; a missing upload is not an error."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
