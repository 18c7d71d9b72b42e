"""Conformance of the lean client's HTTP/1.1 reply reader to RFC 9112 (and 9110).

Where a reply is well formed, the reader must agree with ``http.client``'s reading of the same
bytes; where it is not, the RFC (not a lenient reading) says what happens: a reply whose
framing cannot be trusted is refused, so that no byte of it, nor of a reply after it, is ever
read as a body. Bytes are fed through a socket stand-in that hands them over a few at a time,
so that every boundary (inside a head, a chunk size, a body) is crossed.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.tls import certificate_authority
from s3longbow.stores.s3 import dial, http1
from s3longbow.stores.s3.stream import (
    BadFraming,
    BadStatusLine,
    BodyTooLarge,
    HeadTooLarge,
    IncompleteRead,
    Pace,
    ReplyError,
    Stream,
    TooSlow,
    UnknownProtocol,
)


class FakeSocket:
    """What a Stream reads: `data` handed over at most `step` bytes per call, then the end
    of the stream (a close); `delay` seconds pass before each call returns."""

    def __init__(self, data: bytes, step: int = 1 << 20, delay: float = 0.0) -> None:
        self._data = data
        self._step = step
        self._delay = delay

    def recv(self, n: int) -> bytes:
        if self._delay:
            time.sleep(self._delay)
        piece, self._data = self._data[: min(n, self._step)], self._data[min(n, self._step) :]
        return piece

    def recv_into(self, view: memoryview) -> int:
        piece = self.recv(len(view))
        view[: len(piece)] = piece
        return len(piece)


def reply_of(data: bytes, method: str = "GET", step: int = 1 << 20) -> http1.Reply:
    reply = http1.Reply(Stream(FakeSocket(data, step)), method)  # type: ignore[arg-type]
    reply.begin()
    return reply


class _Socket:
    """What http.client reads a reply from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))  # type: ignore[arg-type]


def standard(data: bytes, method: str = "GET") -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(_Socket(data), method=method)  # type: ignore[arg-type]
    response.begin()
    return response


STEPS = [1, 2, 7, 1 << 20]


def rest(stream: Stream) -> bytes:
    """Everything left on a stream: buffered, then still on the socket."""
    left = stream.take_buffered(1 << 30)
    while piece := stream.sock.recv(1 << 20):
        left += piece
    return left


# --------------------------------------------------------------------------------------------
# Well-formed replies read as http.client reads them
# --------------------------------------------------------------------------------------------

WELL_FORMED = {
    "get": b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "abc"\r\n'
    b"Last-Modified: Thu, 26 Nov 2026 10:00:00 GMT\r\nx-amz-meta-a: b: c\r\n\r\nhello",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    "no length": b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil close",
    "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "keep-alive 1.0": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
    "no content": b"HTTP/1.1 204 No Content\r\nx-amz-request-id: 1\r\n\r\n",
    "continue": b"HTTP/1.1 100 Continue\r\nA: 1\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "error": b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n<Error/>\n",
    "folded": b"HTTP/1.1 200 OK\r\nX-Long: one\r\n two\r\nContent-Length: 0\r\n\r\n",
    "repeated": b"HTTP/1.1 200 OK\r\nSet: 1\r\nset: 2\r\nContent-Length: 0\r\n\r\n",
    "bare newlines": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
    "no reason": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi",
    "leading zeros": b"HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\nhi",
}


def _head(response: Any) -> tuple[Any, ...]:
    folded = response.getheader("X-Long")
    return (
        response.status,
        response.reason,
        response.version,
        [(n, " ".join(v.split())) for n, v in response.getheaders()],
        response.getheader("etag"),
        response.headers.get_all("set"),
        response.headers.get("CONTENT-length"),
        "Content-Length" in response.headers,
        None if folded is None else " ".join(folded.split()),
        response.will_close,
    )


@pytest.mark.parametrize("name", sorted(WELL_FORMED))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("step", STEPS)
def test_a_well_formed_reply_reads_as_http_client_reads_it(
    name: str, method: str, step: int
) -> None:
    data = WELL_FORMED[name]
    ours, theirs = reply_of(data, method, step), standard(data, method)
    assert _head(ours) == _head(theirs)
    assert (ours.read(), ours.isclosed()) == (theirs.read(), theirs.isclosed())


