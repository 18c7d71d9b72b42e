"""The lean client's connections to one endpoint: kept alive, shared by every thread, and
opened ahead of need on a long path.

A request takes the idle connection to its host used most recently (the others may age out),
or a new one; it gives the connection back when the exchange left it reusable, or drops it.
So a run holds about as many connections as it has requests in flight to the endpoint, not
one per thread: each TLS handshake costs a millisecond or two of CPU on both sides, and a
round trip or two.

On a long path (the first connection to a host took LONG_PATH or more to open: connect and
TLS handshake are two round trips) the connections a run starts with are opened at once, in
the background, while the stores are checked and listed; requests that come while they open
wait for them rather than opening more.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING

from s3longbow.stores.s3 import dial
from s3longbow.stores.s3.connection import _Connection

if TYPE_CHECKING:  # loaded only for https endpoints
    import ssl

log = logging.getLogger(__name__)

# A first connection that took this long to open shows a long path, where connections opened
# ahead of need pay.
LONG_PATH = 0.025


class ConnectionPool:
    """Connections to the hosts of one endpoint. Safe to share between threads.

    Args:
        max_connections: How many are kept open in all; a connection taken beyond that is
            closed after its request (as botocore's pool does).
        connect_timeout: Seconds allowed to open a connection (and finish a TLS handshake);
            also the longest a request waits for a connection being opened ahead.
        read_timeout: Seconds a send or receive may wait on the socket.
        tls: The context https connections are made with (None: plain http only).
        proxy: The HTTP proxy to go through, or None.
        open_ahead: How many connections to a host are opened at once when its first one
            took LONG_PATH or longer to open (0: never).
    """

    def __init__(
        self,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None,
        proxy: dial.Proxy | None,
        open_ahead: int = 0,
    ) -> None:
        self._max = max(1, max_connections)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls = tls
        self._proxy = proxy
        self._ahead = max(0, open_ahead)
        # Per host: the TLS session of a recent connection, which new ones offer to resume.
        self._sessions: dict[str, ssl.SSLSession] = {}
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        # Per host: kept connections that no request holds, the most recently used last.
        self._idle: dict[str, list[_Connection]] = {}
        # Per host: connections being opened ahead, and requests waiting for one of them;
        # notified as a connection becomes idle or an opening fails.
        self._opening: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        self._returned = threading.Condition(self._lock)
        self._timed: set[str] = set()  # hosts whose first connection has been timed
        self.opened = 0  # connections opened so far (a measure of reuse)

    def take(self, netloc: str, *, fresh: bool = False) -> _Connection:
        """An idle connection to the host, the one used most recently, or a new one (not yet
        open: see :meth:`connect`). The caller holds it until it gives it back or drops it.
        `fresh`: a new one.

        While connections are being opened ahead to the host, more of them than requests
        waiting, the request waits for one (up to the connect timeout) rather than open
        another: it is further along than a new one would be."""
        with self._lock:
            deadline: float | None = None
            while not fresh:
                found = self._pop_idle(netloc)
                if found is not None:
                    return found
                if not self._unclaimed_opening(netloc):
                    break
                if deadline is None:
                    deadline = time.monotonic() + self._connect_timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._waiting[netloc] = self._waiting.get(netloc, 0) + 1
                try:
                    self._returned.wait(remaining)
                finally:
                    self._waiting[netloc] -= 1
            connection = _Connection(kept=len(self._open) < self._max)
            self._open.add(connection)
            return connection

    def take_idle(self, netloc: str) -> _Connection | None:
        """An idle connection to the host, the one used most recently, or None; never waits
        (for a caller that must not block: see :mod:`nonblocking`)."""
        with self._lock:
            return self._pop_idle(netloc)

    def await_opening(self, netloc: str) -> bool:
        """Count the caller among those waiting for a connection being opened ahead to the
        host, if more are being opened than are waited for (True: counted; call
        :meth:`stop_awaiting` once done). For a caller that cannot block in :meth:`take`:
        it looks for an idle connection itself meanwhile."""
        with self._lock:
            if not self._unclaimed_opening(netloc):
                return False
            self._waiting[netloc] = self._waiting.get(netloc, 0) + 1
            return True

    def _pop_idle(self, netloc: str) -> _Connection | None:
        """The host's most recently used idle connection not closed meanwhile (lock held)."""
        idle = self._idle.get(netloc)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    def _unclaimed_opening(self, netloc: str) -> bool:
        """More connections are being opened ahead to the host than requests wait for (lock
        held): one more request may wait for one."""
        return self._opening.get(netloc, 0) > self._waiting.get(netloc, 0)

    def stop_awaiting(self, netloc: str) -> None:
        with self._lock:
            self._waiting[netloc] -= 1

    def opening(self, netloc: str) -> int:
        """Connections being opened ahead to the host now."""
        with self._lock:
            return self._opening.get(netloc, 0)

    @property
    def connect_timeout(self) -> float:
        """Seconds a new connection may take to open."""
        return self._connect_timeout

    @property
    def tls(self) -> ssl.SSLContext | None:
        """The context https connections are made with."""
        return self._tls

    @property
    def read_timeout(self) -> float:
        """Seconds a send or receive may wait on a connection's socket."""
        return self._read_timeout

    def session(self, netloc: str) -> ssl.SSLSession | None:
        """The TLS session new connections to the host offer to resume, if one is known."""
        return self._sessions.get(netloc)

    def adopt(self, sock: socket.socket, netloc: str, *, tls: bool) -> _Connection:
        """A connection opened elsewhere (its TLS handshake done), held by the caller as if
        taken new; give it back or drop it as any other."""
        connection = _Connection(kept=True)
        connection.attach(sock, tls=tls)
        connection.netloc = netloc
        with self._lock:
            connection.kept = len(self._open) < self._max
            self._open.add(connection)
            self.opened += 1
        return connection

    def connect(self, connection: _Connection, scheme: str, host: str, port: int) -> None:
        """Open a connection taken new (and finish its TLS handshake, offering the host's
        session). The first one to a host is timed: on a long path, more are opened ahead.

        Raises:
            OSError, dial.ProxyError: As dial.connect.
        """
        netloc = f"{host}:{port}"
        tls = self._tls if scheme == "https" else None
        started = time.monotonic()
        connection.open(
            host,
            port,
            self._connect_timeout,
            self._read_timeout,
            tls,
            self._proxy,
            self._sessions.get(netloc) if tls is not None else None,
        )
        took = time.monotonic() - started
        connection.netloc = netloc
        with self._lock:
            self.opened += 1
            first = netloc not in self._timed
            self._timed.add(netloc)
        if first and self._ahead > 1 and took >= LONG_PATH:
            log.debug("%s: %.0f ms to connect; opening %d ahead", netloc, took * 1000, self._ahead)
            threading.Thread(
                target=self.open_ahead,
                args=(scheme, host, port, self._ahead),
                name="connect-ahead",
                daemon=True,
            ).start()

    def open_ahead(self, scheme: str, host: str, port: int, count: int) -> None:
        """Open connections to the host, at once, until `count` are open (or opening) there,
        and leave them idle for the requests to come: a request that finds one skips the
        connect and the TLS handshake. Never beyond the connections kept. One that fails is
        only logged (a request opens its own). Blocks until they are open."""
        netloc = f"{host}:{port}"
        with self._lock:
            present = sum(1 for c in self._open if c.netloc in (netloc, ""))
            wanted = max(0, min(count - present, self._max - len(self._open)))
            fresh = [_Connection(kept=True) for _ in range(wanted)]
            self._open.update(fresh)
            self._opening[netloc] = self._opening.get(netloc, 0) + wanted

        def open_one(connection: _Connection) -> None:
            try:
                self.connect(connection, scheme, host, port)
            except (OSError, dial.ProxyError) as exc:
                log.debug("%s: a connection opened ahead failed: %s", netloc, exc)
                connection.close()
            with self._lock:
                self._opening[netloc] -= 1
                if connection.closed:
                    self._open.discard(connection)
                    if connection.sock is not None:  # the pool was closed while it opened
                        connection.sock.close()
                elif connection in self._open:  # not closed by close() meanwhile
                    self._idle.setdefault(netloc, []).append(connection)
                self._returned.notify()

        threads = [
            threading.Thread(target=open_one, args=(c,), name="connect", daemon=True) for c in fresh
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def give_back(self, connection: _Connection, reusable: bool) -> None:
        """The exchange on a held connection is over: keep it idle for the next request if
        it is `reusable` (and kept), else close it."""
        if connection.tls and connection.uses == 1 and not connection.resumed():
            # A new connection's session, offered by the next ones to this host: a resumed
            # handshake skips the certificate's checks (and, before TLS 1.3, a round trip).
            # Read only from a connection that did not resume one (the first, or one the
            # server would not resume): reading a session costs a copy of it.
            session = connection.tls_session()
            if session is not None:
                self._sessions[connection.netloc] = session
        if not (reusable and connection.kept):
            self.drop(connection)
            return
        with self._lock:
            if connection in self._open:  # not closed by close() while it was held
                self._idle.setdefault(connection.netloc, []).append(connection)
                if self._waiting.get(connection.netloc):
                    self._returned.notify()

    def drop(self, connection: _Connection) -> None:
        """Close a held connection: it carries no more requests."""
        connection.close()
        with self._lock:
            self._open.discard(connection)

    def close(self) -> None:
        """Close every connection, held or idle; later requests open new ones."""
        with self._lock:
            connections = list(self._open)
            self._open.clear()
            self._idle.clear()
        for connection in connections:
            connection.close()

    def __len__(self) -> int:
        """Connections open (held, idle or opening)."""
        with self._lock:
            return len(self._open)


__all__ = ["LONG_PATH", "ConnectionPool"]
