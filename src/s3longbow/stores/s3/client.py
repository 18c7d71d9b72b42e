"""The lean client's exchanges with one S3-compatible endpoint: requests addressed and signed,
sent on keep-alive connections its threads share, their replies' errors given their meaning.

A redirect (307) is followed within the endpoint's scheme; a request refused for this
machine's clock is signed again with the server's time; a request that must not be made
twice (a POST) is never sent twice on its own. The operations are :mod:`lean`'s.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, NoCredentialsError, PartialCredentialsError

from s3longbow import __version__
from s3longbow.errors import (
    ClockSkewError,
    FatalError,
    LongbowError,
    PermanentError,
    TransientError,
    WrongRegionError,
)
from s3longbow.meter import RequestMeter
from s3longbow.ratelimit import PrefixRates
from s3longbow.stores.s3 import dial, http1, signing
from s3longbow.stores.s3.connection import (
    _NETWORK_ERRORS,
    Body,
    RangeBody,
    _Connection,
    _network_error,
    _Request,
    _stale,
)
from s3longbow.stores.s3.endpoints import aws_endpoint, is_ip, virtual_host_bucket
from s3longbow.stores.s3.errors import error_from_response
from s3longbow.stores.s3.pool import ConnectionPool
from s3longbow.stores.s3.signing import (
    CredentialSource,
    SignerName,
    _is_text,
    _make_signer,
    _PythonSigner,
    _Signer,
)
from s3longbow.stores.s3.stream import Pace, ReplyError
from s3longbow.stores.s3.wire import _parse_error, _xml_field, encode_key, encode_query_value

if TYPE_CHECKING:  # loaded only for https endpoints
    import ssl


log = logging.getLogger(__name__)

_T = TypeVar("_T")

_USER_AGENT = f"longbow/{__version__}"

# Bytes of an error reply worth reading; the rest of a larger one is dropped with its connection.
_MAX_ERROR_BODY = 64 * 1024

# Error codes whose reply may name the bucket's region.
_REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)

_DEFAULT_PORTS = {"http": 80, "https": 443}

_CREDENTIALS_HINT = (
    "pass --src-profile/--dst-profile, set LONGBOW_SRC_ACCESS_KEY_ID and "
    "LONGBOW_SRC_SECRET_ACCESS_KEY (or DST), or configure the default credential chain"
)


@dataclass(frozen=True, slots=True)
class _Call:
    """What one request asks: the operation's method, object, query and headers, and how
    errors describe it. Prepared (addressed and signed) anew for each attempt."""

    method: str
    bucket: str
    key: str
    query: str  # encoded, in canonical (sorted) order, as it is signed
    headers: dict[str, str]
    where: str


# Where a redirect sends a request: scheme, host, port and the encoded path with its query.
_Url = tuple[str, str, int, str]

# Methods that read (the rest count as a prefix's writes); replies that ask to slow down.
_READS, _SLOW_DOWN = frozenset({"GET", "HEAD"}), frozenset({429, 503})

# Redirects followed for one request, at most.
_MAX_REDIRECTS = 3


class Client:
    """Signed GET/PUT/UploadPart requests to one S3-compatible endpoint.

    Keep-alive connections are pooled per host and shared by every thread (see
    :mod:`pool`): a run opens about as many as it has requests in flight to this endpoint at
    once. At most ``max_connections`` are kept in all; a request beyond that limit uses a
    connection for itself only (as botocore's pool does). Safe to share between threads.

    Args:
        endpoint_url: Base URL such as ``"http://127.0.0.1:8333"``; ``None`` means AWS
            (``https://s3.{region}.amazonaws.com``, ``.amazonaws.com.cn`` in ``cn-`` regions).
        region: Region the requests are signed for.
        path_style: Address buckets as ``/{bucket}/{key}`` rather than as a host name
            prefix. Path-style is also used for buckets that cannot be a host name prefix
            and for endpoints given as an IP address or ``localhost``.
        credentials: botocore credentials (static or refreshable), frozen once per request;
            ``None`` (no credentials found) makes every request fail with a FatalError.
        max_connections: How many connections are kept open across all threads; at least the
            number of requests in flight at once, or connections churn.
        connect_timeout: Seconds allowed to open a connection (and finish a TLS handshake).
        read_timeout: Seconds a send or receive may wait on the socket (for a reply's first
            byte, among others).
        signer: ``"auto"`` or ``"python"`` (our own), ``"botocore"`` or ``"crt"`` (awscrt).
        ca_bundle: PEM file of certificate authorities to trust for https instead of the
            system's default ones.
        verify_tls: Check the server's certificate and host name (https); off only when the
            user asked for it.
        proxy: The HTTP proxy to go through (see :func:`proxy_for`), or None for none.
        min_rate: Bytes per second that a request's body and its reply's body must move at
            least, on average over `min_rate_window` seconds, once they flow (0: no minimum);
            a slower exchange fails as a timeout. The wait for a reply's first byte is bounded
            by read_timeout.
        extra_headers: Headers every request carries (and signs), e.g. the requester-pays
            acknowledgement.
        checksum_mode: Ask for the object's additional checksum on whole-object reads and
            HEADs (``x-amz-checksum-mode: ENABLED``).
        meter: Where each reply's wait and each request to slow down are recorded.
        rates: Each object request waits for its key prefix's turn; a reply that asks to
            slow down slows its prefix.
        open_ahead: When the first connection to a host took pool.LONG_PATH or longer to
            open, so many are opened to it at once, in the background, before requests need
            them: the first requests of a run then skip two round trips each (connect, TLS).
            0: never.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        region: str,
        path_style: bool,
        credentials: CredentialSource | None,
        max_connections: int,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        *,
        signer: SignerName = "auto",
        ca_bundle: str | None = None,
        verify_tls: bool = True,
        proxy: dial.Proxy | None = None,
        min_rate: float = 0,
        min_rate_window: float = 30.0,
        meter: RequestMeter | None = None,
        extra_headers: dict[str, str] | None = None,
        checksum_mode: bool = False,
        rates: PrefixRates | None = None,
        open_ahead: int = 0,
    ) -> None:
        region = region or "us-east-1"
        self._extra_headers = dict(extra_headers or {})
        self._checksum_mode = checksum_mode
        if endpoint_url is None:
            endpoint_url = aws_endpoint(region)
        parts = urlsplit(endpoint_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"endpoint URL must be http(s)://host[:port]: {endpoint_url!r}")
        self.endpoint_url = endpoint_url
        self.region = region
        self._scheme = parts.scheme
        self._hostname = parts.hostname  # lower-cased by urlsplit, as SigV4 wants
        self._port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self._base_path = parts.path.rstrip("/")
        self._path_style = path_style or is_ip(self._hostname) or self._hostname == "localhost"
        self._min_rate = min_rate
        self._min_rate_window = min_rate_window
        self._meter = meter
        self._rates = rates
        self._proxy = proxy
        self._credentials = credentials
        self._signer = _make_signer(signer, credentials, region)
        # Signs the rare request whose header bytes are not UTF-8 for a signer that signs
        # text only (see _sign).
        self._byte_signer: _PythonSigner | None = None
        # Seconds the servers' clock is ahead of ours, learnt from a RequestTimeTooSkewed.
        self._clock_offset = 0.0
        # Verifies certificates and host names; created once, shared by every connection.
        tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            tls = dial.tls_context(ca_bundle, verify_tls)
        self._pool = ConnectionPool(
            max_connections, connect_timeout, read_timeout, tls, proxy, open_ahead
        )

    @property
    def signer_name(self) -> str:
        """Which SigV4 implementation signs the requests: ``"python"``, ``"botocore"`` or
        ``"crt"``."""
        return self._signer.name

    @property
    def connections_opened(self) -> int:
        """How many connections this object has opened so far (a measure of reuse)."""
        return self._pool.opened

    @property
    def clock_offset(self) -> float:
        """Seconds the server's clock is ahead of this machine's, as the server said."""
        return self._clock_offset

    def close(self) -> None:
        """Close every connection opened by any thread; later requests open new ones."""
        self._pool.close()

    def _prepare(self, call: _Call, url: _Url | None = None) -> _Request:
        """Address, date and sign a request; its headers become its signed headers. `url`
        sends it elsewhere (where a redirect pointed)."""
        if url is not None:
            scheme, host, port, path = url
        else:
            scheme, port = self._scheme, self._port
            host, path = self._address(call.bucket, call.key)
            if call.query:
                path = f"{path}?{call.query}"
        # The Host header as SigV4 signs it: the port only when it is not the scheme's default.
        host_header = f"[{host}]" if ":" in host else host
        if port != _DEFAULT_PORTS[scheme]:
            host_header = f"{host_header}:{port}"
        signed = {"Host": host_header, **self._extra_headers, **call.headers}
        try:
            self._sign(call.method, f"{scheme}://{host_header}{path}", path, signed)
        except (NoCredentialsError, PartialCredentialsError):
            raise FatalError(
                f"{call.where}: no AWS credentials found", hint=_CREDENTIALS_HINT
            ) from None
        except BotoCoreError as exc:
            # Refreshable credentials could not be refreshed (metadata service, SSO, ...).
            raise TransientError(f"{call.where}: {type(exc).__name__}: {exc}") from None
        # Not signed: proxies and servers may rewrite it.
        signed["User-Agent"] = _USER_AGENT
        # Through a proxy, plain HTTP names the whole URL on the request line; TLS goes
        # through a tunnel and names only the path, as without a proxy.
        target = path
        if self._proxy is not None and scheme == "http":
            target = f"http://{host_header}{path}"
        return _Request(call.method, scheme, host, port, target, signed)

    def _address(self, bucket: str, key: str) -> tuple[str, str]:
        """The host and encoded path of an object: the bucket leads the host name where it
        can (virtual-hosted style), else the path."""
        name = encode_query_value(bucket)  # only what a bucket name may hold
        if self._path_style or not virtual_host_bucket(bucket, self._scheme == "https"):
            return self._hostname, f"{self._base_path}/{name}/{encode_key(key)}"
        return f"{bucket}.{self._hostname}", f"{self._base_path}/{encode_key(key)}"

    def url_for(self, bucket: str, key: str = "") -> str:
        """Where a request for an object goes (nothing is sent): its scheme, host, port
        where it is not the scheme's default, and path."""
        host, path = self._address(bucket, key)
        port = "" if self._port == _DEFAULT_PORTS[self._scheme] else f":{self._port}"
        return f"{self._scheme}://{host}{port}{path}"

    def _sign(self, method: str, url: str, path: str, headers: dict[str, str]) -> None:
        when = signing._utcnow()  # through the module: a test may set the clock
        if self._clock_offset:
            when += datetime.timedelta(seconds=self._clock_offset)
        signer: _Signer = self._signer
        if signer.name != "python" and not _is_text("".join(headers.values())):
            # A value holds bytes that are not UTF-8 (kept as surrogate escapes from the reply
            # that carried them): those bytes are signed as they go on the wire.
            if self._byte_signer is None:
                self._byte_signer = _PythonSigner(self._credentials, self.region)
            signer = self._byte_signer
        signer.sign(method, url, path, headers, when)

    def _perform(
        self,
        call: _Call,
        body: Body | None,
        read: Callable[[http1.Reply], _T],
        *,
        paced: bool = True,
    ) -> _T:
        """Send the request and hand its reply to ``read``; network errors are transient.

        A redirect (307) is followed, and a request refused for this machine's clock is
        signed again with the server's time, before the error reaches the caller.
        `paced`: the exchange must keep the minimum rate (not for a request whose reply the
        server may hold back for minutes, as it does completing a large upload).
        """
        url: _Url | None = None
        skew_corrected = False
        for hop in range(_MAX_REDIRECTS + 2):
            connection, response = self._exchange(call, body, url, paced)
            try:
                result = read(response)
            except _Redirect as redirect:
                self.release(connection, response)
                if hop >= _MAX_REDIRECTS or isinstance(body, RangeBody):
                    raise TransientError(f"{call.where}: {redirect.message}") from None
                url = self._redirect_target(call, redirect.location)
                continue
            except ClockSkewError as skew:
                self.release(connection, response)
                if skew_corrected or isinstance(body, RangeBody):
                    raise
                log.warning(
                    "%s: this machine's clock is %+.0f s off the server's; signing with the "
                    "server's time from now on (set the clock right: NTP)",
                    call.where,
                    -skew.offset,
                )
                # The server's time less this machine's (not less the time signed with):
                # requests refused at once, signed before any of them was corrected, each
                # set the same offset rather than add theirs up.
                self._clock_offset = skew.offset
                skew_corrected = True
                continue
            except LongbowError:
                self.release(connection, response)
                raise
            except _NETWORK_ERRORS as exc:
                self.drop(connection)
                raise _network_error(call.where, exc, lost=True) from None
            except BaseException:
                self.drop(connection)
                raise
            self.release(connection, response)
            return result
        raise TransientError(f"{call.where}: too many redirects")

    def _redirect_target(self, call: _Call, location: str) -> _Url:
        """Where a 307 sends the request: the same scheme (never from https to http)."""
        parts = urlsplit(location)
        if parts.scheme != self._scheme or not parts.hostname:
            raise PermanentError(
                f"{call.where}: the server redirected to {parts.scheme or '?'}://"
                f"{parts.hostname or '?'}, which is not the endpoint's scheme"
            )
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return (parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme], path)

    def _exchange(
        self, call: _Call, body: Body | None, url: _Url | None = None, paced: bool = True
    ) -> tuple[_Connection, http1.Reply]:
        """Send the request and read its reply's head; the connection stays the caller's.

        A kept connection is used only while nothing waits to be read on it. A request that
        could not be sent on a kept connection the server had closed is sent again once on a
        new one, unless it must not be sent twice: a POST that starts an upload (it may have
        been received, and a second one would leave the first behind) or a relayed body.
        """
        request = self._prepare(call, url)
        resendable = call.method != "POST"
        pace = Pace(self._min_rate if paced else 0, self._min_rate_window)
        for attempt in (1, 2):
            # The second attempt follows a kept connection found closed: a new one, not
            # another kept one that may have been closed at the same moment.
            connection = self._connection(request, fresh=attempt == 2)
            # Open before this request (kept, or opened ahead): the server may have closed it.
            while connection.sock is not None and not connection.idle():
                log.debug("%s: kept connection not idle, taking another", call.where)
                self.drop(connection)
                connection = self._connection(request)
            reused = connection.sock is not None
            write = call.method not in _READS
            if self._rates is not None and call.key:
                if self._rates.wait(call.key, write=write) and self._meter is not None:
                    self._meter.paced()
            try:
                response = self._send(connection, request, body, pace)
                if self._meter is not None and connection.waited:
                    self._meter.record(connection.waited, self.endpoint_url)
                if self._rates is not None and call.key and response.status in _SLOW_DOWN:
                    self._rates.slow_down(call.key, write=write)
                return connection, response
            except dial.ProxyError as exc:
                self.drop(connection)
                if exc.status in (401, 403, 407):  # every request would be refused the same
                    raise FatalError(
                        f"{call.where}: {exc}",
                        hint="check the proxy URL and its credentials (HTTPS_PROXY, "
                        "HTTP_PROXY), or name the endpoint in NO_PROXY",
                    ) from None
                raise _network_error(call.where, exc) from None
            except OSError as exc:
                self.drop(connection)
                again = resendable and not (isinstance(body, RangeBody) and body.started)
                if _stale(exc) and reused and attempt == 1 and again:
                    # The server closed this idle keep-alive connection; nothing was processed.
                    log.debug("%s: stale keep-alive connection (%s), again once", call.where, exc)
                    continue
                raise _network_error(call.where, exc, lost=connection.sent) from None
            except ReplyError as exc:
                self.drop(connection)
                raise _network_error(call.where, exc, lost=connection.sent) from None
            except ValueError:
                # A header would break the request (its value is not quoted: it may be secret).
                self.drop(connection)
                raise PermanentError(
                    f"{call.where}: a request header cannot be sent over HTTP (a name that is "
                    "not a token, or a control character in a value)"
                ) from None
            except BaseException:
                self.drop(connection)  # e.g. a relayed body's source failed mid-request
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, connection: _Connection, request: _Request, body: Body | None, pace: Pace
    ) -> http1.Reply:
        if connection.sock is None:
            self._pool.connect(connection, request.scheme, request.connect_host, request.port)
        return connection.exchange(request, body, pace)

    def _connection(self, request: _Request, *, fresh: bool = False) -> _Connection:
        """A connection for the request's host (see ConnectionPool.take)."""
        return self._pool.take(request.netloc, fresh=fresh)

    def release(self, connection: _Connection, response: http1.Reply) -> None:
        """Keep the connection for the next request if the exchange left it reusable: an
        unread body or a server-side close (Connection: close) rules out reuse."""
        self._pool.give_back(connection, not response.will_close and response.isclosed())

    def drop(self, connection: _Connection) -> None:
        """Close a held connection: it carries no more requests."""
        self._pool.drop(connection)

    def _etag_reader(self, where: str) -> Callable[[http1.Reply], str]:
        def read(response: http1.Reply) -> str:
            if not 200 <= response.status < 300:
                raise self._error(response, where)
            _read_capped(response)
            return (response.getheader("ETag") or "").strip('"')

        return read

    def _error(
        self,
        response: http1.Reply,
        where: str,
        *,
        source: bool = False,
    ) -> LongbowError:
        """Map an error reply onto the error tree (after reading at most 64 KiB of it)."""
        status = response.status
        body = _read_capped(response)
        if self._meter is not None and (status in (429, 503) or b"SlowDown" in body[:512]):
            self._meter.throttle()
        location = response.getheader("location")
        if status == 307 and location:
            return _Redirect(f"redirected to {location} (307)", location)
        code, message = _parse_error(body)
        skewed = _clock_skew(response, where, code, body)
        if skewed is not None:
            return skewed
        region = response.getheader("x-amz-bucket-region") or _xml_field(body, "Region")
        if region and (status == 301 or code in _REGION_CODES) and region != self.region:
            return WrongRegionError(
                f"{where}: the bucket is in region {region}, not {self.region} ({code or status})",
                region=region,
                hint=f"give the bucket's region ({region}), or no region: then Longbow asks "
                "the bucket for it",
            )
        return error_from_response(
            code or str(status),
            status,
            message or response.reason or "",
            where,
            source=source,
        )


