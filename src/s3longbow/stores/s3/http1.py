"""HTTP/1.1 on one socket, as the lean S3 client uses it (RFC 9112): open a connection (TLS
when asked, through an HTTP proxy's tunnel when one is configured), read a reply's head and
its body, framed by its declared length, by chunks, or by the server closing the connection.

The framing rules are strict where a lenient reading would let one reply's bytes be taken for
another's: every interim (1xx) reply is skipped; a length must be plain ASCII digits and every
length given must agree; ``Transfer-Encoding: chunked`` wins over a length (and the
connection is not used again); chunk sizes are hexadecimal digits only; heads and trailers are
bounded (64 KiB and 1,000 lines: S3 allows more metadata than 100 lines). A connection is
only used for another request while nothing is waiting on it (:meth:`Stream.idle`), so bytes
that no request asked for are never read as the next reply.

Why our own reader rather than ``http.client`` or h11: ``http.client`` loads the ``email``
package (~40 ms of CPU at every start) and leaves framing questions to a lenient parser; h11
parses by the RFC but cost ~66 us of CPU per 64 KiB reply against ~23 us here (measured on the
benchmark machine), hands bodies over as copies, and cannot be told that a body went socket to
socket by ``splice(2)``. Owning the buffer also gives each exchange a deadline: bytes must keep
moving at a minimum rate (:class:`Pace`), so a server that sends one byte a second cannot hold
a worker forever. ``tests/unit/test_http1.py`` is the conformance suite.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, NoReturn

from s3longbow.stores.s3.stream import (
    MAX_HEAD,
    BadFraming,
    BadStatusLine,
    BodyTooLarge,
    HeadTooLarge,
    IncompleteRead,
    RemoteDisconnected,
    ReplyError,
    Stream,
    UnknownProtocol,
)

MAX_FIELDS = 1000

# Interim replies (102 Processing, 103 Early Hints, ...) read before the final one, at most.
MAX_INTERIM = 32

# A chunk-size line, extensions included.
MAX_CHUNK_LINE = 4096

# Bytes asked of the socket at once for a body read into memory.
_RECV = 64 * 1024

_STATUS_LINE = re.compile(rb"(HTTP/1\.[0-9]) ([0-9]{3})(?: (.*))?")

_DIGITS = re.compile(r"[0-9]+")

_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")

# A field name is a token (RFC 9110 5.6.2).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class ReplyHeaders:
    """A reply's headers in the order received, looked up without regard to case.

    Values are decoded as UTF-8, and bytes that are not UTF-8 are kept as surrogate escapes,
    so a value goes back on the wire byte for byte (:func:`encode_value`).
    """

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


def encode_value(value: str) -> bytes:
    """A header value's bytes on the wire: its UTF-8 bytes, surrogate escapes (bytes read
    from a reply that were not UTF-8) back to the bytes they stand for."""
    return value.encode("utf-8", "surrogateescape")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape")


class Reply:
    """One reply, read from its connection's :class:`Stream`: :meth:`begin` reads the head,
    then the body is read with :meth:`read` / :meth:`readinto` as the reply frames it.

    Once the body has been read to its end (or the server closed the connection) the reply
    is closed (:meth:`isclosed`). ``will_close`` tells whether the connection can carry
    another request after this reply.
    """

    __slots__ = (
        "stream",
        "_method",
        "version",
        "status",
        "reason",
        "headers",
        "chunked",
        "chunk_left",
        "length",
        "will_close",
        "_open",
    )

    def __init__(self, stream: Stream, method: str) -> None:
        self.stream = stream
        self._method = method
        self.version = 11
        self.status = 0
        self.reason = ""
        self.headers = ReplyHeaders([])
        self.chunked = False
        self.chunk_left: int | None = None
        self.length: int | None = None  # body bytes still to come, when declared
        self.will_close = True
        self._open = True  # the body is not yet read to its end

    def begin(self) -> None:
        """Read the head of the final reply (every interim 1xx reply before it is skipped).

        Raises:
            RemoteDisconnected: The server closed the connection without a reply.
            ReplyError: The head is not HTTP/1.x, is too large, or frames its body in a way
                that cannot be trusted.
            OSError: Reading failed (timeouts included).
        """
        for _ in range(MAX_INTERIM + 1):
            self.stream.pace.arm()  # the reply's bytes have their own pace, from its first
            head = self.stream.head()
            if head is None:
                raise RemoteDisconnected("the server closed the connection without a reply")
            version, status, reason, fields = _parse_head(head)
            if status == 101:
                raise ReplyError("101 Switching Protocols was not asked for")
            if status >= 200:
                break
        else:
            raise ReplyError(f"more than {MAX_INTERIM} interim replies")
        self.version = 10 if version == "HTTP/1.0" else 11
        self.status = status
        self.reason = reason
        self.headers = ReplyHeaders(fields)
        self.will_close = self._closes()
        self._frame()

    def _frame(self) -> None:
        """Decide how the body ends (RFC 9112 section 6.3)."""
        headers = self.headers
        codings = [
            coding.strip().lower()
            for value in headers.get_all("transfer-encoding", [])
            for coding in value.split(",")
            if coding.strip()
        ]
        lengths = [
            item.strip()
            for value in headers.get_all("content-length", [])
            for item in value.split(",")
        ]
        if self._method == "HEAD" or self.status in (204, 304):
            self.length = 0
            self._open = False
            return
        if codings:
            if self.version == 10:
                raise BadFraming("Transfer-Encoding in an HTTP/1.0 reply")
            if codings != ["chunked"]:
                raise BadFraming(f"unsupported transfer coding {', '.join(codings)!r}")
            self.chunked = True
            if lengths:
                self.will_close = True  # framed twice: do not trust this connection further
            return
        if lengths:
            if any(not _DIGITS.fullmatch(item) or len(item) > 19 for item in lengths):
                raise BadFraming(f"Content-Length {', '.join(lengths)!r} is not a number")
            values = {int(item) for item in lengths}
            if len(values) > 1:
                raise BadFraming(f"conflicting Content-Length values {', '.join(lengths)!r}")
            self.length = values.pop()
            if not self.length:
                self._open = False
            return
        self.will_close = True  # the body ends when the server closes the connection

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
        return not self._open

    def consumed(self) -> None:
        """The body was taken off the socket another way (relayed): the reply is read."""
        self.length = 0
        self._open = False

    def read(self, amt: int | None = None, *, limit: int | None = None) -> bytes:
        """At most `amt` bytes of the body (fewer only at its end), or with no `amt` the
        rest of it, which must not exceed `limit` bytes when given.

        Raises:
            IncompleteRead: The connection ended before a declared length or a chunk did.
            BodyTooLarge: The rest of the body is larger than `limit`.
            BadFraming: A chunk is malformed.
            OSError: Reading failed.
        """
        if not self._open:
            return b""
        if amt is None:
            if self.length is not None:
                if limit is not None and self.length > limit:
                    raise BodyTooLarge(f"a body of {self.length} bytes, more than {limit}")
                return self._exactly(self.length)
            pieces: list[bytes] = []
            size = 0
            while True:
                piece = self.read(_RECV)
                if not piece:
                    return b"".join(pieces)
                size += len(piece)
                if limit is not None and size > limit:
                    self.will_close = True
                    raise BodyTooLarge(f"a body of more than {limit} bytes")
                pieces.append(piece)
        if self.chunked:
            return self._read_chunked(amt)
        if self.length is not None:
            amt = min(amt, self.length)
        pieces = []
        while amt > 0 and self._open:
            piece = self.stream.read(amt)
            self._advance(len(piece), amt)
            pieces.append(piece)
            amt -= len(piece)
        return b"".join(pieces)

    def read_buffer(self, n: int) -> bytearray:
        """Exactly `n` bytes of the body, read into one buffer (no pieces joined into a second
        copy: an object read whole takes its size of memory once).

        Raises:
            IncompleteRead: The body ended before `n` bytes.
            OSError: Reading failed.
        """
        buffer = bytearray(n)
        view = memoryview(buffer)
        got = 0
        while got < n:
            read = self.readinto(view[got:])
            if not read:
                self._broken(IncompleteRead(bytes(view[:got]), n - got))
            got += read
        return buffer

    def readinto(self, buffer: memoryview | bytearray) -> int:
        """Read up to ``len(buffer)`` bytes of the body into it; how many (0 at its end)."""
        if not self._open:
            return 0
        view = memoryview(buffer)
        if self.chunked:
            left = self._chunk_left()
            if left is None:
                return 0
            view = view[: min(left, len(view))]
            n = self.stream.readinto(view)
            if not n and len(view):
                self._broken(IncompleteRead(b"", left))
            self.chunk_left = left - n
            return n
        if self.length is not None and len(view) > self.length:
            view = view[: self.length]
        n = self.stream.readinto(view) if len(view) else 0
        self._advance(n, len(view))
        return n

    def _advance(self, got: int, asked: int) -> None:
        if self.length is not None:
            if not got and asked:
                self._broken(IncompleteRead(b"", self.length))
            self.length -= got
            if not self.length:
                self._open = False
        elif not got and asked:
            self._open = False  # the server closed the connection: the body ends here

    def _read_chunked(self, amt: int) -> bytes:
        pieces: list[bytes] = []
        while amt > 0:
            left = self._chunk_left()
            if left is None:
                break
            piece = self.stream.read(min(amt, left))
            if not piece:
                self._broken(IncompleteRead(b"".join(pieces), left))
            pieces.append(piece)
            self.chunk_left = left - len(piece)
            amt -= len(piece)
        return b"".join(pieces)

    def _chunk_left(self) -> int | None:
        """Bytes left in the current chunk, reading the next chunk's size when it is done;
        None after the last chunk (and the trailer) was read."""
        left = self.chunk_left
        if left:
            return left
        stream = self.stream
        if left is not None:
            end = stream.line(2)  # the line break that ends a chunk's data
            if end not in (b"\r\n", b"\n"):
                self._broken(BadFraming("a chunk's data does not end where its size said"))
        line = stream.line(MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            self._broken(IncompleteRead(b"") if not line else BadFraming("a chunk size cut off"))
        match = _CHUNK_SIZE.fullmatch(line.rstrip(b"\r\n"))
        if match is None:
            self._broken(BadFraming(f"chunk size {line[:40]!r} is not hexadecimal digits"))
        size = int(match.group(1), 16)
        if size == 0:
            self._skip_trailer()
            self._open = False
            self.chunk_left = None
            return None
        self.chunk_left = size
        return size

    def _skip_trailer(self) -> None:
        """Skip the trailer fields after the last chunk, up to the blank line."""
        total = 0
        for _ in range(MAX_FIELDS + 1):
            line = self.stream.line(MAX_HEAD)
            total += len(line)
            if total > MAX_HEAD:
                self._broken(HeadTooLarge(f"a trailer larger than {MAX_HEAD} bytes"))
            if line in (b"\r\n", b"\n"):
                return
            if not line:
                self._broken(IncompleteRead(b""))
        self._broken(HeadTooLarge(f"more than {MAX_FIELDS} trailer lines"))

    def _exactly(self, n: int) -> bytes:
        pieces: list[bytes] = []
        left = n
        while left:
            piece = self.stream.read(min(left, _RECV))
            if not piece:
                self._broken(IncompleteRead(b"".join(pieces), left))
            pieces.append(piece)
            left -= len(piece)
        self.length = 0
        self._open = False
        return b"".join(pieces)

    def _broken(self, error: ReplyError) -> NoReturn:
        """The body cannot be read on: neither it nor the connection is used again."""
        self._open = False
        self.will_close = True
        raise error


def _parse_head(head: bytes) -> tuple[str, int, str, list[tuple[str, str, str]]]:
    """Version, status, reason and fields of a reply head (CRLF or bare LF line endings)."""
    lines = head.split(b"\n")
    status_line = lines[0].rstrip(b"\r")
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        if status_line.startswith(b"HTTP/") and not status_line.startswith(b"HTTP/1."):
            raise UnknownProtocol(repr(status_line[:40]))
        raise BadStatusLine(repr(status_line[:80]))
    version = match.group(1).decode("ascii")
    status = int(match.group(2))
    if status < 100:
        raise BadStatusLine(repr(status_line[:80]))
    reason = (match.group(3) or b"").decode("latin-1").strip()
    field_lines = [line.rstrip(b"\r") for line in lines[1:]]
    while field_lines and not field_lines[-1]:
        field_lines.pop()  # the blank line that ends the head
    if len(field_lines) > MAX_FIELDS:
        raise HeadTooLarge(f"more than {MAX_FIELDS} header lines")
    fields: list[tuple[str, str, str]] = []
    for line in field_lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise ReplyError("the first header line is a continuation line")
            # An obsolete folded continuation line joins the field before it.
            name, lower, value = fields[-1]
            fields[-1] = (name, lower, f"{value} {_decode(line.strip())}")
            continue
        raw_name, colon, raw_value = line.partition(b":")
        # Blanks between a name and its colon are dropped, as a proxy must (RFC 9112 5.1).
        raw_name = raw_name.rstrip(b" \t")
        if not colon or not _TOKEN.fullmatch(raw_name):
            raise ReplyError(f"a malformed header line {line[:40]!r}")
        name = raw_name.decode("ascii")
        fields.append((name, name.lower(), _decode(raw_value.strip(b" \t"))))
    return version, status, reason, fields


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
