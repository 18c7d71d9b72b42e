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
import io
import ipaddress
import logging
import re
import select
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
    FatalError,
    LongbowError,
    PermanentError,
    TransientError,
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
# A stale keep-alive connection (closed by the server while idle) fails with one of these
# before any reply byte arrives; only then is the request resent, once, on a new connection.
_STALE_CONNECTION_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
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

    def sign(self, method: str, url: str, path: str, headers: dict[str, str]) -> None:
        """Add the SigV4 headers (date, payload hash, token, Authorization) to ``headers``."""


@functools.cache
def _unsigned_payload_auth() -> type:
    """botocore's S3 signer (no path normalisation) with the payload never hashed (imported
    only when this signer is used)."""
    from botocore.auth import S3SigV4Auth

    class UnsignedPayloadS3Auth(S3SigV4Auth):  # type: ignore[misc]
        def _should_sha256_sign_payload(self, request: Any) -> bool:
            # Content-MD5 protects every body; hashing it again costs CPU for nothing.
            return False

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

    def sign(self, method: str, url: str, path: str, headers: dict[str, str]) -> None:
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, headers=headers)
        # Frozen per request: refreshable credentials rotate between requests, never inside one.
        frozen = _frozen(self._credentials)
        _QUIET_SIGNING.active = True
        try:
            _unsigned_payload_auth()(frozen, "s3", self._region).add_auth(request)
        finally:
            _QUIET_SIGNING.active = False
        headers.clear()
        headers.update(request.headers.items())


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

    def _config_for(self, frozen: FrozenCredentials) -> Any:
        now = _utcnow().replace(microsecond=0)
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

    def sign(self, method: str, url: str, path: str, headers: dict[str, str]) -> None:
        assert _crt_auth is not None and _crt_http is not None
        config = self._config_for(_frozen(self._credentials))
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


@dataclass(frozen=True)
class _Request:
    """One prepared request: where it goes and what it carries (signed headers included)."""

    method: str
    scheme: str
    connect_host: str
    port: int
    path: str  # encoded path and query string, as sent on the request line
    headers: dict[str, str]

    @property
    def netloc(self) -> str:
        return f"{self.connect_host}:{self.port}"


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


# Header names and values must not break the header block (checked once for all of them):
# no line break or NUL, and no colon or space in a name.
_BAD_NAME_CHARS = re.compile(r"[:\s\0]")
_BAD_VALUE_CHARS = re.compile(r"[\r\n\0]")
# How long a request whose body could not be sent waits for the reply the server may have
# sent before closing (it is on its way or already here: the server closed its side).
_EARLY_REPLY_WAIT = 5.0
# A body this small goes out in the same system call as the head; a larger one on its own,
# without copying it.
_COALESCE_LIMIT = 256 * 1024


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
            data = self._response.read()
        except _NETWORK_ERRORS as exc:
            raise _network_error(self._where, exc) from None
        if len(data) != self.length:
            raise TransientError(f"{self._where}: short read ({len(data)} of {self.length} bytes)")
        self.done = True
        return data

    def send_to(self, sock: socket.socket) -> None:
        """Write the whole body to `sock`: the few bytes already read with the reply's head,
        then the rest moved from socket to socket by the kernel.

        Raises:
            TransientError: The source failed or ended early.
            OSError: Writing to `sock` failed.
        """
        if self.started:
            raise RuntimeError("a relayed body can be sent only once")
        self.started = True
        reader = self._response.fp
        source = self._connection.sock
        assert reader is not None and source is not None
        try:
            # The head was read through a buffer that may hold the body's first bytes.
            first = reader.read1(min(len(reader.peek(1)), self.length)) if self.length else b""
        except _NETWORK_ERRORS as exc:
            raise _network_error(self._where, exc) from None
        if first:
            sock.sendall(first)
        try:
            splice.relay(source, sock, self.length - len(first))
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


def _send_all(sock: socket.socket, head: bytes, body: Body | None, *, vectored: bool) -> None:
    """Write a request: `head`, then `body` (a small one in the same system call when the
    socket takes several buffers at once, as TLS sockets do not)."""
    if isinstance(body, RangeBody):
        sock.sendall(head)
        body.send_to(sock)
        return
    if not body:
        sock.sendall(head)
        return
    if len(body) > _COALESCE_LIMIT or not vectored:
        sock.sendall(head)
        sock.sendall(body)
        return
    sent = sock.sendmsg([head, body])
    if sent < len(head):  # the kernel took part of it: the rest in order
        sock.sendall(head[sent:])
        sock.sendall(body)
    elif sent < len(head) + len(body):
        sock.sendall(memoryview(body)[sent - len(head) :])


