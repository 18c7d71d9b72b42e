"""HTTP/1.1 on one socket, as the lean S3 client uses it: open a connection (TLS when asked)
and read a reply's status line, headers and body, framed by its declared length, by chunks,
or by the server closing the connection (RFC 9112).

The standard library's ``http.client`` does the same, but loads the ``email`` package (it
parses every header block with it) and ``ssl`` whether they are used or not: about 40 ms of
CPU at every start, a tenth of a short sync's. Unit tests hold :class:`Reply` to
``http.client``'s reading of the same bytes.
"""

from __future__ import annotations

import datetime
import io
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded only for https endpoints
    import ssl

# Longer lines, or more header lines, than any S3 reply has: the reply is refused.
MAX_LINE = 65536
MAX_HEADERS = 100


class ReplyError(Exception):
    """The bytes read are not the HTTP/1.1 reply expected."""


class LineTooLong(ReplyError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} longer than {MAX_LINE} bytes")


class BadStatusLine(ReplyError):
    pass


class UnknownProtocol(ReplyError):
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


def connect(
    host: str,
    port: int,
    *,
    connect_timeout: float,
    read_timeout: float,
    tls: ssl.SSLContext | None = None,
) -> socket.socket:
    """A connected socket (TLS with the host name checked when `tls` is given) whose sends
    and receives wait at most `read_timeout` seconds.

    Raises:
        OSError: Resolving, connecting or the TLS handshake failed (``ssl.SSLError`` and
            timeouts included).
    """
    sock = socket.create_connection((host, port), connect_timeout)
    try:
        # Requests are written in one piece: nothing gains from delaying a small segment.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        sock.settimeout(read_timeout)
    except BaseException:
        sock.close()
        raise
    return sock


class ReplyHeaders:
    """A reply's headers in the order received, looked up without regard to case."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[str, str, str]]) -> None:
        self._fields = fields  # (name as sent, name in lower case, value)

    def get(self, name: str, failobj: Any = None) -> Any:
        wanted = name.lower()
        for _, lower, value in self._fields:
            if lower == wanted:
                return value
        return failobj

    def get_all(self, name: str, failobj: Any = None) -> Any:
        wanted = name.lower()
        found = [value for _, lower, value in self._fields if lower == wanted]
        return found or failobj

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for name, _, value in self._fields]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None


class Reply:
    """One reply, read from the connection's buffered reader: :meth:`begin` reads the head,
    then the body is read with :meth:`read` / :meth:`readinto` as the reply frames it.

    Once the body has been read to its end (or the server closed the connection) the reply
    is closed (:meth:`isclosed`); the reader stays the connection's. ``will_close`` tells
    whether the connection can carry another request after this reply.
    """

    __slots__ = (
        "fp",
        "_method",
        "version",
        "status",
        "reason",
        "headers",
        "chunked",
        "chunk_left",
        "length",
        "will_close",
    )

    def __init__(self, reader: io.BufferedReader, method: str) -> None:
        self.fp: io.BufferedReader | None = reader
        self._method = method
        self.version = 11
        self.status = 0
        self.reason = ""
        self.headers = ReplyHeaders([])
        self.chunked = False
        self.chunk_left: int | None = None
        self.length: int | None = None  # body bytes still to come, when declared
        self.will_close = True

    def begin(self) -> None:
        """Read the status line and the headers (skipping ``100 Continue`` replies).

        Raises:
            RemoteDisconnected: The server closed the connection without a reply.
            ReplyError: The head is not HTTP/1.x, or a line is too long, or too many.
            OSError: Reading failed (timeouts included).
        """
        assert self.fp is not None
        while True:
            version, status, reason = _status_line(self.fp)
            if status != 100:
                break
            _header_lines(self.fp)  # an interim reply's headers, if any
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise UnknownProtocol(version)
        self.status = status
        self.reason = reason.strip()
        headers = self.headers = parse_headers(_header_lines(self.fp))
        self.chunked = (headers.get("transfer-encoding") or "").lower() == "chunked"
        self.will_close = self._closes()
        length = headers.get("content-length")
        self.length = None
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            if self.length is not None and self.length < 0:
                self.length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # the body ends when the server closes

    def _closes(self) -> bool:
        connection = (self.headers.get("connection") or "").lower()
        if self.version == 11:
            return "close" in connection
        # HTTP/1.0 closes unless it says it keeps the connection alive.
        kept = "keep-alive" in connection or self.headers.get("keep-alive")
        proxy = (self.headers.get("proxy-connection") or "").lower()
        return not (kept or "keep-alive" in proxy)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        values = self.headers.get_all(name)
        return ", ".join(values) if values else default

    def getheaders(self) -> list[tuple[str, str]]:
        return self.headers.items()

    def isclosed(self) -> bool:
        """Whether the body has been read to its end."""
        return self.fp is None

    def consumed(self) -> None:
        """The body was taken off the socket another way (relayed): the reply is read."""
        self.length = 0
        self.fp = None

    def read(self, amt: int | None = None) -> bytes:
        """The rest of the body, or at most `amt` bytes of it (fewer only at its end).

        Raises:
            IncompleteRead: Reading the rest, the connection ended before a declared length
                or a chunk did.
            OSError: Reading failed.
        """
        fp = self.fp
        if fp is None:
            return b""
        if self._method == "HEAD":  # no body, whatever the headers say
            self.fp = None
            return b""
        if self.chunked:
            return self._read_chunked(amt)
        if amt is None:
            if self.length is None:
                data = fp.read()
            else:
                data = self._exactly(fp, self.length)
                self.length = 0
            self.fp = None
            return data
        if self.length is not None:
            amt = min(amt, self.length)
        data = fp.read(amt)
        self._advance(len(data), amt)
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:
        """Read up to ``len(buffer)`` bytes of the body into it; how many (0 at its end)."""
        fp = self.fp
        if fp is None:
            return 0
        if self._method == "HEAD":
            self.fp = None
            return 0
        if self.chunked:
            data = self._read_chunked(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        view = memoryview(buffer)
        if self.length is not None and len(view) > self.length:
            view = view[: self.length]
        n = fp.readinto(view)
        self._advance(n, len(view))
        return n

    def _advance(self, got: int, asked: int) -> None:
        if not got and asked:
            self.fp = None  # the server closed the connection: the body ends here
        elif self.length is not None:
            self.length -= got
            if not self.length:
                self.fp = None

    def _read_chunked(self, amt: int | None) -> bytes:
        fp = self.fp
        assert fp is not None
        pieces = []
        while True:
            left = self._chunk_left(fp)
            if left is None:
                break
            if amt is not None and amt <= left:
                pieces.append(self._exactly(fp, amt))
                self.chunk_left = left - amt
                break
            pieces.append(self._exactly(fp, left))
            if amt is not None:
                amt -= left
            self.chunk_left = 0
        return b"".join(pieces)

    def _chunk_left(self, fp: io.BufferedReader) -> int | None:
        """Bytes left in the current chunk, reading the next chunk's size when it is done;
        None after the last chunk (and the trailer) was read."""
        left = self.chunk_left
        if left:
            return left
        if left is not None:
            self._exactly(fp, 2)  # the line break that ends a chunk's data
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise LineTooLong("chunk size line")
        try:
            size = int(line.split(b";", 1)[0], 16)  # extensions after ";" are ignored
        except ValueError:
            self.fp = None
            raise IncompleteRead(b"") from None
        if size == 0:
            _trailer(fp)
            self.fp = None
            self.chunk_left = None
            return None
        self.chunk_left = size
        return size

    def _exactly(self, fp: io.BufferedReader, n: int) -> bytes:
        data = fp.read(n)
        if len(data) < n:
            self.fp = None
            raise IncompleteRead(data, n - len(data))
        return data


def _status_line(fp: io.BufferedReader) -> tuple[str, int, str]:
    line = fp.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise LineTooLong("status line")
    if not line:
        raise RemoteDisconnected("the server closed the connection without a reply")
    text = line.decode("iso-8859-1")
    fields = text.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/"):
        raise BadStatusLine(repr(text))
    try:
        status = int(fields[1])
    except ValueError:
        raise BadStatusLine(repr(text)) from None
    if not 100 <= status <= 999:
        raise BadStatusLine(repr(text))
    return fields[0], status, fields[2] if len(fields) > 2 else ""


def _header_lines(fp: io.BufferedReader) -> list[bytes]:
    """The header lines up to the blank line that ends them (bounded in length and count)."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return lines
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise ReplyError(f"more than {MAX_HEADERS} header lines")


