"""Multipart uploads on an S3 bucket: started and finished through the data plane (a start whose
reply was lost is looked for and aborted), parts listed and uploads aborted through botocore.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Concatenate, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from s3longbow import checksums
from s3longbow.errors import (
    LongbowError,
    ReplyLostError,
    TransientError,
    UploadMissingError,
)
from s3longbow.model import (
    Bytes,
    Checksum,
    ObjectProperties,
    PartInfo,
)
from s3longbow.stores.base import Relayed
from s3longbow.stores.s3.connection import RangeBody, as_body
from s3longbow.stores.s3.errors import error_code, http_status, translate
from s3longbow.stores.s3.headers import (
    _property_headers,
)
from s3longbow.stores.s3.wire import unquote_etag

if TYPE_CHECKING:
    pass
from s3longbow.stores.s3.common import P, R, StoreBase, _one_object, _storage_class_refusals, log

# How far the server's clock may be from ours (beyond an offset it told us) when uploads are
# matched by their start time.
_CLOCK_SLACK = 60.0


U = TypeVar("U", bound="Uploads")


def _complete_of_a_gone_upload(
    complete: Callable[Concatenate[U, str, str, P], R],
) -> Callable[Concatenate[U, str, str, P], R]:
    """Report a failed Complete of an upload that no longer exists as UploadMissingError."""

    @functools.wraps(complete)
    def checked(store: U, key: str, upload_id: str, /, *args: P.args, **kw: P.kwargs) -> R:
        try:
            return complete(store, key, upload_id, *args, **kw)
        except UploadMissingError:
            raise
        except TransientError as exc:
            # Ceph RGW answers 500 rather than NoSuchUpload for an aborted or already completed
            # upload; retrying cannot help once the upload is gone.
            if store.list_parts(key, upload_id) is not None:
                raise
            raise UploadMissingError(f"{exc.message} (the upload no longer exists)") from None

    return checked


class Uploads(StoreBase):
    """The multipart calls of the store port (a part of S3Store)."""

    @_one_object
    @_storage_class_refusals
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
        kind = "FULL_OBJECT" if full_object else "COMPOSITE"
        headers = {**_property_headers(properties, tags), **self._write_headers}
        if checksum_algorithm:
            headers["x-amz-checksum-algorithm"] = checksum_algorithm
            headers["x-amz-checksum-type"] = kind
        asked = time.time() + self.data.clock_offset
        try:
            return self.data.create_upload(
                self.bucket, key, storage_class=storage_class, headers=headers
            )
        except ReplyLostError:
            # The server may have started an upload whose id never reached us: nobody
            # would ever resume or abort it. It is looked for, and aborted, now.
            self._abort_uploads_started(key, since=asked - _CLOCK_SLACK)
            raise

    def _abort_uploads_started(self, key: str, *, since: float) -> None:
        """Abort the uploads of `key` started at `since` or later (server time)."""
        where = f"looking for an upload of {self.describe(key)} whose reply was lost"
        try:
            with self._errors(where):
                page = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            for upload in page.get("Uploads", ()):
                initiated = upload.get("Initiated")
                if upload.get("Key") != key or initiated is None:
                    continue
                if initiated.timestamp() >= since:
                    self.abort_upload(key, upload["UploadId"])
                    log.info("%s: aborted an upload whose id never reached us", where)
        except LongbowError as exc:
            log.warning("%s: %s (an upload may be left behind)", where, exc)

    @_one_object
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
        relayed = isinstance(data, RangeBody)  # proven by its ETag afterwards
        if md5_b64 is None and checksum is None and not relayed:
            raise ValueError("a part needs a Content-MD5 or an additional checksum")
        headers = (
            {f"x-amz-checksum-{checksum.algorithm.lower()}": checksum.value} if checksum else {}
        )
        return self.data.upload_part(
            self.bucket, key, upload_id, number, as_body(data), md5_b64=md5_b64, headers=headers
        )

    @_one_object
    def list_parts(self, key: str, upload_id: str) -> list[PartInfo] | None:
        parts: dict[int, PartInfo] = {}
        marker = 0
        while True:
            try:
                page = self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            except ClientError as exc:
                # Ceph answers NoSuchKey for an aborted upload where AWS says NoSuchUpload.
                if error_code(exc) in ("NoSuchUpload", "NoSuchKey") or http_status(exc) == 404:
                    return None
                raise translate(exc, f"listing parts of {self.describe(key)}") from None
            except BotoCoreError as exc:
                raise translate(exc, f"listing parts of {self.describe(key)}") from None
            new = [
                PartInfo(
                    int(p["PartNumber"]),
                    int(p["Size"]),
                    unquote_etag(p.get("ETag")) or "",
                    checksum=next(
                        (p[f"Checksum{a}"] for a in checksums.ALGORITHMS if p.get(f"Checksum{a}")),
                        None,
                    ),
                )
                for p in page.get("Parts", ())
                if int(p["PartNumber"]) > marker
            ]
            for part in new:
                parts[part.number] = part
            # Some servers omit IsTruncated; keep paging until a page adds nothing.
            if not new or page.get("IsTruncated") is False:
                break
            marker = max(p.number for p in new)
        return [parts[n] for n in sorted(parts)]

    @_one_object
    @_complete_of_a_gone_upload
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
        headers = {"If-None-Match": "*"} if create_only else {}
        if algorithm and full_checksum:
            headers[f"x-amz-checksum-{algorithm.lower()}"] = full_checksum.value
        with self._only_new(key, create_only):
            return self.data.complete_upload(
                self.bucket,
                key,
                upload_id,
                [(p.number, p.etag) for p in parts],
                algorithm=algorithm,
                part_checksums=[p.checksum or "" for p in parts] if algorithm else None,
                headers=headers,
            )

    @_one_object
    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchUpload", "NoSuchKey") or http_status(exc) == 404:
                return
            raise translate(exc, f"aborting the upload of {self.describe(key)}") from None
        except BotoCoreError as exc:
            raise translate(exc, f"aborting the upload of {self.describe(key)}") from None
