"""Reading one socket through a buffer, every byte counted against the exchange's pace.

A :class:`Stream` serves the replies of one connection: heads and chunk sizes are read
through a small buffer, a body read into a caller's buffer goes straight from the socket.
:class:`Pace` is the deadline of one exchange: once bytes flow, a minimum rate averaged over
a window, so a server that trickles cannot hold a worker forever. The errors of reading
HTTP/1.1 are here too: what the stream reads may already prove a reply malformed.
"""

from __future__ import annotations

import select
import socket
import time

# The most a reply's head (status line and header fields), or a trailer, may be: S3 allows
# 2 KiB of user metadata, but an object may carry many small entries.
MAX_HEAD = 64 * 1024

# Bytes asked of the socket at once when filling the buffer for a head or a chunk size: a
# head's bytes and few of the body's, which may yet be relayed socket to socket instead.
_FILL = 8 * 1024

# Bytes asked of the socket at once for a body read into memory.
_RECV = 64 * 1024


class ReplyError(Exception):
    """The bytes read are not the HTTP/1.1 reply expected."""


class HeadTooLarge(ReplyError):
    pass


class BadStatusLine(ReplyError):
    pass


class UnknownProtocol(ReplyError):
    pass


class BadFraming(ReplyError):
    """Where the body ends cannot be told for certain (conflicting or malformed lengths,
    chunk sizes or transfer codings): nothing of it, nor anything after it, can be trusted."""


class BodyTooLarge(ReplyError):
    pass


class IncompleteRead(ReplyError):
    """The connection ended before the body did."""

    def __init__(self, partial: bytes, missing: int | None = None) -> None:
        self.partial = partial
        more = f", {missing} more expected" if missing is not None else ""
        super().__init__(f"{len(partial)} bytes read{more}")


class RemoteDisconnected(ConnectionResetError):
    """The server closed the connection without a reply: on a kept-alive connection, the
    sign that the server had closed it while it was idle."""


class TooSlow(TimeoutError):
    """Bytes moved slower than the minimum rate, on average over a whole window."""


class Pace:
    """The deadline of one exchange: once bytes flow, at least `min_rate` bytes a second must
    move, on average over each `window` seconds (0: no minimum).

    :meth:`start` begins a window at once (a request's body, whose sending starts now);
    :meth:`arm` begins one at the next byte that moves (a reply, whose first byte may take as
    long as the server needs: the socket's timeout bounds that wait).
    """

    __slots__ = ("min_rate", "window", "_start", "_bytes")

    def __init__(self, min_rate: float = 0, window: float = 30.0) -> None:
        self.min_rate = min_rate
        self.window = window
        self._start: float | None = None
        self._bytes = 0

    def start(self) -> None:
        self._start = time.monotonic()
        self._bytes = 0

    def arm(self) -> None:
        self._start = None

    def moved(self, n: int) -> None:
        """Count `n` bytes moved.

        Raises:
            TooSlow: A whole window passed at less than the minimum rate.
        """
        if not self.min_rate:
            return
        now = time.monotonic()
        if self._start is None:
            self._start, self._bytes = now, n
            return
        self._bytes += n
        elapsed = now - self._start
        if elapsed >= self.window:
            rate = self._bytes / elapsed
            if rate < self.min_rate:
                raise TooSlow(
                    f"{rate:.0f} bytes/s over the last {elapsed:.0f} s, below the minimum of "
                    f"{self.min_rate:.0f} bytes/s (--min-rate)"
                )
            self._start, self._bytes = now, 0


