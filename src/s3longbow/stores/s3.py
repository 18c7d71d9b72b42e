"""S3 adapter over botocore: any endpoint, profile, region or static keys; errors translated.

Only this module (and later the lean data-plane client) knows about botocore. Every ClientError
is mapped onto Longbow's error tree, so callers decide on retries by error class, not by text.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from s3longbow import checksums
from s3longbow.config import SideSettings
from s3longbow.errors import (
    ChecksumNotConfirmedError,
    ConfigError,
    CredentialsRejectedError,
    FatalError,
    LongbowError,
    PermanentError,
    ReplyLostError,
    SourceChangedError,
    TransientError,
    UploadMissingError,
    WrongRegionError,
)
from s3longbow.model import (
    Bytes,
    Checksum,
    ObjectDetails,
    ObjectInfo,
    ObjectProperties,
    ObjectVersion,
    PartInfo,
)
from s3longbow.retry import with_retries
from s3longbow.stores import http1, paging
from s3longbow.stores.base import BYTES, Capabilities, ObjectStore, Relayed, order_key
from s3longbow.stores.location import check_bucket_name, check_endpoint_url
from s3longbow.stores.s3errors import AUTH_CODES, error_from_response
from s3longbow.stores.s3http import (
    CredentialSource,
    ListPage,
    RangeBody,
    S3DataPlane,
    StaticCredentials,
    aws_endpoint,
    proxy_for,
)

if TYPE_CHECKING:
    import botocore.session

log = logging.getLogger(__name__)
_LIST_ATTEMPTS = 5  # a listing page, through the lean client
# How far the server's clock may be from ours (beyond an offset it told us) when uploads are
# matched by their start time.
_CLOCK_SLACK = 60.0
P = ParamSpec("P")
R = TypeVar("R")


def _storage_class_refusals(write: Callable[P, R]) -> Callable[P, R]:
    """Turn a write refused for its storage class into a FatalError (see S3Store.check)."""

    @functools.wraps(write)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return write(*args, **kwargs)
        except PermanentError as exc:
            store = args[0]
            if isinstance(store, S3Store):
                store._refused_storage_class(exc, kwargs.get("storage_class"))
            raise

    return checked


def _complete_of_a_gone_upload(
    complete: Callable[Concatenate[S3Store, str, str, P], R],
) -> Callable[Concatenate[S3Store, str, str, P], R]:
    """Report a failed Complete of an upload that no longer exists as UploadMissingError."""

    @functools.wraps(complete)
    def checked(store: S3Store, key: str, upload_id: str, /, *args: P.args, **kw: P.kwargs) -> R:
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


def _one_object(call: Callable[Concatenate[S3Store, P], R]) -> Callable[Concatenate[S3Store, P], R]:
    """A refused signature or key on one object's request stops the run only when a plain
    request with the same credentials is refused too (see S3Store._judge_refusal)."""

    @functools.wraps(call)
    def checked(store: S3Store, /, *args: P.args, **kw: P.kwargs) -> R:
        try:
            return call(store, *args, **kw)
        except CredentialsRejectedError as exc:
            raise store._judge_refusal(exc) from None

    return checked


class S3Store:
    """One bucket on one S3-compatible endpoint.

    Args:
        bucket: The bucket name.
        side: Endpoint, profile, region and credentials for this side.
        max_connections: Size of the HTTP connection pool; at least the number of threads
            that use this store at once, or connections churn.
    """

    capabilities = Capabilities()
    _versioned_listing = False
    rgw = False  # set by check(): the endpoint is a Ceph RADOS Gateway

    def __init__(
        self,
        bucket: str,
        side: SideSettings,
        *,
        max_connections: int = 64,
        lean: bool = True,
        min_rate: float = 0,
    ) -> None:
        check_bucket_name(bucket, side.bucket_names)
        self.bucket = bucket
        self.name = bucket
        self._endpoint = side.endpoint_url or "AWS"
        # Who this store talks to, and as whom: two stores with the same identity can copy
        # between each other on the server. Kept in memory only; never printed.
        region = side.region or ""
        self._identity = (
            side.endpoint_url or ("aws-cn" if region.startswith("cn-") else "aws"),
            side.profile,
            side.access_key_id,
            side.secret_access_key,
            side.session_token,
        )
        self._side = side
        self._max_connections = max_connections
        self._min_rate = min_rate
        _check_side(side)
        # botocore's client is built on first use: creating it costs ~0.3 s of CPU (its service
        # model), and a run whose every request goes through the lean client never needs it.
        # Keys given outright skip botocore's session too (its import costs as much).
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._session: botocore.session.Session | None = None
        credentials: CredentialSource | None = _static_keys(side)
        configured: str | None = None
        if credentials is None:
            self._session = make_session(side)
            credentials = self._session.get_credentials()
            configured = self._session.get_config_variable("region")
        self._credentials = credentials
        self._region = side.region or configured or "us-east-1"
        # Without a region from the user or a profile, check() asks the bucket for its own.
        self._region_given = bool(side.region or configured)
        # One trust for both clients, resolved once (see resolve_ca_bundle).
        self._ca_bundle = resolve_ca_bundle(side, self._session)
        self.capabilities = dataclasses.replace(
            self.capabilities,
            checksums=side.checksum_algorithm,
            write_etags_md5=not (side.sse or "").startswith("aws:kms"),
        )
        # Destination options every write carries, as headers (lean path) and as arguments.
        self._write_headers, self._write_kwargs = _write_options(side)
        self._extra_headers: dict[str, str] = {}
        if side.requester_pays:
            self._extra_headers["x-amz-request-payer"] = "requester"
        # The bytes (GET, PUT, UploadPart), listings, HEADs and multipart start and finish go
        # through a lean keep-alive HTTP client: botocore spends ~4 ms of CPU per request,
        # several times the cost of the transfer itself. It speaks to proxies and trusts
        # certificates as botocore does; botocore keeps every other call.
        self.data: S3DataPlane | None = self._new_plane() if lean else None
        if self.data is None:
            self.client  # noqa: B018 - every call goes through botocore: fail early on bad settings
        log.debug(
            "%s at %s: %s, region %s, %s",
            self.describe(),
            self._endpoint,
            "keys given outright" if self._session is None else "credentials from botocore",
            self._region,
            f"lean client signing with {self.data.signer_name}" if self.data else "botocore only",
        )

    def _new_plane(self) -> S3DataPlane:
        side = self._side
        url = side.endpoint_url or aws_endpoint(self._region)
        try:
            proxy = proxy_for(url)
        except ValueError as exc:
            raise ConfigError(
                f"the proxy for {url} cannot be used: {exc}",
                hint="set HTTPS_PROXY / HTTP_PROXY to http://[user:password@]host:port, or "
                "name the endpoint in NO_PROXY",
            ) from None
        return S3DataPlane(
            side.endpoint_url,
            self._region,
            side.path_style,
            self._credentials,
            self._max_connections,
            ca_bundle=self._ca_bundle,
            verify_tls=side.verify_ssl,
            proxy=proxy,
            min_rate=self._min_rate,
            extra_headers=self._extra_headers,
            checksum_mode=self._checksum_mode,
        )

    @property
    def client(self) -> Any:
        """The botocore S3 client (control-plane calls), created on first use."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    if self._session is None:
                        self._session = make_session(self._side)
                    client = make_s3_client(
                        self._side,
                        self._session,
                        self._region,
                        max_connections=self._max_connections,
                        verify=self._ca_bundle if self._side.verify_ssl else False,
                    )
                    if self._side.requester_pays:
                        client.meta.events.register("before-sign.s3", _acknowledge_requester_pays)
                    self._client = client
        return self._client

    @property
    def _checksum_mode(self) -> bool:
        # A store configured for MD5 only is never asked about the newer checksums.
        return self.capabilities.checksums != "MD5"

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def check(self) -> None:
        headers = self._head_bucket_lean()
        if headers is None:
            headers = self._head_bucket()
        if headers.get("server", "").startswith("SeaweedFS"):
            # Its filer lists folder by folder: "a/b" comes before "a-c".
            self.capabilities = dataclasses.replace(self.capabilities, listing_order="segments")
        # Ceph RGW names no server, but its HeadBucket reply carries x-rgw-* headers.
        self.rgw = any(name.lower().startswith("x-rgw-") for name in headers)
        if self.rgw:
            self._check_rgw_checksums()

    def _head_bucket_lean(self) -> dict[str, str] | None:
        """The bucket's HEAD headers through the lean client; None unless it answered 2xx
        (botocore then asks again, for its retries and error details).

        The reply names the bucket's region (``x-amz-bucket-region``), whatever its status:
        without a region from the user or a profile, the store takes it (as aws-cli does);
        a region given that the server refuses as the wrong one stops the run, naming the
        right one.
        """
        if self.data is None:
            return None
        try:
            status, headers = self.data.head_bucket(self.bucket)
            region = headers.get("x-amz-bucket-region")
            if region and region != self._region:
                if not self._region_given:
                    log.info("%s is in region %s: using it", self.describe(), region)
                    self._use_region(region)
                    status, headers = self.data.head_bucket(self.bucket)
                elif status in (301, 400):
                    raise WrongRegionError(
                        f"bucket {self.bucket!r} at {self._endpoint} is in region {region}, "
                        f"not {self._region}",
                        region=region,
                        hint=f"give region {region} for this side (or no region: Longbow then "
                        "asks the bucket for it)",
                    )
        except (WrongRegionError, FatalError):
            raise  # what the lean client alone can tell (a proxy refusing it, a region)
        except LongbowError:
            return None
        return headers if 200 <= status < 300 else None

    def _judge_refusal(self, exc: CredentialsRejectedError) -> LongbowError:
        """What a refusal of one object's request means: if a plain request (a HEAD of the
        bucket) with the same credentials passes, the server refuses that object's request
        alone (its key or properties may hold what it signs its own way): that object fails,
        the run goes on. Otherwise the credentials are what is refused: the run stops."""
        try:
            if self.data is not None:
                status, _ = self.data.head_bucket(self.bucket)
                plain_works = 200 <= status < 300
            else:
                self.client.head_bucket(Bucket=self.bucket)
                plain_works = True
        except (LongbowError, ClientError, BotoCoreError):
            plain_works = False
        if not plain_works:
            return exc
        return PermanentError(
            f"{exc.message}; the server refuses this object's request only (the same "
            "credentials work for the bucket)",
            hint="its key or properties may hold characters this server signs its own way",
        )

    def _use_region(self, region: str) -> None:
        """Sign for `region` from now on (and, at AWS, use that region's endpoint)."""
        self._region = region
        previous = self.data
        self.data = self._new_plane()
        if previous is not None:
            previous.close()
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _head_bucket(self) -> dict[str, str]:
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
            where = f"checking bucket {self.bucket!r} at {self._endpoint}"
            raise _translate(exc, where, fatal=True) from None
        except (BotoCoreError, LongbowError) as exc:
            where = f"checking bucket {self.bucket!r} at {self._endpoint}"
            raise _translate(exc, where, fatal=True) from None
        headers: dict[str, str] = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return headers

    def _check_rgw_checksums(self) -> None:
        # RGW checks Content-MD5 but neither checks nor keeps the newer x-amz-checksum-* values.
        algorithm = self.capabilities.checksums
        if algorithm == "auto":
            self.capabilities = dataclasses.replace(self.capabilities, checksums="MD5")
        elif algorithm != "MD5":
            raise FatalError(
                f"{self._endpoint} is a Ceph RADOS Gateway, which ignores {algorithm} checksums "
                "(it would neither check nor keep them)",
                hint="use the MD5 checksum setting for this side: RGW checks Content-MD5",
            )

    def _refused_storage_class(self, exc: PermanentError, storage_class: object) -> None:
        """Raise a FatalError when RGW refused a write for its storage class."""
        # RGW answers a class its zone does not define with a bare InvalidArgument; every
        # write would fail the same way.
        if self.rgw and isinstance(storage_class, str) and "InvalidArgument" in exc.message:
            raise FatalError(
                f"{self._endpoint} (Ceph RADOS Gateway) refused storage class {storage_class!r}: "
                f"{exc.message}",
                hint="RGW offers STANDARD unless its zone defines more classes; "
                "drop --storage-class or name one the zone defines",
            ) from None

    def _list_page(self, prefix: str, delimiter: str | None, asked: paging.NextPage) -> ListPage:
        # The lean client does not retry; a listing that fails ends the run, so it gets the
        # attempts botocore would have given it, and a refusal stops the run at once.
        assert self.data is not None
        data = self.data
        try:
            return with_retries(
                lambda: data.list_page(
                    self.bucket,
                    prefix,
                    delimiter=delimiter,
                    token=asked.token,
                    start_after=asked.start_after,
                    marker=asked.marker,
                ),
                attempts=_LIST_ATTEMPTS,
                what=f"listing s3://{self.bucket}/{prefix}",
            )
        except PermanentError as exc:
            raise FatalError(exc.message, hint=exc.hint) from None

    def _pages(
        self, prefix: str, delimiter: str | None
    ) -> Iterator[tuple[list[ObjectInfo], list[str]]]:
        """The pages of a listing (ListObjectsV2): each page's objects and common prefixes,
        each list in the store's order, every page read until the server says it was the
        last (see :mod:`s3longbow.stores.paging`)."""
        where = f"listing s3://{self.bucket}/{prefix}"
        byte_order = self.capabilities.listing_order == BYTES
        asked = paging.FIRST
        last: str | None = None  # the greatest name handed out, once pages are asked by name
        while True:
            if self.data is not None:
                page = self._list_page(prefix, delimiter, asked)
                objects = list(map(_lean_listed, page.objects))
                prefixes = page.prefixes
                truncated, token, marker, v1 = (
                    page.truncated,
                    page.next_token,
                    page.next_marker,
                    page.v1,
                )
            else:
                kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
                if delimiter:
                    kwargs["Delimiter"] = delimiter
                if asked.token:
                    kwargs["ContinuationToken"] = asked.token
                if asked.start_after or asked.marker:
                    kwargs["StartAfter"] = asked.start_after or asked.marker
                with self._errors(where, fatal=True):
                    response = self.client.list_objects_v2(**kwargs)
                objects = list(map(_listed, response.get("Contents", ())))
                prefixes = [p["Prefix"] for p in response.get("CommonPrefixes", ())]
                truncated = bool(response.get("IsTruncated"))
                token, marker, v1 = response.get("NextContinuationToken"), None, False
            floor = paging.after(asked, last)
            if floor is not None:
                objects = [o for o in objects if o.key > floor]
                prefixes = [p for p in prefixes if p > floor]
                if not objects and not prefixes:
                    raise paging.no_progress(where, floor)
            names = [o.key for o in objects[-1:]] + prefixes[-1:]
            page_last = max(names) if names else None
            yield objects, prefixes
            asked_next = paging.next_page(
                where,
                truncated=truncated,
                token=token,
                next_marker=marker,
                v1=v1,
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
            with self._errors(where, fatal=not source, source=source):
                page = self.client.list_object_versions(**kwargs)
            yield page
            if not page.get("IsTruncated"):
                return
            if page.get("NextKeyMarker"):
                kwargs["KeyMarker"] = page["NextKeyMarker"]
                kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker") or ""
                continue
            entries = [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
            last = max(((e["Key"], str(e.get("VersionId") or "")) for e in entries), default=None)
            # Raises where going on after the last version could skip versions.
            paging.next_page(
                where,
                truncated=True,
                token=None,
                last_name=last[0] if last else None,
                byte_order=byte_order,
            )
            assert last is not None  # next_page raised otherwise
            if last == previous:
                raise paging.no_progress(where, last[0])
            previous = last
            kwargs["KeyMarker"], kwargs["VersionIdMarker"] = last

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

    def list_level(self, prefix: str) -> Iterator[ObjectInfo | str]:
        if self._versioned_listing:
            yield from self._list_versions_level(prefix, "/")
            return
        sort = order_key(self.capabilities.listing_order) or (lambda k: k)
        for objects, prefixes in self._pages(prefix, "/"):
            yield from _in_order(objects, prefixes, sort)

    @_one_object
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
                last_modified=http1.http_date(modified) if modified else None,
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

    @_one_object
    def details(
        self,
        key: str,
        etag: str | None,
        *,
        part_one: bool = False,
        version_id: str | None = None,
    ) -> ObjectDetails:
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
                    version_id=version_id,
                )
            except SourceChangedError:
                raise
            except PermanentError:
                if part_one:
                    # Part numbers not understood.
                    return self.details(key, etag, version_id=version_id)
                raise
            if headers is None:
                raise SourceChangedError(f"{where}: the source object no longer exists")
            parts = headers.get("x-amz-mp-parts-count") if part_one else None
            return ObjectDetails(
                properties=_properties_from_headers(headers),
                part_size=int(headers.get("content-length", 0)) if parts else None,
                parts_count=int(parts) if parts else None,
                version_id=headers.get("x-amz-version-id"),
                storage_class=headers.get("x-amz-storage-class"),
            )
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if part_one:
            kwargs["PartNumber"] = 1
        elif etag:
            kwargs["IfMatch"] = f'"{etag}"'
        if self._checksum_mode:
            kwargs["ChecksumMode"] = "ENABLED"
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            resp = self.client.head_object(**kwargs)
        except ClientError as exc:
            if part_one and _status(exc) not in (403, 404) and _status(exc) < 500:
                # Part numbers not understood.
                return self.details(key, etag, version_id=version_id)
            raise _translate(exc, where, source=True) from None
        except BotoCoreError as exc:
            raise _translate(exc, where, source=True) from None
        count = resp.get("PartsCount") if part_one else None
        return ObjectDetails(
            properties=_properties(resp),
            part_size=int(resp["ContentLength"]) if count else None,
            parts_count=int(count) if count else None,
            version_id=resp.get("VersionId"),
            storage_class=resp.get("StorageClass"),
        )

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

    @_one_object
    def get_tags(self, key: str) -> tuple[tuple[str, str], ...]:
        with self._errors(f"reading the tags of {self.describe(key)}", source=True):
            resp = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        return tuple((t["Key"], t["Value"]) for t in resp.get("TagSet", ()))

    @_one_object
    def read_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[bytes, ObjectProperties]:
        if self.data is not None:
            data, headers = self.data.get_object(
                self.bucket, key, 0, size, etag=etag, version_id=version_id
            )
            return data, _properties_from_headers(headers)
        data, resp = self._get(key, 0, size, etag, whole=True, version_id=version_id)
        return data, _properties(resp)

    @_one_object
    def open_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[Relayed, ObjectProperties] | None:
        if self.data is None or not self.data.relays or size == 0:
            return None
        body = self.data.open_range(
            self.bucket, key, 0, size, etag=etag, version_id=version_id, whole=True
        )
        if body is None:
            return None
        try:
            return body, _properties_from_headers(body.headers)
        except BaseException:
            body.__exit__(None, None, None)  # never sent: its connection is closed
            raise

    @_one_object
    def open_range(
        self,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> Relayed | None:
        if self.data is None or not self.data.relays:
            return None
        return self.data.open_range(
            self.bucket, key, start, length, etag=etag, version_id=version_id
        )

    @_one_object
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

    @_one_object
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
        if self.data is not None:
            return self.data.get_range(
                self.bucket,
                key,
                start,
                length,
                etag=etag,
                version_id=version_id,
                into=into,
                each=each,
            )
        data = self._get(key, start, length, etag, version_id=version_id)[0]
        if each is not None:
            each(memoryview(data))  # botocore hands over the body whole
        return data

    def _get(
        self,
        key: str,
        start: int,
        length: int,
        etag: str | None,
        *,
        whole: bool = False,
        version_id: str | None = None,
    ) -> tuple[bytes, dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length > 0 and not whole:
            kwargs["Range"] = f"bytes={start}-{start + length - 1}"
        if etag:
            kwargs["IfMatch"] = f'"{etag}"'
        if whole and self._checksum_mode:
            kwargs["ChecksumMode"] = "ENABLED"
        if version_id:
            kwargs["VersionId"] = version_id
        where = f"reading {self.describe(key)} bytes {start}-{start + length - 1}"
        with self._errors(where, source=True):
            resp = self.client.get_object(**kwargs)
            body = resp["Body"]
            sent = _unquote(resp.get("ETag"))
            if etag and sent and sent.removeprefix("W/") != etag:
                body.close()  # a server that ignores If-Match still names what it sends
                raise SourceChangedError(
                    f"{where}: the reply is for another version of the object (ETag {sent}, "
                    f"pinned {etag})"
                )
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

    @_one_object
    @_storage_class_refusals
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
    ) -> str:
        if self.data is not None:
            headers = {**_property_headers(properties, tags), **self._write_headers}
            if checksum is not None:
                headers[f"x-amz-checksum-{checksum.algorithm.lower()}"] = checksum.value
            return self.data.put_object(
                self.bucket,
                key,
                data,
                md5_b64=md5_b64,
                storage_class=storage_class,
                headers=headers,
            )
        if isinstance(data, RangeBody):
            raise TypeError("relayed bytes are written by the lean data plane only")
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": _whole(data),
            "ContentMD5": md5_b64,
            "ContentLength": len(data),
            **_write_args(storage_class, properties, tags),
            **self._write_kwargs,
        }
        if checksum is not None:
            kwargs[f"Checksum{checksum.algorithm}"] = checksum.value
        with self._errors(f"writing {self.describe(key)}"):
            resp = self.client.put_object(**kwargs)
        return _unquote(resp.get("ETag")) or ""

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
        if self.data is not None:
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
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            **_write_args(storage_class, properties, tags),
            **self._write_kwargs,
        }
        if checksum_algorithm:
            kwargs["ChecksumAlgorithm"] = checksum_algorithm
            kwargs["ChecksumType"] = kind
        with self._errors(f"starting a multipart upload of {self.describe(key)}"):
            resp = self.client.create_multipart_upload(**kwargs)
        return str(resp["UploadId"])

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
        if self.data is not None:
            headers = (
                {f"x-amz-checksum-{checksum.algorithm.lower()}": checksum.value} if checksum else {}
            )
            return self.data.upload_part(
                self.bucket, key, upload_id, number, data, md5_b64=md5_b64, headers=headers
            )
        if relayed:
            raise TypeError("relayed bytes are written by the lean data plane only")
        extra: dict[str, Any] = {}
        if checksum:
            extra[f"Checksum{checksum.algorithm}"] = checksum.value
        if md5_b64 is not None:
            extra["ContentMD5"] = md5_b64
        where = f"uploading part {number} of {self.describe(key)}"
        with self._errors(where):
            resp = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_whole(data),
                ContentLength=len(data),
                **extra,
            )
        if md5_b64 is None and checksum is not None:
            if resp.get(f"Checksum{checksum.algorithm}") != checksum.value:
                raise ChecksumNotConfirmedError(
                    f"{where}: the reply does not confirm the part's {checksum.algorithm} checksum"
                )
        return _unquote(resp.get("ETag")) or ""

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
                if _code(exc) in ("NoSuchUpload", "NoSuchKey") or _status(exc) == 404:
                    return None
                raise _translate(exc, f"listing parts of {self.describe(key)}") from None
            except BotoCoreError as exc:
                raise _translate(exc, f"listing parts of {self.describe(key)}") from None
            new = [
                PartInfo(
                    int(p["PartNumber"]),
                    int(p["Size"]),
                    _unquote(p.get("ETag")) or "",
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
    ) -> str:
        if self.data is not None:
            return self.data.complete_upload(
                self.bucket,
                key,
                upload_id,
                [(p.number, p.etag) for p in parts],
                algorithm=algorithm,
                part_checksums=[p.checksum or "" for p in parts] if algorithm else None,
                headers={f"x-amz-checksum-{algorithm.lower()}": full_checksum.value}
                if algorithm and full_checksum
                else None,
            )
        listed = []
        for p in parts:
            entry = {"PartNumber": p.number, "ETag": f'"{p.etag}"'}
            if algorithm and p.checksum:
                entry[f"Checksum{algorithm}"] = p.checksum
            listed.append(entry)
        extra: dict[str, Any] = {}
        if algorithm and full_checksum:
            extra[f"Checksum{algorithm}"] = full_checksum.value
            extra["ChecksumType"] = "FULL_OBJECT"
        with self._errors(f"completing the multipart upload of {self.describe(key)}"):
            resp = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
                **extra,
            )
        return _unquote(resp.get("ETag")) or ""

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
        }
        kwargs["TaggingDirective"] = "COPY" if tags is None else "REPLACE"
        if etag:
            kwargs["CopySourceIfMatch"] = f'"{etag}"'
        with self._errors(f"updating the properties of {self.describe(key)}"):
            self.client.copy_object(**kwargs)

    def can_copy_from(self, source: object) -> bool:
        return isinstance(source, S3Store) and source._identity == self._identity

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
    ) -> str:
        assert isinstance(source, S3Store)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "CopySource": _copy_source(source.bucket, src_key, version_id),
            # The properties and tags travel with the copy (COPY is the default directive).
            "MetadataDirective": "COPY",
            "TaggingDirective": "COPY" if copy_tags else "REPLACE",
            **self._write_kwargs,
        }
        if etag:
            kwargs["CopySourceIfMatch"] = f'"{etag}"'
        if storage_class:
            kwargs["StorageClass"] = storage_class
        where = f"copying {source.describe(src_key)} to {self.describe(key)}"
        with self._errors(where, source=True):
            resp = self.client.copy_object(**kwargs)
        return _unquote(resp.get("CopyObjectResult", {}).get("ETag")) or ""

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
        assert isinstance(source, S3Store)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": number,
            "CopySource": _copy_source(source.bucket, src_key, version_id),
            "CopySourceRange": f"bytes={start}-{start + length - 1}",
        }
        if etag:
            kwargs["CopySourceIfMatch"] = f'"{etag}"'
        where = f"copying part {number} of {source.describe(src_key)} to {self.describe(key)}"
        with self._errors(where, source=True):
            resp = self.client.upload_part_copy(**kwargs)
        return _unquote(resp.get("CopyPartResult", {}).get("ETag")) or ""

    def can_relay_from(self, source: object) -> bool:
        return (
            isinstance(source, S3Store)
            and self.data is not None
            and source.data is not None
            and self.data.relays
            and source.data.relays
        )

    @_one_object
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
        if self._client is not None:
            self._client.close()

    @contextmanager
    def _errors(self, where: str, *, fatal: bool = False, source: bool = False) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, where, fatal=fatal, source=source) from None
        except UnicodeEncodeError:
            # botocore signs text: a header kept as bytes that are not UTF-8 cannot be signed.
            raise PermanentError(
                f"{where}: a header value holds bytes that are not UTF-8, which this request "
                "cannot carry"
            ) from None


