"""The non-blocking exchanges' reading of replies, as bytes arrive in any cut, and the loop
that runs tasks: timeouts, and tasks still waiting when it closes."""

from __future__ import annotations

import socket
import threading

import pytest

from s3longbow.stores.s3 import nonblocking, tasks
from s3longbow.stores.s3.nonblocking import Answer, WireError
from s3longbow.stores.s3.stream import ReplyError
from s3longbow.stores.s3.tasks import READ, Loop

BODY = bytes(range(256)) * 40
REPLY = (
    b'HTTP/1.1 200 OK\r\nETag: "abc"\r\nContent-Length: '
    + str(len(BODY)).encode()
    + b"\r\nx-amz-meta-name: caf\xc3\xa9\r\n\r\n"
    + BODY
)


def feed(pieces: list[bytes], method: str = "GET", most: int = 1 << 20) -> tuple[Answer, bool]:
    """Read as the exchange does: piece after piece, until the reply is whole."""
    reading = nonblocking._Reading(method, most)
    for piece in pieces:
        whole = reading.add(piece)
        if whole is not None:
            return whole
    raise AssertionError("the reply never completed")


def whole(data: bytes, method: str = "GET", most: int = 1 << 20) -> tuple[Answer, bool] | None:
    return nonblocking._Reading(method, most).add(data)


@pytest.mark.parametrize("cut", [1, 7, 60, 1000, len(REPLY)])
def test_a_reply_reads_whole_in_any_cut(cut: int) -> None:
    pieces = [REPLY[i : i + cut] for i in range(0, len(REPLY), cut)]
    answer, reusable = feed(pieces)
    assert answer.status == 200
    assert answer.body == BODY
    assert answer.getheader("etag") == '"abc"'
    assert answer.lowered()["x-amz-meta-name"] == "café"
    assert reusable


def test_interim_replies_are_skipped() -> None:
    answer, _ = feed([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 102 Processing\r\n\r\n", REPLY])
    assert answer.status == 200 and answer.body == BODY


@pytest.mark.parametrize(
    ("extra", "reusable"),
    [(b"", True), (b"HTTP/1.1 200 OK\r\n", False)],
)
def test_bytes_beyond_the_reply_rule_out_the_connection(extra: bytes, reusable: bool) -> None:
    assert feed([REPLY + extra])[1] is reusable


def test_a_server_that_closes_rules_out_the_connection() -> None:
    closing = REPLY.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    answer, reusable = feed([closing])
    assert answer.body == BODY and not reusable


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",  # the body ends when the server closes
        b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",  # more than asked for
    ],
)
def test_replies_not_read_here_are_refused(head: bytes) -> None:
    with pytest.raises(WireError):
        whole(head)


def test_an_error_document_is_read_whatever_was_asked_for() -> None:
    error = b"<Error><Code>NoSuchKey</Code></Error>"
    head = b"HTTP/1.1 404 Not Found\r\nContent-Length: " + str(len(error)).encode()
    answer, _ = feed([head + b"\r\n\r\n" + error], most=3)
    assert answer.status == 404 and answer.body == error


def test_a_reply_that_is_not_http_is_an_error() -> None:
    with pytest.raises(ReplyError):
        whole(b"SSH-2.0-OpenSSH\r\n\r\n", most=100)


def test_a_head_reply_has_no_body() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
    answer, reusable = feed([head], "HEAD", 0)
    assert answer.body == b"" and reusable


def test_a_reply_cut_off_by_the_end_of_its_connection_is_an_error() -> None:
    reading = nonblocking._Reading("GET", 1 << 20)
    assert reading.add(REPLY[:-10]) is None
    with pytest.raises(ConnectionError):
        reading.end()
    # A head cut off, likewise; a reply whose body ends with the connection is whole.
    cut = nonblocking._Reading("GET", 1 << 20)
    assert cut.add(REPLY[:20]) is None
    with pytest.raises((ReplyError, ConnectionError)):
        cut.end()
    ending = nonblocking._Reading("GET", 1 << 20)
    assert ending.add(REPLY) is not None


def test_a_large_body_is_not_searched_for_the_heads_end() -> None:
    """A body full of blank lines after a head: the head ends where its own blank line is."""
    body = b"\n\n\r\n\r\n" * 20_000
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    answer, reusable = feed([head + body[:5000], body[5000:]])
    assert answer.body == body and reusable


def run(loop: Loop) -> threading.Thread:
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return thread


def test_a_task_that_waits_too_long_fails_and_others_go_on() -> None:
    quiet, _peer = socket.socketpair()
    talking, other = socket.socketpair()
    outcomes: dict[str, object] = {}
    done = threading.Event()

    def wait_for(sock: socket.socket) -> tasks.Step[bytes]:
        sock.setblocking(False)
        yield sock, READ
        return sock.recv(10)

    def record(name: str):  # type: ignore[no-untyped-def]
        def callback(result: object, error: BaseException | None) -> None:
            outcomes[name] = error if error is not None else result
            if len(outcomes) == 2:
                done.set()

        return callback

    loop = Loop(timeout=0.3)
    thread = run(loop)
    loop.spawn(wait_for(quiet), record("quiet"))
    loop.spawn(wait_for(talking), record("talking"))
    other.send(b"hello")
    assert done.wait(5)
    assert outcomes["talking"] == b"hello"
    assert isinstance(outcomes["quiet"], TimeoutError)
    loop.close()
    thread.join(5)
    assert not thread.is_alive()


def test_closing_the_loop_ends_every_waiting_task() -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    ended: list[BaseException | None] = []

    def wait_forever(sock: socket.socket) -> tasks.Step[None]:
        sock.setblocking(False)
        while True:
            yield sock, READ

    loop = Loop(timeout=60)
    thread = run(loop)
    for sock, _peer in pairs:
        loop.spawn(wait_forever(sock), lambda _r, error: ended.append(error))
    loop.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(ended) == 3 and all(e is not None for e in ended)
