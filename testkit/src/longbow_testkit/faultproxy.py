"""A fault-injecting HTTP/1.1 reverse proxy for testing S3 clients against real local servers.

The proxy listens on 127.0.0.1 and forwards every request, byte for byte, to one upstream
S3-compatible server (the ``Host`` header and the SigV4 signature stay as the client sent them).
On the way it can inject faults for real at the TCP/HTTP level: TCP resets in the middle of a
body, stalls longer than the client's read timeout, locally generated ``503 SlowDown`` and
``500 InternalError`` answers, and single flipped bytes in request or response bodies.

Example::

    with FaultProxy(server.endpoint.url, Faults(slow_down=0.5, seed=1)) as proxy:
        s3 = boto3.client("s3", endpoint_url=proxy.url, ...)
        ...
        assert proxy.counts["UploadPart"] == 4
"""

from __future__ import annotations

import email.utils
import itertools
import random
import select
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

__all__ = ["FAULT_KINDS", "REQUEST_CLASSES", "FaultProxy", "Faults", "Request"]

#: Request classes used as keys of :attr:`FaultProxy.counts`.
REQUEST_CLASSES: tuple[str, ...] = (
    "GET",
    "GET-range",
    "PUT",
    "UploadPart",
    "HEAD",
    "POST",
    "DELETE",
    "other",
)

#: Fault kinds used as keys of :attr:`FaultProxy.faults_injected`.
FAULT_KINDS: tuple[str, ...] = (
    "reset_mid_body",
    "stall",
    "slow_down",
    "internal_error",
    "flip_response_byte",
    "flip_request_byte",
)

