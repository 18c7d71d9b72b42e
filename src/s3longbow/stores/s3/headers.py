"""An object's properties as S3 headers: read from a GET's or HEAD's reply, written with a PUT
or the start of an upload (and as botocore's arguments for the calls it still makes).
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from s3longbow import checksums
from s3longbow.config import SideSettings
from s3longbow.model import ARCHIVE_CLASSES, ObjectLock, ObjectProperties
from s3longbow.stores.s3.http1 import http_date
from s3longbow.stores.s3.wire import storage_class

log = logging.getLogger("s3longbow.stores.s3")


_HEADER_FIELDS = (
    ("content_type", "ContentType"),
    ("content_encoding", "ContentEncoding"),
    ("content_disposition", "ContentDisposition"),
    ("content_language", "ContentLanguage"),
    ("cache_control", "CacheControl"),
    ("website_redirect", "WebsiteRedirectLocation"),
)


def _wire_text(value: Any) -> Any:
    """A header value botocore read (http.client decodes a header's bytes as Latin-1) as the
    lean client reads it: UTF-8, with bytes that are not kept as surrogate escapes."""
    if not isinstance(value, str) or value.isascii():
        return value
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value  # not bytes read as Latin-1
    return raw.decode("utf-8", "surrogateescape")


def archived_by_headers(headers: dict[str, str]) -> bool:
    """A HEAD's headers (names in lower case) show an object no read succeeds on yet: in an
    archive class or an Intelligent-Tiering archive tier (x-amz-archive-status), and without
    a finished restore (x-amz-restore: ongoing-request="false")."""
    archived = headers.get("x-amz-storage-class") in ARCHIVE_CLASSES or bool(
        headers.get("x-amz-archive-status")
    )
    return archived and 'ongoing-request="false"' not in headers.get("x-amz-restore", "")


def _properties_from_headers(headers: dict[str, str]) -> ObjectProperties:
    """The properties carried by raw response headers (names in lower case)."""
    return ObjectProperties(
        content_type=headers.get("content-type") or None,
        content_encoding=headers.get("content-encoding") or None,
        content_disposition=headers.get("content-disposition") or None,
        content_language=headers.get("content-language") or None,
        cache_control=headers.get("cache-control") or None,
        expires=headers.get("expires") or None,
        website_redirect=headers.get("x-amz-website-redirect-location") or None,
        metadata=tuple(
            (name[len("x-amz-meta-") :], value)
            for name, value in headers.items()
            if name.startswith("x-amz-meta-")
        ),
        tag_count=int(headers.get("x-amz-tagging-count") or 0),
        checksum=checksums.from_headers(headers),
        encrypted=_encrypted(
            headers.get("x-amz-server-side-encryption"),
            headers.get("x-amz-server-side-encryption-customer-algorithm"),
        ),
        last_modified=_http_time(headers.get("last-modified")),
        storage_class=storage_class(headers.get("x-amz-storage-class")),
        lock=_lock(headers),
    )


def _http_time(value: str | None) -> float | None:
    """Seconds since the epoch of an HTTP date (None when absent or not a date)."""
    if not value:
        return None
    try:
        return http_date(value)
    except (TypeError, ValueError):
        return None


def _lock(headers: dict[str, str]) -> ObjectLock | None:
    """The Object Lock settings a reply names (None where it names none)."""
    lock = ObjectLock(
        mode=headers.get("x-amz-object-lock-mode") or None,
        retain_until=headers.get("x-amz-object-lock-retain-until-date") or None,
        legal_hold=headers.get("x-amz-object-lock-legal-hold", "").upper() == "ON",
    )
    return lock if lock else None


def lock_headers(lock: ObjectLock | None) -> dict[str, str]:
    """The headers that give a new object `lock` (retention needs both its mode and date)."""
    headers: dict[str, str] = {}
    if lock is None:
        return headers
    if lock.mode and lock.retain_until:
        headers["x-amz-object-lock-mode"] = lock.mode
        headers["x-amz-object-lock-retain-until-date"] = lock.retain_until
    if lock.legal_hold:
        headers["x-amz-object-lock-legal-hold"] = "ON"
    return headers


def lock_args(lock: ObjectLock | None) -> dict[str, Any]:
    """The same as botocore's arguments."""
    args: dict[str, Any] = {}
    if lock is not None and lock.mode and lock.retain_until:
        args["ObjectLockMode"] = lock.mode
        args["ObjectLockRetainUntilDate"] = lock.retain_until
    if lock is not None and lock.legal_hold:
        args["ObjectLockLegalHoldStatus"] = "ON"
    return args


def _encrypted(sse: str | None, customer_algorithm: str | None) -> bool:
    """Whether the ETag of an object so encrypted is something other than its MD5."""
    return bool(customer_algorithm) or (sse or "").startswith("aws:kms")


def _write_options(side: SideSettings) -> tuple[dict[str, str], dict[str, Any]]:
    """The side's encryption and ACL options as request headers and as boto3 arguments."""
    headers: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    if side.sse:
        headers["x-amz-server-side-encryption"] = kwargs["ServerSideEncryption"] = side.sse
    if side.sse_kms_key_id:
        headers["x-amz-server-side-encryption-aws-kms-key-id"] = side.sse_kms_key_id
        kwargs["SSEKMSKeyId"] = side.sse_kms_key_id
    if side.acl:
        headers["x-amz-acl"] = kwargs["ACL"] = side.acl
    return headers, kwargs


def _copy_source(bucket: str, key: str, version_id: str | None) -> dict[str, str]:
    source = {"Bucket": bucket, "Key": key}
    if version_id:
        source["VersionId"] = version_id
    return source


_PROPERTY_HEADERS = (
    ("content_type", "Content-Type"),
    ("content_encoding", "Content-Encoding"),
    ("content_disposition", "Content-Disposition"),
    ("content_language", "Content-Language"),
    ("cache_control", "Cache-Control"),
    ("expires", "Expires"),
    ("website_redirect", "x-amz-website-redirect-location"),
)


def _property_headers(
    properties: ObjectProperties | None, tags: tuple[tuple[str, str], ...]
) -> dict[str, str]:
    """The request headers that give a PUT the object's properties."""
    headers: dict[str, str] = {}
    if properties is not None:
        for ours, header in _PROPERTY_HEADERS:
            value = getattr(properties, ours)
            if value:
                headers[header] = value
        for name, value in properties.metadata:
            headers[f"x-amz-meta-{name}"] = value
        headers.update(lock_headers(properties.lock))
    if tags:
        headers["x-amz-tagging"] = urllib.parse.urlencode(tags)
    return headers


def _write_args(
    storage_class: str | None,
    properties: ObjectProperties | None,
    tags: tuple[tuple[str, str], ...],
) -> dict[str, Any]:
    """PutObject / CreateMultipartUpload arguments that give the copy its properties."""
    args: dict[str, Any] = {}
    if storage_class:
        args["StorageClass"] = storage_class
    if properties is not None:
        for ours, theirs in _HEADER_FIELDS:
            value = getattr(properties, ours)
            if value:
                args[theirs] = value
        if properties.expires:
            import email.utils  # only the botocore path needs it

            try:
                args["Expires"] = email.utils.parsedate_to_datetime(properties.expires)
            except (TypeError, ValueError):
                log.warning("ignoring an Expires header that is not a date: %r", properties.expires)
        if properties.metadata:
            args["Metadata"] = dict(properties.metadata)
        args.update(lock_args(properties.lock))
    if tags:
        args["Tagging"] = urllib.parse.urlencode(tags)
    return args