BODIES = {
    "length": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\n0123\r\n6\r\n456789\r\n0\r\nTrailer: x\r\n\r\n",
    "until close": b"HTTP/1.1 200 OK\r\n\r\n0123456789",
    "then the next reply": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
    b"HTTP/1.1 204 No Content\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("size", [1, 3, 4, 64])
@pytest.mark.parametrize("step", STEPS)
def test_a_body_read_in_pieces_reads_as_http_client_reads_it(
    name: str, size: int, step: int
) -> None:
    def pieces(response: Any, into: bool) -> list[Any]:
        got: list[Any] = []
        for _ in range(20):
            if into:
                buffer = bytearray(size)
                n = response.readinto(buffer)
                piece = bytes(buffer[:n])
            else:
                piece = response.read(size)
            got.append(piece)
            if not piece:
                break
        return [b"".join(got), response.isclosed()]

    data = BODIES[name]
    for into in (False, True):
        assert pieces(reply_of(data, "GET", step), into) == pieces(standard(data, "GET"), into)


# --------------------------------------------------------------------------------------------
# Interim replies (RFC 9110 15.2)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nContent-Length: 7\r\n\r\n",
        b"HTTP/1.1 199 Whatever\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n",
    ],
)
@pytest.mark.parametrize("step", STEPS)
def test_every_interim_reply_is_skipped(interim: bytes, step: int) -> None:
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nk3"
    reply = reply_of(interim + final, step=step)
    assert reply.status == 200
    assert reply.read() == b"k3"
    assert reply.isclosed() and not reply.will_close


def test_an_early_hint_never_frames_the_next_reply() -> None:
    # 103 before a reply, then the next request's reply: each request reads its own body.
    data = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nk2"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nk3"
    )
    stream = Stream(FakeSocket(data, 5))  # type: ignore[arg-type]
    bodies = []
    for _ in range(2):
        reply = http1.Reply(stream, "GET")
        reply.begin()
        bodies.append(reply.read())
    assert bodies == [b"k2", b"k3"]


def test_switching_protocols_was_not_asked_for() -> None:
    with pytest.raises(ReplyError, match="101"):
        reply_of(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")


def test_endless_interim_replies_are_refused() -> None:
    with pytest.raises(ReplyError, match="interim"):
        reply_of(b"HTTP/1.1 102 Processing\r\n\r\n" * 40 + b"HTTP/1.1 200 OK\r\n\r\n")


# --------------------------------------------------------------------------------------------
# Content-Length (RFC 9112 6.3, RFC 9110 8.6)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths",
    [
        ["+2"],
        ["1_0"],
        ["-1"],
        ["0x2"],
        ["2e0"],
        [""],
        ["2 2"],
        ["٢"],  # an Arabic-Indic digit: a digit to Python, not to HTTP
        ["2", "3"],
        ["2, 3"],
        ["12345678901234567890"],
    ],
)
def test_a_content_length_that_is_not_one_number_is_refused(lengths: list[str]) -> None:
    head = "".join(f"Content-Length: {value}\r\n" for value in lengths)
    data = f"HTTP/1.1 200 OK\r\n{head}\r\nhi".encode()
    with pytest.raises(BadFraming):
        reply_of(data)


@pytest.mark.parametrize("lengths", [["2", "2"], ["2, 2"], [" 2 "]])
def test_the_same_content_length_given_twice_is_one_length(lengths: list[str]) -> None:
    head = "".join(f"Content-Length: {value}\r\n" for value in lengths)
    reply = reply_of(f"HTTP/1.1 200 OK\r\n{head}\r\nhiNEXT".encode())
    assert reply.read() == b"hi"


# --------------------------------------------------------------------------------------------
# Transfer-Encoding
# --------------------------------------------------------------------------------------------


def test_chunked_wins_over_a_length_and_the_connection_is_not_reused() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    reply = reply_of(data)
    assert reply.read() == b"hi"
    assert reply.will_close


@pytest.mark.parametrize("coding", ["Chunked", "CHUNKED", " chunked "])
def test_chunked_is_case_insensitive(coding: str) -> None:
    reply = reply_of(
        f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n2\r\nhi\r\n0\r\n\r\n".encode()
    )
    assert reply.read() == b"hi"


