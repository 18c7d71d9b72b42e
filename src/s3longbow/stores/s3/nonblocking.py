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

A task is a generator that yields ``(socket, events)`` to wait for, and returns its result;
:class:`Loop` runs many of them.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from s3longbow.meter import RequestMeter
from s3longbow.ratelimit import PrefixRates
from s3longbow.stores.s3 import http1
from s3longbow.stores.s3.connection import _Connection, _Request, request_head
from s3longbow.stores.s3.pool import ConnectionPool
from s3longbow.stores.s3.stream import ReplyError, Stream

log = logging.getLogger(__name__)

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

_T = TypeVar("_T")

# What a task waits for: a socket and the events (READ, WRITE) that wake it, or no socket
# and the seconds it sleeps.
Wait = tuple[socket.socket, int] | tuple[None, float]
Step = Generator[Wait, None, _T]

# Bytes asked of a socket at once.
_RECV = 256 * 1024

# A request body this small is sent in the same write as the head.
_JOINED = 64 * 1024

# Replies that ask a client to slow down.
_SLOW_DOWN = frozenset({429, 503})


class WireError(Exception):
    """An exchange that did not complete here; the threaded path can do it."""


class _Closing(Exception):
    """The loop is closing: the task ends where it waits."""


@dataclass(frozen=True)
class Direct:
    """What one endpoint's exchanges need: its connections, and where replies are metered."""

    pool: ConnectionPool
    endpoint: str
    meter: RequestMeter | None
    rates: PrefixRates | None = None


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
    direct: Direct, request: _Request, body: bytes, *, most: int, key: str
) -> Step[Answer]:
    """Send `request` with `body` and read its reply whole (at most `most` body bytes), after
    waiting for `key`'s prefix's turn where the endpoint keeps rates.

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
        connection = _take_idle(direct, request.netloc) if attempt == 1 else None
        reused = connection is not None
        if connection is None:
            connection = yield from _open(direct, request)
        sock = connection.sock
        assert sock is not None
        got_any: list[bool] = [False]
        try:
            sock.setblocking(False)
            yield from _send_all(sock, data)
            if len(body) > _JOINED:
                yield from _send_all(sock, body)
            sent = time.monotonic()
            answer, reusable = yield from _read_reply(sock, request.method, most, got_any)
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
            while True:
                try:
                    sock.do_handshake()
                    break
                except OSError as exc:
                    events = _wants(exc, READ)
                    if events is None:
                        raise
                    yield sock, events
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


def _send_all(sock: socket.socket, data: bytes) -> Step[None]:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except OSError as exc:
            events = _wants(exc, WRITE)
            if events is None:
                raise
            yield sock, events
            continue
        view = view[sent:]


def _read_reply(
    sock: socket.socket, method: str, most: int, got_any: list[bool]
) -> Step[tuple[Answer, bool]]:
    """The reply, read until its declared length is here; and whether the connection can
    carry another request (no byte beyond it, and the server keeps it open)."""
    buffer = bytearray()
    needed = 0  # bytes known to be needed before the reply can be whole
    ended = False
    while True:
        if len(buffer) >= needed or ended:
            parsed = _parse(buffer, method, most, ended)
            if isinstance(parsed, int):
                needed = parsed
            else:
                return parsed
        if ended:
            raise _Ended("the connection ended inside the reply")
        try:
            chunk = sock.recv(_RECV)
        except OSError as exc:
            events = _wants(exc, READ)
            if events is None:
                raise
            yield sock, events
            continue
        if not chunk:
            if not buffer:
                raise _Ended("the server closed the connection without a reply")
            ended = True
            continue
        got_any[0] = True
        buffer += chunk


class _More(Exception):
    """The bytes so far are not the whole reply."""


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
        piece = bytes(self._data[self.taken : self.taken + n])
        self.taken += len(piece)
        return piece


def _parse(buffer: bytearray, method: str, most: int, ended: bool) -> tuple[Answer, bool] | int:
    """The reply in `buffer` and whether its connection can be kept, or how many bytes the
    buffer must hold before the reply can be whole (at least one more than now).

    Raises:
        WireError: A reply that is not read here (no declared length, or too long).
        ReplyError: Not a valid HTTP/1.1 reply.
    """
    source = _Bytes(buffer, ended)
    stream = Stream(cast(socket.socket, source))
    reply = http1.Reply(stream, method)
    try:
        reply.begin()
    except _More:
        return len(buffer) + 1
    if reply.chunked or reply.length is None:
        raise WireError("a reply without a declared length")
    length = reply.length or 0
    if length > most:
        raise WireError(f"a reply body of {length} bytes, more than the {most} asked for")
    start = source.taken - stream.buffered()  # where the body begins
    end = start + length
    if len(buffer) < end:
        if ended:
            raise _Ended("the connection ended inside the reply's body")
        return end
    answer = Answer(reply.status, reply.headers, bytes(memoryview(buffer)[start:end]))
    return answer, len(buffer) == end and not reply.will_close and not ended


@dataclass
class _Task:
    steps: Step[Any]
    done: Callable[[Any, BaseException | None], None]
    timeout: float
    deadline: float = 0.0
    waiting: socket.socket | None = None


class Loop:
    """Runs tasks on the thread that calls :meth:`run`, until :meth:`close`.

    Args:
        timeout: Seconds a task may wait on one socket before it fails (TimeoutError).
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, READ, None)
        self._inbox: collections.deque[_Task] = collections.deque()
        self._waiting: dict[int, _Task] = {}  # waiting on a socket, by id
        self._sleeping: dict[int, _Task] = {}  # waiting for their deadline, by id
        self._closing = threading.Event()

    def spawn(
        self, steps: Step[_T], done: Callable[[_T | None, BaseException | None], None]
    ) -> None:
        """Run `steps` on the loop; `done(result, None)` or `done(None, error)` is called on
        the loop's thread when it ends. Callable from any thread."""
        self._inbox.append(_Task(steps, done, self._timeout))
        self._wake()

    def close(self) -> None:
        """End the loop: every task still running ends with an error (callable from any
        thread); :meth:`run` returns once they have."""
        self._closing.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_out.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake, or closed

    def run(self) -> None:
        """Run tasks until closed."""
        try:
            while not self._closing.is_set():
                for key, _ in self._selector.select(self._next_deadline()):
                    if key.data is None:
                        self._drain_wake()
                        continue
                    task: _Task = key.data
                    self._selector.unregister(key.fileobj)
                    task.waiting = None
                    self._step(task)
                self._start_new()
                self._expire()
        finally:
            self._end_all()

    def _drain_wake(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _start_new(self) -> None:
        while self._inbox:
            self._step(self._inbox.popleft())

    def _next_deadline(self) -> float | None:
        if self._inbox:
            return 0
        if not self._waiting and not self._sleeping:
            return None
        tasks = (*self._waiting.values(), *self._sleeping.values())
        return max(0.0, min(t.deadline for t in tasks) - time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        for task in [t for t in self._sleeping.values() if t.deadline <= now]:
            del self._sleeping[id(task)]
            self._step(task)
        late = [t for t in self._waiting.values() if t.deadline <= now]
        for task in late:
            self._forget(task)
            self._step(task, TimeoutError(f"no reply byte for {task.timeout:.0f} s"))

    def _forget(self, task: _Task) -> None:
        self._waiting.pop(id(task), None)
        self._sleeping.pop(id(task), None)
        if task.waiting is not None:
            self._selector.unregister(task.waiting)
            task.waiting = None

    def _step(self, task: _Task, error: BaseException | None = None) -> None:
        self._waiting.pop(id(task), None)
        try:
            sock, events = task.steps.throw(error) if error else next(task.steps)
        except StopIteration as stop:
            self._finish(task, stop.value, None)
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the task's owner
            self._finish(task, None, exc)
            return
        try:
            if sock is not None:
                self._selector.register(sock, int(events), task)
        except (ValueError, KeyError, OSError) as exc:  # a closed socket, or one waited on
            task.steps.close()
            self._finish(task, None, exc)
            return
        if sock is None:  # a sleep: woken at its deadline, without an error
            task.deadline = time.monotonic() + events
            self._sleeping[id(task)] = task
            return
        task.waiting = sock
        task.deadline = time.monotonic() + task.timeout
        self._waiting[id(task)] = task

    def _finish(self, task: _Task, result: Any, error: BaseException | None) -> None:
        try:
            task.done(result, error)
        except Exception:  # a bug in a callback must not stop every other task
            log.exception("a task's completion failed")

    def _end_all(self) -> None:
        """Every task not finished ends with _Closing (its connections dropped)."""
        for task in [*self._waiting.values(), *self._sleeping.values()]:
            self._forget(task)
            self._step(task, _Closing("the run is shutting down"))
        while self._inbox:
            task = self._inbox.popleft()
            task.steps.close()
            self._finish(task, None, _Closing("the run is shutting down"))
        # A task that caught _Closing and waits again is ended for good.
        for task in [*self._waiting.values(), *self._sleeping.values()]:
            self._forget(task)
            task.steps.close()
            self._finish(task, None, _Closing("the run is shutting down"))
        self._selector.close()
        self._wake_in.close()
        self._wake_out.close()


__all__ = ["READ", "WRITE", "Answer", "Loop", "Step", "Direct", "WireError", "exchange"]
