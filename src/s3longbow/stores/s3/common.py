"""What every part of the S3 store shares: its attributes, botocore's client (built on first
use), the meaning of botocore's errors, and the rule that a refusal of one object's request
stops the run only when a plain request is refused too.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from s3longbow.config import SideSettings
from s3longbow.errors import (
    CredentialsRejectedError,
    FatalError,
    LongbowError,
    NotReplacedError,
    PermanentError,
    SourceChangedError,
)
from s3longbow.stores.base import Capabilities
from s3longbow.stores.s3.errors import translate
from s3longbow.stores.s3.plane import DataPlane
from s3longbow.stores.s3.session import (
    _acknowledge_requester_pays,
    make_s3_client,
    make_session,
    pace_by_prefix,
)
from s3longbow.verdicts import not_replaced_reason

if TYPE_CHECKING:
    from concurrent.futures import Future

    import botocore.session

    from s3longbow.meter import RequestMeter
    from s3longbow.ratelimit import PrefixRates
    from s3longbow.stores.s3.wire import ListPage


log = logging.getLogger(__name__)

P = ParamSpec("P")

R = TypeVar("R")
S = TypeVar("S", bound="StoreBase")


def _storage_class_refusals(write: Callable[P, R]) -> Callable[P, R]:
    """Turn a write refused for its storage class into a FatalError (see S3Store.check)."""

    @functools.wraps(write)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return write(*args, **kwargs)
        except PermanentError as exc:
            store = args[0]
            if isinstance(store, StoreBase):
                store._refused_storage_class(exc, kwargs.get("storage_class"))
            raise

    return checked


def _one_object(
    call: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], R]:
    """A refused signature or key on one object's request stops the run only when a plain
    request with the same credentials is refused too (see S3Store._judge_refusal)."""

    @functools.wraps(call)
    def checked(store: S, /, *args: P.args, **kw: P.kwargs) -> R:
        try:
            return call(store, *args, **kw)
        except CredentialsRejectedError as exc:
            raise store._judge_refusal(exc) from None

    return checked


class StoreBase:
    """The state of one S3 store (see S3Store), and what its parts share."""

    bucket: str
    name: str
    capabilities: Capabilities
    rgw: bool
    data: DataPlane
    _side: SideSettings
    _endpoint: str
    _region: str
    _max_connections: int
    _session: botocore.session.Session | None
    _client: Any
    _client_lock: threading.Lock
    _ca_bundle: str | None
    _write_headers: dict[str, str]
    _write_kwargs: dict[str, Any]
    _identity: tuple[object, ...]
    _rates: PrefixRates | None
    _open_ahead: int
    _meter: RequestMeter | None
    _sse_c: bytes | None  # this side's SSE-C key, sent with every request about an object
    _listings: int  # listing requests made (see Listing._counted)
    _listings_lock: threading.Lock
    # First listing pages asked for early, by request (see Listing.list_early).
    _early: dict[tuple[str, str | None, bool], tuple[float, Future[ListPage]]]
    _early_lock: threading.Lock

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
                        verify=(self._ca_bundle or True) if self._side.verify_ssl else False,
                    )
                    if self._side.requester_pays:
                        client.meta.events.register("before-sign.s3", _acknowledge_requester_pays)
                    if self._rates is not None:
                        pace_by_prefix(client, self._rates, self._meter)
                    self._client = client
        return self._client

    @property
    def _checksum_mode(self) -> bool:
        # A store configured for MD5 only is never asked about the newer checksums.
        return self.capabilities.checksums != "MD5"

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

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

    @contextmanager
    def _only_new(self, key: str, create_only: bool, *, copy: bool = False) -> Iterator[None]:
        """A write with If-None-Match: * refused (412) because the key exists: NotReplacedError.
        A server-side copy's 412 may be its source's If-Match instead: a HEAD tells."""
        try:
            yield
        except SourceChangedError as exc:
            if not create_only or (copy and self.data.head_object(self.bucket, key) is None):
                raise
            raise NotReplacedError(not_replaced_reason(self.describe(key)), hint=exc.hint) from None

    @contextmanager
    def _errors(self, where: str, *, fatal: bool = False, source: bool = False) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, where, fatal=fatal, source=source) from None
        except UnicodeEncodeError:
            # botocore signs text: a header kept as bytes that are not UTF-8 cannot be signed.
            raise PermanentError(
                f"{where}: a header value holds bytes that are not UTF-8, which this request "
                "cannot carry"
            ) from None
