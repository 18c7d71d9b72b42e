"""Lean S3 client: GET, PUT, UploadPart, HEAD, multipart start/finish and ListObjectsV2 over
keep-alive connections.

Each request is one signed HTTP/1.1 exchange on a connection the calling thread keeps open,
which costs a fraction of botocore's per-request CPU; every other control-plane call stays on
botocore in :mod:`s3longbow.stores.s3`. The connections and the replies' framing are
:mod:`s3longbow.stores.http1`'s; the request head is written here. Requests are signed with
SigV4 in headers, with ``UNSIGNED-PAYLOAD`` (each body is protected by its ``Content-MD5`` or
by an additional checksum the server checks and confirms instead). Replies mean the same as
on the botocore path: errors go through :func:`s3longbow.stores.s3errors.error_from_response`.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from html import escape, unescape
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, TypeVar
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

from botocore.exceptions import BotoCoreError, NoCredentialsError, PartialCredentialsError

from s3longbow import __version__
from s3longbow.errors import (
    ChecksumNotConfirmedError,
    ClockSkewError,
    FatalError,
    LongbowError,
    PermanentError,
    ReplyLostError,
    SourceChangedError,
    TransientError,
    WrongRegionError,
)
from s3longbow.model import Bytes
from s3longbow.stores import http1, splice
from s3longbow.stores.s3errors import error_from_response

if TYPE_CHECKING:  # loaded only for https endpoints
    import ssl

__all__ = [
    "CredentialSource",
    "S3DataPlane",
    "SignerName",
    "StaticCredentials",
    "crt_available",
    "encode_key",
    "encode_query_value",
]

log = logging.getLogger(__name__)

SignerName = Literal["auto", "botocore", "crt"]

_T = TypeVar("_T")

_USER_AGENT = f"longbow/{__version__}"
# Bytes of an error reply worth reading; the rest of a larger one is dropped with its connection.
_MAX_ERROR_BODY = 64 * 1024
# A part's body is read in pieces this size: small enough that each is still in the CPU's
# cache when its checksum is computed, large enough that the loop costs nothing.
_PIECE = 256 * 1024
# A listing page is read whole; no page of 1,000 keys comes near this.
_MAX_LIST_PAGE = 32 * 1024 * 1024
# Error codes whose reply may name the bucket's region.
_REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
_NETWORK_ERRORS = (OSError, http1.ReplyError)  # includes timeouts and ssl.SSLError
_ERROR_FIELD = {
    name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL) for name in ("Code", "Message")
}
_UPLOAD_ID = re.compile(r"<UploadId>(.*?)</UploadId>", re.DOTALL)
_RESULT_ETAG = re.compile(r"<ETag>(.*?)</ETag>", re.DOTALL)
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CREDENTIALS_HINT = (
    "pass --src-profile/--dst-profile, set LONGBOW_SRC_ACCESS_KEY_ID and "
    "LONGBOW_SRC_SECRET_ACCESS_KEY (or DST), or configure the default credential chain"
)

try:  # Optional: a much cheaper signer when the AWS Common Runtime is installed.
    from awscrt import auth as _crt_auth
    from awscrt import http as _crt_http
except ImportError:  # pragma: no cover - depends on the environment
    _crt_auth = None
    _crt_http = None


def crt_available() -> bool:
    """Return whether ``awscrt`` is importable, so the ``"crt"`` signer can be used."""
    return _crt_auth is not None


def encode_key(key: str) -> str:
    """Percent-encode an object key for the request path.

    Everything except RFC 3986 unreserved characters (``A-Z a-z 0-9 - _ . ~``) and ``/`` is
    encoded from the key's UTF-8 bytes. Nothing is normalised: ``//``, a leading ``/`` and
    ``.``/``..`` segments reach the server as they are, which is what S3 signs and stores.

    Args:
        key: The object key, any unicode.

    Returns:
        The encoded key, ASCII only.
    """
    return quote(key, safe="/")


def encode_query_value(value: str) -> str:
    """Percent-encode a query-string name or value (everything but unreserved characters).

    Args:
        value: The raw name or value, e.g. an upload id.

    Returns:
        The encoded text, as SigV4's canonical query string needs it.
    """
    return quote(value, safe="")


def _utcnow() -> datetime.datetime:
    """The signing clock (a function so tests can pin it)."""
    return datetime.datetime.now(datetime.UTC)


class FrozenCredentials(NamedTuple):
    """One snapshot of a key pair (and session token), as botocore's ReadOnlyCredentials."""

    access_key: str
    secret_key: str
    token: str | None

    def __repr__(self) -> str:
        return "FrozenCredentials(...)"  # never the keys


class CredentialSource(Protocol):
    """Static or refreshable credentials: botocore's, or StaticCredentials."""

    def get_frozen_credentials(self) -> FrozenCredentials: ...


class StaticCredentials:
    """Keys given outright (options or environment): nothing to resolve or refresh.

    Lets a store sign without loading botocore's credential chain (~0.3 s of CPU to import).
    """

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self._frozen = FrozenCredentials(access_key, secret_key, token)

    def get_frozen_credentials(self) -> FrozenCredentials:
        return self._frozen

    def __repr__(self) -> str:
        return "StaticCredentials(...)"  # never the keys


# --------------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------------


class _Signer(Protocol):
    name: str

    def sign(
        self, method: str, url: str, path: str, headers: dict[str, str], when: datetime.datetime
    ) -> None:
        """Add the SigV4 headers (date, payload hash, token, Authorization) to ``headers``,
        signed as of `when` (UTC)."""


_SIGV4_TIME = "%Y%m%dT%H%M%SZ"


@functools.cache
def _unsigned_payload_auth() -> type:
    """botocore's S3 signer (no path normalisation) with the payload never hashed, signing
    as of a given time (imported only when this signer is used)."""
    from botocore.auth import S3SigV4Auth

    class UnsignedPayloadS3Auth(S3SigV4Auth):  # type: ignore[misc]
        when: datetime.datetime

        def _should_sha256_sign_payload(self, request: Any) -> bool:
            # Content-MD5 protects every body; hashing it again costs CPU for nothing.
            return False

        def add_auth(self, request: Any) -> None:
            # botocore's own steps, dated by our clock (corrected for the server's offset).
            request.context["timestamp"] = self.when.strftime(_SIGV4_TIME)
            self._modify_request_before_signing(request)
            canonical = self.canonical_request(request)
            signature = self.signature(self.string_to_sign(request, canonical), request)
            self._inject_signature_to_request(request, signature)

    return UnsignedPayloadS3Auth


