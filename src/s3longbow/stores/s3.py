"""S3 adapter over boto3: any endpoint, profile, region or static keys; errors translated.

Only this module (and later the lean data-plane client) knows about botocore. Every ClientError
is mapped onto Longbow's error tree, so callers decide on retries by error class, not by text.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import logging
import os
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.handlers
import botocore.parsers
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from s3longbow.config import SideSettings
from s3longbow.errors import (
    ConfigError,
    FatalError,
    LongbowError,
    PermanentError,
    SourceChangedError,
    TransientError,
)
from s3longbow.model import ObjectDetails, ObjectInfo, ObjectProperties, PartInfo
from s3longbow.stores.base import Capabilities, order_key
from s3longbow.stores.s3errors import AUTH_CODES, error_from_response
from s3longbow.stores.s3http import S3DataPlane

log = logging.getLogger(__name__)


class S3Store:
    """One bucket on one S3-compatible endpoint.

    Args:
        bucket: The bucket name.
        side: Endpoint, profile, region and credentials for this side.
        max_connections: Size of the HTTP connection pool; at least the number of threads
            that use this store at once, or connections churn.
    """

    capabilities = Capabilities()

    def __init__(
        self, bucket: str, side: SideSettings, *, max_connections: int = 64, lean: bool = True
    ) -> None:
        self.bucket = bucket
        self.name = bucket
        self._endpoint = side.endpoint_url or "AWS"
        self.client, session = make_s3_client(side, max_connections=max_connections)
        # The bytes (GET, PUT, UploadPart) go through a lean keep-alive HTTP client: botocore
        # spends ~4 ms of CPU per request, several times the cost of the transfer itself.
        # botocore keeps every other call, and all of them behind a proxy it would honour.
        self.data: S3DataPlane | None = None
        if lean and not _proxy_configured():
            self.data = S3DataPlane(
                side.endpoint_url,
                self.client.meta.region_name,
                side.path_style,
                session.get_credentials(),
                max_connections,
                ca_bundle=os.environ.get("AWS_CA_BUNDLE") or None,
            )

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def check(self) -> None:
        try:
            resp = self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = _code(exc)
            status = _status(exc)
            if code in ("NoSuchBucket", "404", "NotFound") or status == 404:
                raise FatalError(
                    f"bucket {self.bucket!r} does not exist at {self._endpoint}",
                    hint="check the bucket name and the endpoint URL (and region), or create it",
                ) from None
            if status == 403 or code in AUTH_CODES:
                raise FatalError(
                    f"access to bucket {self.bucket!r} at {self._endpoint} was denied ({code})",
                    hint="check the credentials (profile, keys) and the bucket policy",
                ) from None
            raise _translate(exc, f"checking bucket {self.bucket!r}", fatal=True) from None
        except (BotoCoreError, LongbowError) as exc:
            raise _translate(exc, f"checking bucket {self.bucket!r}", fatal=True) from None
        server = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("server", "")
        if server.startswith("SeaweedFS"):
            # Its filer lists folder by folder: "a/b" comes before "a-c".
            self.capabilities = dataclasses.replace(self.capabilities, listing_order="segments")

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            with self._errors(f"listing s3://{self.bucket}/{prefix}", fatal=True):
                page = self.client.list_objects_v2(**kwargs)
            yield from map(_listed, page.get("Contents", ()))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def list_level(self, prefix: str) -> Iterator[ObjectInfo | str]:
        # Each page holds keys and sub-prefixes in two lists, each in order: merge them by
        # the store's own order so the whole level comes out as one ordered stream.
        sort = order_key(self.capabilities.listing_order) or (lambda k: k)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": prefix,
                "Delimiter": "/",
                "MaxKeys": 1000,
            }
            if token:
                kwargs["ContinuationToken"] = token
            with self._errors(f"listing s3://{self.bucket}/{prefix}", fatal=True):
                page = self.client.list_objects_v2(**kwargs)
            items: list[tuple[str, ObjectInfo | str]] = [
                (sort(obj.key), obj) for obj in map(_listed, page.get("Contents", ()))
            ]
            items += [(sort(p["Prefix"]), p["Prefix"]) for p in page.get("CommonPrefixes", ())]
            items.sort(key=lambda pair: pair[0])
            for _, item in items:
                yield item
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def head(self, key: str) -> ObjectInfo | None:
        if self.data is not None:
            headers = self.data.head_object(self.bucket, key)
            if headers is None:
                return None
            modified = headers.get("last-modified")
            return ObjectInfo(
                key=key,
                size=int(headers.get("content-length", 0)),
                etag=_unquote(headers.get("etag")),
                last_modified=email.utils.parsedate_to_datetime(modified).timestamp()
                if modified
                else None,
                version_id=headers.get("x-amz-version-id"),
            )
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) in ("NoSuchKey", "NotFound", "404"):
                return None
            raise _translate(exc, f"reading {self.describe(key)}") from None
        except BotoCoreError as exc:
            raise _translate(exc, f"reading {self.describe(key)}") from None
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            etag=_unquote(resp.get("ETag")),
            last_modified=resp["LastModified"].timestamp() if "LastModified" in resp else None,
            version_id=resp.get("VersionId"),
        )

    def details(self, key: str, etag: str | None, *, part_one: bool = False) -> ObjectDetails:
        # A HEAD of part 1 also tells its size and the part count, where the server supports
        # it; a server that answers with the whole object (no parts count) does not. Some
        # servers compare If-Match with the part's own ETag there, so that HEAD is not
        # pinned: the layout is checked against the ETag's part count, and every read of the
        # data is pinned anyway.
        where = f"reading {self.describe(key)}"
        if self.data is not None:
            try:
                headers = self.data.head_object(
                    self.bucket,
                    key,
                    etag=None if part_one else etag,
                    part_number=1 if part_one else None,
                )
            except SourceChangedError:
                raise
            except PermanentError:
                if part_one:
                    return self.details(key, etag)  # part numbers not understood
                raise
            if headers is None:
                raise SourceChangedError(f"{where}: the source object no longer exists")
            parts = headers.get("x-amz-mp-parts-count") if part_one else None
            return ObjectDetails(
                properties=_properties_from_headers(headers),
                part_size=int(headers.get("content-length", 0)) if parts else None,
                parts_count=int(parts) if parts else None,
            )
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if part_one:
            kwargs["PartNumber"] = 1
        elif etag:
            kwargs["IfMatch"] = f'"{etag}"'
        try:
            resp = self.client.head_object(**kwargs)
        except ClientError as exc:
            if part_one and _status(exc) not in (403, 404) and _status(exc) < 500:
                return self.details(key, etag)  # part numbers not understood
            raise _translate(exc, where, source=True) from None
        except BotoCoreError as exc:
            raise _translate(exc, where, source=True) from None
        count = resp.get("PartsCount") if part_one else None
        return ObjectDetails(
            properties=_properties(resp),
            part_size=int(resp["ContentLength"]) if count else None,
            parts_count=int(count) if count else None,
        )

    def get_tags(self, key: str) -> tuple[tuple[str, str], ...]:
        with self._errors(f"reading the tags of {self.describe(key)}", source=True):
            resp = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        return tuple((t["Key"], t["Value"]) for t in resp.get("TagSet", ()))

    def read_object(
        self, key: str, size: int, *, etag: str | None = None
    ) -> tuple[bytes, ObjectProperties]:
        if self.data is not None:
            data, headers = self.data.get_object(self.bucket, key, 0, size, etag=etag)
            return data, _properties_from_headers(headers)
        data, resp = self._get(key, 0, size, etag)
        return data, _properties(resp)

    def delete_object(self, key: str) -> None:
        with self._errors(f"deleting {self.describe(key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_objects(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        if not keys:
            return []
        with self._errors(f"deleting {len(keys)} object(s) in s3://{self.bucket}"):
            resp = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            )
        return [
            (e.get("Key", ""), f"{e.get('Code', '')}: {e.get('Message', '')}")
            for e in resp.get("Errors", ())
        ]

    def get_range(self, key: str, start: int, length: int, *, etag: str | None = None) -> bytes:
        if self.data is not None:
            return self.data.get_range(self.bucket, key, start, length, etag=etag)
        return self._get(key, start, length, etag)[0]

    def _get(
        self, key: str, start: int, length: int, etag: str | None
    ) -> tuple[bytes, dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length > 0:
            kwargs["Range"] = f"bytes={start}-{start + length - 1}"
        if etag:
            kwargs["IfMatch"] = f'"{etag}"'
        where = f"reading {self.describe(key)} bytes {start}-{start + length - 1}"
        with self._errors(where, source=True):
            resp = self.client.get_object(**kwargs)
            body = resp["Body"]
            try:
                # Read one byte more than asked: a server that ignored Range must not make us
                # buffer a whole object, and must not slip extra bytes into a part.
                data = body.read(length + 1)
            finally:
                body.close()
        if len(data) != length:
            if len(data) > length:
                raise PermanentError(
                    f"{where}: the server returned more bytes than requested (Range ignored)"
                )
            raise TransientError(f"{where}: short read ({len(data)} of {length} bytes)")
        content_range = resp.get("ContentRange")
        if content_range and length > 0:
            expected = f"bytes {start}-{start + length - 1}/"
            if not content_range.startswith(expected):
                raise TransientError(
                    f"{where}: the server answered with the wrong range ({content_range})"
                )
        return data, resp

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
        if self.data is not None:
            return self.data.put_object(
                self.bucket,
                key,
                data,
                md5_b64=md5_b64,
                storage_class=storage_class,
                headers=_property_headers(properties, tags),
            )
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentMD5": md5_b64,
            "ContentLength": len(data),
            **_write_args(storage_class, properties, tags),
        }
        with self._errors(f"writing {self.describe(key)}"):
            resp = self.client.put_object(**kwargs)
        return _unquote(resp.get("ETag")) or ""

    def create_upload(
        self,
        key: str,
        *,
        storage_class: str | None = None,
        properties: ObjectProperties | None = None,
        tags: tuple[tuple[str, str], ...] = (),
    ) -> str:
        if self.data is not None:
            return self.data.create_upload(
                self.bucket,
                key,
                storage_class=storage_class,
                headers=_property_headers(properties, tags),
            )
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            **_write_args(storage_class, properties, tags),
        }
        with self._errors(f"starting a multipart upload of {self.describe(key)}"):
            resp = self.client.create_multipart_upload(**kwargs)
        return str(resp["UploadId"])

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5_b64: str
    ) -> str:
        if self.data is not None:
            return self.data.upload_part(self.bucket, key, upload_id, number, data, md5_b64=md5_b64)
        with self._errors(f"uploading part {number} of {self.describe(key)}"):
            resp = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=md5_b64,
                ContentLength=len(data),
            )
        return _unquote(resp.get("ETag")) or ""

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
                if _code(exc) in ("NoSuchUpload", "NoSuchKey") or _status(exc) == 404:
                    return None
                raise _translate(exc, f"listing parts of {self.describe(key)}") from None
            except BotoCoreError as exc:
                raise _translate(exc, f"listing parts of {self.describe(key)}") from None
            new = [
                PartInfo(int(p["PartNumber"]), int(p["Size"]), _unquote(p.get("ETag")) or "")
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

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> str:
        if self.data is not None:
            return self.data.complete_upload(
                self.bucket, key, upload_id, [(p.number, p.etag) for p in parts]
            )
        with self._errors(f"completing the multipart upload of {self.describe(key)}"):
            resp = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'} for p in parts]
                },
            )
        return _unquote(resp.get("ETag")) or ""

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) in ("NoSuchUpload", "NoSuchKey") or _status(exc) == 404:
                return
            raise _translate(exc, f"aborting the upload of {self.describe(key)}") from None
        except BotoCoreError as exc:
            raise _translate(exc, f"aborting the upload of {self.describe(key)}") from None

    def close(self) -> None:
        if self.data is not None:
            self.data.close()
        self.client.close()

    @contextmanager
    def _errors(self, where: str, *, fatal: bool = False, source: bool = False) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, where, fatal=fatal, source=source) from None


def make_s3_client(
    side: SideSettings, *, max_connections: int = 64
) -> tuple[Any, boto3.session.Session]:
    """A boto3 S3 client for one side, tuned for many threads and S3-compatible servers, and
    the session whose credentials it uses."""
    try:
        core = botocore.session.Session(profile=side.profile)
        if side.profile and side.profile not in core.available_profiles:
            raise ProfileNotFound(profile=side.profile)
        # Listings carry a timestamp per key; botocore parses each with dateutil, which cost
        # more CPU than the rest of planning. S3's ISO 8601 form has a fast path.
        parsers = botocore.parsers.ResponseParserFactory()
        parsers.set_parser_defaults(timestamp_parser=_parse_timestamp)
        core.register_component("response_parser_factory", parsers)
        session = boto3.session.Session(
            botocore_session=core,
            aws_access_key_id=side.access_key_id,
            aws_secret_access_key=side.secret_access_key,
            aws_session_token=side.session_token,
            region_name=side.region,
        )
    except ProfileNotFound:
        raise ConfigError(
            f"AWS profile {side.profile!r} is not configured",
            hint="list profiles with `aws configure list-profiles`, or pass another profile",
        ) from None
    config = Config(
        max_pool_connections=max_connections,
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10,
        read_timeout=60,
        signature_version="s3v4",
        s3={
            "addressing_style": "path" if side.path_style else "auto",
            # Content-MD5 protects each body; SHA-256 of every payload costs CPU for nothing.
            "payload_signing_enabled": False,
        },
        # Newer botocore adds CRC32 to every upload and validates response checksums, which
        # S3-compatible servers reject or break on ranged GETs. MD5 is sent explicitly instead.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = session.client(
        "s3",
        endpoint_url=side.endpoint_url,
        region_name=side.region or session.region_name or "us-east-1",
        config=config,
    )
    # `Expect: 100-continue` costs a round trip per PUT; a rejected body is cheap to resend.
    client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
    return client, session


def _parse_timestamp(value: str) -> datetime.datetime:
    """S3's timestamps (2026-11-26T05:32:10.000Z) at C speed; anything else as botocore does."""
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return botocore.utils.parse_timestamp(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


def _proxy_configured() -> bool:
    return any(
        os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
    )


_HEADER_FIELDS = (
    ("content_type", "ContentType"),
    ("content_encoding", "ContentEncoding"),
    ("content_disposition", "ContentDisposition"),
    ("content_language", "ContentLanguage"),
    ("cache_control", "CacheControl"),
    ("website_redirect", "WebsiteRedirectLocation"),
)


def _properties(resp: dict[str, Any]) -> ObjectProperties:
    """The properties a GET or HEAD response carries."""
    headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    # The raw header keeps the exact text; botocore turns Expires into a datetime.
    expires = headers.get("expires")
    if expires is None and isinstance(resp.get("Expires"), datetime.datetime):
        expires = email.utils.format_datetime(resp["Expires"], usegmt=True)
    return ObjectProperties(
        **{ours: resp.get(theirs) or None for ours, theirs in _HEADER_FIELDS},
        expires=expires,
        metadata=tuple(resp.get("Metadata", {}).items()),
        # S3 leaves the tag count out when an object has no tags.
        tag_count=int(resp.get("TagCount") or 0),
    )


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
    )


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
            try:
                args["Expires"] = email.utils.parsedate_to_datetime(properties.expires)
            except (TypeError, ValueError):
                log.warning("ignoring an Expires header that is not a date: %r", properties.expires)
        if properties.metadata:
            args["Metadata"] = dict(properties.metadata)
    if tags:
        args["Tagging"] = urllib.parse.urlencode(tags)
    return args