_IO_CHUNK = 64 * 1024
_MAX_LINE = 64 * 1024  # longest request/status line or header line accepted
_MAX_HEADERS = 256  # header lines per message
_MAX_INTERIM = 8  # 1xx responses relayed before the final one
_MAX_REQUESTS_PER_CONNECTION = 100_000
_MAX_DRAIN = 1024 * 1024 * 1024  # request body bytes discarded before a local error answer
_MAX_CHUNKS = 10_000_000  # chunks in one chunked body
_EXPECT_WAIT = 3.0  # seconds to wait for the upstream's "100 Continue" before sending anyway
_LINGER_DRAIN = 2.0  # seconds to wait for the client to close after a "Connection: close"
_ACCEPT_POLL = 0.1  # seconds between checks of the stop flag in the accept loop
_MAX_ACCEPTS = 10_000_000  # client connections over a proxy's life
_NO_BODY_STATUS = frozenset({204, 304})
_LOCAL_ERRORS: dict[str, tuple[int, str, str, str]] = {
    "slow_down": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "internal_error": (
        500,
        "Internal Server Error",
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
}


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Per-request fault probabilities/limits, changeable while the proxy runs (thread-safe).

    At most one fault fires per request. For each request whose method passes
    :attr:`only_methods` (and while :attr:`max_faults` is not used up), the applicable kinds
    are drawn in this order, and the first one that fires wins: ``slow_down``,
    ``internal_error``, ``reset_mid_body``, ``stall``, ``flip_request_byte`` (PUT with a body),
    and, once the response head is known, ``flip_response_byte`` (GET answered 200/206 with a
    body).

    Install a new instance with :meth:`FaultProxy.set_faults`; this restarts the random
    sequence from :attr:`seed` and the :attr:`max_faults` budget.

    Attributes:
        reset_mid_body: Probability of a TCP reset (RST) of the client connection after part of
            the request body was forwarded (requests with a body), else after the response
            head and part of the response body, else before the response head.
        stall_seconds: How long a stall stops sending; make it longer than the client's read
            timeout. Stalls never fire while this is 0.
        stall: Probability of a stall: the response head and part of the body are sent, then
            nothing for :attr:`stall_seconds` (before the head when there is no body), then the
            rest.
        slow_down: Probability of answering ``503 SlowDown`` without contacting the upstream.
        internal_error: Probability of answering ``500 InternalError`` without contacting the
            upstream.
        flip_response_byte: Probability of inverting one random byte of a GET response body
            (length unchanged).
        flip_request_byte: Probability of inverting one random byte of a PUT request body (an
            object or a part) on its way upstream (length unchanged).
        only_methods: If set, only requests with these methods (e.g. ``{"GET"}``) get faults.
        data_only: Flip bytes of object data only: object and part PUTs, object GETs without
            a sub-resource query. Listings and other XML documents are spared, since a flip
            there cannot be told from a real answer without TLS.
        max_faults: If set, stop injecting after this many faults in total.
        seed: Seed for the fault and offset choices. They are reproducible when requests arrive
            one at a time; concurrent requests draw in arrival order.
    """

    reset_mid_body: float = 0.0
    stall_seconds: float = 0.0
    stall: float = 0.0
    slow_down: float = 0.0
    internal_error: float = 0.0
    flip_response_byte: float = 0.0
    flip_request_byte: float = 0.0
    only_methods: frozenset[str] | None = None
    data_only: bool = False
    max_faults: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            value = getattr(self, kind)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{kind} must be a probability in [0, 1], got {value!r}")
        if self.stall_seconds < 0:
            raise ValueError(f"stall_seconds must be >= 0, got {self.stall_seconds!r}")
        if self.max_faults is not None and self.max_faults < 0:
            raise ValueError(f"max_faults must be >= 0, got {self.max_faults!r}")
        if self.only_methods is not None:
            # Accept any iterable of names (a plain set is the natural spelling in tests).
            methods: Iterable[str] = self.only_methods
            self.only_methods = frozenset(m.upper() for m in methods)


@dataclass(frozen=True)
class Request:
    """A request as the proxy received it, passed to :meth:`FaultProxy.on_request` hooks.

    Attributes:
        method: The request method, e.g. ``"GET"``.
        target: The request target exactly as sent, e.g. ``"/bucket/key?partNumber=2&..."``.
        path: The path part of :attr:`target`, still percent-encoded.
        query: Query parameters (percent-decoded; the last one wins when repeated).
        headers: Header values by lower-case name (repeated headers joined with ``", "``).
        kind: The request class counted in :attr:`FaultProxy.counts`.
        connection_id: Which client connection (numbered from 1) carried the request.
    """

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    kind: str
    connection_id: int

    @property
    def bucket(self) -> str:
        """The bucket name, assuming path-style addressing (``""`` for the service root)."""
        return unquote(self.path.lstrip("/").split("/", 1)[0])

    @property
    def key(self) -> str:
        """The object key, assuming path-style addressing (``""`` for bucket requests)."""
        parts = self.path.lstrip("/").split("/", 1)
        return unquote(parts[1]) if len(parts) == 2 else ""


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _ProtocolError(Exception):
    """The peer sent something this proxy cannot parse."""


class _PeerClosed(Exception):
    """The peer closed the connection in the middle of a message."""


class _ResetDone(Exception):
    """A reset fault was applied; the client connection is gone."""


class _Reader:
    """Buffered reads from a socket (``makefile`` buffering does not survive timeouts well)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(_IO_CHUNK)
        if not data:
            return False
        self.buf += data
        return True

    def readline(self) -> bytes:
        """Read one line including its LF; returns ``b""`` at EOF before any byte."""
        # Each round either finds the line or adds at least one byte, so the count is bounded.
        for _ in range(_MAX_LINE + 2):
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line
            if len(self.buf) > _MAX_LINE:
                raise _ProtocolError("line too long")
            if not self._fill():
                if self.buf:
                    raise _PeerClosed("connection closed mid-line")
                return b""
        raise _ProtocolError("line too long")

    def read_some(self, limit: int) -> bytes:
        """Return between 1 and ``limit`` bytes; ``b""`` at EOF."""
        if not self.buf and not self._fill():
            return b""
        data = bytes(self.buf[:limit])
        del self.buf[:limit]
        return data

    def readable(self, timeout: float) -> bool:
        """Whether data (or EOF) is ready within ``timeout`` seconds."""
        if self.buf:
            return True
        # poll, not select: a test process may hold more than 1,024 descriptors.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))


@dataclass
class _Head:
    """A parsed request or response head, with the raw bytes to forward unchanged."""

    raw: bytes
    start: list[str]
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> list[str]:
        value = self.get(name)
        return [t.strip().lower() for t in value.split(",")] if value else []


def _read_head(reader: _Reader, *, skip_blank: bool) -> _Head | None:
    """Read a start line and headers; ``None`` on a clean EOF before the first byte."""
    line = reader.readline()
    if skip_blank:
        # RFC 9112 lets a server ignore empty lines before a request line.
        for _ in range(8):
            if line not in (b"\r\n", b"\n"):
                break
            line = reader.readline()
    if not line:
        return None
    raw = [line]
    headers: list[tuple[str, str]] = []
    for _ in range(_MAX_HEADERS + 1):
        hline = reader.readline()
        if not hline:
            raise _PeerClosed("connection closed in headers")
        raw.append(hline)
        if hline in (b"\r\n", b"\n"):
            start = line.decode("latin-1").strip().split(" ", 2)
            return _Head(b"".join(raw), start, headers)
        name, sep, value = hline.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise _ProtocolError(f"bad header line {hline[:80]!r}")
        headers.append((name.strip(), value.strip()))
    raise _ProtocolError("too many header lines")


def _framing(head: _Head) -> tuple[str, int]:
    """How a message body is delimited: ``("chunked", 0)``, ``("length", n)`` or ``("none", 0)``."""
    codings = head.tokens("transfer-encoding")
    if codings:
        if codings[-1] != "chunked":
            raise _ProtocolError(f"unsupported transfer-encoding {codings}")
        return "chunked", 0
    length = head.get("content-length")
    if length is None:
        return "none", 0
    values = {v.strip() for v in length.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise _ProtocolError(f"bad content-length {length!r}")
    return "length", int(values.pop())


def _send_rst(sock: socket.socket) -> None:
    """Close ``sock`` abortively so the peer sees a real TCP reset."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _shutdown(sock: socket.socket | None) -> None:
    """Wake any thread blocked on ``sock`` without closing the descriptor under it."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@dataclass
class _BodyPlan:
    """Faults to apply while copying one body.

    Offsets count body data bytes (chunk framing excluded). ``-1`` means "pick a random offset
    inside the first data that arrives", for bodies whose length is not known up front.
    """

    flip_at: int | None = None
    cut_at: int | None = None
    stall_at: int | None = None
    stall_seconds: float = 0.0
    flipped: bool = False
    stalled: bool = False


class _BodyCopier:
    """Copies one HTTP body from a reader to a socket, applying a :class:`_BodyPlan`."""

    def __init__(
        self,
        proxy: FaultProxy,
        reader: _Reader,
        out: socket.socket | None,
        plan: _BodyPlan,
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.out = out  # None: read and discard
        self.plan = plan
        self.pos = 0
        self.sent = 0  # body data bytes handed to the output socket (framing included)

    def _send(self, data: bytes) -> None:
        if self.out is not None and data:
            self.out.sendall(data)
            self.sent += len(data)

    def _resolve_pending(self, size: int) -> None:
        # Unknown total length: choose the offsets inside the first piece of data seen.
        plan = self.plan
        for name in ("flip_at", "cut_at", "stall_at"):
            if getattr(plan, name) == -1:
                setattr(plan, name, self.pos + self.proxy._randrange(size))

    def data(self, data: bytes) -> None:
        """Forward body data, flipping, stalling or cutting where the plan says."""
        plan = self.plan
        self._resolve_pending(len(data))
        start, end = self.pos, self.pos + len(data)
        if plan.flip_at is not None and not plan.flipped and start <= plan.flip_at < end:
            buf = bytearray(data)
            buf[plan.flip_at - start] ^= 0xFF
            data = bytes(buf)
            plan.flipped = True
        # Split at the stall and cut offsets so each happens after exactly that many bytes.
        marks = sorted(
            m for m in (plan.stall_at, plan.cut_at) if m is not None and start <= m < end
        )
        done = start
        for mark in marks:
            self._send(data[done - start : mark - start])
            done = mark
            if mark == plan.cut_at:
                raise _ResetDone
            if mark == plan.stall_at and not plan.stalled:
                plan.stalled = True
                self.proxy._sleep(plan.stall_seconds)
        self._send(data[done - start :])
        self.pos = end

    def finish(self) -> None:
        """Apply a cut that the body was too short to reach (the end stays unsent)."""
        if self.plan.cut_at is not None:
            raise _ResetDone

    def copy_length(self, length: int) -> None:
        """Copy exactly ``length`` body bytes."""
        remaining = length
        for _ in range(length + 1):
            if remaining <= 0:
                return
            data = self.reader.read_some(min(remaining, _IO_CHUNK))
            if not data:
                raise _PeerClosed("connection closed mid-body")
            remaining -= len(data)
            self.data(data)
        raise _PeerClosed("body copy did not converge")

    def copy_chunked(self) -> None:
        """Copy a chunked body, framing unchanged, through the last chunk and trailers."""
        for _ in range(_MAX_CHUNKS):
            line = self.reader.readline()
            if not line:
                raise _PeerClosed("connection closed in chunk header")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _ProtocolError(f"bad chunk size {line[:40]!r}") from None
            if size == 0:
                self.finish()
                self._send(line)
                self._copy_trailers()
                return
            self._send(line)
            self.copy_length(size)
            crlf = self.reader.readline()
            if crlf.strip():
                raise _ProtocolError("missing CRLF after chunk data")
            self._send(crlf)
        raise _ProtocolError("too many chunks")

    def _copy_trailers(self) -> None:
        for _ in range(_MAX_HEADERS + 1):
            line = self.reader.readline()
            if not line:
                raise _PeerClosed("connection closed in trailers")
            self._send(line)
            if line in (b"\r\n", b"\n"):
                return
        raise _ProtocolError("too many trailer lines")

    def copy_until_close(self, deadline: float) -> None:
        """Copy until the sender closes (responses without a length)."""
        for _ in range(_MAX_CHUNKS):
            if time.monotonic() > deadline:
                raise _PeerClosed("body without length took too long")
            data = self.reader.read_some(_IO_CHUNK)
            if not data:
                self.finish()
                return
            self.data(data)
        raise _ProtocolError("body without length too large")


# --------------------------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------------------------


@dataclass
class _Decision:
    """The fault chosen for one request at arrival (``None``: none yet)."""

    kind: str | None = None
    eligible: bool = True  # later faults (flip_response_byte) may still be drawn
    faults: Faults = field(default_factory=Faults)


class FaultProxy:
    """A threaded HTTP/1.1 reverse proxy in front of one upstream S3 server, injecting faults.

    Each client connection gets its own thread and its own upstream connection; both sides are
    kept alive across requests. Request classes are counted in :attr:`counts`: object GETs
    (``"GET"``, or ``"GET-range"`` with a ``Range`` header), object PUTs (``"PUT"``, or
    ``"UploadPart"`` when the query has ``partNumber``), ``"HEAD"``, ``"POST"``, ``"DELETE"``
    and ``"other"`` (bucket-level GET/PUT such as listings and bucket creation, and any other
    method). Object requests are recognised by path-style addressing (``/bucket/key``).

    Args:
        upstream_url: Base URL of the real server, e.g. ``"http://127.0.0.1:8333"``.
        faults: Initial faults (none by default).
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        max_connections: Client connections served at once; more wait in the listen backlog.
        io_timeout: Socket timeout in seconds for any single read or write on either side.
        max_lifetime: Seconds after which the listener stops accepting, as a safety net
            against proxies that are never stopped.
    """

    def __init__(
        self,
        upstream_url: str,
        faults: Faults | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = 64,
        io_timeout: float = 60.0,
        max_lifetime: float = 6 * 3600.0,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream_url!r}")
        self.upstream_url = upstream_url
        self._upstream = (parts.hostname, parts.port or 80)
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._io_timeout = io_timeout
        self._max_lifetime = max_lifetime
        self._lock = threading.Lock()
        self._faults = faults if faults is not None else Faults()
        self._rng = random.Random(self._faults.seed)
        self._budget_used = 0
        self._counts = dict.fromkeys(REQUEST_CLASSES, 0)
        self._method_counts: dict[str, int] = {}
        self._injected = dict.fromkeys(FAULT_KINDS, 0)
        self._body_bytes = dict.fromkeys(REQUEST_CLASSES, 0)
        self._hooks: list[Callable[[Request], str | None]] = []
        self._hook_errors: list[BaseException] = []
        self._errors: list[BaseException] = []
        self._accepted = 0
        self._upstream_opened = 0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: dict[int, _Connection] = {}
        self._conn_ids = itertools.count(1)
        self.url = ""

    # -- configuration and statistics -------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults in force; assigning to it is the same as :meth:`set_faults`."""
        with self._lock:
            return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.set_faults(faults)

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults; restarts the random sequence and the ``max_faults`` budget.

        Args:
            faults: The new settings, applied to requests that arrive from now on.
        """
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._budget_used = 0

    @property
    def counts(self) -> dict[str, int]:
        """Snapshot of requests seen by class (every key of :data:`REQUEST_CLASSES`)."""
        with self._lock:
            return dict(self._counts)

    @property
    def counts_by_method(self) -> dict[str, int]:
        """Snapshot of requests seen by HTTP method."""
        with self._lock:
            return dict(self._method_counts)

    @property
    def faults_injected(self) -> dict[str, int]:
        """Snapshot of faults injected by kind (every key of :data:`FAULT_KINDS`)."""
        with self._lock:
            return dict(self._injected)

    @property
    def request_bytes(self) -> dict[str, int]:
        """Snapshot of request body bytes forwarded upstream, by request class.

        Bytes of a body cut short (by a reset fault or a client that died mid-request) count
        too, since they crossed the wire; ``request_bytes["PUT"] + request_bytes["UploadPart"]``
        is what a client uploaded through this proxy.
        """
        with self._lock:
            return dict(self._body_bytes)

    @property
    def connections_accepted(self) -> int:
        """Client connections accepted so far (keep-alive keeps this low)."""
        with self._lock:
            return self._accepted

    @property
    def upstream_connections(self) -> int:
        """Connections opened to the upstream so far."""
        with self._lock:
            return self._upstream_opened

    @property
    def hook_errors(self) -> list[BaseException]:
        """Exceptions raised by :meth:`on_request` hooks (the requests went on regardless)."""
        with self._lock:
            return list(self._hook_errors)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions that ended a client connection (should stay empty)."""
        with self._lock:
            return list(self._errors)

    def reset_counts(self) -> None:
        """Zero :attr:`counts`, :attr:`counts_by_method`, :attr:`faults_injected` and
        :attr:`request_bytes`."""
        with self._lock:
            self._counts = dict.fromkeys(REQUEST_CLASSES, 0)
            self._method_counts = {}
            self._injected = dict.fromkeys(FAULT_KINDS, 0)
            self._body_bytes = dict.fromkeys(REQUEST_CLASSES, 0)

    def on_request(self, hook: Callable[[Request], str | None]) -> Callable[[Request], str | None]:
        """Register a function called with each request before it is forwarded.

        A hook that returns ``"slow_down"`` or ``"internal_error"`` has the proxy answer this
        request with that error itself (counted in :attr:`faults_injected`); one that returns
        None lets it go on.

        Hooks run in the connection's thread while the request waits, so a test can act at a
        precise moment (e.g. overwrite the source object when the third ranged GET arrives).
        Faults are drawn after the hooks ran, so a hook may call :meth:`set_faults` to aim a
        fault at this very request. Exceptions are collected in :attr:`hook_errors` instead of
        failing the request.

        Args:
            hook: Called with a :class:`Request`; several hooks run in registration order.

        Returns:
            ``hook``, so this can be used as a decorator.
        """
        with self._lock:
            self._hooks.append(hook)
        return hook

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start listening and serving in background threads.

        Returns:
            ``self``, with :attr:`url` set.
        """
        if self._listener is not None:
            raise RuntimeError("proxy already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(128)
            listener.settimeout(_ACCEPT_POLL)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        host, port = listener.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"faultproxy-accept-{port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every connection, and join the threads.

        Idempotent. Stalls end at once; a hook still running is waited for up to ``timeout``.

        Args:
            timeout: Seconds to wait for all threads in total.
        """
        self._stopping.set()
        deadline = time.monotonic() + timeout
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            conn.wake()
        for conn in conns:
            conn.thread.join(max(0.0, deadline - time.monotonic()))
        for conn in conns:
            if not conn.thread.is_alive():
                continue
            conn.close_sockets()  # last resort for a thread stuck in a hook

    def __enter__(self) -> FaultProxy:
        return self.start() if self._listener is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        deadline = time.monotonic() + self._max_lifetime
        # Bounded by the lifetime: each round either accepts or waits up to _ACCEPT_POLL.
        for _ in range(int(self._max_lifetime / _ACCEPT_POLL) + _MAX_ACCEPTS):
            if self._stopping.is_set() or time.monotonic() > deadline:
                return
            with self._lock:
                busy = len(self._conns) >= self._max_connections
            if busy:
                # Leave extra clients in the backlog until a slot frees up.
                self._stopping.wait(_ACCEPT_POLL)
                continue
            try:
                sock, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed
            if self._stopping.is_set():
                sock.close()
                return
            try:
                self._spawn(sock)
            except (OSError, RuntimeError) as exc:  # e.g. no thread could be started
                sock.close()
                self._record_error(exc)

    def _spawn(self, sock: socket.socket) -> None:
        sock.settimeout(self._io_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn_id = next(self._conn_ids)
        conn = _Connection(self, sock, conn_id)
        with self._lock:
            self._accepted += 1
            self._conns[conn_id] = conn
        try:
            conn.thread.start()
        except RuntimeError:
            self._forget(conn_id)
            raise

    def _forget(self, conn_id: int) -> None:
        with self._lock:
            self._conns.pop(conn_id, None)

    # -- helpers used by connections -----------------------------------------------------------

    def _open_upstream(self) -> socket.socket:
        sock = socket.create_connection(self._upstream, timeout=self._io_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._upstream_opened += 1
        return sock

    def _sleep(self, seconds: float) -> None:
        # A stall ends early when the proxy stops, so stop() never waits for it.
        self._stopping.wait(seconds)

    def _randrange(self, n: int) -> int:
        with self._lock:
            return self._rng.randrange(n) if n > 0 else 0

    def _count(self, request: Request) -> None:
        with self._lock:
            self._counts[request.kind] += 1
            self._method_counts[request.method] = self._method_counts.get(request.method, 0) + 1

    def _count_body(self, request: Request, size: int) -> None:
        with self._lock:
            self._body_bytes[request.kind] += size

    def _run_hooks(self, request: Request) -> str | None:
        """Run the hooks; return the local error the first one asked for, if any."""
        with self._lock:
            hooks = list(self._hooks)
        answer: str | None = None
        for hook in hooks:
            try:
                asked = hook(request)
            except Exception as exc:  # a failing test hook must not take the proxy down
                with self._lock:
                    self._hook_errors.append(exc)
                continue
            if answer is None and asked in _LOCAL_ERRORS:
                answer = asked
        return answer

    def _decide(self, request: Request, has_body: bool) -> _Decision:
        """Draw the fault for a request at arrival, claiming it from the budget."""
        with self._lock:
            faults = self._faults
            decision = _Decision(faults=faults)
            if faults.only_methods is not None and request.method not in faults.only_methods:
                decision.eligible = False
                return decision
            candidates = [
                ("slow_down", faults.slow_down),
                ("internal_error", faults.internal_error),
                ("reset_mid_body", faults.reset_mid_body),
                ("stall", faults.stall if faults.stall_seconds > 0 else 0.0),
                (
                    "flip_request_byte",
                    faults.flip_request_byte
                    if request.method == "PUT" and has_body and _may_flip(faults, request)
                    else 0.0,
                ),
            ]
            for kind, probability in candidates:
                if probability <= 0 or not self._claim_locked(faults):
                    continue
                if self._rng.random() < probability:
                    decision.kind = kind
                    self._budget_used += 1
                    return decision
            return decision

    def _decide_late(self, decision: _Decision, kind: str, probability: float) -> bool:
        """Draw a fault that only applies once the response head is known."""
        with self._lock:
            if decision.kind is not None or not decision.eligible or probability <= 0:
                return False
            if decision.faults is not self._faults or not self._claim_locked(decision.faults):
                return False
            if self._rng.random() < probability:
                decision.kind = kind
                self._budget_used += 1
                return True
            return False

    def _claim_locked(self, faults: Faults) -> bool:
        return faults.max_faults is None or self._budget_used < faults.max_faults

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

    def _injected_one(self, kind: str) -> None:
        with self._lock:
            self._injected[kind] += 1


def _classify(method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> str:
    parts = path.lstrip("/").split("/", 1)
    is_object = len(parts) == 2 and parts[1] != ""
    if method == "GET" and is_object:
        return "GET-range" if "range" in headers else "GET"
    if method == "PUT" and is_object:
        return "UploadPart" if "partNumber" in query else "PUT"
    if method in ("HEAD", "POST", "DELETE"):
        return method
    return "other"


# Query parameters that still address object data rather than a sub-resource document.
_DATA_QUERY = frozenset({"partNumber", "uploadId", "versionId", "x-id"})


def _may_flip(faults: Faults, request: Request) -> bool:
    if not faults.data_only:
        return True
    is_data = request.kind in ("GET", "GET-range", "PUT", "UploadPart")
    return is_data and set(request.query) <= _DATA_QUERY


def _make_request(head: _Head, conn_id: int) -> Request:
    method, target = head.start[0].upper(), head.start[1]
    path, _, raw_query = target.partition("?")
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    kind = _classify(method, path, query, headers)
    return Request(method, target, path, query, headers, kind, conn_id)


def _error_response(kind: str, request: Request | None, *, head_only: bool, close: bool) -> bytes:
    status, reason, code, message = _LOCAL_ERRORS[kind]
    request_id = uuid.uuid4().hex[:16].upper()
    resource = escape(request.path if request is not None else "/")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId>"
        f"<HostId>faultproxy</HostId></Error>"
    ).encode()
    return _response_bytes(status, reason, body, request_id, head_only=head_only, close=close)


def _response_bytes(
    status: int, reason: str, body: bytes, request_id: str, *, head_only: bool, close: bool
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "Server: faultproxy",
        f"x-amz-request-id: {request_id}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        f"Connection: {'close' if close else 'keep-alive'}",
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def _plain_error(status: int, reason: str, code: str, message: str, *, head_only: bool) -> bytes:
    """An S3-style XML error answer for a problem of the proxy itself (always closes)."""
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    return _response_bytes(status, reason, body, request_id, head_only=head_only, close=True)


class _Connection:
    """One client connection, its thread, and its upstream connection."""

    def __init__(self, proxy: FaultProxy, sock: socket.socket, conn_id: int) -> None:
        self.proxy = proxy
        self.client = sock
        self.client_reader = _Reader(sock)
        self.upstream: socket.socket | None = None
        self.upstream_reader: _Reader | None = None
        self.conn_id = conn_id
        self.thread = threading.Thread(
            target=self.run, name=f"faultproxy-conn-{conn_id}", daemon=True
        )
        self._sock_lock = threading.Lock()

    # -- socket management ---------------------------------------------------------------------

    def wake(self) -> None:
        """Unblock the thread's reads and writes so it notices the proxy is stopping."""
        with self._sock_lock:
            _shutdown(self.client)
            _shutdown(self.upstream)

    def close_sockets(self) -> None:
        with self._sock_lock:
            self.client.close()
            self._close_upstream_locked()

    def _close_upstream_locked(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        self.upstream = None
        self.upstream_reader = None

    def _close_upstream(self) -> None:
        with self._sock_lock:
            self._close_upstream_locked()

    def _ensure_upstream(self) -> tuple[socket.socket, _Reader]:
        if self.upstream is not None and self.upstream_reader is not None:
            # An idle keep-alive connection that is readable has been closed by the server (or
            # sent junk): never send a request into it.
            if not self.upstream_reader.readable(0):
                return self.upstream, self.upstream_reader
            self._close_upstream()
        sock = self.proxy._open_upstream()
        with self._sock_lock:
            if self.proxy._stopping.is_set():
                sock.close()
                raise _PeerClosed("proxy stopping")
            self.upstream, self.upstream_reader = sock, _Reader(sock)
        return sock, self.upstream_reader

    def _reset_client(self) -> None:
        with self._sock_lock:
            _send_rst(self.client)
            self._close_upstream_locked()

    def _close_gracefully(self) -> None:
        """Half-close, then let the client read our last answer before the socket goes away.

        Closing with unread request bytes in the kernel buffer would turn the close into a
        reset that can destroy the answer in flight, so drain for a short, bounded time.
        """
        try:
            self.client.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_DRAIN
            for _ in range(10_000):
                left = deadline - time.monotonic()
                if left <= 0 or not self.client_reader.readable(left):
                    break
                self.client_reader.buf.clear()
                if not self.client_reader._fill():
                    break
        except OSError:
            pass

    # -- serving -------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._serve()
        except (OSError, _PeerClosed, _ResetDone):
            pass  # the client or the upstream went away; nothing left to tell anyone
        except Exception as exc:  # keep serving other connections; surface it for debugging
            self.proxy._record_error(exc)
        finally:
            self.close_sockets()
            self.proxy._forget(self.conn_id)

    def _serve(self) -> None:
        for _ in range(_MAX_REQUESTS_PER_CONNECTION):
            if self.proxy._stopping.is_set():
                return
            try:
                head = _read_head(self.client_reader, skip_blank=True)
                if head is None or self.proxy._stopping.is_set():
                    return
                if not self._handle(head):
                    return
            except _ProtocolError as exc:
                # Framing is lost, so answer (if nothing was sent yet) and close.
                answer = _plain_error(400, "Bad Request", "BadRequest", str(exc), head_only=False)
                self.client.sendall(answer)
                self._close_gracefully()
                return

    def _handle(self, head: _Head) -> bool:
        """Serve one request; returns whether the client connection stays open."""
        if len(head.start) != 3 or not head.start[2].startswith("HTTP/1."):
            raise _ProtocolError(f"bad request line {head.start!r}")
        request = _make_request(head, self.conn_id)
        framing, length = _framing(head)
        has_body = framing == "chunked" or (framing == "length" and length > 0)
        client_keep = self._client_wants_keepalive(head)
        self.proxy._count(request)
        asked = self.proxy._run_hooks(request)
        if asked is not None:
            decision = _Decision(kind=asked, eligible=False)
        else:
            decision = self.proxy._decide(request, has_body)
        if decision.kind in _LOCAL_ERRORS:
            return self._answer_locally(request, head, decision.kind, framing, length, client_keep)
        return self._forward(request, head, decision, framing, length, client_keep)

    @staticmethod
    def _client_wants_keepalive(head: _Head) -> bool:
        tokens = head.tokens("connection")
        if head.start[2] == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    def _answer_locally(
        self,
        request: Request,
        head: _Head,
        kind: str,
        framing: str,
        length: int,
        client_keep: bool,
    ) -> bool:
        expects = "100-continue" in head.tokens("expect")
        has_body = framing == "chunked" or (framing == "length" and length > 0)
        keep = client_keep
        if has_body and expects:
            # The client waits for "100 Continue" before sending the body; answer at once, as
            # S3 does, and close since the body will never be read.
            keep = False
        elif has_body:
            # Read and drop the body so the connection can carry the next request.
            if framing == "length" and length > _MAX_DRAIN:
                keep = False
            else:
                copier = _BodyCopier(self.proxy, self.client_reader, None, _BodyPlan())
                if framing == "chunked":
                    copier.copy_chunked()
                else:
                    copier.copy_length(length)
        head_only = request.method == "HEAD"
        # Counted before the answer leaves: a client may look at the counters as soon as it
        # has the answer.
        self.proxy._injected_one(kind)
        self.client.sendall(_error_response(kind, request, head_only=head_only, close=not keep))
        if not keep:
            self._close_gracefully()
        return keep

    def _forward(
        self,
        request: Request,
        head: _Head,
        decision: _Decision,
        framing: str,
        length: int,
        client_keep: bool,
    ) -> bool:
        faults = decision.faults
        has_body = framing == "chunked" or (framing == "length" and length > 0)
        try:
            up, up_reader = self._ensure_upstream()
            up.sendall(head.raw)
        except OSError as exc:
            return self._fail_upstream(request, f"cannot reach upstream: {exc}")

        early: _Head | None = None
        if has_body:
            try:
                early = self._wait_for_continue(head, up_reader)
            except (OSError, _PeerClosed, _ProtocolError) as exc:
                return self._fail_upstream(request, f"upstream failed on Expect: {exc}")
            if early is None:
                plan = _BodyPlan()
                if decision.kind == "flip_request_byte":
                    plan.flip_at = self._pick(framing, length, minimum=0)
                elif decision.kind == "reset_mid_body":
                    plan.cut_at = self._pick(framing, length, minimum=1)
                copier = _BodyCopier(self.proxy, self.client_reader, up, plan)
                try:
                    if framing == "chunked":
                        copier.copy_chunked()
                    else:
                        copier.copy_length(length)
                except _ResetDone:
                    self.proxy._injected_one("reset_mid_body")
                    self._reset_client()
                    return False
                except OSError:
                    # The upstream may have answered early and closed; relay that answer if any.
                    if not up_reader.readable(0):
                        return self._fail_upstream(request, "upstream closed during request body")
                    client_keep = False
                finally:
                    self.proxy._count_body(request, copier.sent)
                if plan.flipped:
                    self.proxy._injected_one("flip_request_byte")

        try:
            response = early if early is not None else self._read_final_head(up_reader)
        except (OSError, _PeerClosed, _ProtocolError) as exc:
            return self._fail_upstream(request, f"no response from upstream: {exc}")
        if early is not None:
            client_keep = False  # the client never sent the body; its state is unknown
        return self._relay_response(request, decision, response, up_reader, client_keep, faults)

    def _pick(self, framing: str, length: int, *, minimum: int) -> int:
        """A random body offset: a flip position (minimum 0) or a cut point (minimum 1)."""
        if framing != "length":
            return -1  # chosen inside the first data that arrives
        if length <= minimum:
            return 0
        return minimum + self.proxy._randrange(length - minimum)

    def _wait_for_continue(self, head: _Head, up_reader: _Reader) -> _Head | None:
        """For ``Expect: 100-continue``, relay the upstream's interim answer.

        Returns:
            A final response that arrived instead of "100 Continue" (the body must then not
            be sent), or ``None`` when the body should be forwarded now.
        """
        if "100-continue" not in head.tokens("expect"):
            return None
        for _ in range(_MAX_INTERIM):
            # Like clients, do not wait forever for a server that ignores the expectation.
            if not up_reader.readable(_EXPECT_WAIT):
                return None
            answer = _read_head(up_reader, skip_blank=False)
            if answer is None:
                raise _PeerClosed("upstream closed before answering")
            status = self._status(answer)
            if status >= 200:
                return answer
            self.client.sendall(answer.raw)
            if status == 100:
                return None
        return None

    @staticmethod
    def _status(head: _Head) -> int:
        try:
            return int(head.start[1])
        except (IndexError, ValueError):
            raise _ProtocolError(f"bad status line {head.start!r}") from None

    def _read_final_head(self, up_reader: _Reader) -> _Head:
        for _ in range(_MAX_INTERIM + 1):
            answer = _read_head(up_reader, skip_blank=False)
            if answer is None:
                raise _PeerClosed("upstream closed before answering")
            if self._status(answer) >= 200:
                return answer
            self.client.sendall(answer.raw)  # other interim answers pass through
        raise _ProtocolError("too many interim responses")

    def _fail_upstream(self, request: Request, message: str) -> bool:
        self._close_upstream()
        answer = _plain_error(
            502, "Bad Gateway", "BadGateway", message, head_only=request.method == "HEAD"
        )
        self.client.sendall(answer)
        self._close_gracefully()
        return False

    def _relay_response(
        self,
        request: Request,
        decision: _Decision,
        response: _Head,
        up_reader: _Reader,
        client_keep: bool,
        faults: Faults,
    ) -> bool:
        try:
            status = self._status(response)
            if request.method == "HEAD" or status in _NO_BODY_STATUS:
                framing, length = "empty", 0
            else:
                framing, length = _framing(response)
                if framing == "none":
                    framing = "until-close"
        except _ProtocolError as exc:
            return self._fail_upstream(request, f"bad response from upstream: {exc}")
        has_body = framing in ("chunked", "until-close") or (framing == "length" and length > 0)
        upstream_keep = framing != "until-close" and "close" not in response.tokens("connection")
        if response.start[0] == "HTTP/1.0" and "keep-alive" not in response.tokens("connection"):
            upstream_keep = False

        if (
            request.method == "GET"
            and status in (200, 206)
            and has_body
            and _may_flip(faults, request)
        ):
            # Drawn only now, since only the response head tells whether there is object data.
            self.proxy._decide_late(decision, "flip_response_byte", faults.flip_response_byte)

        plan = _BodyPlan()
        kind = decision.kind
        if kind == "flip_response_byte":
            plan.flip_at = self._pick(framing, length, minimum=0)
        elif kind == "reset_mid_body" or kind == "stall":
            if has_body:
                point = self._pick(framing, length, minimum=1)
                if kind == "reset_mid_body":
                    plan.cut_at = point
                else:
                    plan.stall_at, plan.stall_seconds = point, faults.stall_seconds
            elif kind == "reset_mid_body":
                self.proxy._injected_one("reset_mid_body")
                self._reset_client()
                return False
            else:
                self.proxy._injected_one("stall")
                self.proxy._sleep(faults.stall_seconds)
        if kind == "stall" and has_body:
            self.proxy._injected_one("stall")  # counted up front: the client may give up

        self.client.sendall(response.raw)
        copier = _BodyCopier(self.proxy, up_reader, self.client, plan)
        try:
            if framing == "chunked":
                copier.copy_chunked()
            elif framing == "length":
                copier.copy_length(length)
            elif framing == "until-close":
                copier.copy_until_close(time.monotonic() + self.proxy._io_timeout * 10)
        except _ResetDone:
            self.proxy._injected_one("reset_mid_body")
            self._reset_client()
            return False
        if plan.flipped:
            self.proxy._injected_one("flip_response_byte")
        if not upstream_keep:
            self._close_upstream()
            # The client saw "Connection: close" (or an unframed body) and closes too.
            client_keep = False
        if not client_keep:
            self._close_gracefully()
        return client_keep
