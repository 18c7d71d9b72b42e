"""One bucket on an S3-compatible endpoint: the store port over the lean data plane, botocore
for the rest of the control plane, and the quirks of the servers found by check().

Every ClientError and every error reply is mapped onto Longbow's error tree, so callers
decide on retries by error class, not by text.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from s3longbow.config import SideSettings
from s3longbow.customerkeys import key_headers
from s3longbow.errors import (
    ConfigError,
    FatalError,
    LongbowError,
    PermanentError,
    SourceChangedError,
    TransientError,
    WrongRegionError,
)
from s3longbow.meter import RequestMeter
from s3longbow.model import (
    Bytes,
    Checksum,
    ObjectDetails,
    ObjectInfo,
    ObjectProperties,
)
from s3longbow.ratelimit import PrefixRates
from s3longbow.retry import with_retries
from s3longbow.stores.base import Capabilities, EndpointFacts, Relayed
from s3longbow.stores.location import check_bucket_name
from s3longbow.stores.s3.connection import _Request, as_body
from s3longbow.stores.s3.dial import proxy_for
from s3longbow.stores.s3.endpoints import (
    aws_endpoint,
    check_accelerated_bucket,
    check_accelerated_region,
    describe_aws,
)
from s3longbow.stores.s3.headers import (
    _properties_from_headers,
    _property_headers,
    _write_options,
    archived_by_headers,
)
from s3longbow.stores.s3.http1 import http_date
from s3longbow.stores.s3.lean import S3DataPlane
from s3longbow.stores.s3.nonblocking import Direct
from s3longbow.stores.s3.plane import DataPlane
from s3longbow.stores.s3.session import (
    _check_side,
    _static_keys,
    make_session,
    resolve_ca_bundle,
)
from s3longbow.stores.s3.signing import CredentialSource
from s3longbow.stores.s3.wire import unquote_etag

if TYPE_CHECKING:
    import botocore.session
from s3longbow.stores.s3.common import _one_object, _storage_class_refusals
from s3longbow.stores.s3.copies import Copies
from s3longbow.stores.s3.listing import Listing
from s3longbow.stores.s3.locks import Locks
from s3longbow.stores.s3.restores import Restores
from s3longbow.stores.s3.uploads import Uploads

log = logging.getLogger(__name__)

_CHECK_ATTEMPTS = 4  # the HEAD of the bucket that checks it (as botocore retries its calls)


class S3Store(Listing, Uploads, Copies, Restores, Locks):
    """One bucket on one S3-compatible endpoint.

    Args:
        bucket: The bucket name.
        side: Endpoint, profile, region and credentials for this side.
        max_connections: Size of the HTTP connection pool; at least the number of threads
            that use this store at once, or connections churn.
        min_rate: Bytes per second an exchange must keep up once it flows.
        meter: Where the data plane records its replies' waits and requests to slow down.
        rates: The request rate of each key prefix (both clients wait for a prefix's turn).
        open_ahead: Connections the data plane opens at once when its first one shows a long
            path (see Client).
    """

    capabilities = Capabilities(ranged_listing=True)
    rgw = False  # set by check(): the endpoint is a Ceph RADOS Gateway

    def __init__(
        self,
        bucket: str,
        side: SideSettings,
        *,
        max_connections: int = 64,
        min_rate: float = 0,
        meter: RequestMeter | None = None,
        rates: PrefixRates | None = None,
        open_ahead: int = 0,
    ) -> None:
        check_bucket_name(bucket, side.bucket_names)
        self.bucket = bucket
        self.name = bucket
        self._endpoint = side.endpoint_url or describe_aws(side)
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
        self._meter = meter
        self._rates = rates
        self._open_ahead = open_ahead
        self._listings = 0
        self._listings_lock = threading.Lock()
        self._early = {}
        self._early_lock = threading.Lock()
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
            # botocore's credentials freeze to the same three fields (key, secret, token).
            credentials = cast(CredentialSource | None, self._session.get_credentials())
            configured = self._session.get_config_variable("region")
        self._credentials = credentials
        self._region = side.region or configured or "us-east-1"
        if side.use_accelerate_endpoint:
            # Only by host name, and not in China (a profile's region is known only now).
            check_accelerated_bucket(bucket)
            check_accelerated_region(self._region)
        # Without a region from the user or a profile, check() asks the bucket for its own.
        self._region_given = bool(side.region or configured)
        # One trust for both clients, resolved once (see resolve_ca_bundle).
        self._ca_bundle = resolve_ca_bundle(side, self._session)
        # A customer key (SSE-C) goes with every request about an object of this side.
        self._sse_c = side.sse_c_key
        self.capabilities = dataclasses.replace(
            self.capabilities,
            checksums=side.checksum_algorithm,
            write_etags_md5=not (side.sse or "").startswith("aws:kms") and not self._sse_c,
            customer_key=bool(self._sse_c),
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
        url = side.endpoint_url or aws_endpoint(
            self._region,
            dualstack=side.use_dualstack_endpoint,
            accelerate=side.use_accelerate_endpoint,
        )
        try:
            proxy = proxy_for(url)
        except ValueError as exc:
            raise ConfigError(
                f"the proxy for {url} cannot be used: {exc}",
                hint="set HTTPS_PROXY / HTTP_PROXY to http://[user:password@]host:port, or "
                "name the endpoint in NO_PROXY",
            ) from None
        return S3DataPlane(
            url,
            self._region,
            side.path_style,
            self._credentials,
            self._max_connections,
            ca_bundle=self._ca_bundle,
            verify_tls=side.verify_ssl,
            proxy=proxy,
            min_rate=self._min_rate,
            meter=self._meter,
            extra_headers=self._extra_headers,
            object_headers=key_headers(self._sse_c) if self._sse_c else None,
            checksum_mode=self._checksum_mode,
            rates=self._rates,
            open_ahead=self._open_ahead,
        )

    def check(self) -> None:
        headers = self._head_bucket()
        if headers.get("server", "").startswith("SeaweedFS"):
            # Its filer lists folder by folder: "a/b" comes before "a-c"; a listing cannot
            # start after any key in byte order, so its key space is split by folder.
            self.capabilities = dataclasses.replace(
                self.capabilities, listing_order="segments", ranged_listing=False
            )
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
        except (FatalError, ConfigError):
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
        """A HEAD of the bucket, retried while the network or the server fails (a 5xx or a
        429 is the server's failure, as botocore retries them, not the bucket's answer)."""
        data = self.data

        def head() -> tuple[int, dict[str, str]]:
            status, headers = data.head_bucket(self.bucket)
            if status >= 500 or status == 429:
                raise TransientError(f"the server answered {status}")
            return status, headers

        return with_retries(head, attempts=_CHECK_ATTEMPTS, what=f"checking s3://{self.bucket}")

    def endpoint_facts(self) -> EndpointFacts:
        url = self._side.endpoint_url
        host = (urlsplit(url).hostname or "") if url else ""
        at_aws = url is None or host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
        return EndpointFacts(region=self._region, at_aws=at_aws, endpoint=self._endpoint)

    def round_trip(self) -> float:
        started = time.monotonic()
        self.data.head_bucket(self.bucket)
        return time.monotonic() - started

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

    @_one_object
    def head(self, key: str) -> ObjectInfo | None:
        headers = self.data.head_object(self.bucket, key)
        if headers is None:
            return None
        modified = headers.get("last-modified")
        return ObjectInfo(
            key=key,
            size=int(headers.get("content-length", 0)),
            etag=unquote_etag(headers.get("etag")),
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
            archived=archived_by_headers(headers),
        )

    @_one_object
    def get_tags(self, key: str) -> tuple[tuple[str, str], ...]:
        with self._errors(f"reading the tags of {self.describe(key)}", source=True):
            resp = self.client.get_object_tagging(Bucket=self.bucket, Key=key)
        return tuple((t["Key"], t["Value"]) for t in resp.get("TagSet", ()))

    @_one_object
    def read_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[bytes | bytearray, ObjectProperties]:
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
        create_only: bool = False,
    ) -> str:
        headers = self._put_headers(properties, tags, checksum)
        if create_only:
            headers["If-None-Match"] = "*"
        with self._only_new(key, create_only):
            return self.data.put_object(
                self.bucket,
                key,
                as_body(data),
                md5_b64=md5_b64,
                storage_class=storage_class,
                headers=headers,
            )

    def _put_headers(
        self,
        properties: ObjectProperties | None,
        tags: tuple[tuple[str, str], ...],
        checksum: Checksum | None,
    ) -> dict[str, str]:
        headers = {**_property_headers(properties, tags), **self._write_headers}
        if checksum is not None:
            headers[f"x-amz-checksum-{checksum.algorithm.lower()}"] = checksum.value
        return headers

    def direct(self) -> Direct | None:
        """Where whole-object requests can run on a non-blocking loop (see
        :mod:`s3longbow.stores.s3.nonblocking`): None where they cannot (a proxy, or a
        customer key)."""
        if self._sse_c or not isinstance(self.data, S3DataPlane):
            return None
        return self.data.direct()

    def direct_get(self, key: str, size: int, *, etag: str, version_id: str | None) -> _Request:
        """The signed GET read_object sends (run it with nonblocking.exchange)."""
        assert isinstance(self.data, S3DataPlane)
        return self.data.prepare_get(self.bucket, key, size, etag, version_id)

    def direct_put(
        self,
        key: str,
        size: int,
        *,
        md5_b64: str,
        storage_class: str | None,
        properties: ObjectProperties,
        tags: tuple[tuple[str, str], ...],
        checksum: Checksum | None,
    ) -> _Request:
        """The signed PUT put_object sends, without create_only (run it with
        nonblocking.exchange)."""
        assert isinstance(self.data, S3DataPlane)
        return self.data.prepare_put(
            self.bucket,
            key,
            size,
            md5_b64=md5_b64,
            storage_class=storage_class,
            headers=self._put_headers(properties, tags, checksum),
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

    def can_relay_from(self, source: object) -> bool:
        return isinstance(source, S3Store) and self.data.relays and source.data.relays

    def close(self) -> None:
        self.data.close()
        if self._client is not None:
            self._client.close()


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