def _check_side(side: SideSettings) -> None:
    """Refuse an unsafe endpoint URL; warn (once per endpoint) when TLS is not verified."""
    check_endpoint_url(side.endpoint_url, allow_http=side.allow_http)
    if not side.verify_ssl and side.endpoint_url not in _UNVERIFIED_WARNED:
        _UNVERIFIED_WARNED.add(side.endpoint_url)
        log.warning(
            "TLS certificates of %s are not checked: anyone on the network path could read "
            "or change the data",
            side.endpoint_url or "the AWS endpoint",
        )


def resolve_ca_bundle(side: SideSettings, session: botocore.session.Session | None) -> str | None:
    """The certificate authorities one side's https endpoint is checked against, the same
    for the lean client and for botocore, chosen as botocore chooses: the side's own
    ``ca_bundle`` (flag or config file) > ``AWS_CA_BUNDLE`` > the profile's ``ca_bundle`` >
    ``REQUESTS_CA_BUNDLE`` > certifi's bundle. None for a plain-http endpoint.

    Raises:
        ConfigError: The bundle chosen is not a readable file (it says where it came from).
    """
    if side.endpoint_url is not None and side.endpoint_url.lower().startswith("http://"):
        return None
    chosen: tuple[str, str] | None = None
    if side.ca_bundle:
        chosen = (side.ca_bundle, "ca_bundle of this side (--src-ca-bundle / --dst-ca-bundle)")
    elif os.environ.get("AWS_CA_BUNDLE"):
        chosen = (os.environ["AWS_CA_BUNDLE"], "AWS_CA_BUNDLE")
    elif session is not None and session.get_config_variable("ca_bundle"):
        chosen = (str(session.get_config_variable("ca_bundle")), "the profile's ca_bundle")
    elif os.environ.get("REQUESTS_CA_BUNDLE"):
        chosen = (os.environ["REQUESTS_CA_BUNDLE"], "REQUESTS_CA_BUNDLE")
    if chosen is None:
        try:
            import certifi
        except ImportError:  # pragma: no cover - botocore's own copy, where certifi is absent
            import botocore

            return str(Path(botocore.__file__).parent / "cacert.pem")
        return str(certifi.where())
    path, origin = chosen
    if not Path(path).expanduser().is_file():
        raise ConfigError(
            f"CA bundle {path} ({origin}) is not a file",
            hint="give the PEM file of the certificate authorities to trust",
        )
    return str(Path(path).expanduser())