def _trailer(fp: io.BufferedReader) -> None:
    """Skip the trailer fields after the last chunk, up to the blank line (or the end)."""
    for _ in range(MAX_HEADERS + 1):
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise LineTooLong("trailer line")
        if line in (b"\r\n", b"\n", b""):
            return
    raise ReplyError(f"more than {MAX_HEADERS} trailer lines")


def parse_headers(lines: list[bytes]) -> ReplyHeaders:
    """Header lines as :class:`ReplyHeaders` (a folded continuation line joins the one
    before it)."""
    fields: list[tuple[str, str, str]] = []
    name = value = ""
    for raw in lines:
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        if line[:1] in (" ", "\t") and name:
            value = f"{value} {line.strip()}"  # an obsolete folded continuation line
            continue
        if name:
            fields.append((name, name.lower(), value))
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
    if name:
        fields.append((name, name.lower(), value))
    return ReplyHeaders(fields)


_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def http_date(text: str) -> float:
    """Seconds since the epoch of an HTTP date such as ``Sun, 06 Nov 1994 08:49:37 GMT``
    (the form servers send, RFC 9110); the obsolete forms are read by the ``email`` package.

    Raises:
        ValueError, TypeError: `text` is not a date.
    """
    fields = text.split()
    if len(fields) == 6 and fields[5] == "GMT" and fields[2] in _MONTHS:
        clock = fields[4].split(":")
        if len(clock) == 3 and fields[1].isdigit() and fields[3].isdigit():
            day, month, year = int(fields[1]), _MONTHS[fields[2]], int(fields[3])
            hour, minute, second = (int(n) for n in clock)
            moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
            return moment.timestamp()
    import email.utils  # rarely needed; its import costs ~25 ms

    return email.utils.parsedate_to_datetime(text).timestamp()