class _Connection:
    """One TCP (or TLS) connection, its buffered reader, and how many requests it has carried.

    The request's head is written in one piece (with a small body, in one system call); the
    reply is read by :class:`http1.Reply` through the one reader that serves every reply the
    connection carries. Not opened until :meth:`open`.
    """

    __slots__ = ("sock", "reader", "tls", "uses", "kept", "_owned", "_finalizer", "__weakref__")

    def __init__(self, *, kept: bool) -> None:
        self.sock: socket.socket | None = None
        self.reader: io.BufferedReader | None = None
        self.tls = False
        self.uses = 0
        self.kept = kept
        self._owned: list[io.BufferedReader | socket.socket] = []
        # Closes the socket when the owning thread ends and drops its thread-local reference.
        self._finalizer = weakref.finalize(self, _close_all, self._owned)

    def open(
        self,
        host: str,
        port: int,
        connect_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        """Connect (see :func:`http1.connect`).

        Raises:
            OSError: As http1.connect.
        """
        sock = http1.connect(
            host, port, connect_timeout=connect_timeout, read_timeout=read_timeout, tls=tls
        )
        self.sock = sock
        self.reader = io.BufferedReader(sock.makefile("rb", buffering=0))
        self.tls = tls is not None
        self._owned += [self.reader, sock]

    def exchange(self, request: _Request, body: Body | None) -> http1.Reply:
        """Send the request and read the reply's status and headers (the body is left to
        the caller).

        Raises:
            ValueError: A header would break the request: a line break or NUL in a name or
                value, a colon or space in a name, or a character outside Latin-1.
            OSError, http1.ReplyError: The connection failed or the reply is not HTTP.
        """
        sock, reader = self.sock, self.reader
        assert sock is not None and reader is not None
        headers = request.headers
        if _BAD_NAME_CHARS.search("".join(headers)) or _BAD_VALUE_CHARS.search(
            "".join(headers.values())
        ):
            raise ValueError("a header name or value would break the request's header block")
        lines = [f"{request.method} {request.path} HTTP/1.1\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append("\r\n")
        try:
            _send_all(sock, "".join(lines).encode("latin-1"), body, vectored=not self.tls)
        except (BrokenPipeError, ConnectionResetError):
            response = self._early_reply(request.method)
            if response is None:
                raise
        else:
            response = http1.Reply(reader, request.method)
            response.begin()
        self.uses += 1
        return response

    def _early_reply(self, method: str) -> http1.Reply | None:
        """The error a server sent before closing, without reading the whole request body
        (e.g. NoSuchUpload for a part of an aborted upload); None if there is none to read.
        The connection is not reused after it."""
        sock, reader = self.sock, self.reader
        assert sock is not None and reader is not None
        try:
            sock.settimeout(min(sock.gettimeout() or _EARLY_REPLY_WAIT, _EARLY_REPLY_WAIT))
            response = http1.Reply(reader, method)
            response.begin()
        except (OSError, http1.ReplyError):
            return None
        if response.status < 300:
            return None  # a success for a body not sent whole: not to be believed
        response.will_close = True
        return response

    def idle_closed(self) -> bool:
        """Whether the server closed (or reset) this kept connection while it was idle.

        A request whose body cannot be sent twice (a relayed one) checks before it starts,
        since a stale connection would only show itself once the body is on its way. An idle
        connection has nothing to read: anything readable (the end of the stream, a reset,
        or bytes no request asked for) rules it out. One poll, which does not wait.
        """
        sock = self.sock
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


def _close_all(owned: list[io.BufferedReader | socket.socket]) -> None:
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
        read_timeout: Seconds a send or receive may wait on the socket.
        signer: ``"auto"`` (awscrt when installed, else botocore), ``"botocore"`` or ``"crt"``.
        ca_bundle: PEM file of certificate authorities to trust for https instead of the
            system's default ones.
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
        extra_headers: dict[str, str] | None = None,
        checksum_mode: bool = False,
    ) -> None:
        region = region or "us-east-1"
        self._extra_headers = dict(extra_headers or {})
        self._checksum_mode = checksum_mode
        if endpoint_url is None:
            suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
            endpoint_url = f"https://s3.{region}.{suffix}"
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
        self._signer = _make_signer(signer, credentials, region)
        # Verifies certificates and host names; created once, shared by every connection.
        self._ssl_context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            import ssl  # only https pays for its import (~20 ms)

            self._ssl_context = ssl.create_default_context(cafile=ca_bundle)
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
        request, where = self._get_request(bucket, key, start, length, etag, version_id, not whole)
        connection, response = self._exchange(request, None, where)
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
            _check_range(response, where, start, length)
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
        request, where = self._get_request(bucket, key, start, length, etag, version_id, ranged)

        def read(response: http1.Reply) -> Bytes:
            if response.status not in (200, 206):
                raise self._error(response, where, source=True)
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
            _check_range(response, where, start, length)
            if each is not None and view is None:
                each(memoryview(data))  # read whole: no buffer given, or no length stated
            if response_headers is not None:
                response_headers.update((n.lower(), v) for n, v in response.getheaders())
            return data

        return self._perform(request, None, where, read)

    def _get_request(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        etag: str | None,
        version_id: str | None,
        ranged: bool,
    ) -> tuple[_Request, str]:
        """A signed GET of bytes ``start``.. of an object (the whole object, with its
        checksum where asked for, unless ``ranged``), and how errors describe it."""
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
        return self._prepare("GET", bucket, key, query, headers, where), where

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
        request = self._prepare("PUT", bucket, key, "", sent, where)
        return self._perform(request, data, where, self._etag_reader(where))

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
        request = self._prepare("PUT", bucket, key, query, sent, where)
        etag_of = self._etag_reader(where)
        guard = {n.lower(): v for n, v in sent.items() if n.lower().startswith("x-amz-checksum-")}
        if md5_b64 is not None or (not guard and isinstance(data, RangeBody)):
            return self._perform(request, data, where, etag_of)
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

        return self._perform(request, data, where, read)

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
        request = self._prepare("HEAD", bucket, key, query, headers, where)

        def read(response: http1.Reply) -> dict[str, str] | None:
            if response.status == 404:
                _read_capped(response)
                return None
            if not 200 <= response.status < 300:
                raise self._error(response, where, source=True)
            _read_capped(response)
            return {name.lower(): value for name, value in response.getheaders()}

        return self._perform(request, None, where, read)

    def head_bucket(self, bucket: str) -> tuple[int, dict[str, str]]:
        """HEAD a bucket: the reply's status and its headers in lower case (any status)."""
        where = f"checking bucket {bucket!r}"
        request = self._prepare("HEAD", bucket, "", "", {}, where)

        def read(response: http1.Reply) -> tuple[int, dict[str, str]]:
            _read_capped(response)
            return response.status, {name.lower(): v for name, v in response.getheaders()}

        return self._perform(request, None, where, read)

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
        request = self._prepare("POST", bucket, key, "uploads=", sent, where)

        def read(response: http1.Reply) -> str:
            if not 200 <= response.status < 300:
                raise self._error(response, where)
            match = _UPLOAD_ID.search(_read_capped(response).decode("utf-8", "replace"))
            if not match or not match.group(1).strip():
                raise TransientError(f"{where}: the reply named no upload id")
            return unescape(match.group(1).strip())

        return self._perform(request, b"", where, read)

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
        request = self._prepare("POST", bucket, key, query, headers, where)

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

        return self._perform(request, body, where, read)

    def list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        """One page of ListObjectsV2, keys in the store's order.

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
        # Sorted by name and encoded, as SigV4's canonical query string needs it.
        query = "&".join(
            f"{encode_query_value(name)}={encode_query_value(value)}"
            for name, value in sorted(params.items())
        )
        where = f"listing s3://{bucket}/{prefix}"
        request = self._prepare("GET", bucket, "", query, {}, where)

        def read(response: http1.Reply) -> ListPage:
            if response.status != 200:
                raise self._error(response, where)
            body = response.read()
            try:
                return parse_list_page(body)
            except ElementTree.ParseError as exc:
                if b"<Error>" in body[:512]:
                    code, message = _parse_error(body)
                    raise error_from_response(code, 500, message, where) from None
                raise TransientError(f"{where}: the listing is not valid XML ({exc})") from None

        return self._perform(request, None, where, read)

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

    def _prepare(
        self,
        method: str,
        bucket: str,
        key: str,
        query: str,
        headers: dict[str, str],
        where: str,
    ) -> _Request:
        """Address, date and sign a request; ``headers`` become its signed headers."""
        https = self._scheme == "https"
        if self._path_style or not _virtual_host_bucket(bucket, https):
            host = self._hostname
            path = f"{self._base_path}/{bucket}/{encode_key(key)}"
        else:
            host = f"{bucket}.{self._hostname}"
            path = f"{self._base_path}/{encode_key(key)}"
        if query:
            path = f"{path}?{query}"
        # The Host header as SigV4 signs it: the port only when it is not the scheme's default.
        host_header = f"[{host}]" if ":" in host else host
        if self._port != _DEFAULT_PORTS[self._scheme]:
            host_header = f"{host_header}:{self._port}"
        signed = {"Host": host_header, **self._extra_headers, **headers}
        try:
            self._signer.sign(method, f"{self._scheme}://{host_header}{path}", path, signed)
        except (NoCredentialsError, PartialCredentialsError):
            raise FatalError(f"{where}: no AWS credentials found", hint=_CREDENTIALS_HINT) from None
        except BotoCoreError as exc:
            # Refreshable credentials could not be refreshed (metadata service, SSO, ...).
            raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from None
        # Not signed: proxies and servers may rewrite it.
        signed["User-Agent"] = _USER_AGENT
        return _Request(method, self._scheme, host, self._port, path, signed)

    # ----------------------------------------------------------------------------------------
    # Exchange
    # ----------------------------------------------------------------------------------------

    def _perform(
        self,
        request: _Request,
        body: Body | None,
        where: str,
        read: Callable[[http1.Reply], _T],
    ) -> _T:
        """Send ``request`` and hand the response to ``read``; network errors are transient."""
        connection, response = self._exchange(request, body, where)
        try:
            result = read(response)
        except LongbowError:
            self._release(connection, response)
            raise
        except _NETWORK_ERRORS as exc:
            self._drop(connection)
            raise _network_error(where, exc) from None
        except BaseException:
            self._drop(connection)
            raise
        self._release(connection, response)
        return result

    def _exchange(
        self, request: _Request, body: Body | None, where: str
    ) -> tuple[_Connection, http1.Reply]:
        """Send ``request`` and read its reply's head; the connection stays the caller's."""
        relayed = isinstance(body, RangeBody)
        for attempt in (1, 2):
            connection = self._connection(request)
            if relayed and connection.uses and connection.idle_closed():
                log.debug("%s: stale keep-alive connection, opening another", where)
                self._drop(connection)
                connection = self._connection(request)
            reused = connection.uses > 0
            try:
                return connection, self._send(connection, request, body)
            except _STALE_CONNECTION_ERRORS as exc:
                self._drop(connection)
                resendable = not (isinstance(body, RangeBody) and body.started)
                if reused and attempt == 1 and resendable:
                    # The server closed this idle keep-alive connection; nothing was processed.
                    log.debug("%s: stale keep-alive connection (%s), retrying once", where, exc)
                    continue
                raise _network_error(where, exc) from None
            except _NETWORK_ERRORS as exc:
                self._drop(connection)
                raise _network_error(where, exc) from None
            except ValueError:
                # A header would break the request (its value is not quoted: it may be secret).
                self._drop(connection)
                raise PermanentError(
                    f"{where}: a request header value cannot be sent over HTTP"
                ) from None
            except BaseException:
                self._drop(connection)  # e.g. a relayed body's source failed mid-request
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, connection: _Connection, request: _Request, body: Body | None) -> http1.Reply:
        if connection.sock is None:
            tls = self._ssl_context if request.scheme == "https" else None
            connection.open(
                request.connect_host, request.port, self._connect_timeout, self._read_timeout, tls
            )
            with self._lock:
                self._opened += 1
        return connection.exchange(request, body)

    def _connection(self, request: _Request) -> _Connection:
        """This thread's kept connection to the request's host, or a new one (not yet open:
        every connection is opened, and counted, in :meth:`_send`)."""
        conns: dict[str, _Connection] | None = getattr(self._local, "connections", None)
        if conns is None:
            conns = self._local.connections = {}
        connection = conns.get(request.netloc)
        if connection is not None and not connection.closed:
            return connection
        # Proxy variables are not read: loopback traffic stays direct.
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

    @staticmethod
    def _error(
        response: http1.Reply,
        where: str,
        *,
        source: bool = False,
    ) -> LongbowError:
        """Map an error reply onto the error tree (after reading at most 64 KiB of it)."""
        code, message = _parse_error(_read_capped(response))
        return error_from_response(
            code or str(response.status),
            response.status,
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
        next_token: Where the next page starts (None on the last page).
    """

    objects: list[tuple[str, int, str | None, str | None]]
    prefixes: list[str]
    next_token: str | None


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
    if top.get(b"EncodingType", "").lower() == "url":
        objects = [(unquote_plus(k), size, etag, t) for k, size, etag, t in objects]
        prefixes = [unquote_plus(p) for p in prefixes]
    truncated = top.get(b"IsTruncated", "").lower() == "true"
    token = top.get(b"NextContinuationToken") if truncated else None
    return ListPage(objects, prefixes, token or None)


_LIST_TOKENS = re.compile(
    rb"<(Key|Size|ETag|LastModified|Prefix|NextContinuationToken|IsTruncated|EncodingType)>"
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
    return ListPage(objects, prefixes, token or None)


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


def _check_range(response: http1.Reply, where: str, start: int, length: int) -> None:
    content_range = response.getheader("Content-Range")
    # Without Content-Range a 200 of exactly the right length is accepted: some servers
    # (rclone serve s3) answer ranged GETs that way.
    if content_range and length > 0:
        if not content_range.startswith(f"bytes {start}-{start + length - 1}/"):
            raise TransientError(
                f"{where}: the server answered with the wrong range ({content_range})"
            )


def _network_error(where: str, exc: BaseException) -> TransientError:
    return TransientError(f"{where}: {type(exc).__name__}: {exc}")


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