@pytest.mark.parametrize(
    "codings", ["gzip, chunked", "chunked, chunked", "identity", "chunked, gzip", "gzip"]
)
def test_a_transfer_coding_other_than_chunked_alone_is_refused(codings: str) -> None:
    with pytest.raises(BadFraming):
        reply_of(f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {codings}\r\n\r\n2\r\nhi\r\n".encode())


def test_chunked_split_over_two_header_lines_is_refused() -> None:
    with pytest.raises(BadFraming):
        reply_of(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        )


def test_transfer_encoding_in_http_1_0_is_faulty_framing() -> None:
    with pytest.raises(BadFraming):
        reply_of(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")


# --------------------------------------------------------------------------------------------
# Chunks, chunk extensions and trailers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        b"a\r\n0123456789\r\n0\r\n\r\n",
        b"A\r\n0123456789\r\n0\r\n\r\n",
        b"0a\r\n0123456789\r\n0\r\n\r\n",
        b'5;name=value\r\n01234\r\n5;a;b="c d"\r\n56789\r\n0\r\n\r\n',
        b"5 ;ext\r\n01234\r\n5\t;ext\r\n56789\r\n0;last\r\n\r\n",
        b"5\n01234\n5\n56789\n0\n\n",
        b"a\r\n0123456789\r\n0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n",
    ],
)
@pytest.mark.parametrize("step", STEPS)
def test_chunk_sizes_extensions_and_trailers(chunks: bytes, step: int) -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"NEXT"
    reply = reply_of(data, step=step)
    assert reply.read() == b"0123456789"
    assert reply.isclosed()
    assert rest(reply.stream) == b"NEXT"  # what follows the reply is left where it was


@pytest.mark.parametrize("size", [b"-1", b"+5", b"0x5", b"", b" 5", b"5g", b"1" * 17, b"\xd9\xa5"])
def test_a_chunk_size_that_is_not_hex_digits_is_refused(size: bytes) -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n01234" * 20
    reply = reply_of(data)
    with pytest.raises(BadFraming):
        reply.read()
    assert reply.will_close


def test_a_negative_chunk_never_reads_until_close() -> None:
    # A 10-byte reply followed by 50 MB: a chunk size of -1 must not buffer any of it.
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n" + b"x" * 50_000_000
    reply = reply_of(data)
    with pytest.raises(BadFraming):
        reply.read(10)


def test_chunk_data_longer_than_its_size_is_refused() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n"
    with pytest.raises(BadFraming):
        reply_of(data).read()


def test_an_oversize_trailer_is_refused() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
        + b"T: "
        + b"x" * 70_000
        + b"\r\n\r\n"
    )
    with pytest.raises((HeadTooLarge, BadFraming)):
        reply_of(data).read()


def test_too_many_trailer_lines_are_refused() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
        + b"T: 1\r\n" * 1001
        + b"\r\n"
    )
    with pytest.raises(HeadTooLarge):
        reply_of(data).read()