# Where botocore would find a profile or a region for keys given without one.
_AWS_CONFIG_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")


def _static_keys(side: SideSettings) -> StaticCredentials | None:
    """The side's keys when they are given outright and botocore's configuration has nothing
    to add: no profile, and a region given or none configured (environment or config file)."""
    if side.profile or not (side.access_key_id and side.secret_access_key):
        return None
    if not side.region:
        config_file = Path(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser()
        if any(os.environ.get(name) for name in _AWS_CONFIG_ENV) or config_file.is_file():
            return None
    return StaticCredentials(side.access_key_id, side.secret_access_key, side.session_token)


def make_session(side: SideSettings) -> botocore.session.Session:
    """A botocore session for one side: its profile, static keys and region, if given."""
    import botocore.parsers
    import botocore.session

    try:
        session = botocore.session.Session(profile=side.profile)
        if side.profile and side.profile not in session.available_profiles:
            raise ProfileNotFound(profile=side.profile)
    except ProfileNotFound:
        raise ConfigError(
            f"AWS profile {side.profile!r} is not configured",
            hint="list profiles with `aws configure list-profiles`, or pass another profile",
        ) from None
    if side.access_key_id or side.secret_access_key or side.session_token:
        session.set_credentials(side.access_key_id, side.secret_access_key, side.session_token)
    if side.region:
        session.set_config_variable("region", side.region)
    # Listings carry a timestamp per key; botocore parses each with dateutil, which cost
    # more CPU than the rest of planning. S3's ISO 8601 form has a fast path.
    parsers = botocore.parsers.ResponseParserFactory()
    parsers.set_parser_defaults(timestamp_parser=_parse_timestamp)
    session.register_component("response_parser_factory", parsers)
    return session


def make_s3_client(
    side: SideSettings,
    session: botocore.session.Session,
    region: str,
    *,
    max_connections: int = 64,
    verify: str | bool = True,
) -> Any:
    """A botocore S3 client for one side, tuned for many threads and S3-compatible servers.

    `verify`: the CA bundle its certificates are checked against (the same one the lean
    client trusts), True for botocore's own choice, or False for none.
    """
    import botocore.handlers
    from botocore.config import Config

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
    client = session.create_client(
        "s3",
        endpoint_url=side.endpoint_url,
        region_name=region,
        config=config,
        verify=None if verify is True else verify,
    )
    # `Expect: 100-continue` costs a round trip per PUT; a rejected body is cheap to resend.
    client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
    # Metadata is copied as the source has it, UTF-8 or not: botocore's check that it is
    # ASCII is dropped, and what it signs goes out as those bytes.
    for operation in ("PutObject", "CopyObject", "CreateMultipartUpload"):
        client.meta.events.unregister(
            f"before-parameter-build.s3.{operation}", botocore.handlers.validate_ascii_metadata
        )
    client.meta.events.register("before-send.s3", _send_header_text_as_utf8)
    return client


def _send_header_text_as_utf8(request: Any, **_: Any) -> None:
    """Header values go out as the UTF-8 bytes botocore signed, not as Latin-1.

    botocore signs a header's text as UTF-8, while http.client sends text as Latin-1: a
    value such as "José" (user metadata) would go out as other bytes than were signed, and
    the server would refuse the signature.
    """
    for name, value in list(request.headers.items()):
        if isinstance(value, str) and not value.isascii():
            request.headers[name] = value.encode("utf-8")


_UNVERIFIED_WARNED: set[str | None] = set()  # endpoints already warned about, once each


def _parse_timestamp(value: str) -> datetime.datetime:
    """S3's timestamps (2026-11-26T05:32:10.000Z) at C speed; anything else as botocore does."""
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        import botocore.utils

        return botocore.utils.parse_timestamp(value)  # type: ignore[no-any-return]
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


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
        import email.utils  # only the botocore path needs it

        expires = email.utils.format_datetime(resp["Expires"], usegmt=True)
    return ObjectProperties(
        **{ours: _wire_text(resp.get(theirs)) or None for ours, theirs in _HEADER_FIELDS},
        expires=expires,
        # Names in lower case, as S3 keeps them and the lean client reads them.
        metadata=tuple((k.lower(), _wire_text(v)) for k, v in resp.get("Metadata", {}).items()),
        # S3 leaves the tag count out when an object has no tags.
        tag_count=int(resp.get("TagCount") or 0),
        checksum=next(
            (
                checksums.parse(a, resp[f"Checksum{a}"], resp.get("ChecksumType"))
                for a in checksums.ALGORITHMS
                if resp.get(f"Checksum{a}")
            ),
            None,
        ),
        encrypted=_encrypted(resp.get("ServerSideEncryption"), resp.get("SSECustomerAlgorithm")),
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
    )


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


def _acknowledge_requester_pays(request: Any, **_: Any) -> None:
    """Every request to a requester-pays bucket says that the requester pays."""
    request.headers["x-amz-request-payer"] = "requester"


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
            import email.utils  # only the botocore path needs it

            try:
                args["Expires"] = email.utils.parsedate_to_datetime(properties.expires)
            except (TypeError, ValueError):
                log.warning("ignoring an Expires header that is not a date: %r", properties.expires)
        if properties.metadata:
            args["Metadata"] = dict(properties.metadata)
    if tags:
        args["Tagging"] = urllib.parse.urlencode(tags)
    return args


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
    return ObjectInfo(
        key=item["Key"],
        size=int(item["Size"]),
        etag=_unquote(item.get("ETag")),
        last_modified=item["LastModified"].timestamp() if "LastModified" in item else None,
        version_id=item.get("VersionId"),
    )


def _version(item: dict[str, Any]) -> ObjectVersion:
    """An entry of a ListObjectVersions page."""
    return ObjectVersion(
        key=item["Key"],
        version_id=str(item.get("VersionId") or "null"),
        size=int(item.get("Size") or 0),
        etag=_unquote(item.get("ETag")),
        last_modified=item["LastModified"].timestamp() if "LastModified" in item else None,
    )


def _lean_listed(item: tuple[str, int, str | None, str | None]) -> ObjectInfo:
    """An entry of a page read by the lean data plane."""
    key, size, etag, modified = item
    return ObjectInfo(
        key=key,
        size=size,
        etag=etag,
        last_modified=_parse_timestamp(modified).timestamp() if modified else None,
    )


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


def _whole(data: Bytes) -> bytes | bytearray:
    """A body botocore can send: it takes bytes, not a view of a part buffer."""
    return data.tobytes() if isinstance(data, memoryview) else data


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
        if fatal and "certificate verify failed" in str(exc).lower():
            return FatalError(
                f"{where}: the endpoint's TLS certificate is not trusted: {exc}",
                hint="set AWS_CA_BUNDLE to the CA file that signed it, or (unsafe, on a "
                "network you trust) pass --src-no-verify-ssl / --dst-no-verify-ssl",
            )
        if fatal:
            return FatalError(
                f"{where}: {type(exc).__name__}: {exc}",
                hint="check the endpoint URL and region, and that the server is reachable",
            )
        return TransientError(f"{where}: {type(exc).__name__}: {exc}")
    assert isinstance(exc, ClientError)
    message = exc.response.get("Error", {}).get("Message") or ""
    return error_from_response(_code(exc), _status(exc), message, where, fatal=fatal, source=source)