class _QuietSigning(logging.Filter):
    """Drops botocore.auth's debug records while this module signs in the current thread.

    They hold the canonical request (with the session token) and the signature; the boto3 path
    is left as botocore makes it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._state = threading.local()

    @property
    def active(self) -> bool:
        return getattr(self._state, "active", False)

    @active.setter
    def active(self, value: bool) -> None:
        self._state.active = value

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.active


_QUIET_SIGNING = _QuietSigning()
logging.getLogger("botocore.auth").addFilter(_QUIET_SIGNING)


class _BotocoreSigner:
    """Signs with botocore's own S3 SigV4 implementation (about 0.1 ms per request)."""

    name = "botocore"

    def __init__(self, credentials: CredentialSource | None, region: str) -> None:
        self._credentials = credentials
        self._region = region

    def sign(
        self, method: str, url: str, path: str, headers: dict[str, str], when: datetime.datetime
    ) -> None:
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, headers=headers)
        # Frozen per request: refreshable credentials rotate between requests, never inside one.
        frozen = _frozen(self._credentials)
        auth = _unsigned_payload_auth()(frozen, "s3", self._region)
        auth.when = when
        _QUIET_SIGNING.active = True
        try:
            auth.add_auth(request)
        finally:
            _QUIET_SIGNING.active = False
        headers.clear()
        headers.update(request.headers.items())


class _ByteSigner:
    """Signs the exact bytes a request's headers go out as, for values that hold bytes that
    are not UTF-8 (S3 signs the bytes on the wire; awscrt and botocore take text and sign
    its UTF-8, which would not be those bytes). SigV4 with ``UNSIGNED-PAYLOAD``, every
    header signed; tests hold it to awscrt's signatures of the same text requests."""

    name = "bytes"

    def __init__(self, credentials: CredentialSource | None, region: str) -> None:
        self._credentials = credentials
        self._region = region

    def sign(
        self, method: str, url: str, path: str, headers: dict[str, str], when: datetime.datetime
    ) -> None:
        frozen = _frozen(self._credentials)
        stamp = when.strftime(_SIGV4_TIME)
        headers["X-Amz-Date"] = stamp
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        if frozen.token:
            headers["X-Amz-Security-Token"] = frozen.token
        uri, _, query = path.partition("?")
        fields = sorted(
            (name.lower(), b" ".join(http1.encode_value(value).split()))
            for name, value in headers.items()
        )
        signed_names = ";".join(name for name, _ in fields)
        canonical = b"\n".join(
            [
                method.encode("ascii"),
                uri.encode("utf-8"),
                _canonical_query(query).encode("ascii"),
                b"".join(name.encode("ascii") + b":" + value + b"\n" for name, value in fields),
                signed_names.encode("ascii"),
                b"UNSIGNED-PAYLOAD",
            ]
        )
        scope = f"{stamp[:8]}/{self._region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical).hexdigest()}"
        key = f"AWS4{frozen.secret_key}".encode()
        for part in (stamp[:8], self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )


def _canonical_query(query: str) -> str:
    """A query string already encoded, in SigV4's order (a bare name gets an empty value)."""
    if not query:
        return ""
    pairs = [item.partition("=") for item in query.split("&")]
    return "&".join(f"{name}={value}" for name, _, value in sorted(pairs))


# What SigV4 header signing adds to a request (the token only with a session token).
_SIGNING_HEADERS = ("X-Amz-Date", "X-Amz-Security-Token", "x-amz-content-sha256", "Authorization")


class _CrtSigner:
    """Signs with ``awscrt.auth.aws_sign_request`` (about 0.03 ms per request)."""

    name = "crt"

    def __init__(self, credentials: CredentialSource | None, region: str) -> None:
        assert _crt_auth is not None
        self._credentials = credentials
        self._region = region
        # (frozen credentials, static provider): rebuilt only when the credentials change.
        self._provider: tuple[FrozenCredentials, Any] | None = None
        # (frozen credentials, signing time, config): a signature's date has whole seconds, so
        # requests signed within the same second share one config.
        self._config: tuple[FrozenCredentials, datetime.datetime, Any] | None = None

    def _provider_for(self, frozen: FrozenCredentials) -> Any:
        cached = self._provider
        if cached is not None and cached[0] == frozen:
            return cached[1]
        assert _crt_auth is not None
        provider = _crt_auth.AwsCredentialsProvider.new_static(
            frozen.access_key, frozen.secret_key, frozen.token or None
        )
        self._provider = (frozen, provider)  # one reference swap: safe across threads
        return provider

    def _config_for(self, frozen: FrozenCredentials, when: datetime.datetime) -> Any:
        now = when.replace(microsecond=0)
        cached = self._config
        if cached is not None and cached[1] == now and cached[0] == frozen:
            return cached[2]
        assert _crt_auth is not None
        config = _crt_auth.AwsSigningConfig(
            algorithm=_crt_auth.AwsSigningAlgorithm.V4,
            signature_type=_crt_auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=self._provider_for(frozen),
            region=self._region,
            service="s3",
            date=now,
            # S3 signs the path exactly as sent: no second encoding, no dot-segment removal.
            use_double_uri_encode=False,
            should_normalize_uri_path=False,
            signed_body_value=_crt_auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
            signed_body_header_type=_crt_auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
        )
        self._config = (frozen, now, config)  # one reference swap: safe across threads
        return config

    def sign(
        self, method: str, url: str, path: str, headers: dict[str, str], when: datetime.datetime
    ) -> None:
        assert _crt_auth is not None and _crt_http is not None
        config = self._config_for(_frozen(self._credentials), when)
        request = _crt_http.HttpRequest(method, path, _crt_http.HttpHeaders(headers.items()))
        _crt_auth.aws_sign_request(request, config).result()
        # Only the headers signing adds are read back (copying all of them cost more).
        signed = request.headers
        for name in _SIGNING_HEADERS:
            value = signed.get(name)
            if value is not None:
                headers[name] = value


def _frozen(credentials: CredentialSource | None) -> FrozenCredentials:
    if credentials is None:
        raise NoCredentialsError()
    frozen = credentials.get_frozen_credentials()
    if not frozen.access_key or not frozen.secret_key:
        raise PartialCredentialsError(provider="the given credentials", cred_var="secret_key")
    return frozen


def _make_signer(name: SignerName, credentials: CredentialSource | None, region: str) -> _Signer:
    if name == "crt" or (name == "auto" and crt_available()):
        if not crt_available():
            raise ValueError("the 'crt' signer needs the awscrt package")
        return _CrtSigner(credentials, region)
    if name not in ("auto", "botocore"):
        raise ValueError(f"unknown signer {name!r}")
    return _BotocoreSigner(credentials, region)


# --------------------------------------------------------------------------------------------
# Addressing
# --------------------------------------------------------------------------------------------


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
# Redirects followed for one request, at most.
_MAX_REDIRECTS = 3


@dataclass(frozen=True)
class _Request:
    """One prepared request: where it goes and what it carries (signed headers included)."""

    method: str
    scheme: str
    connect_host: str
    port: int
    target: str  # the request line's target: the encoded path and query (or the whole URL)
    headers: dict[str, str]

    @property
    def netloc(self) -> str:
        return f"{self.connect_host}:{self.port}"


