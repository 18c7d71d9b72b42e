"""Whole-object exchanges of many copies on one thread: non-blocking sockets, one selector.

A small object's copy is two short exchanges, and on a long path it spends nearly all its
time waiting for replies. With a thread per object in flight, every wait and every wake-up
hands the interpreter lock from thread to thread (37-45 context switches per object at 128
objects in flight on a two-core machine at 150 ms, where a copy needs a handful): the
hand-offs cost more CPU than the copies. Here one thread waits for all of them at once.

What stays the threaded client's: the requests (addressed and signed by :mod:`client`), the
connections (idle ones are taken from the endpoint's :class:`ConnectionPool`, new ones are
opened here and adopted by it, and both go back to it after a clean exchange) and the
reading of replies (:mod:`http1`, over a reply's bytes once they are all here). What is not
done here: redirects, clock corrections, proxies, replies without a declared length or longer
than asked. Any of those, a network failure or a timeout ends the exchange with
:class:`WireError`; its caller hands the work to the threaded path, which does them all.

An exchange is a task for :class:`s3longbow.stores.s3.tasks.Loop`: a generator that yields
what it waits for and returns its result.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from s3longbow.meter import RequestMeter
from s3longbow.ratelimit import PrefixRates
from s3longbow.retry import backoff_delay
from s3longbow.stores.s3 import http1
from s3longbow.stores.s3.connection import _Connection, _Request, request_head
from s3longbow.stores.s3.pool import ConnectionPool
from s3longbow.stores.s3.stream import Pace, ReplyError, Stream, TooSlow
from s3longbow.stores.s3.tasks import READ, WRITE, Step

_T = TypeVar("_T")


# Bytes asked of a socket at once.
_RECV = 256 * 1024

# An error reply's body is read up to this size.
_ERROR_MOST = 64 * 1024

# A request body this small is sent in the same write as the head.
_JOINED = 64 * 1024

# Replies that ask a client to slow down.
_SLOW_DOWN = frozenset({429, 503})
# Seconds of the first backoff before a request asked to slow down is sent again (full
# jitter, doubling with each try).
_SLOWED_BACKOFF = 0.25
# Seconds between two looks for a connection being opened ahead (a task waiting for one sleeps
# meanwhile: the pool's threads that open them cannot wake the loop's tasks one by one).
_OPENING_POLL = 0.01


class WireError(Exception):
    """An exchange that did not complete here; the threaded path can do it."""


class TooSlowError(WireError):
    """The exchange's bytes moved below the minimum rate for a whole window (--min-rate):
    it took as long as the threaded path's would have before failing."""


@dataclass(frozen=True)
class Direct:
    """What one endpoint's exchanges need: its connections, and where replies are metered."""

    pool: ConnectionPool
    endpoint: str
    meter: RequestMeter | None
    rates: PrefixRates | None = None
    min_rate: float = 0  # bytes a second an exchange keeps up once they flow (0: none)
    min_rate_window: float = 30.0


@dataclass(frozen=True)
class Answer:
    """A reply read whole: its status, its headers and its body."""

    status: int
    headers: http1.ReplyHeaders
    body: bytes

    def getheader(self, name: str, default: str | None = None) -> str | None:
        values = self.headers.get_all(name)
        return ", ".join(values) if values else default

    def lowered(self) -> dict[str, str]:
        """The headers by name in lower case (as the stores read an object's properties)."""
        return {name.lower(): value for name, value in self.headers.items()}


def exchange(
    direct: Direct,
    request: _Request,
    body: bytes,
    *,
    most: int,
    key: str,
    slowed_tries: int = 1,
) -> Step[Answer]:
    """Send `request` with `body` and read its reply whole (at most `most` body bytes), after
    waiting for `key`'s prefix's turn where the endpoint keeps rates. A reply that asks to
    slow down (503, 429) has cut the prefix's rate: the request is sent again, after the
    prefix's next slot and a short backoff, up to `slowed_tries` times in all (the last
    such reply is the answer).

    Raises:
        WireError: It could not be done here (see the module's docstring).
    """
    for attempt in range(max(1, slowed_tries)):
        answer = yield from _exchange(direct, request, body, most=most, key=key)
        if answer.status not in _SLOW_DOWN or attempt + 1 >= slowed_tries:
            return answer
        yield None, backoff_delay(attempt, base=_SLOWED_BACKOFF)
    raise AssertionError("unreachable")  # pragma: no cover