def _read_capped(response: http1.Reply) -> bytes:
    """Read a small body whole, or its first 64 KiB (the connection is then not reused)."""
    if response.length is not None and response.length <= _MAX_ERROR_BODY:
        return response.read()
    return response.read(_MAX_ERROR_BODY)


class _Redirect(TransientError):
    """A 307 Temporary Redirect: the request goes to ``location`` (followed by _perform)."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


# S3 refuses requests signed further than this from its own clock.
_ALLOWED_SKEW = 15 * 60


def _clock_skew(response: http1.Reply, where: str, code: str, body: bytes) -> ClockSkewError | None:
    """A refusal for this machine's clock: a RequestTimeTooSkewed, or a 403 without a body
    (a HEAD's) from a server whose Date is further off than S3 allows."""
    if code == "RequestTimeTooSkewed":
        offset = _server_offset(body, response.getheader("date"))
    elif response.status == 403 and not code:
        offset = _server_offset(b"", response.getheader("date"))
        if offset is not None and abs(offset) < _ALLOWED_SKEW:
            return None
    else:
        return None
    if offset is None:
        return None
    return ClockSkewError(
        f"{where}: RequestTimeTooSkewed: this machine's clock is {-offset:+.0f} s off the server's",
        offset=offset,
        hint="set this machine's clock right (NTP)",
    )


def _server_offset(body: bytes, date: str | None) -> float | None:
    """Seconds the server's clock is ahead of ours, from a RequestTimeTooSkewed reply's
    ServerTime (or its Date header); None if it tells neither."""
    server: float | None = None
    text = _xml_field(body, "ServerTime")
    if text:
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            server = moment.timestamp()
        except ValueError:
            server = None
    if server is None and date:
        try:
            server = http1.http_date(date)
        except (TypeError, ValueError):
            return None
    if server is None:
        return None
    return server - signing._utcnow().timestamp()
