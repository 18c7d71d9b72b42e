"""The lean client's reply reader agrees with http.client's on every reply shape it may meet."""

from __future__ import annotations

import email.utils
import http.client
import io
from typing import Any

import pytest

from s3longbow.stores import http1


class _Socket:
    """What http.client reads a reply from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))  # type: ignore[arg-type]


def _reply(data: bytes, method: str) -> http1.Reply:
    return http1.Reply(io.BufferedReader(io.BytesIO(data)), method)  # type: ignore[arg-type]


REPLIES = {
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
    "bad length": b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nbody",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nbody",
    "bare newlines": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
}


def _head(response: Any) -> tuple:
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
        response.chunked,
        response.length,
        response.will_close,
    )


def _standard(data: bytes, method: str) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(_Socket(data), method=method)  # type: ignore[arg-type]
    response.begin()
    return response


def _ours(data: bytes, method: str) -> http1.Reply:
    response = _reply(data, method)
    response.begin()
    return response


@pytest.mark.parametrize("name", sorted(REPLIES))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reply_reads_as_http_client_reads_it(name: str, method: str) -> None:
    data = REPLIES[name]
    ours, standard = _ours(data, method), _standard(data, method)
    assert _head(ours) == _head(standard)
    assert (ours.read(), ours.isclosed()) == (standard.read(), standard.isclosed())


BODIES = {
    "length": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\n0123\r\n6\r\n456789\r\n0\r\nTrailer: x\r\n\r\n",
    "until close": b"HTTP/1.1 200 OK\r\n\r\n0123456789",
    "then the next reply": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
    b"HTTP/1.1 204 No Content\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("step", [1, 3, 4, 64])
def test_a_body_read_in_pieces_reads_as_http_client_reads_it(name: str, step: int) -> None:
    def pieces(response: Any, into: bool) -> list[bytes]:
        got = []
        for _ in range(20):
            if into:
                buffer = bytearray(step)
                n = response.readinto(buffer)
                piece = bytes(buffer[:n])
            else:
                piece = response.read(step)
            got.append(piece)
            if not piece:
                break
        return got + [response.isclosed(), response.length]  # type: ignore[list-item]

    data = BODIES[name]
    for into in (False, True):
        assert pieces(_ours(data, "GET"), into) == pieces(_standard(data, "GET"), into)


TRUNCATED = {
    "short length": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234",
    "short chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234",
    "no last chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n01\r\n",
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n01\r\n",
}


@pytest.mark.parametrize("name", sorted(TRUNCATED))
def test_a_body_cut_short_is_an_incomplete_read(name: str) -> None:
    data = TRUNCATED[name]
    with pytest.raises(http.client.IncompleteRead):
        _standard(data, "GET").read()
    with pytest.raises(http1.IncompleteRead):
        _ours(data, "GET").read()


def test_the_server_closing_before_any_reply_is_a_disconnect() -> None:
    with pytest.raises(http.client.RemoteDisconnected):
        _standard(b"", "GET")
    # A ConnectionResetError, as a stale kept-alive connection's is: such a request is resent.
    with pytest.raises(ConnectionResetError):
        _ours(b"", "GET")


@pytest.mark.parametrize("line", [b"HTTP/1.1 OK\r\n", b"ICY 200 OK\r\n", b"HTTP/1.1 99 X\r\n"])
def test_a_bad_status_line_is_refused(line: bytes) -> None:
    with pytest.raises(http.client.BadStatusLine):
        _standard(line + b"\r\n", "GET")
    with pytest.raises(http1.BadStatusLine):
        _ours(line + b"\r\n", "GET")


def test_too_many_header_lines_are_refused() -> None:
    data = b"HTTP/1.1 200 OK\r\n" + b"A: 1\r\n" * 200 + b"\r\n"
    with pytest.raises(http1.ReplyError, match="more than 100 header lines"):
        _ours(data, "GET")


def test_an_overlong_header_line_is_refused() -> None:
    data = b"HTTP/1.1 200 OK\r\nA: " + b"x" * 70000 + b"\r\n\r\n"
    with pytest.raises(http1.LineTooLong):
        _ours(data, "GET")


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(http1.UnknownProtocol):
        _ours(b"HTTP/2.0 200 OK\r\n\r\n", "GET")


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