def _exchange(
    direct: Direct, request: _Request, body: bytes, *, most: int, key: str
) -> Step[Answer]:
    """One exchange (see :func:`exchange`).

    An idle connection of the pool is used when there is one, else a new one; a kept one
    the server had closed meanwhile (nothing was processed) is replaced once. Only for
    requests that may be sent twice (not a POST).

    Raises:
        WireError: It could not be done here (see the module's docstring).
    """
    try:
        head = request_head(request)
    except ValueError:
        raise WireError("a header cannot be sent as it is") from None
    # A small body goes in the head's write; a larger one after it, not copied.
    data = head + body if len(body) <= _JOINED else head
    write = request.method not in ("GET", "HEAD")
    if direct.rates is not None:
        delay = direct.rates.reserve(key, write=write)
        if delay > 0:
            if direct.meter is not None:
                direct.meter.paced()
            yield None, delay
    for attempt in (1, 2):
        connection = None
        if attempt == 1:
            connection = yield from _idle_or_opened(direct, request.netloc)
        reused = connection is not None
        if connection is None:
            connection = yield from _open(direct, request)
        sock = connection.sock
        assert sock is not None
        got_any: list[bool] = [False]
        pace = Pace(direct.min_rate, direct.min_rate_window)
        try:
            sock.setblocking(False)
            pace.start()
            yield from _send_all(sock, data, pace)
            if len(body) > _JOINED:
                yield from _send_all(sock, body, pace)
            sent = time.monotonic()
            pace.arm()  # the reply's bytes have their own pace, from its first
            answer, reusable = yield from _read_reply(sock, request.method, most, got_any, pace)
        except TooSlow as exc:
            direct.pool.drop(connection)
            raise TooSlowError(f"{type(exc).__name__}: {exc}") from None
        except (OSError, ReplyError) as exc:
            direct.pool.drop(connection)
            if reused and not got_any[0] and _stale(exc):
                continue  # the server closed it while idle: nothing was processed
            raise WireError(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            direct.pool.drop(connection)
            raise
        if direct.meter is not None:
            direct.meter.record(time.monotonic() - sent, direct.endpoint)
            if answer.status in _SLOW_DOWN:
                direct.meter.throttle()
        if direct.rates is not None and answer.status in _SLOW_DOWN:
            direct.rates.slow_down(key, write=write)
        connection.uses += 1
        sock.settimeout(direct.pool.read_timeout)
        direct.pool.give_back(connection, reusable)
        return answer
    raise WireError("the connection closed twice before a reply")  # pragma: no cover


def _stale(exc: BaseException) -> bool:
    """A kept connection the server had closed: the write or the first read fails."""
    return isinstance(
        exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError | _Ended
    ) or type(exc).__name__ in ("SSLEOFError", "SSLZeroReturnError")


class _Ended(ConnectionError):
    """The connection ended before a whole reply."""


def _take_idle(direct: Direct, netloc: str) -> _Connection | None:
    """An idle kept connection with nothing waiting to be read on it, or None."""
    while True:
        connection = direct.pool.take_idle(netloc)
        if connection is None or connection.idle():
            return connection
        direct.pool.drop(connection)


def _idle_or_opened(direct: Direct, netloc: str) -> Step[_Connection | None]:
    """An idle connection; else, while connections to the host are being opened ahead (more
    than other requests wait for), the first of them to be ready, looked for every
    _OPENING_POLL seconds: it is further along than a new one would be. None: open one."""
    connection = _take_idle(direct, netloc)
    pool = direct.pool
    if connection is not None or not pool.await_opening(netloc):
        return connection
    try:
        deadline = time.monotonic() + pool.connect_timeout
        while time.monotonic() < deadline:
            yield None, _OPENING_POLL
            connection = _take_idle(direct, netloc)
            if connection is not None or not pool.opening(netloc):
                return connection
    finally:
        pool.stop_awaiting(netloc)
    return None


class _Addresses:
    """Host names resolved once per run (a resolver call blocks: once per host is paid)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def of(self, host: str, port: int) -> tuple[Any, ...]:
        with self._lock:
            found = self._known.get((host, port))
        if found is None:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            with self._lock:
                self._known[(host, port)] = found
        return found


_addresses = _Addresses()


def _open(direct: Direct, request: _Request) -> Step[_Connection]:
    """A new connection to the request's host (TLS as the pool makes them, offering the
    host's session), adopted by the pool."""
    host, port, netloc = request.connect_host, request.port, request.netloc
    try:
        family, kind, proto, _, address = _addresses.of(host, port)
        raw = socket.socket(family, kind, proto)
    except OSError as exc:
        raise WireError(f"cannot connect to {netloc}: {exc}") from None
    sock: socket.socket = raw
    try:
        raw.setblocking(False)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = raw.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            raise OSError(code, os.strerror(code))
        if code:
            yield raw, WRITE
            code = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
        tls = direct.pool.tls if request.scheme == "https" else None
        if tls is not None:
            sock = tls.wrap_socket(
                raw,
                server_hostname=host,
                do_handshake_on_connect=False,
                session=direct.pool.session(netloc),
            )
            yield from _when_ready(sock, sock.do_handshake, READ)
    except OSError as exc:
        sock.close()
        raise WireError(f"cannot connect to {netloc}: {exc}") from None
    except BaseException:
        sock.close()
        raise
    return direct.pool.adopt(sock, netloc, tls=tls is not None)


def _wants(exc: OSError, blocked: int) -> int | None:
    """What a non-blocking call that raised `exc` waits for (None: a real error).
    `blocked`: what a plain socket's BlockingIOError means for this call."""
    name = type(exc).__name__
    if name == "SSLWantReadError":
        return READ
    if name == "SSLWantWriteError":
        return WRITE
    if isinstance(exc, BlockingIOError | InterruptedError):
        return blocked
    return None


def _when_ready(sock: socket.socket, call: Callable[[], _T], blocked: int) -> Step[_T]:
    """What `call` (a non-blocking call on `sock`) returns once it need not wait, waiting on
    `sock` meanwhile for what it asked (`blocked`: what a plain socket waits for)."""
    while True:
        try:
            return call()
        except OSError as exc:
            events = _wants(exc, blocked)
            if events is None:
                raise
            yield sock, events


def _send_all(sock: socket.socket, data: bytes, pace: Pace) -> Step[None]:
    view = memoryview(data)
    while view:
        sent = yield from _when_ready(sock, functools.partial(sock.send, view), WRITE)
        pace.moved(sent)
        view = view[sent:]


def _read_reply(
    sock: socket.socket, method: str, most: int, got_any: list[bool], pace: Pace
) -> Step[tuple[Answer, bool]]:
    """The reply, read until its declared length is here; and whether the connection can
    carry another request (no byte beyond it, and the server keeps it open)."""
    reading = _Reading(method, most)
    receive = functools.partial(sock.recv, _RECV)
    while True:
        chunk = yield from _when_ready(sock, receive, READ)
        if not chunk:
            if not got_any[0]:
                raise _Ended("the server closed the connection without a reply")
            return reading.end()
        got_any[0] = True
        pace.moved(len(chunk))
        whole = reading.add(chunk)
        if whole is not None:
            return whole


class _More(Exception):
    """The bytes so far are not the whole reply."""


# A reply's bytes are handed to its head's reader this many at a time: a head is found
# without the body behind it being copied and searched.
_PIECE = 8 * 1024


class _Bytes:
    """The bytes received so far, as the socket a :class:`Stream` reads (never blocks)."""

    __slots__ = ("_data", "taken", "_ended")

    def __init__(self, data: bytearray, ended: bool) -> None:
        self._data = data
        self.taken = 0  # bytes handed to the stream so far
        self._ended = ended

    def recv(self, n: int) -> bytes:
        if self.taken >= len(self._data):
            if self._ended:
                return b""
            raise _More
        piece = bytes(self._data[self.taken : self.taken + min(n, _PIECE)])
        self.taken += len(piece)
        return piece


class _Reading:
    """One reply read as its bytes arrive: its head read once it is all here (interim 1xx
    replies skipped), then its body gathered up to the length the head declares.

    Raises (from :meth:`add` and :meth:`end`):
        WireError: A reply that is not read here (no declared length, or too long).
        ReplyError: Not a valid HTTP/1.1 reply, or the connection ended inside it.
    """

    __slots__ = ("_method", "_most", "_buffer", "_reply", "_start", "_end")

    def __init__(self, method: str, most: int) -> None:
        self._method = method
        self._most = most
        self._buffer = bytearray()
        self._reply: http1.Reply | None = None  # the final reply's head, once read
        self._start = self._end = 0  # where its body begins and ends in the buffer

    def add(self, data: bytes) -> tuple[Answer, bool] | None:
        """Take bytes received: the reply, and whether its connection can be kept, once it
        is whole; None until then."""
        self._buffer += data
        return self._whole(ended=False)

    def end(self) -> tuple[Answer, bool]:
        """The connection ended: the reply, when it is whole (its connection is not kept)."""
        whole = self._whole(ended=True)
        if whole is None:  # pragma: no cover - an ended stream always decides
            raise _Ended("the connection ended inside the reply")
        return whole

    def _whole(self, ended: bool) -> tuple[Answer, bool] | None:
        buffer = self._buffer
        reply = self._reply
        if reply is None:
            reply = self._reply = self._head(ended)
            if reply is None:
                return None
        if len(buffer) < self._end:
            if ended:
                raise _Ended("the connection ended inside the reply's body")
            return None
        body = bytes(memoryview(buffer)[self._start : self._end])
        answer = Answer(reply.status, reply.headers, body)
        return answer, len(buffer) == self._end and not reply.will_close and not ended

    def _head(self, ended: bool) -> http1.Reply | None:
        """The final reply's head, when the buffer holds it all; where its body lies."""
        source = _Bytes(self._buffer, ended)
        stream = Stream(cast(socket.socket, source))
        reply = http1.Reply(stream, self._method)
        try:
            reply.begin()
        except _More:
            return None
        if reply.chunked or reply.length is None:
            raise WireError("a reply without a declared length")
        length = reply.length or 0
        most = self._most
        if not 200 <= reply.status < 300:
            most = max(most, _ERROR_MOST)  # an error's document, whatever was asked for
        if length > most:
            raise WireError(f"a reply body of {length} bytes, more than the {most} asked for")
        self._start = source.taken - stream.buffered()
        self._end = self._start + length
        return reply


__all__ = ["Answer", "Direct", "TooSlowError", "WireError", "exchange"]
