"""One bucket on an S3-compatible endpoint: the store port over the lean data plane, botocore
for the rest of the control plane, and the quirks of the servers found by check().

Every ClientError and every error reply is mapped onto Longbow's error tree, so callers
decide on retries by error class, not by text.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from s3longbow import checksums
from s3longbow.config import SideSettings
from s3longbow.errors import (
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
from s3longbow.stores.base import BYTES, Capabilities, ObjectStore, Relayed, order_key
from s3longbow.stores.location import check_bucket_name
from s3longbow.stores.s3 import paging
from s3longbow.stores.s3.client import aws_endpoint
from s3longbow.stores.s3.connection import RangeBody
from s3longbow.stores.s3.dial import proxy_for
from s3longbow.stores.s3.errors import error_from_response
from s3longbow.stores.s3.headers import (
    _copy_source,
    _properties_from_headers,
    _property_headers,
    _write_args,
    _write_options,
)
from s3longbow.stores.s3.http1 import http_date
from s3longbow.stores.s3.lean import S3DataPlane
from s3longbow.stores.s3.plane import DataPlane
from s3longbow.stores.s3.session import (
    _acknowledge_requester_pays,
    _check_side,
    _parse_timestamp,
    _static_keys,
    make_s3_client,
    make_session,
    resolve_ca_bundle,
)
from s3longbow.stores.s3.signing import CredentialSource
from s3longbow.stores.s3.wire import ListPage

if TYPE_CHECKING:
    import botocore.session


log = logging.getLogger(__name__)

_LIST_ATTEMPTS = 5  # a listing page, through the lean client
_CHECK_ATTEMPTS = 4  # the HEAD of the bucket that checks it (as botocore retries its calls)

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
        # Destination options every write carries, as headers (the data plane's) and as
        # botocore's arguments (its metadata-only copies).
        self._write_headers, self._write_kwargs = _write_options(side)
        self._extra_headers: dict[str, str] = {}
        if side.requester_pays:
            self._extra_headers["x-amz-request-payer"] = "requester"
        # The bytes (GET, PUT, UploadPart), listings, HEADs and multipart start and finish go
        # through a lean keep-alive HTTP client: botocore spends ~4 ms of CPU per request,
        # several times the cost of the transfer itself. It speaks to proxies and trusts
        # certificates as botocore does; botocore keeps every other call.
        self.data: DataPlane = self._new_plane()
        log.debug(
            "%s at %s: %s, region %s, lean client signing with %s",
            self.describe(),
            self._endpoint,
            "keys given outright" if self._session is None else "credentials from botocore",
            self._region,
            self.data.signer_name,
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
        headers = self._head_bucket()
        if headers.get("server", "").startswith("SeaweedFS"):
            # Its filer lists folder by folder: "a/b" comes before "a-c".
            self.capabilities = dataclasses.replace(self.capabilities, listing_order="segments")
        # Ceph RGW names no server, but its HeadBucket reply carries x-rgw-* headers.
        self.rgw = any(name.lower().startswith("x-rgw-") for name in headers)
        if self.rgw:
            self._check_rgw_checksums()

    def _head_bucket(self) -> dict[str, str]:
        """The bucket's HEAD headers (its reply must be 2xx; the run stops otherwise).

        The reply names the bucket's region (``x-amz-bucket-region``), whatever its status:
        without a region from the user or a profile, the store takes it (as aws-cli does);
        a region given that the server refuses as the wrong one stops the run, naming the
        right one.
        """
        where = f"checking bucket {self.bucket!r} at {self._endpoint}"
        try:
            status, headers = self._head_bucket_once()
            region = headers.get("x-amz-bucket-region")
            if region and region != self._region:
                if not self._region_given:
                    log.info("%s is in region %s: using it", self.describe(), region)
                    self._use_region(region)
                    status, headers = self._head_bucket_once()
                elif status in (301, 400):
                    raise WrongRegionError(
                        f"bucket {self.bucket!r} at {self._endpoint} is in region {region}, "
                        f"not {self._region}",
                        region=region,
                        hint=f"give region {region} for this side (or no region: Longbow then "
                        "asks the bucket for it)",
                    )
        except FatalError:
            raise  # a proxy refusing the way, a wrong region, refused credentials
        except LongbowError as exc:
            raise _unreachable(where, exc) from None
        if 200 <= status < 300:
            return headers
        if status == 404:
            raise FatalError(
                f"bucket {self.bucket!r} does not exist at {self._endpoint}",
                hint="check the bucket name and the endpoint URL (and region), or create it",
            )
        if status in (401, 403):
            raise FatalError(
                f"access to bucket {self.bucket!r} at {self._endpoint} was denied ({status})",
                hint="check the credentials (profile, keys) and the bucket policy",
            )
        raise FatalError(
            f"{where}: the server answered {status}",
            hint="check the endpoint URL and region, and that the server is an S3 endpoint",
        )

    def _head_bucket_once(self) -> tuple[int, dict[str, str]]:
        """A HEAD of the bucket, retried while the network or the server fails."""
        data = self.data
        return with_retries(
            lambda: data.head_bucket(self.bucket),
            attempts=_CHECK_ATTEMPTS,
            what=f"checking s3://{self.bucket}",
        )

    def _judge_refusal(self, exc: CredentialsRejectedError) -> LongbowError:
        """What a refusal of one object's request means: if a plain request (a HEAD of the
        bucket) with the same credentials passes, the server refuses that object's request
        alone (its key or properties may hold what it signs its own way): that object fails,
        the run goes on. Otherwise the credentials are what is refused: the run stops."""
        try:
            status, _ = self.data.head_bucket(self.bucket)
            plain_works = 200 <= status < 300
        except LongbowError:
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
        previous.close()
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

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
            page = self._list_page(prefix, delimiter, asked)
            objects = list(map(_listed, page.objects))
            prefixes = page.prefixes
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
        headers = self.data.head_object(self.bucket, key)
        if headers is None:
            return None
        modified = headers.get("last-modified")
        return ObjectInfo(
            key=key,
            size=int(headers.get("content-length", 0)),
            etag=_unquote(headers.get("etag")),
            last_modified=http_date(modified) if modified else None,
            version_id=headers.get("x-amz-version-id"),
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
        data, headers = self.data.get_object(
            self.bucket, key, 0, size, etag=etag, version_id=version_id
        )
        return data, _properties_from_headers(headers)

    @_one_object
    def open_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[Relayed, ObjectProperties] | None:
        if not self.data.relays or size == 0:
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
        if not self.data.relays:
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
            self.bucket, key, upload_id, number, data, md5_b64=md5_b64, headers=headers
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
        return isinstance(source, S3Store) and self.data.relays and source.data.relays

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


def _unreachable(where: str, exc: LongbowError) -> FatalError:
    """Why a bucket could not be checked, as an error that stops the run (with its fix)."""
    if "CERTIFICATE_VERIFY_FAILED" in exc.message:
        return FatalError(
            f"{where}: the endpoint's TLS certificate is not trusted: {exc.message}",
            hint="give the CA file that signed it (--src-ca-bundle / --dst-ca-bundle, or "
            "AWS_CA_BUNDLE), or (unsafe, on a network you trust) pass --src-no-verify-ssl / "
            "--dst-no-verify-ssl",
        )
    return FatalError(
        f"{where}: {exc.message}",
        hint="check the endpoint URL and region, and that the server is reachable",
    )


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


def _listed(item: tuple[str, int, str | None, str | None]) -> ObjectInfo:
    """An entry of a listing page."""
    key, size, etag, modified = item
    return ObjectInfo(
        key=key,
        size=size,
        etag=etag,
        last_modified=_parse_timestamp(modified).timestamp() if modified else None,
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