# --------------------------------------------------------------------------------------------
# Bodies that are not there: HEAD, 204, 304
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "method"),
    [("200 OK", "HEAD"), ("204 No Content", "GET"), ("304 Not Modified", "GET")],
)
def test_no_body_whatever_the_headers_say(status: str, method: str) -> None:
    data = (
        f'HTTP/1.1 {status}\r\nContent-Length: 5\r\nETag: "a"\r\n\r\n'.encode()
        + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    stream = Stream(FakeSocket(data, 3))  # type: ignore[arg-type]
    first = http1.Reply(stream, method)
    first.begin()
    assert first.read() == b"" and first.isclosed() and not first.will_close
    second = http1.Reply(stream, "GET")
    second.begin()
    assert second.read() == b"ok"


# --------------------------------------------------------------------------------------------
# Bodies delimited by the close of the connection
# --------------------------------------------------------------------------------------------


def test_a_body_without_length_ends_with_the_connection() -> None:
    reply = reply_of(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n" + b"x" * 300_000, step=999
    )
    assert reply.will_close
    assert reply.read() == b"x" * 300_000
    assert reply.isclosed()


def test_a_body_without_length_is_read_only_up_to_a_limit() -> None:
    reply = reply_of(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 300_000)
    with pytest.raises(BodyTooLarge):
        reply.read(limit=100_000)
    declared = reply_of(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n")
    with pytest.raises(BodyTooLarge):
        declared.read(limit=100_000)


# --------------------------------------------------------------------------------------------
# Heads: size, field syntax, status lines
# --------------------------------------------------------------------------------------------


def test_an_object_with_120_metadata_entries_is_read() -> None:
    fields = b"".join(f"x-amz-meta-k{i}: value {i}\r\n".encode() for i in range(120))
    reply = reply_of(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n", step=100)
    assert reply.headers.get("x-amz-meta-k119") == "value 119"


def test_a_head_of_64_kib_and_1000_lines_is_read_and_more_is_refused() -> None:
    fields = b"".join(f"x-amz-meta-k{i}: {'v' * 40}\r\n".encode() for i in range(999))
    reply = reply_of(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n")
    assert len(reply.getheaders()) == 1000
    with pytest.raises(HeadTooLarge):
        reply_of(b"HTTP/1.1 200 OK\r\n" + fields + b"A: 1\r\nB: 2\r\n\r\n")
    with pytest.raises(HeadTooLarge):
        reply_of(b"HTTP/1.1 200 OK\r\nA: " + b"x" * 70_000 + b"\r\n\r\n")


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/1.1 OK",
        b"ICY 200 OK",
        b"HTTP/1.1 99 X",
        b"HTTP/1.1 2000 X",
        b"HTTP/1.1 abc X",
        b"HTTP/1.1  200 OK",
        b"http/1.1 200 OK",
    ],
)
def test_a_bad_status_line_is_refused(line: bytes) -> None:
    with pytest.raises(BadStatusLine):
        reply_of(line + b"\r\n\r\n")


@pytest.mark.parametrize("version", [b"HTTP/2 200 OK", b"HTTP/2.0 200 OK", b"HTTP/3 200 OK"])
def test_an_unknown_protocol_is_refused(version: bytes) -> None:
    with pytest.raises(UnknownProtocol):
        reply_of(version + b"\r\n\r\n")


@pytest.mark.parametrize(
    "line", [b"no colon here", b"bad name: x", b"na\x00me: x", b"(name): x", b": empty"]
)
def test_a_malformed_header_line_is_refused(line: bytes) -> None:
    with pytest.raises(ReplyError):
        reply_of(b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 0\r\n\r\n")


def test_a_continuation_line_first_is_refused() -> None:
    with pytest.raises(ReplyError):
        reply_of(b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n")


def test_blanks_before_a_colon_are_dropped() -> None:
    reply = reply_of(b'HTTP/1.1 200 OK\r\nETag : "a"\r\nContent-Length: 0\r\n\r\n')
    assert reply.getheader("etag") == '"a"'


def test_header_values_keep_their_bytes() -> None:
    reply = reply_of(
        b"HTTP/1.1 200 OK\r\nx-amz-meta-author: Jos\xc3\xa9\r\nx-amz-meta-raw: Jos\xe9\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert reply.headers.get("x-amz-meta-author") == "José"
    assert http1.encode_value(reply.headers.get("x-amz-meta-author")) == b"Jos\xc3\xa9"
    assert http1.encode_value(reply.headers.get("x-amz-meta-raw")) == b"Jos\xe9"


# --------------------------------------------------------------------------------------------
# Replies cut short
# --------------------------------------------------------------------------------------------

TRUNCATED = {
    "short length": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234",
    "short chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234",
    "no last chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n01\r\n",
    "no trailer end": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n01\r\n0\r\n",
}


@pytest.mark.parametrize("name", sorted(TRUNCATED))
@pytest.mark.parametrize("into", [False, True])
def test_a_body_cut_short_is_an_incomplete_read(name: str, into: bool) -> None:
    reply = reply_of(TRUNCATED[name], step=3)
    with pytest.raises(IncompleteRead):
        if into:
            buffer = bytearray(100)
            while reply.readinto(buffer):
                pass
        else:
            reply.read()
    assert reply.will_close


def test_a_head_cut_short_is_an_incomplete_read() -> None:
    with pytest.raises(IncompleteRead):
        reply_of(b"HTTP/1.1 200 OK\r\nContent-Le")


def test_the_server_closing_before_any_reply_is_a_disconnect() -> None:
    # A ConnectionResetError, as a stale kept-alive connection's is: such a request is resent.
    with pytest.raises(ConnectionResetError):
        reply_of(b"")


# --------------------------------------------------------------------------------------------
# A connection is idle only when nothing waits on it
# --------------------------------------------------------------------------------------------


def test_a_connection_with_bytes_waiting_is_not_idle() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        stream = Stream(ours)
        assert stream.idle()
        theirs.sendall(b"HTTP/1.1 200 OK\r\n\r\n")  # a reply nobody asked for
        time.sleep(0.05)
        assert not stream.idle()
    ours, theirs = socket.socketpair()
    with ours:
        stream = Stream(ours)
        theirs.close()  # the server closed it
        time.sleep(0.05)
        assert not stream.idle()


def test_bytes_left_after_a_reply_make_the_connection_busy() -> None:
    stream = Stream(FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxGARBAGE"))  # type: ignore[arg-type]
    reply = http1.Reply(stream, "GET")
    reply.begin()
    assert reply.read() == b"x"
    assert not stream.idle()


# --------------------------------------------------------------------------------------------
# The minimum rate
# --------------------------------------------------------------------------------------------


def test_a_reply_slower_than_the_minimum_rate_times_out() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    stream = Stream(FakeSocket(data, step=1, delay=0.01), Pace(1000, window=0.2))  # type: ignore[arg-type]
    reply = http1.Reply(stream, "GET")
    with pytest.raises(TooSlow, match="below the minimum"):
        reply.begin()
        reply.read()


def test_a_reply_at_the_minimum_rate_is_read() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
    stream = Stream(FakeSocket(data, step=200, delay=0.01), Pace(1000, window=0.05))  # type: ignore[arg-type]
    reply = http1.Reply(stream, "GET")
    reply.begin()
    assert len(reply.read()) == 2000


def test_the_wait_for_the_first_byte_is_not_held_against_the_rate() -> None:
    pace = Pace(1_000_000, window=0.05)
    pace.arm()
    time.sleep(0.1)  # the server thinks
    pace.moved(10)  # then the first bytes arrive
    pace.moved(100_000)


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Thu, 26 Nov 2026 10:00:00 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",  # the obsolete forms, read by the email package
        "Sun Nov  6 08:49:37 1994",
    ],
)
def test_http_dates_read_as_the_email_package_reads_them(text: str) -> None:
    assert http1.http_date(text) == email.utils.parsedate_to_datetime(text).timestamp()


def test_a_date_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError):
        http1.http_date("Mon, 29 Feb 2027 10:00:00 GMT")


# --------------------------------------------------------------------------------------------
# Proxies
# --------------------------------------------------------------------------------------------


def test_a_proxy_url_gives_its_credentials_only_as_a_header() -> None:
    proxy = dial.Proxy.from_url("http://us%40er:p%3Ass@proxy.example:3128")
    assert (proxy.host, proxy.port) == ("proxy.example", 3128)
    assert proxy.authorization == "Basic dXNAZXI6cDpzcw=="  # base64 of "us@er:p:ss"
    assert "p:ss" not in repr(proxy) and "dXNA" not in repr(proxy)
    assert dial.Proxy.from_url("proxy.example").port == 80


def test_a_proxy_of_another_scheme_is_refused_without_its_credentials() -> None:
    with pytest.raises(ValueError) as info:
        dial.Proxy.from_url("socks5://user:secret@proxy.example:1080")
    assert "secret" not in str(info.value)


# --------------------------------------------------------------------------------------------
# TLS contexts
# --------------------------------------------------------------------------------------------


def _authorities(context: ssl.SSLContext) -> list[str]:
    return [str(cert["serialNumber"]) for cert in context.get_ca_certs()]


def test_stores_with_the_same_trust_share_one_tls_context(tmp_path: Path) -> None:
    bundle = str(certificate_authority(tmp_path / "one").ca)
    checked = dial.tls_context(bundle, True)
    assert dial.tls_context(bundle, True) is checked
    assert checked.verify_mode == ssl.CERT_REQUIRED and checked.check_hostname
    unchecked = dial.tls_context(bundle, False)
    assert unchecked is not checked
    assert unchecked.verify_mode == ssl.CERT_NONE and not unchecked.check_hostname
    assert checked.verify_mode == ssl.CERT_REQUIRED  # the shared one is left as it was


def test_a_bundle_changed_on_disk_is_read_again(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    first, second = (certificate_authority(tmp_path / name).ca for name in ("a", "b"))
    bundle.write_bytes(first.read_bytes())
    before = dial.tls_context(str(bundle), True)
    bundle.write_bytes(second.read_bytes())
    stat = bundle.stat()
    os.utime(bundle, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = dial.tls_context(str(bundle), True)
    assert after is not before
    assert _authorities(after) != _authorities(before)
    assert _authorities(after) == _authorities(dial.tls_context(str(second), True))


def test_a_missing_bundle_is_an_error_each_time(tmp_path: Path) -> None:
    for _ in range(2):
        with pytest.raises(FileNotFoundError):
            dial.tls_context(str(tmp_path / "absent.pem"), True)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 10\r\n\r\n0123456789",
        b"Transfer-Encoding: chunked\r\n\r\n4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n",
    ],
    ids=["length", "chunked"],
)
def test_a_body_read_into_one_buffer_is_exactly_its_bytes(framing: bytes, step: int) -> None:
    reply = reply_of(b"HTTP/1.1 200 OK\r\n" + framing + b"NEXT", step=step)
    body = reply.read_buffer(10)
    assert isinstance(body, bytearray) and body == b"0123456789"
    assert reply.read() == b""
    assert rest(reply.stream) == b"NEXT"


def test_a_body_that_ends_before_the_buffer_is_full_is_incomplete() -> None:
    reply = reply_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
    with pytest.raises(IncompleteRead):
        reply.read_buffer(10)
    assert reply.will_close  # neither the reply nor its connection is used again