def _listed(item: dict[str, Any]) -> ObjectInfo:
    """An entry of a ListObjectsV2 page."""
    return ObjectInfo(
        key=item["Key"],
        size=int(item["Size"]),
        etag=_unquote(item.get("ETag")),
        last_modified=item["LastModified"].timestamp() if "LastModified" in item else None,
    )


def _unquote(etag: str | None) -> str | None:
    if etag is None:
        return None
    return etag.strip('"')


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _translate(
    exc: BaseException, where: str, *, fatal: bool = False, source: bool = False
) -> LongbowError:
    """Map a botocore error onto the error tree; `where` says what we were doing."""
    if isinstance(exc, LongbowError):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return FatalError(
            f"{where}: no AWS credentials found",
            hint="pass --src-profile/--dst-profile, set LONGBOW_SRC_ACCESS_KEY_ID and "
            "LONGBOW_SRC_SECRET_ACCESS_KEY (or DST), or configure the default credential chain",
        )
    if isinstance(exc, BotoCoreError):
        if fatal:
            return FatalError(
                f"{where}: {type(exc).__name__}: {exc}",
                hint="check the endpoint URL and region, and that the server is reachable",
            )
        return TransientError(f"{where}: {type(exc).__name__}: {exc}")
    assert isinstance(exc, ClientError)
    message = exc.response.get("Error", {}).get("Message") or ""
    return error_from_response(_code(exc), _status(exc), message, where, fatal=fatal, source=source)