def aws_endpoint(region: str) -> str:
    """The S3 endpoint of an AWS region (China regions are in their own partition)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://s3.{region}.{suffix}"


def proxy_for(url: str) -> http1.Proxy | None:
    """The HTTP proxy that requests to `url` go through, as the environment says
    (``HTTPS_PROXY`` / ``HTTP_PROXY`` by the URL's scheme, unless ``NO_PROXY`` names its
    host), read the way botocore reads it, so both clients take the same way.

    Raises:
        ValueError: The proxy variable holds a URL this client cannot use (the message
            names no credentials).
    """
    names = ("https_proxy", "http_proxy", "no_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return None  # the usual case, decided without importing urllib.request (~40 ms)
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy_url = proxies.get(parts.scheme)
    if not proxy_url or urllib.request.proxy_bypass_environment(parts.netloc, proxies):
        return None
    return http1.Proxy.from_url(proxy_url)


def _tls_context(ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    """Certificates and host names checked against `ca_bundle` (PEM), or OpenSSL's default
    authorities without one; nothing checked when `verify` is off."""
    import ssl  # only https pays for its import (~20 ms)

    context = ssl.create_default_context(cafile=ca_bundle)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _is_text(value: str) -> bool:
    """Whether `value` is text, not bytes kept as surrogate escapes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _virtual_host_bucket(bucket: str, https: bool) -> bool:
    """Whether a bucket name can be a DNS label prefix (else path-style is used)."""
    if not 3 <= len(bucket) <= 63 or _is_ip(bucket):
        return False
    # Dots would break the wildcard certificate match of https endpoints.
    if https and "." in bucket:
        return False
    return all(_DNS_LABEL.fullmatch(label) for label in bucket.split("."))


# --------------------------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------------------------


# A header name is a token; a value holds no control character but tab (RFC 9110 5.5), so
# nothing a header carries can end it or the header block early.
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# How long a request whose body could not be sent waits for the reply the server may have
# sent before closing (it is on its way or already here: the server closed its side).
_EARLY_REPLY_WAIT = 5.0
# A body this small goes out in the same system call as the head; a larger one on its own,
# without copying it.
_COALESCE_LIMIT = 256 * 1024
# A larger body is sent in slices this size: between two, the minimum rate is checked and
# a reply the server sent before reading the whole body (an error) is noticed.
_SEND_SLICE = 1024 * 1024
# Writing to a kept connection the server had closed fails with one of these before any
# reply byte arrives (TLS: the server's close alert, or an EOF where the alert should be).
_STALE_NAMES = frozenset({"SSLEOFError", "SSLZeroReturnError"})


def _stale(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError) or (
        type(exc).__name__ in _STALE_NAMES
    )


class RangeBody:
    """A ranged GET whose reply is held open, its body still on the socket, to become the
    body of a request to another endpoint (see :meth:`S3DataPlane.open_range`).

    Use it as a context manager: on exit the source connection is kept for the next request
    if the whole body went on, else closed.
    """

    def __init__(
        self,
        plane: S3DataPlane,
        connection: _Connection,
        response: http1.Reply,
        length: int,
        where: str,
    ) -> None:
        self._plane = plane
        self._connection = connection
        self._response = response
        self.length = length
        self._where = where
        self.started = False  # some bytes may have gone: the request cannot be sent again
        self.done = False
        self.headers: dict[str, str] = {}  # the reply's headers (names in lower case)

    def __len__(self) -> int:
        return self.length

    def read(self) -> bytes:
        """The whole body read into memory instead, when it is not to be relayed after all.

        Raises:
            TransientError: The source failed or ended early.
        """
        if self.started:
            raise RuntimeError("a relayed body can be read only once")
        self.started = True
        try:
            data = self._response.read(self.length + 1)
        except _NETWORK_ERRORS as exc:
            raise _network_error(self._where, exc) from None
        if len(data) != self.length:
            raise TransientError(f"{self._where}: short read ({len(data)} of {self.length} bytes)")
        self.done = True
        return data

    def send_to(self, sock: socket.socket, pace: http1.Pace) -> None:
        """Write the whole body to `sock`: the few bytes already read with the reply's head,
        then the rest moved from socket to socket by the kernel, at `pace`.

        Raises:
            TransientError: The source failed or ended early.
            OSError: Writing to `sock` failed.
        """
        if self.started:
            raise RuntimeError("a relayed body can be sent only once")
        self.started = True
        stream = self._response.stream
        # The head was read through a buffer that may hold the body's first bytes.
        first = stream.take_buffered(self.length)
        if first:
            sock.sendall(first)
        try:
            splice.relay(stream.sock, sock, self.length - len(first), pace.moved)
        except splice.SourceFailure as exc:
            raise TransientError(f"{self._where}: {exc}") from None
        self._response.consumed()  # the connection can carry the next reply
        self.done = True

    def __enter__(self) -> RangeBody:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.done:
            self._plane._release(self._connection, self._response)
        else:
            self._plane._drop(self._connection)


# What a request may carry: bytes in memory, or another reply's body relayed.
Body = Bytes | RangeBody


class _EarlyReply(Exception):
    """The server answered before it had read the whole request body."""


