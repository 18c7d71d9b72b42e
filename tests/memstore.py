"""An object store in memory, an upload ledger in memory and an executor that runs tasks
inline: the transfer engine's collaborators for unit tests of its logic, with no server.

`MemoryStore` keeps S3's rules that the engine relies on: reads pinned to an ETag, a body
refused when its Content-MD5 or checksum does not match, ETags that are MD5s (or not, under
"KMS"), multipart ETags md5-of-part-md5s-N, part layouts told by a HEAD of part 1, composite
and full-object checksums. Faults are set on the store: reads that come back corrupted, a
source replaced after some reads, checksums left unconfirmed.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

from s3longbow import checksums
from s3longbow.errors import (
    ChecksumNotConfirmedError,
    NotReplacedError,
    SourceChangedError,
    TransientError,
    UploadMissingError,
)
from s3longbow.model import (
    Bytes,
    Checksum,
    Job,
    ObjectDetails,
    ObjectInfo,
    ObjectLock,
    ObjectProperties,
    ObjectVersion,
    PartInfo,
)
from s3longbow.stores.base import Capabilities, ObjectStore, Relayed
from s3longbow.verdicts import not_replaced_reason

S3_LIKE = Capabilities()
NO_PROPERTIES = ObjectProperties()
P = ParamSpec("P")
T = TypeVar("T")
_ids = itertools.count(1)


def md5_hex(data: Bytes) -> str:
    return hashlib.md5(data).hexdigest()


def multipart_etag_of(parts: Sequence[Bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"


@dataclass
class Stored:
    """One version of an object."""

    data: bytes
    etag: str
    properties: ObjectProperties = NO_PROPERTIES
    version_id: str | None = None
    part_sizes: tuple[int, ...] | None = None  # the layout of a multipart object
    tags: tuple[tuple[str, str], ...] = ()
    storage_class: str | None = None


@dataclass
class OpenUpload:
    key: str
    properties: ObjectProperties | None
    tags: tuple[tuple[str, str], ...]
    algorithm: str | None
    parts: dict[int, tuple[bytes, PartInfo]] = field(default_factory=dict)
    storage_class: str | None = None


class Body:
    """A whole object's or a range's bytes left "on the connection" (see Relayed)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def __len__(self) -> int:
        return self.length

    def read(self) -> bytes:
        return self._data

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class MemoryStore:
    """A bucket in memory implementing ObjectStore.

    Args:
        name: The bucket's name.
        capabilities: What it tells the engine it can do.
        relays: It can relay to and from other relaying stores (both "on plain HTTP").
        endpoint: Stores of the same endpoint copy from one another on the server.
        layout_visible: A HEAD of part 1 tells a multipart object's part size and count.
        confirms_checksums: A part sent without Content-MD5 gets its checksum confirmed
            (else ChecksumNotConfirmedError, after the part is stored, as a server that
            ignores the header would).
        versioned: Every write keeps the earlier versions of the key.
        object_lock: The bucket has Object Lock (writes keep the locks they carry).

    Attributes:
        calls: Every request as (operation, key), in order.
        guards: What guarded each part uploaded: "md5", "crc" (its checksum alone) or "none".
        corrupt_reads: (key, offset) -> how many more reads starting there come back with
            a byte flipped.
        on_read: Called with (key, offset) before each ranged read (to change the source).
        etag_rewrite: Called with the ETag of each object or part written (not of a
            completed upload); returns the one the store reports and keeps.
    """

    def __init__(
        self,
        name: str = "bucket",
        *,
        capabilities: Capabilities = S3_LIKE,
        relays: bool = False,
        endpoint: str | None = None,
        layout_visible: bool = True,
        confirms_checksums: bool = True,
        versioned: bool = False,
        object_lock: bool = False,
    ) -> None:
        self.lock_enabled = object_lock
        self.lock_asked = 0
        self.name = name
        self.capabilities = capabilities
        self.relays = relays
        self.endpoint = endpoint
        self.layout_visible = layout_visible
        self.confirms_checksums = confirms_checksums
        self.versioned = versioned
        self.versions: dict[str, list[Stored]] = {}
        self.uploads: dict[str, OpenUpload] = {}
        self.calls: list[tuple[str, str]] = []
        self.guards: list[str] = []
        self.corrupt_reads: dict[tuple[str, int], int] = {}
        self.on_read: Callable[[str, int], None] | None = None
        self.etag_rewrite: Callable[[str], str] = lambda etag: etag
        self._lock = threading.Lock()

    # -- set-up and inspection --------------------------------------------------------------

    def add(
        self,
        key: str,
        data: bytes,
        *,
        part_sizes: Sequence[int] | None = None,
        checksum: str | None = None,
        composite: bool = False,
        encrypted: bool = False,
        properties: ObjectProperties = NO_PROPERTIES,
        tags: tuple[tuple[str, str], ...] = (),
        storage_class: str | None = None,
    ) -> Stored:
        """Store an object as a client would have written it: in parts of `part_sizes` (a
        multipart ETag and layout), with an additional checksum of all its bytes or
        composite, and encrypted (an ETag that is no MD5 of its bytes)."""
        parts = _split(data, part_sizes) if part_sizes else None
        etag = multipart_etag_of(parts) if parts else md5_hex(data)
        if encrypted:
            etag = _opaque_etag(etag)
        found = None
        if checksum is not None and composite and parts:
            sums = [checksums.checksum_b64(checksum, p) for p in parts]
            found = checksums.composite(checksum, sums)
        elif checksum is not None:
            found = Checksum(checksum, checksums.checksum_b64(checksum, data))
        props = replace(
            properties, checksum=found, encrypted=encrypted, tag_count=len(tags) or None
        )
        stored = Stored(
            data,
            etag,
            props,
            part_sizes=tuple(len(p) for p in parts) if parts else None,
            tags=tags,
            storage_class=storage_class,
        )
        self._keep(key, stored)
        return stored

    def job(self, key: str, dst_key: str | None = None, **fields: Any) -> Job:
        """A job for the object at `key` as planning would make it."""
        obj = self._pinned(key, None, None)
        job = Job(
            id=next(_ids),
            run_id=1,
            pair=0,
            src_key=key,
            dst_key=dst_key or key,
            size=len(obj.data),
            etag=obj.etag,
        )
        return replace(job, **fields)

    def data(self, key: str) -> bytes | None:
        current = self.versions.get(key)
        return current[-1].data if current else None

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    # -- ObjectStore ------------------------------------------------------------------------

    def describe(self, key: str = "") -> str:
        return f"mem://{self.name}/{key}"

    def check(self) -> None:
        return None

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        for key in sorted(self.versions):
            info = self.head(key) if key.startswith(prefix) else None
            if info is not None:
                yield info

    def list_level(self, prefix: str) -> Iterator[ObjectInfo | str]:
        yield from self.list_objects(prefix)

    def head(self, key: str) -> ObjectInfo | None:
        self._call("head", key)
        current = self.versions.get(key)
        if not current:
            return None
        obj = current[-1]
        return ObjectInfo(key, len(obj.data), obj.etag, version_id=obj.version_id)

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
        self._call("get", key)
        data = self._read(key, start, length, etag, version_id)
        if each is not None:
            each(memoryview(data))
        if into is not None:
            into[:length] = data
            return memoryview(into)[:length]
        return data

    def read_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[bytes, ObjectProperties]:
        self._call("get", key)
        data = self._read(key, 0, size, etag, version_id)
        return data, _props(self._pinned(key, etag, version_id))

    def open_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[Relayed, ObjectProperties] | None:
        if not self.relays:
            return None
        self._call("open", key)
        data = self._read(key, 0, size, etag, version_id)
        return Body(data), _props(self._pinned(key, etag, version_id))

    def open_range(
        self,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> Relayed | None:
        if not self.relays:
            return None
        self._call("open", key)
        return Body(self._read(key, start, length, etag, version_id))

    def details(
        self,
        key: str,
        etag: str | None,
        *,
        part_one: bool = False,
        version_id: str | None = None,
    ) -> ObjectDetails:
        self._call("details-part-1" if part_one else "details", key)
        obj = self._pinned(key, etag, version_id)
        part_size = count = None
        if part_one and self.layout_visible and obj.part_sizes:
            part_size, count = obj.part_sizes[0], len(obj.part_sizes)
        return ObjectDetails(
            _props(obj),
            part_size,
            count,
            version_id=obj.version_id,
            storage_class=obj.storage_class,
        )

    def get_tags(self, key: str) -> tuple[tuple[str, str], ...]:
        self._call("get-tags", key)
        return self._pinned(key, None, None).tags

    def versioning(self) -> str | None:
        return "Enabled" if self.versioned else None

    def list_versions(self, key: str) -> list[ObjectVersion]:
        self._call("list-versions", key)
        return [
            ObjectVersion(key, v.version_id or "null", len(v.data), v.etag)
            for v in self.versions.get(key, [])
        ]

    def delete_object(self, key: str) -> None:
        self._call("delete", key)
        with self._lock:
            self.versions.pop(key, None)

    def delete_objects(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        for key in keys:
            self.delete_object(key)
        return []

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
        self._call("put", key)
        body = _body(data)
        _check_body(key, body, md5_b64, checksum)
        self._only_new(key, create_only)
        etag = self._written_etag(md5_hex(body))
        props = replace(properties or ObjectProperties(), checksum=checksum)
        self._keep(key, Stored(body, etag, props, tags=tags, storage_class=storage_class))
        return self.etag_rewrite(etag)

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
        self._call("create", key)
        upload_id = f"upload-{next(_ids)}"
        with self._lock:
            self.uploads[upload_id] = OpenUpload(
                key, properties, tags, checksum_algorithm, storage_class=storage_class
            )
        return upload_id

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
        self._call("upload-part", key)
        self.guards.append("md5" if md5_b64 else "crc" if checksum else "none")
        upload = self._upload(key, upload_id)
        body = _body(data)
        _check_body(key, body, md5_b64, checksum)
        etag = self.etag_rewrite(self._written_etag(md5_hex(body)))
        with self._lock:
            part = PartInfo(number, len(body), etag, checksum.value if checksum else None)
            upload.parts[number] = (body, part)
        if md5_b64 is None and checksum is not None and not self.confirms_checksums:
            raise ChecksumNotConfirmedError(f"part {number} of {key!r}: checksum unconfirmed")
        return etag

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo] | None:
        self._call("list-parts", key)
        with self._lock:
            upload = self.uploads.get(upload_id)
            if upload is None or upload.key != key:
                return None
            return [part for _, part in sorted(upload.parts.values(), key=lambda p: p[1].number)]

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
        self._call("complete", key)
        upload = self._upload(key, upload_id)
        self._only_new(key, create_only)
        bodies = []
        for part in parts:
            stored = upload.parts.get(part.number)
            if stored is None or stored[1].etag != part.etag:
                raise TransientError(f"{key!r}: part {part.number} is not the one listed")
            bodies.append(stored[0])
        etag = self._written_etag(multipart_etag_of(bodies))
        props = upload.properties or ObjectProperties()
        stored_object = Stored(
            b"".join(bodies),
            etag,
            replace(props, checksum=None),
            part_sizes=tuple(len(b) for b in bodies),
            tags=upload.tags,
            storage_class=upload.storage_class,
        )
        with self._lock:
            del self.uploads[upload_id]
        self._keep(key, stored_object)
        return etag

    def update_properties(
        self,
        key: str,
        *,
        etag: str | None,
        properties: ObjectProperties,
        tags: tuple[tuple[str, str], ...] | None,
        storage_class: str | None,
    ) -> None:
        self._call("update-properties", key)
        obj = self._pinned(key, etag, None)
        obj.properties = properties
        if tags is not None:
            obj.tags = tags

    def can_copy_from(self, source: object) -> bool:
        return (
            isinstance(source, MemoryStore)
            and self.endpoint is not None
            and source.endpoint == self.endpoint
        )

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
        self._call("copy", key)
        assert isinstance(source, MemoryStore)
        obj = source._pinned(src_key, etag, version_id)
        self._only_new(key, create_only)
        new_etag = self._written_etag(md5_hex(obj.data))
        tags = obj.tags if copy_tags else ()
        props = properties if properties is not None else replace(obj.properties, lock=None)
        copied = Stored(obj.data, new_etag, props, tags=tags, storage_class=storage_class)
        self._keep(key, copied)
        return self.etag_rewrite(new_etag)

    def object_lock(self) -> bool:
        self.lock_asked += 1
        return self.lock_enabled

    def set_lock(self, key: str, lock: ObjectLock) -> None:
        self._call("set-lock", key)
        obj = self._pinned(key, None, None)
        obj.properties = replace(obj.properties, lock=lock)

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
        self._call("upload-part-copy", key)
        assert isinstance(source, MemoryStore)
        body = source._pinned(src_key, etag, version_id).data[start : start + length]
        upload = self._upload(key, upload_id)
        part_etag = self.etag_rewrite(self._written_etag(md5_hex(body)))
        with self._lock:
            upload.parts[number] = (body, PartInfo(number, len(body), part_etag))
        return part_etag

    def can_relay_from(self, source: object) -> bool:
        return self.relays and isinstance(source, MemoryStore) and source.relays

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._call("abort", key)
        with self._lock:
            self.uploads.pop(upload_id, None)

    def close(self) -> None:
        return None

    # -- inside -----------------------------------------------------------------------------

    def _only_new(self, key: str, create_only: bool) -> None:
        """A write with If-None-Match: * where the key exists is refused."""
        if create_only and self.versions.get(key):
            raise NotReplacedError(not_replaced_reason(self.describe(key)))

    def _call(self, operation: str, key: str) -> None:
        with self._lock:
            self.calls.append((operation, key))

    def _keep(self, key: str, stored: Stored) -> None:
        with self._lock:
            history = self.versions.setdefault(key, [])
            if self.versioned:
                stored.version_id = f"v{len(history) + 1}"
            else:
                history.clear()
            history.append(stored)

    def _pinned(self, key: str, etag: str | None, version_id: str | None) -> Stored:
        with self._lock:
            history = self.versions.get(key, [])
            if version_id is not None:
                found = [v for v in history if v.version_id == version_id]
            else:
                found = history[-1:]
        if not found or (etag is not None and found[0].etag != etag):
            raise SourceChangedError(f"{self.describe(key)} is not the version pinned ({etag})")
        return found[0]

    def _read(
        self, key: str, start: int, length: int, etag: str | None, version_id: str | None
    ) -> bytes:
        if self.on_read is not None:
            self.on_read(key, start)
        data = self._pinned(key, etag, version_id).data[start : start + length]
        with self._lock:
            left = self.corrupt_reads.get((key, start), 0)
            if left:
                self.corrupt_reads[(key, start)] = left - 1
                data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def _upload(self, key: str, upload_id: str) -> OpenUpload:
        with self._lock:
            upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise UploadMissingError(f"{self.describe(key)}: no upload {upload_id}")
        return upload

    def _written_etag(self, md5: str) -> str:
        return md5 if self.capabilities.write_etags_md5 else _opaque_etag(md5)


def _props(obj: Stored) -> ObjectProperties:
    """An object's properties as a read reply shows them (with its class, unless STANDARD)."""
    return replace(obj.properties, storage_class=obj.storage_class)


def _opaque_etag(etag: str) -> str:
    """An ETag that looks like an MD5 but is none of the bytes' (as under KMS)."""
    return hashlib.md5(f"kms:{etag}".encode()).hexdigest()


def _split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    parts, offset = [], 0
    for size in sizes:
        parts.append(data[offset : offset + size])
        offset += size
    assert offset == len(data), "the part sizes must add up to the object's size"
    return parts


def _body(data: Bytes | Relayed) -> bytes:
    return bytes(data) if isinstance(data, Bytes) else data.read()


def _check_body(key: str, body: bytes, md5_b64: str | None, checksum: Checksum | None) -> None:
    """Refuse a body whose Content-MD5 or checksum does not match (BadDigest)."""
    if md5_b64 is not None and base64.b64decode(md5_b64) != hashlib.md5(body).digest():
        raise TransientError(f"{key!r}: BadDigest: the Content-MD5 does not match the body")
    if checksum is not None:
        if checksums.checksum_b64(checksum.algorithm, body) != checksum.value:
            raise TransientError(f"{key!r}: BadDigest: the {checksum.algorithm} does not match")


class MemoryLedger:
    """An UploadLedger in memory (as the job database keeps it)."""

    def __init__(self) -> None:
        self.parts: dict[tuple[int | str, str], dict[int, tuple[int, str]]] = {}
        self.sources: list[ObjectInfo] = []

    def set_upload(
        self, job: Job, upload_id: str | None, part_size: int | None, upload_etag: str | None
    ) -> None:
        self.parts = {k: v for k, v in self.parts.items() if k[0] != job.id}
        job.upload_id, job.part_size, job.upload_etag = upload_id, part_size, upload_etag

    def record_part(
        self,
        job: Job,
        upload_id: str,
        number: int,
        size: int,
        etag: str,
        *,
        checksum: str | None = None,  # not kept: a resumed copy reads its parts again
    ) -> None:
        self.parts.setdefault((job.id, upload_id), {})[number] = (size, etag)

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]:
        return dict(self.parts.get((job.id, upload_id), {}))

    def update_source(self, job: Job, info: ObjectInfo) -> None:
        self.sources.append(info)
        self.parts = {k: v for k, v in self.parts.items() if k[0] != job.id}
        job.size, job.etag = info.size, info.etag
        job.last_modified, job.version_id = info.last_modified, info.version_id
        job.upload_id = job.part_size = job.upload_etag = None
        job.restarts += 1


class SerialExecutor(Executor):
    """Runs every task at once, in the caller's thread: parts go in order, one at a time."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the future, as a pool's thread does
            future.set_exception(exc)
        return future
