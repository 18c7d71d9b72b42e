"""S3 adapter over boto3: any endpoint, profile, region or static keys; errors translated.

Only this module (and later the lean data-plane client) knows about botocore. Every ClientError
is mapped onto Longbow's error tree, so callers decide on retries by error class, not by text.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.handlers
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
    UploadMissingError,
)
from s3longbow.model import ObjectInfo, PartInfo
from s3longbow.stores.base import Capabilities

log = logging.getLogger(__name__)

_AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "BadDigest",
        "InvalidDigest",
        "XAmzContentSHA256Mismatch",
        "IncompleteBody",
    }
)


class S3Store:
    """One bucket on one S3-compatible endpoint.

    Args:
        bucket: The bucket name.
        side: Endpoint, profile, region and credentials for this side.
        max_connections: Size of the HTTP connection pool; at least the number of threads
            that use this store at once, or connections churn.
    """

    capabilities = Capabilities()

    def __init__(self, bucket: str, side: SideSettings, *, max_connections: int = 64) -> None:
        self.bucket = bucket
        self.name = bucket
        self._endpoint = side.endpoint_url or "AWS"
        self.client = make_s3_client(side, max_connections=max_connections)

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
            if status == 403 or code in _AUTH_CODES:
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
            for item in page.get("Contents", ()):
                yield ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    etag=_unquote(item.get("ETag")),
                    last_modified=item["LastModified"].timestamp()
                    if "LastModified" in item
                    else None,
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def head(self, key: str) -> ObjectInfo | None:
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

    def part_layout(self, key: str, etag: str) -> tuple[int, int] | None:
        # A HEAD of part 1 tells its size and how many parts there are, where the server
        # supports it; a server that answers with the whole object (no parts count) does not.
        try:
            resp = self.client.head_object(
                Bucket=self.bucket, Key=key, PartNumber=1, IfMatch=f'"{etag}"'
            )
        except ClientError as exc:
            if _status(exc) == 412:
                raise SourceChangedError(
                    f"{self.describe(key)}: the source object changed since the job started"
                ) from None
            if _status(exc) == 404:
                raise SourceChangedError(
                    f"{self.describe(key)}: the source object no longer exists"
                ) from None
            return None
        except BotoCoreError as exc:
            raise _translate(exc, f"reading the part layout of {self.describe(key)}") from None
        count = resp.get("PartsCount")
        if not count:
            return None
        return int(resp["ContentLength"]), int(count)

    def delete_object(self, key: str) -> None:
        with self._errors(f"deleting {self.describe(key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def get_range(self, key: str, start: int, length: int, *, etag: str | None = None) -> bytes:
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
        return data

    def put_object(
        self, key: str, data: bytes, *, md5_b64: str, storage_class: str | None = None
    ) -> str:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentMD5": md5_b64,
            "ContentLength": len(data),
        }
        if storage_class:
            kwargs["StorageClass"] = storage_class
        with self._errors(f"writing {self.describe(key)}"):
            resp = self.client.put_object(**kwargs)
        return _unquote(resp.get("ETag")) or ""

    def create_upload(self, key: str, *, storage_class: str | None = None) -> str:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if storage_class:
            kwargs["StorageClass"] = storage_class
        with self._errors(f"starting a multipart upload of {self.describe(key)}"):
            resp = self.client.create_multipart_upload(**kwargs)
        return str(resp["UploadId"])

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5_b64: str
    ) -> str:
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
        self.client.close()

    @contextmanager
    def _errors(self, where: str, *, fatal: bool = False, source: bool = False) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, where, fatal=fatal, source=source) from None


def make_s3_client(side: SideSettings, *, max_connections: int = 64) -> Any:
    """A boto3 S3 client for one side, tuned for many threads and S3-compatible servers."""
    try:
        session = boto3.session.Session(
            profile_name=side.profile,
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
    return client


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


def error_from_response(
    code: str, status: int, message: str, where: str, *, fatal: bool = False, source: bool = False
) -> LongbowError:
    """Map an S3 error response (its Code, HTTP status and Message) onto the error tree.

    Shared by every S3 client path, so a reply means the same whichever path received it.
    `source` marks a read of the source object (404 then means the source is gone); `fatal`
    marks a check whose failure stops the run.
    """
    message = message or code
    text = f"{where}: {code or status} ({message})" if message != code else f"{where}: {code}"
    if code in _AUTH_CODES:
        return FatalError(text, hint="check the access key, secret key, session token and region")
    if code == "NoSuchBucket":
        return FatalError(text, hint="check the bucket name, endpoint URL and region")
    if code == "NoSuchUpload":
        return UploadMissingError(text)
    if code == "PreconditionFailed" or status == 412:
        return SourceChangedError(f"{where}: the source object changed since the job started")
    if source and (code in ("NoSuchKey", "NotFound") or status == 404):
        return SourceChangedError(f"{where}: the source object no longer exists")
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return (FatalError if fatal else TransientError)(text)
    if status == 403 or code == "AccessDenied":
        return (FatalError if fatal else PermanentError)(
            text, hint="check the permissions of the credentials on this bucket"
        )
    return (FatalError if fatal else PermanentError)(text)