class _Connection:
    """One TCP (or TLS) connection, the stream its replies are read from, and how many
    requests it has carried.

    The request's head is written in one piece (with a small body, in one system call); the
    reply is read by :class:`http1.Reply`. Not opened until :meth:`open`.
    """

    __slots__ = (
        "sock",
        "stream",
        "tls",
        "uses",
        "kept",
        "sent",
        "_owned",
        "_finalizer",
        "__weakref__",
    )

    def __init__(self, *, kept: bool) -> None:
        self.sock: socket.socket | None = None
        self.stream: http1.Stream | None = None
        self.tls = False
        self.uses = 0
        self.sent = False  # the current request went out whole: only its reply is awaited
        self.kept = kept
        self._owned: list[socket.socket] = []
        # Closes the socket when the owning thread ends and drops its thread-local reference.
        self._finalizer = weakref.finalize(self, _close_all, self._owned)

    def open(
        self,
        host: str,
        port: int,
        connect_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None,
        proxy: http1.Proxy | None,
    ) -> None:
        """Connect (see :func:`http1.connect`).

        Raises:
            OSError: As http1.connect.
        """
        sock = http1.connect(
            host,
            port,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tls=tls,
            proxy=proxy,
        )
        self.sock = sock
        self.stream = http1.Stream(sock)
        self.tls = tls is not None
        self._owned.append(sock)

    def exchange(self, request: _Request, body: Body | None, pace: http1.Pace) -> http1.Reply:
        """Send the request and read the reply's status and headers (the body is left to
        the caller), bytes moving at `pace` at least once they flow.

        Raises:
            ValueError: A header would break the request: a name that is not a token, or a
                control character in a value.
            OSError, http1.ReplyError: The connection failed or the reply is not HTTP.
        """
        sock, stream = self.sock, self.stream
        assert sock is not None and stream is not None
        headers = request.headers
        if _BAD_NAME.search("".join(headers)) or _BAD_VALUE.search("".join(headers.values())):
            raise ValueError("a header name or value would break the request's header block")
        lines = [f"{request.method} {request.target} HTTP/1.1\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append("\r\n")
        stream.pace = pace
        pace.start()
        self.sent = False
        try:
            self._send(sock, http1.encode_value("".join(lines)), body, pace)
        except _EarlyReply:
            response = self._early_reply(request.method)
            if response is None:
                raise ConnectionAbortedError(
                    "the server answered before the request body was sent, with no reply "
                    "that could be read"
                ) from None
        except OSError as exc:
            if not _stale(exc):
                raise
            response = self._early_reply(request.method)
            if response is None:
                raise
        else:
            self.sent = True
            response = http1.Reply(stream, request.method)
            response.begin()
        self.uses += 1
        return response

    def _send(self, sock: socket.socket, head: bytes, body: Body | None, pace: http1.Pace) -> None:
        """Write a request: `head`, then `body` (a small one in the same system call when the
        socket takes several buffers at once, as TLS sockets do not; a large one in slices,
        watching for a reply that comes before the body is through).

        Raises:
            _EarlyReply: The server answered before the whole body was sent.
        """
        if isinstance(body, RangeBody):
            sock.sendall(head)
            body.send_to(sock, pace)
            return
        if not body:
            sock.sendall(head)
            return
        if len(body) <= _COALESCE_LIMIT and not self.tls:
            sent = sock.sendmsg([head, body])
            if sent < len(head):  # the kernel took part of it: the rest in order
                sock.sendall(head[sent:])
                sock.sendall(body)
            elif sent < len(head) + len(body):
                sock.sendall(memoryview(body)[sent - len(head) :])
            return
        sock.sendall(head)
        view = memoryview(body)
        for offset in range(0, len(view), _SEND_SLICE):
            if offset and not self._nothing_to_read():
                raise _EarlyReply
            piece = view[offset : offset + _SEND_SLICE]
            sock.sendall(piece)
            pace.moved(len(piece))

    def _nothing_to_read(self) -> bool:
        stream = self.stream
        return stream is None or stream.idle()

    def _early_reply(self, method: str) -> http1.Reply | None:
        """The error a server sent before closing, or before reading the whole request
        body (e.g. NoSuchUpload for a part of an aborted upload); None if there is none to
        read. The connection is not reused after it."""
        sock, stream = self.sock, self.stream
        assert sock is not None and stream is not None
        try:
            sock.settimeout(min(sock.gettimeout() or _EARLY_REPLY_WAIT, _EARLY_REPLY_WAIT))
            response = http1.Reply(stream, method)
            response.begin()
        except (OSError, http1.ReplyError):
            return None
        if response.status < 300:
            return None  # a success for a body not sent whole: not to be believed
        response.will_close = True
        return response

    def idle(self) -> bool:
        """Whether this kept connection can carry a request: nothing waits to be read on it.

        An idle connection has nothing to read: anything readable (the end of the stream a
        server's close left, a reset, a TLS close alert, or bytes no request asked for) rules
        it out, so no reply is ever read as another request's.
        """
        stream = self.stream
        return stream is not None and stream.idle()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


def _close_all(owned: list[socket.socket]) -> None:
    for thing in owned:
        thing.close()


class S3DataPlane:
    """Signed GET/PUT/UploadPart requests to one S3-compatible endpoint.

    Each thread keeps one keep-alive connection per host and reuses it for every request; at
    most ``max_connections`` connections are kept in all, and a thread beyond that limit uses a
    connection for one request only (as botocore's pool does). Safe to share between threads.

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
            number of threads using this object, or connections churn.
        connect_timeout: Seconds allowed to open a connection (and finish a TLS handshake).
        read_timeout: Seconds a send or receive may wait on the socket (for a reply's first
            byte, among others).
        signer: ``"auto"`` (awscrt when installed, else botocore), ``"botocore"`` or ``"crt"``.
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
        proxy: http1.Proxy | None = None,
        min_rate: float = 0,
        min_rate_window: float = 30.0,
        extra_headers: dict[str, str] | None = None,
        checksum_mode: bool = False,
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
        self._path_style = path_style or _is_ip(self._hostname) or self._hostname == "localhost"
        self._max_connections = max(1, max_connections)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._min_rate = min_rate
        self._min_rate_window = min_rate_window
        self._proxy = proxy
        self._credentials = credentials
        self._signer = _make_signer(signer, credentials, region)
        # Signs the rare request whose header bytes are not UTF-8 (see _sign).
        self._byte_signer: _ByteSigner | None = None
        # Seconds the servers' clock is ahead of ours, learnt from a RequestTimeTooSkewed.
        self._clock_offset = 0.0
        # Verifies certificates and host names; created once, shared by every connection.
        self._ssl_context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl_context = _tls_context(ca_bundle, verify_tls)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._opened = 0

    @property
    def signer_name(self) -> str:
        """Which SigV4 implementation signs the requests: ``"botocore"`` or ``"crt"``."""
        return self._signer.name

    @property
    def connections_opened(self) -> int:
        """How many connections this object has opened so far (a measure of reuse)."""
        return self._opened

    @property
    def clock_offset(self) -> float:
        """Seconds the server's clock is ahead of this machine's, as the server said."""
        return self._clock_offset

    # ----------------------------------------------------------------------------------------
    # Operations
    # ----------------------------------------------------------------------------------------

    def get_range(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
        into: bytearray | None = None,
        each: Callable[[memoryview], None] | None = None,
    ) -> Bytes:
        """Read ``length`` bytes of an object from offset ``start`` (see get_object); into
        ``into`` when given (a view of it is returned), each piece shown to ``each`` as it
        arrives (see ObjectStore.get_range)."""
        return self._get(bucket, key, start, length, etag, None, version_id, into, each)

    @property
    def relays(self) -> bool:
        """Whether reply bodies from here can be relayed by the kernel (plain HTTP, Linux)."""
        return splice.AVAILABLE and self._scheme == "http"

    def open_range(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
        whole: bool = False,
    ) -> RangeBody | None:
        """Ask for ``length`` bytes of an object from offset ``start`` and hold the reply
        open, its body unread, to relay it into a request to another endpoint (see
        :attr:`relays`); None when the reply does not state its length (read it with
        get_range instead). ``whole``: the whole object, without a Range header, as
        get_object reads it (the reply's headers carry its properties). Raises as get_range
        does."""
        call = self._get_call(bucket, key, start, length, etag, version_id, not whole)
        where = call.where
        connection, response = self._exchange(call, None)
        try:
            if response.status not in (200, 206):
                raise self._error(response, where, source=True)
            if response.length is None:
                self._drop(connection)
                return None
            if response.length > length:
                raise PermanentError(
                    f"{where}: the server returned more bytes than requested (Range ignored)"
                )
            if response.length < length:
                raise TransientError(f"{where}: short reply ({response.length} of {length} bytes)")
            _check_reply(response, where, start, length, etag)
        except LongbowError:
            self._drop(connection)
            raise
        body = RangeBody(self, connection, response, length, where)
        if whole:
            body.headers.update((n.lower(), v) for n, v in response.getheaders())
        return body

    def get_object(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Read ``length`` bytes of an object from offset ``start``, with the response headers
        (names in lower case), which carry the object's properties.

        Args:
            bucket: Bucket name.
            key: Object key.
            start: First byte to read.
            length: How many bytes; with ``start`` 0 this must be the object's size (the object
            is read whole, without a Range header, so the reply carries its checksum).
            etag: The pinned ETag (without quotes); sent as ``If-Match`` when given.
            version_id: Read this version of the object (``versionId``) when given.

        Returns:
            Exactly ``length`` bytes, and the response headers.

        Raises:
            SourceChangedError: The object changed (412) or no longer exists.
            PermanentError: The server ignored the Range and sent more bytes.
            TransientError: Network failure, short read, wrong Content-Range, or a
                retryable reply.
            FatalError: Credentials or bucket errors.
        """
        headers: dict[str, str] = {}
        return self._get(bucket, key, start, length, etag, headers, version_id), headers

    def _get(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        etag: str | None,
        response_headers: dict[str, str] | None,
        version_id: str | None = None,
        into: bytearray | None = None,
        each: Callable[[memoryview], None] | None = None,
    ) -> Bytes:
        # A whole-object read (from get_object) asks for no range: only then does S3 send the
        # object's checksum. The length read is checked all the same.
        ranged = length > 0 and response_headers is None
        call = self._get_call(bucket, key, start, length, etag, version_id, ranged)
        where = call.where

        def read(response: http1.Reply) -> Bytes:
            if response.status not in (200, 206):
                raise self._error(response, where, source=True)
            # Whose bytes these are is checked before any is read.
            _check_reply(response, where, start, length, etag)
            declared = response.length
            data: Bytes
            # A part read into its buffer, in pieces; anything else is read whole.
            view = memoryview(into)[:length] if into is not None and declared == length else None
            if view is not None:
                data = _read_pieces(response, view, each)
            elif declared is not None and declared <= length:
                data = response.read()
            else:
                # One byte more than asked: a server that ignored Range must not make us buffer
                # a whole object; the unread rest is dropped with the connection.
                data = response.read(length + 1)
            if len(data) != length:
                if len(data) > length:
                    raise PermanentError(
                        f"{where}: the server returned more bytes than requested (Range ignored)"
                    )
                raise TransientError(f"{where}: short read ({len(data)} of {length} bytes)")
            if each is not None and view is None:
                each(memoryview(data))  # read whole: no buffer given, or no length stated
            if response_headers is not None:
                response_headers.update((n.lower(), v) for n, v in response.getheaders())
            return data

        return self._perform(call, None, read)

    def _get_call(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        etag: str | None,
        version_id: str | None,
        ranged: bool,
    ) -> _Call:
        """A GET of bytes ``start``.. of an object (the whole object, with its checksum
        where asked for, unless ``ranged``)."""
        end = start + length - 1
        where = f"reading {_describe(bucket, key)} bytes {start}-{end}"
        headers: dict[str, str] = {}
        if ranged:
            headers["Range"] = f"bytes={start}-{end}"
        elif self._checksum_mode:
            headers["x-amz-checksum-mode"] = "ENABLED"
        if etag:
            headers["If-Match"] = f'"{etag}"'
        query = f"versionId={encode_query_value(version_id)}" if version_id else ""
        return _Call("GET", bucket, key, query, headers, where)

    def put_object(
        self,
        bucket: str,
        key: str,
        data: Body,
        *,
        md5_b64: str,
        storage_class: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Write a whole object in one PUT.

        Args:
            bucket: Bucket name.
            key: Object key.
            data: The object's bytes, or another endpoint's reply relayed.
            md5_b64: Base64 MD5 of ``data``, sent as ``Content-MD5`` for the server to check.
            storage_class: Sent as ``x-amz-storage-class`` when given.
            headers: More headers to send (and sign): the object's properties.

        Returns:
            The ETag the server returned, without quotes ("" if it sent none).

        Raises:
            TransientError: Network failure, a digest mismatch, or a retryable reply.
            PermanentError: A reply that retrying will not change (e.g. access denied).
            FatalError: Credentials or bucket errors.
        """
        sent = {**(headers or {}), "Content-Length": str(len(data)), "Content-MD5": md5_b64}
        if storage_class:
            sent["x-amz-storage-class"] = storage_class
        where = f"writing {_describe(bucket, key)}"
        call = _Call("PUT", bucket, key, "", sent, where)
        return self._perform(call, data, self._etag_reader(where))

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        data: Body,
        *,
        md5_b64: str | None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Upload one part of a multipart upload.

        Args:
            bucket: Bucket name.
            key: Object key.
            upload_id: The upload id from CreateMultipartUpload.
            number: Part number, from 1.
            data: The part's bytes, or another endpoint's reply relayed (it goes unguarded:
                no checksum is known before the bytes pass; the part's ETag, the MD5 the
                destination computed, is what proves it).
            md5_b64: Base64 MD5 of ``data``, sent as ``Content-MD5``; None to let the part's
                additional checksum (in ``headers``) guard it alone.
            headers: More headers to send (and sign): the part's additional checksum.

        Returns:
            The part's ETag, without quotes ("" if the server sent none).

        Raises:
            ChecksumNotConfirmedError: Sent without an MD5, the part's checksum did not come
                back in the reply (the server may ignore it).
            UploadMissingError: The upload no longer exists.
            TransientError: Network failure, a digest mismatch, or a retryable reply.
            PermanentError: A reply that retrying will not change.
            FatalError: Credentials or bucket errors.
        """
        sent = {**(headers or {}), "Content-Length": str(len(data))}
        if md5_b64 is not None:
            sent["Content-MD5"] = md5_b64
        # Already in canonical (sorted) order, so the signed and the sent query are the same.
        query = f"partNumber={number}&uploadId={encode_query_value(upload_id)}"
        where = f"uploading part {number} of {_describe(bucket, key)}"
        call = _Call("PUT", bucket, key, query, sent, where)
        etag_of = self._etag_reader(where)
        guard = {n.lower(): v for n, v in sent.items() if n.lower().startswith("x-amz-checksum-")}
        if md5_b64 is not None or (not guard and isinstance(data, RangeBody)):
            return self._perform(call, data, etag_of)
        if not guard:
            raise ValueError("a part needs a Content-MD5 or an additional checksum")

        def read(response: http1.Reply) -> str:
            etag = etag_of(response)
            for name, value in guard.items():
                if response.getheader(name) != value:
                    raise ChecksumNotConfirmedError(
                        f"{where}: the reply does not confirm the part's {name[15:].upper()} "
                        "checksum"
                    )
            return etag

        return self._perform(call, data, read)

    def head_object(
        self,
        bucket: str,
        key: str,
        *,
        etag: str | None = None,
        part_number: int | None = None,
        version_id: str | None = None,
    ) -> dict[str, str] | None:
        """HEAD an object (or one of its parts); its headers in lower case, None if missing.

        Raises:
            SourceChangedError: `etag` no longer matches (412).
            TransientError, PermanentError, FatalError: as for the other calls.
        """
        headers = {"If-Match": f'"{etag}"'} if etag else {}
        if self._checksum_mode:
            headers["x-amz-checksum-mode"] = "ENABLED"
        # In canonical (sorted) order, as it is signed.
        query = "&".join(
            ([f"partNumber={part_number}"] if part_number else [])
            + ([f"versionId={encode_query_value(version_id)}"] if version_id else [])
        )
        where = f"reading {_describe(bucket, key)}"
        call = _Call("HEAD", bucket, key, query, headers, where)

        def read(response: http1.Reply) -> dict[str, str] | None:
            if response.status == 404:
                _read_capped(response)
                return None
            if not 200 <= response.status < 300:
                raise self._error(response, where, source=True)
            _read_capped(response)
            return {name.lower(): value for name, value in response.getheaders()}

        return self._perform(call, None, read)

    def head_bucket(self, bucket: str) -> tuple[int, dict[str, str]]:
        """HEAD a bucket: the reply's status and its headers in lower case (any status)."""
        where = f"checking bucket {bucket!r}"
        call = _Call("HEAD", bucket, "", "", {}, where)

        def read(response: http1.Reply) -> tuple[int, dict[str, str]]:
            _read_capped(response)
            skewed = _clock_skew(response, where, "", b"")
            if skewed is not None:
                raise skewed
            return response.status, {name.lower(): v for name, v in response.getheaders()}

        return self._perform(call, None, read)

    def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        storage_class: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Start a multipart upload (its properties go in `headers`); return its upload id."""
        sent = {**(headers or {}), "Content-Length": "0"}
        if storage_class:
            sent["x-amz-storage-class"] = storage_class
        where = f"starting a multipart upload of {_describe(bucket, key)}"
        call = _Call("POST", bucket, key, "uploads=", sent, where)

        def read(response: http1.Reply) -> str:
            if not 200 <= response.status < 300:
                raise self._error(response, where)
            match = _UPLOAD_ID.search(_read_capped(response).decode("utf-8", "replace"))
            if not match or not match.group(1).strip():
                raise TransientError(f"{where}: the reply named no upload id")
            return unescape(match.group(1).strip())

        return self._perform(call, b"", read)

    def complete_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        algorithm: str | None = None,
        part_checksums: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Join the parts (number, ETag) into the object; return the ETag reported ("" if
        none: some servers leave it out). An upload started with a checksum algorithm lists
        each part's checksum (`part_checksums`, base64, in the order of `parts`); `headers`
        may carry the full-object checksum for the server to check."""
        tag = f"Checksum{algorithm}" if algorithm else ""
        sums = part_checksums or [""] * len(parts)
        body = (
            "<CompleteMultipartUpload>"
            + "".join(
                f"<Part><PartNumber>{number}</PartNumber><ETag>&quot;{_xml_text(etag)}&quot;"
                "</ETag>"
                + (f"<{tag}>{_xml_text(value)}</{tag}>" if tag and value else "")
                + "</Part>"
                for (number, etag), value in zip(parts, sums, strict=True)
            )
            + "</CompleteMultipartUpload>"
        ).encode()
        headers = {
            **(headers or {}),
            "Content-Length": str(len(body)),
            "Content-Type": "application/xml",
        }
        query = f"uploadId={encode_query_value(upload_id)}"
        where = f"completing the multipart upload of {_describe(bucket, key)}"
        call = _Call("POST", bucket, key, query, headers, where)

        def read(response: http1.Reply) -> str:
            if not 200 <= response.status < 300:
                raise self._error(response, where)
            text = _read_capped(response).decode("utf-8", "replace")
            # S3 may answer 200 and still put an error in the body (a failure found while
            # the reply was already streaming).
            if "<Error>" in text:
                code, message = _parse_error(text.encode())
                raise error_from_response(code or "InternalError", 400, message, where)
            match = _RESULT_ETAG.search(text)
            return unescape(match.group(1)).strip().strip('"') if match else ""

        # The server may hold its reply back for minutes while it joins the parts (S3 sends
        # blanks meanwhile): no minimum rate for this one.
        return self._perform(call, body, read, paced=False)

    def list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        start_after: str | None = None,
        marker: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        """One page of ListObjectsV2, keys in the store's order: from the start, after a
        continuation `token`, or after a key (`start_after`, or `marker` for a server that
        answers in the older ListObjects form).

        Keys are asked for URL-encoded (any character a key may hold travels in XML that way)
        and decoded here only when the reply says it encoded them, as some servers do not.

        Raises:
            TransientError, PermanentError, FatalError: as for the other calls (a bucket that
                does not exist, or access denied, is fatal).
        """
        params = {"encoding-type": "url", "list-type": "2", "max-keys": str(max_keys)}
        params["prefix"] = prefix
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["continuation-token"] = token
        if start_after:
            params["start-after"] = start_after
        if marker:
            params["marker"] = marker
        # Sorted by name and encoded, as SigV4's canonical query string needs it.
        query = "&".join(
            f"{encode_query_value(name)}={encode_query_value(value)}"
            for name, value in sorted(params.items())
        )
        where = f"listing s3://{bucket}/{prefix}"
        call = _Call("GET", bucket, "", query, {}, where)

        def read(response: http1.Reply) -> ListPage:
            if response.status != 200:
                raise self._error(response, where)
            body = response.read(limit=_MAX_LIST_PAGE)
            try:
                return parse_list_page(body)
            except ElementTree.ParseError as exc:
                if b"<Error>" in body[:512]:
                    code, message = _parse_error(body)
                    raise error_from_response(code, 500, message, where) from None
                raise TransientError(f"{where}: the listing is not valid XML ({exc})") from None

        return self._perform(call, None, read)

    def close(self) -> None:
        """Close every connection opened by any thread; later requests open new ones."""
        with self._lock:
            connections = list(self._open)
            self._open.clear()
        for connection in connections:
            connection.close()

    # ----------------------------------------------------------------------------------------
    # Request building
    # ----------------------------------------------------------------------------------------

    def _prepare(self, call: _Call, url: _Url | None = None) -> _Request:
        """Address, date and sign a request; its headers become its signed headers. `url`
        sends it elsewhere (where a redirect pointed)."""
        if url is not None:
            scheme, host, port, path = url
        else:
            scheme, port = self._scheme, self._port
            bucket = encode_query_value(call.bucket)  # only what a bucket name may hold
            https = scheme == "https"
            if self._path_style or not _virtual_host_bucket(call.bucket, https):
                host = self._hostname
                path = f"{self._base_path}/{bucket}/{encode_key(call.key)}"
            else:
                host = f"{call.bucket}.{self._hostname}"
                path = f"{self._base_path}/{encode_key(call.key)}"
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

    def _sign(self, method: str, url: str, path: str, headers: dict[str, str]) -> None:
        when = _utcnow()
        if self._clock_offset:
            when += datetime.timedelta(seconds=self._clock_offset)
        signer: _Signer = self._signer
        if not _is_text("".join(headers.values())):
            # A value holds bytes that are not UTF-8 (kept as surrogate escapes from the reply
            # that carried them): those bytes are signed as they go on the wire.
            if self._byte_signer is None:
                self._byte_signer = _ByteSigner(self._credentials, self.region)
            signer = self._byte_signer
        signer.sign(method, url, path, headers, when)

    # ----------------------------------------------------------------------------------------
    # Exchange
    # ----------------------------------------------------------------------------------------

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
                self._release(connection, response)
                if hop >= _MAX_REDIRECTS or isinstance(body, RangeBody):
                    raise TransientError(f"{call.where}: {redirect.message}") from None
                url = self._redirect_target(call, redirect.location)
                continue
            except ClockSkewError as skew:
                self._release(connection, response)
                if skew_corrected or isinstance(body, RangeBody):
                    raise
                log.warning(
                    "%s: this machine's clock is %+.0f s off the server's; signing with the "
                    "server's time from now on (set the clock right: NTP)",
                    call.where,
                    -skew.offset,
                )
                self._clock_offset += skew.offset
                skew_corrected = True
                continue
            except LongbowError:
                self._release(connection, response)
                raise
            except _NETWORK_ERRORS as exc:
                self._drop(connection)
                raise _network_error(call.where, exc, lost=True) from None
            except BaseException:
                self._drop(connection)
                raise
            self._release(connection, response)
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
        pace = http1.Pace(self._min_rate if paced else 0, self._min_rate_window)
        for attempt in (1, 2):
            connection = self._connection(request)
            if connection.uses and not connection.idle():
                log.debug("%s: kept connection not idle, opening another", call.where)
                self._drop(connection)
                connection = self._connection(request)
            reused = connection.uses > 0
            try:
                return connection, self._send(connection, request, body, pace)
            except http1.ProxyError as exc:
                self._drop(connection)
                if exc.status in (401, 403, 407):  # every request would be refused the same
                    raise FatalError(
                        f"{call.where}: {exc}",
                        hint="check the proxy URL and its credentials (HTTPS_PROXY, "
                        "HTTP_PROXY), or name the endpoint in NO_PROXY",
                    ) from None
                raise _network_error(call.where, exc) from None
            except OSError as exc:
                self._drop(connection)
                again = resendable and not (isinstance(body, RangeBody) and body.started)
                if _stale(exc) and reused and attempt == 1 and again:
                    # The server closed this idle keep-alive connection; nothing was processed.
                    log.debug("%s: stale keep-alive connection (%s), again once", call.where, exc)
                    continue
                raise _network_error(call.where, exc, lost=connection.sent) from None
            except http1.ReplyError as exc:
                self._drop(connection)
                raise _network_error(call.where, exc, lost=connection.sent) from None
            except ValueError:
                # A header would break the request (its value is not quoted: it may be secret).
                self._drop(connection)
                raise PermanentError(
                    f"{call.where}: a request header cannot be sent over HTTP (a name that is "
                    "not a token, or a control character in a value)"
                ) from None
            except BaseException:
                self._drop(connection)  # e.g. a relayed body's source failed mid-request
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, connection: _Connection, request: _Request, body: Body | None, pace: http1.Pace
    ) -> http1.Reply:
        if connection.sock is None:
            tls = self._ssl_context if request.scheme == "https" else None
            connection.open(
                request.connect_host,
                request.port,
                self._connect_timeout,
                self._read_timeout,
                tls,
                self._proxy,
            )
            with self._lock:
                self._opened += 1
        return connection.exchange(request, body, pace)

    def _connection(self, request: _Request) -> _Connection:
        """This thread's kept connection to the request's host, or a new one (not yet open:
        every connection is opened, and counted, in :meth:`_send`)."""
        conns: dict[str, _Connection] | None = getattr(self._local, "connections", None)
        if conns is None:
            conns = self._local.connections = {}
        connection = conns.get(request.netloc)
        if connection is not None and not connection.closed:
            return connection
        with self._lock:
            kept = len(self._open) < self._max_connections
            connection = _Connection(kept=kept)
            self._open.add(connection)
        if kept:
            conns[request.netloc] = connection
        return connection

    def _release(self, connection: _Connection, response: http1.Reply) -> None:
        """Keep the connection for the next request if the exchange left it reusable."""
        # An unread body or a server-side close (Connection: close) rules out reuse.
        if not connection.kept or response.will_close or not response.isclosed():
            self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        with self._lock:
            self._open.discard(connection)
        conns: dict[str, _Connection] | None = getattr(self._local, "connections", None)
        if conns:
            for netloc, kept in list(conns.items()):
                if kept is connection:
                    del conns[netloc]

    # ----------------------------------------------------------------------------------------
    # Replies
    # ----------------------------------------------------------------------------------------

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


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing, its values as the server sent them.

    Attributes:
        objects: (key, size, ETag without quotes or None, LastModified text or None).
        prefixes: The common prefixes (sub-folders) of a delimited listing.
        next_token: Where the next page starts (None on the last page, and on a truncated
            page that names no token: see `truncated`).
        truncated: The server says more keys follow.
        next_marker: The key after which the next page starts, where the reply is in the
            older ListObjects (V1) form and names one.
        v1: The reply is in the older ListObjects form (a server that ignores list-type=2):
            its next page is asked for with `marker`, not `start-after`.
    """

    objects: list[tuple[str, int, str | None, str | None]]
    prefixes: list[str]
    next_token: str | None
    truncated: bool = False
    next_marker: str | None = None
    v1: bool = False


def parse_list_page(body: bytes) -> ListPage:
    """Parse a ListObjectsV2 reply (with or without the S3 XML namespace).

    A page of 1,000 keys is read by one regular-expression scan (several times faster than
    building its XML tree, which dominated planning's CPU); a reply in a form the scan does
    not expect (namespace prefixes, CDATA) is parsed as XML instead.
    """
    if b"CDATA" in body or b":Contents>" in body:
        return _parse_list_tree(body)
    objects: list[tuple[str, int, str | None, str | None]] = []
    prefixes: list[str] = []
    top: dict[bytes, str] = {}
    fields: dict[bytes, str] = {}
    in_prefixes = False
    for match in _LIST_TOKENS.finditer(body):
        name, value, closing, section = match.groups()
        if section is not None:
            if section == b"Contents" and closing:
                objects.append(_entry(fields))
                fields = {}
            in_prefixes = section == b"CommonPrefixes" and not closing
        elif in_prefixes and name == b"Prefix":
            fields[name] = _text(value)
            prefixes.append(fields.pop(name))
        elif name in _OBJECT_FIELDS:
            fields[name] = _text(value)
        else:
            top[name] = _text(value)
    if fields:
        raise ElementTree.ParseError("a listing entry is not closed")
    marker = top.get(b"NextMarker")
    if top.get(b"EncodingType", "").lower() == "url":
        objects = [(unquote_plus(k), size, etag, t) for k, size, etag, t in objects]
        prefixes = [unquote_plus(p) for p in prefixes]
        marker = unquote_plus(marker) if marker else marker
    truncated = top.get(b"IsTruncated", "").lower() == "true"
    token = top.get(b"NextContinuationToken") if truncated else None
    v1 = b"<KeyCount>" not in body and (b"<Marker" in body or marker is not None)
    return ListPage(objects, prefixes, token or None, truncated, marker or None, v1)


_LIST_TOKENS = re.compile(
    rb"<(Key|Size|ETag|LastModified|Prefix|NextContinuationToken|IsTruncated|EncodingType"
    rb"|NextMarker)>"
    rb"([^<]*)</\1>|<(/?)(Contents|CommonPrefixes)>"
)
_OBJECT_FIELDS = frozenset({b"Key", b"Size", b"ETag", b"LastModified"})


def _text(value: bytes) -> str:
    text = value.decode("utf-8")
    return unescape(text) if "&" in text else text


def _entry(fields: dict[bytes, str]) -> tuple[str, int, str | None, str | None]:
    etag = fields.get(b"ETag")
    return (
        fields.get(b"Key", ""),
        int(fields.get(b"Size") or 0),
        etag.strip('"') if etag else None,
        fields.get(b"LastModified"),
    )


def _parse_list_tree(body: bytes) -> ListPage:
    """The same reply parsed as an XML tree (the slower, general path)."""
    root = ElementTree.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
    # S3 encodes as HTML forms do: a space is "+", a "+" is "%2B".
    decode: Callable[[str], str] = unquote_plus if encoded else _same
    key_tag, size_tag, etag_tag, time_tag = (f"{ns}{n}" for n in _CONTENT_FIELDS)
    objects = []
    prefixes = []
    for element in root:
        tag = element.tag
        if tag == f"{ns}Contents":
            etag = element.findtext(etag_tag)
            objects.append(
                (
                    decode(element.findtext(key_tag) or ""),
                    int(element.findtext(size_tag) or 0),
                    etag.strip('"') if etag else None,
                    element.findtext(time_tag),
                )
            )
        elif tag == f"{ns}CommonPrefixes":
            prefixes.append(decode(element.findtext(f"{ns}Prefix") or ""))
    truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken") if truncated else None
    marker = root.findtext(f"{ns}NextMarker")
    marker = decode(marker) if marker else None
    v1 = root.find(f"{ns}KeyCount") is None and (
        root.find(f"{ns}Marker") is not None or marker is not None
    )
    return ListPage(objects, prefixes, token or None, truncated, marker, v1)


_CONTENT_FIELDS = ("Key", "Size", "ETag", "LastModified")


def _same(text: str) -> str:
    return text


def _read_capped(response: http1.Reply) -> bytes:
    """Read a small body whole, or its first 64 KiB (the connection is then not reused)."""
    if response.length is not None and response.length <= _MAX_ERROR_BODY:
        return response.read()
    return response.read(_MAX_ERROR_BODY)


def _parse_error(body: bytes) -> tuple[str, str]:
    """Code and Message of an S3 XML error body ("" for what is missing or not XML)."""
    text = body.decode("utf-8", errors="replace")
    fields = []
    for name in ("Code", "Message"):
        match = _ERROR_FIELD[name].search(text)
        fields.append(unescape(match.group(1).strip()) if match else "")
    return fields[0], fields[1]


def _check_reply(
    response: http1.Reply, where: str, start: int, length: int, etag: str | None
) -> None:
    """Refuse a read's reply that is not for what was asked: another range, or another
    version than the pinned one (a server that ignores If-Match still names the ETag)."""
    content_range = response.getheader("Content-Range")
    # Without Content-Range a 200 of exactly the right length is accepted: some servers
    # (rclone serve s3) answer ranged GETs that way.
    if content_range and length > 0:
        if not content_range.startswith(f"bytes {start}-{start + length - 1}/"):
            raise TransientError(
                f"{where}: the server answered with the wrong range ({content_range})"
            )
    sent = response.getheader("ETag")
    if etag and sent:
        sent = sent.removeprefix("W/").strip('"')
        if sent and sent != etag:
            raise SourceChangedError(
                f"{where}: the reply is for another version of the object (ETag {sent}, "
                f"pinned {etag})"
            )


class _Redirect(TransientError):
    """A 307 Temporary Redirect: the request goes to ``location`` (followed by _perform)."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


def _xml_field(body: bytes, name: str) -> str | None:
    match = re.search(rf"<{name}>([^<]*)</{name}>".encode(), body)
    return unescape(match.group(1).decode("utf-8", "replace")).strip() if match else None


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
    return server - _utcnow().timestamp()


def _network_error(where: str, exc: BaseException, *, lost: bool = False) -> TransientError:
    """A failed exchange as a transient error; `lost`: the request had gone out whole."""
    return (ReplyLostError if lost else TransientError)(f"{where}: {type(exc).__name__}: {exc}")


def _read_pieces(
    response: http1.Reply,
    view: memoryview,
    each: Callable[[memoryview], None] | None,
) -> memoryview:
    """The body read into ``view`` in pieces, each shown to ``each`` right after it arrives;
    the part of ``view`` filled (less than all of it only if the body ends early)."""
    length = len(view)
    got = 0
    while got < length:
        n = response.readinto(view[got : got + _PIECE])
        if not n:
            break
        if each is not None:
            each(view[got : got + n])
        got += n
    return view[:got]


def _xml_text(value: str) -> str:
    """`value` escaped as XML character data."""
    return escape(value, quote=False)


def _describe(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
