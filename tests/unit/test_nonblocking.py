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
    """Parse as the exchange does: after each piece, until the reply is whole."""
    buffer = bytearray()
    needed = 0
    for piece in pieces:
        buffer += piece
        if len(buffer) < needed:
            continue
        parsed = nonblocking._parse(buffer, method, most, ended=False)
        if isinstance(parsed, int):
            assert parsed > len(buffer)  # always asks for more than it has
            needed = parsed
            continue
        return parsed
    raise AssertionError("the reply never completed")


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
        nonblocking._parse(bytearray(head), "GET", 1 << 20, ended=False)


def test_an_error_document_is_read_whatever_was_asked_for() -> None:
    error = b"<Error><Code>NoSuchKey</Code></Error>"
    head = b"HTTP/1.1 404 Not Found\r\nContent-Length: " + str(len(error)).encode()
    answer, _ = nonblocking._parse(bytearray(head + b"\r\n\r\n" + error), "GET", 3, ended=False)  # type: ignore[misc]
    assert answer.status == 404 and answer.body == error


def test_a_reply_that_is_not_http_is_an_error() -> None:
    with pytest.raises(ReplyError):
        nonblocking._parse(bytearray(b"SSH-2.0-OpenSSH\r\n\r\n"), "GET", 100, ended=False)


def test_a_head_reply_has_no_body() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
    answer, reusable = nonblocking._parse(bytearray(head), "HEAD", 0, ended=False)  # type: ignore[misc]
    assert answer.body == b"" and reusable


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
