"""One kept connection of the lean client: a request's head and body written (a body from
memory, or another endpoint's reply relayed socket to socket), its reply's head read, and
whether the connection can carry the next request.
"""

from __future__ import annotations

import re
import socket
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from s3longbow.errors import ReplyLostError, TransientError
from s3longbow.model import Bytes
from s3longbow.stores.base import Relayed
from s3longbow.stores.s3 import dial, http1, splice
from s3longbow.stores.s3.stream import Pace, ReplyError, Stream

if TYPE_CHECKING:  # loaded only for https endpoints
    import ssl


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


class Keeper(Protocol):
    """What keeps connections: it takes one back after an exchange, or drops it."""

    def release(self, connection: _Connection, response: http1.Reply) -> None: ...

    def drop(self, connection: _Connection) -> None: ...


def _stale(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError) or (
        type(exc).__name__ in _STALE_NAMES
    )


class RangeBody:
    """A ranged GET whose reply is held open, its body still on the socket, to become the
    body of a request to another endpoint (see :meth:`lean.S3DataPlane.open_range`).

    Use it as a context manager: on exit the source connection is kept for the next request
    if the whole body went on, else closed.
    """

    def __init__(
        self,
        plane: Keeper,
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

    def read(self) -> bytes | bytearray:
        """The whole body read into memory instead, when it is not to be relayed after all.

        Raises:
            TransientError: The source failed or ended early.
        """
        if self.started:
            raise RuntimeError("a relayed body can be read only once")
        self.started = True
        try:
            if self._response.length == self.length:
                data: bytes | bytearray = self._response.read_buffer(self.length)
            else:  # one byte more than asked: a longer body is an error, not a buffer
                data = self._response.read(self.length + 1)
        except _NETWORK_ERRORS as exc:
            raise _network_error(self._where, exc) from None
        if len(data) != self.length:
            raise TransientError(f"{self._where}: short read ({len(data)} of {self.length} bytes)")
        self.done = True
        return data

    def send_to(self, sock: socket.socket, pace: Pace) -> None:
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
            self._plane.release(self._connection, self._response)
        else:
            self._plane.drop(self._connection)


# What a request may carry: bytes in memory, or another reply's body relayed.
Body = Bytes | RangeBody


def as_body(data: Bytes | Relayed) -> Body:
    """What the store port hands over, as a request body: bytes, or a body relayed from
    another endpoint of this client (the only kind relayed here).

    Raises:
        TypeError: A relayed body of another kind of store.
    """
    if isinstance(data, bytes | bytearray | memoryview | RangeBody):
        return data
    raise TypeError(f"cannot send a relayed {type(data).__name__}")


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
        "netloc",
        "uses",
        "kept",
        "sent",
        "waited",
        "_owned",
        "_finalizer",
        "__weakref__",
    )

    def __init__(self, *, kept: bool) -> None:
        self.sock: socket.socket | None = None
        self.stream: Stream | None = None
        self.tls = False
        self.netloc = ""  # the host (and port) it was opened to
        self.uses = 0
        self.sent = False  # the current request went out whole: only its reply is awaited
        self.waited = 0.0  # seconds its reply's head took to come, once it went out
        self.kept = kept
        self._owned: list[socket.socket] = []
        # Closes the socket when the last reference to the connection goes.
        self._finalizer = weakref.finalize(self, _close_all, self._owned)

    def open(
        self,
        host: str,
        port: int,
        connect_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None,
        proxy: dial.Proxy | None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        """Connect (see :func:`dial.connect`).

        Raises:
            OSError: As http1.connect.
        """
        sock = dial.connect(
            host,
            port,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tls=tls,
            session=session,
            proxy=proxy,
        )
        self.attach(sock, tls=tls is not None)

    def attach(self, sock: socket.socket, *, tls: bool) -> None:
        """Carry requests on `sock`, opened elsewhere (see :mod:`nonblocking`)."""
        self.sock = sock
        self.stream = Stream(sock)
        self.tls = tls
        self._owned.append(sock)

    def tls_session(self) -> ssl.SSLSession | None:
        """The TLS session to resume on the next connection to the same host (read once a
        reply came: a TLS 1.3 server sends its ticket after the handshake)."""
        if not self.tls or self.sock is None:
            return None
        session: ssl.SSLSession | None = getattr(self.sock, "session", None)
        return session

    def resumed(self) -> bool:
        """Whether its TLS handshake resumed an earlier connection's session."""
        return bool(getattr(self.sock, "session_reused", False))

    def exchange(self, request: _Request, body: Body | None, pace: Pace) -> http1.Reply:
        """Send the request and read the reply's status and headers (the body is left to
        the caller), bytes moving at `pace` at least once they flow.

        Raises:
            ValueError: A header would break the request: a name that is not a token, or a
                control character in a value.
            OSError, ReplyError: The connection failed or the reply is not HTTP.
        """
        sock, stream = self.sock, self.stream
        assert sock is not None and stream is not None
        head = request_head(request)
        stream.pace = pace
        pace.start()
        self.sent = False
        try:
            self._send(sock, head, body, pace)
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
            sent_at = time.monotonic()
            response = http1.Reply(stream, request.method)
            response.begin()
            self.waited = time.monotonic() - sent_at
        self.uses += 1
        return response

    def _send(self, sock: socket.socket, head: bytes, body: Body | None, pace: Pace) -> None:
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
        except (OSError, ReplyError):
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


def request_head(request: _Request) -> bytes:
    """The request line and headers of `request`, as they go on the wire.

    Raises:
        ValueError: A header would break the request: a name that is not a token, or a
            control character in a value.
    """
    headers = request.headers
    if _BAD_NAME.search("".join(headers)) or _BAD_VALUE.search("".join(headers.values())):
        raise ValueError("a header name or value would break the request's header block")
    lines = [f"{request.method} {request.target} HTTP/1.1\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    lines.append("\r\n")
    return http1.encode_value("".join(lines))


def _close_all(owned: list[socket.socket]) -> None:
    for thing in owned:
        thing.close()


_NETWORK_ERRORS = (OSError, ReplyError)  # includes timeouts and ssl.SSLError


def _network_error(where: str, exc: BaseException, *, lost: bool = False) -> TransientError:
    """A failed exchange as a transient error; `lost`: the request had gone out whole."""
    return (ReplyLostError if lost else TransientError)(f"{where}: {type(exc).__name__}: {exc}")