class Stream:
    """Buffered reads from one socket, each counted against the exchange's :class:`Pace`.

    Small reads (heads, chunk sizes) go through a buffer; a body read into a caller's buffer
    goes straight from the socket when nothing is buffered.
    """

    __slots__ = ("sock", "pace", "_buf", "_drained")

    def __init__(self, sock: socket.socket, pace: Pace | None = None) -> None:
        self.sock = sock
        self.pace = pace or Pace()
        self._buf = bytearray()
        # The last read got fewer bytes than it asked for: a TLS read returns one record at
        # most, so that record was read to its end and TLS holds no decrypted byte unread.
        self._drained = True

    def buffered(self) -> int:
        return len(self._buf)

    def idle(self) -> bool:
        """Whether nothing waits to be read: no buffered byte, and the socket has nothing
        (no bytes, no end of stream, no reset, no TLS close alert). It does not wait.

        On TLS a socket may be readable for records that carry no data (a TLS 1.3 server
        sends session tickets after the handshake): what is there is read without waiting,
        and only data or the end of the stream make the connection busy.
        """
        if self._buf:
            return False
        sock = self.sock
        pending = getattr(sock, "pending", None)
        # Asked only where a record may have bytes left: the call hands the interpreter lock
        # to another thread and back, about as costly as the rest of the check.
        if pending is not None and not self._drained and pending():
            return False
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return True
        if pending is None:
            return False  # plain TCP: bytes, the end of the stream or a reset
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            data = sock.recv(_RECV)
        except OSError as exc:
            return isinstance(exc, BlockingIOError) or type(exc).__name__ == "SSLWantReadError"
        finally:
            sock.settimeout(timeout)
        self._buf += data
        return False

    def _fill(self) -> bool:
        data = self.sock.recv(_FILL)
        self._drained = len(data) < _FILL
        if not data:
            return False
        self.pace.moved(len(data))
        self._buf += data
        return True

    def head(self) -> bytes | None:
        """The bytes up to the blank line that ends a head; None if the connection ended
        before a single byte.

        Raises:
            HeadTooLarge: No blank line within MAX_HEAD bytes.
            IncompleteRead: The connection ended inside the head.
        """
        searched = 0
        while True:
            end = _blank_line(self._buf, searched)
            if end >= 0:
                if end > MAX_HEAD + 4:
                    raise HeadTooLarge(f"a reply head larger than {MAX_HEAD} bytes")
                head = bytes(self._buf[:end])
                del self._buf[:end]
                return head
            if len(self._buf) > MAX_HEAD + 4:
                raise HeadTooLarge(f"a reply head larger than {MAX_HEAD} bytes")
            searched = max(0, len(self._buf) - 2)
            if not self._fill():
                if not self._buf:
                    return None
                raise IncompleteRead(bytes(self._buf))

    def line(self, limit: int) -> bytes:
        """One line, its line break included (empty at the end of the stream).

        Raises:
            BadFraming: No line break within `limit` bytes.
        """
        searched = 0
        while True:
            end = self._buf.find(b"\n", searched)
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > limit:
                raise BadFraming(f"a line longer than {limit} bytes")
            searched = len(self._buf)
            if not self._fill():
                line = bytes(self._buf)
                self._buf.clear()
                return line

    def read(self, n: int) -> bytes:
        """At most `n` bytes (fewer only when fewer are available or the stream ended)."""
        if self._buf:
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data
        asked = min(n, _RECV)
        data = self.sock.recv(asked)
        self._drained = len(data) < asked
        self.pace.moved(len(data))
        return data

    def readinto(self, view: memoryview) -> int:
        """Fill the start of `view`; how many bytes (0 at the end of the stream)."""
        if self._buf:
            n = min(len(view), len(self._buf))
            view[:n] = self._buf[:n]
            del self._buf[:n]
            return n
        n = self.sock.recv_into(view)
        self._drained = n < len(view)
        self.pace.moved(n)
        return n

    def take_buffered(self, most: int) -> bytes:
        """The bytes already buffered (at most `most`), without reading the socket."""
        data = bytes(self._buf[:most])
        del self._buf[:most]
        return data


def _blank_line(buf: bytearray, start: int) -> int:
    """Where the bytes after the first blank line begin (CRLF or bare LF endings), or -1."""
    crlf = buf.find(b"\n\r\n", start)
    lf = buf.find(b"\n\n", start)
    if crlf < 0:
        return -1 if lf < 0 else lf + 2
    if lf < 0 or crlf < lf:
        return crlf + 3
    return lf + 2
