"""Copies made by the server, when one endpoint and one account hold both buckets: whole
objects (CopyObject), parts (UploadPartCopy) and metadata-only copies onto the object itself.
"""

from __future__ import annotations

from typing import Any

from s3longbow.customerkeys import key_args
from s3longbow.errors import PermanentError
from s3longbow.model import ObjectProperties
from s3longbow.stores.base import ObjectStore
from s3longbow.stores.s3.common import StoreBase, _one_object
from s3longbow.stores.s3.headers import _copy_source, _write_args, lock_args
from s3longbow.stores.s3.locks import Locks
from s3longbow.stores.s3.wire import unquote_etag

# What moto answers a copy that carries an Object Lock.
_LOCK_REFUSED = "MissingUploadObjectWithObjectLockHeaders"


class Copies(Locks):
    """The server-side copy calls of the store port (a part of S3Store)."""

    def _keys(self, source: StoreBase) -> dict[str, Any]:
        """The SSE-C keys of a copy from `source` to here: the source's to read it with, and
        this side's to write the copy with."""
        keys: dict[str, Any] = key_args(self._sse_c) if self._sse_c else {}
        if source._sse_c:
            keys.update(key_args(source._sse_c, copy_source=True))
        return keys

    @_one_object
    def update_properties(
        self,
        key: str,
        *,
        etag: str | None,
        properties: ObjectProperties,
        tags: tuple[tuple[str, str], ...] | None,
        storage_class: str | None,
    ) -> None:
        # A copy onto itself that replaces the metadata: S3 moves no data out of the bucket.
        # The storage class and encryption must be given again, or they would be reset.
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "CopySource": _copy_source(self.bucket, key, None),
            "MetadataDirective": "REPLACE",
            **_write_args(storage_class, properties, tags or ()),
            **self._write_kwargs,
            **self._keys(self),
        }
        kwargs["TaggingDirective"] = "COPY" if tags is None else "REPLACE"
        if etag:
            kwargs["CopySourceIfMatch"] = f'"{etag}"'
        with self._errors(f"updating the properties of {self.describe(key)}"):
            self.client.copy_object(**kwargs)

    def can_copy_from(self, source: object) -> bool:
        return isinstance(source, StoreBase) and source._identity == self._identity

    @_one_object
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
        assert isinstance(source, StoreBase)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "CopySource": _copy_source(source.bucket, src_key, version_id),
            # The properties and tags travel with the copy (COPY is the default directive),
            # unless the run writes properties of its own.
            "MetadataDirective": "COPY" if properties is None else "REPLACE",
            "TaggingDirective": "COPY" if copy_tags else "REPLACE",
            **(_write_args(None, properties, ()) if properties is not None else {}),
            **self._write_kwargs,
            **self._keys(source),
        }
        if etag:
            kwargs["CopySourceIfMatch"] = f'"{etag}"'
        if storage_class:
            kwargs["StorageClass"] = storage_class
        if create_only:
            kwargs["IfNoneMatch"] = "*"
        where = f"copying {source.describe(src_key)} to {self.describe(key)}"
        try:
            with self._only_new(key, create_only, copy=True), self._errors(where, source=True):
                resp = self.client.copy_object(**kwargs)
        except PermanentError as exc:
            # moto refuses a lock on a copy (it wants a Content-MD5 a copy has no body for):
            # the copy goes without it, and the lock is set on the copy right after.
            lock = properties.lock if properties is not None else None
            if not lock or _LOCK_REFUSED not in exc.message:
                raise
            for name in lock_args(lock):
                kwargs.pop(name)
            with self._only_new(key, create_only, copy=True), self._errors(where, source=True):
                resp = self.client.copy_object(**kwargs)
            self.set_lock(key, lock)
        return unquote_etag(resp.get("CopyObjectResult", {}).get("ETag")) or ""

    @_one_object
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
        assert isinstance(source, StoreBase)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": number,
            "CopySource": _copy_source(source.bucket, src_key, version_id),
            "CopySourceRange": f"bytes={start}-{start + length - 1}",
            **self._keys(source),
        }
        if etag:
            kwargs["CopySourceIfMatch"] = f'"{etag}"'
        where = f"copying part {number} of {source.describe(src_key)} to {self.describe(key)}"
        with self._errors(where, source=True):
            resp = self.client.upload_part_copy(**kwargs)
        return unquote_etag(resp.get("CopyPartResult", {}).get("ETag")) or ""
