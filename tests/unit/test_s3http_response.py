"""The lean client's reply parser agrees with http.client's on every reply shape it may meet."""

from __future__ import annotations

import http.client
import io

import pytest

from s3longbow.stores.s3http import _Response


class _Socket:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))  # type: ignore[arg-type]


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


def _read(cls: type[http.client.HTTPResponse], data: bytes, method: str) -> tuple:
    response = cls(_Socket(data), method=method)  # type: ignore[arg-type]
    response.begin()
    folded = response.getheader("X-Long")
    return (
        response.status,
        response.reason,
        response.version,
        [(n, " ".join(v.split())) for n, v in response.getheaders()],
        response.getheader("etag"),
        response.msg.get_all("set"),
        response.msg.get("CONTENT-length"),
        "Content-Length" in response.msg,
        None if folded is None else " ".join(folded.split()),
        response.chunked,
        response.length,
        response.will_close,
        response.read(),
        response.isclosed(),
    )


@pytest.mark.parametrize("name", sorted(REPLIES))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reply_reads_as_http_client_reads_it(name: str, method: str) -> None:
    data = REPLIES[name]
    assert _read(_Response, data, method) == _read(http.client.HTTPResponse, data, method)


def test_too_many_header_lines_are_refused() -> None:
    data = b"HTTP/1.1 200 OK\r\n" + b"A: 1\r\n" * 200 + b"\r\n"
    with pytest.raises(http.client.HTTPException):
        _Response(_Socket(data), method="GET").begin()  # type: ignore[arg-type]


def test_an_overlong_header_line_is_refused() -> None:
    data = b"HTTP/1.1 200 OK\r\nA: " + b"x" * 70000 + b"\r\n\r\n"
    with pytest.raises(http.client.LineTooLong):
        _Response(_Socket(data), method="GET").begin()  # type: ignore[arg-type]


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(http.client.HTTPException):
        _Response(_Socket(b"SPDY/3 200 OK\r\n\r\n"), method="GET").begin()  # type: ignore[arg-type]
