"""Connections opened ahead of need: on a long path (a first TLS connection that took two
round trips through the latency proxy) the data plane opens more at once, and the requests
that come while they open wait for them instead of opening their own (on threads, and on the
small objects' non-blocking loop); on a short path it opens none."""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from longbow_testkit.fakes3 import FakeS3
from longbow_testkit.latencyproxy import LatencyProxy
from longbow_testkit.tls import self_signed_certificate
from s3longbow.stores.s3 import nonblocking
from s3longbow.stores.s3.lean import S3DataPlane
from s3longbow.stores.s3.signing import StaticCredentials
from s3longbow.stores.s3.tasks import Loop

MiB = 1024 * 1024
AHEAD = 8
DELAY = 0.03  # one way: a 60 ms round trip


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[FakeS3, Path]]:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with FakeS3(tls=context) as server:
        server.put("bkt", "k", b"0123456789")
        yield server, cert


def plane(url: str, cert: Path) -> S3DataPlane:
    return S3DataPlane(
        url,
        "us-east-1",
        True,
        StaticCredentials("AKID", "secret"),
        16,
        ca_bundle=str(cert),
        open_ahead=AHEAD,
    )


def opened_within(data: S3DataPlane, count: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while data.connections_opened < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return data.connections_opened


def read_together(data: S3DataPlane, threads: int) -> None:
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            barrier.wait()
            assert data.get_range("bkt", "k", 2, 3) == b"234"
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=read) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert errors == []


def test_a_long_path_gets_its_connections_opened_ahead(tls_server: tuple[FakeS3, Path]) -> None:
    server, cert = tls_server
    with LatencyProxy(("127.0.0.1", server.port), delay=DELAY, window=MiB) as proxy:
        data = plane(f"https://127.0.0.1:{proxy.port}", cert)
        assert data.get_range("bkt", "k", 0, 1) == b"0"
        assert opened_within(data, AHEAD, 10) == AHEAD
        # As many requests at once as connections were opened: none opens another.
        read_together(data, AHEAD)
        assert data.connections_opened == AHEAD
        data.close()


def test_requests_wait_for_the_connections_being_opened(tls_server: tuple[FakeS3, Path]) -> None:
    server, cert = tls_server
    with LatencyProxy(("127.0.0.1", server.port), delay=DELAY, window=MiB) as proxy:
        data = plane(f"https://127.0.0.1:{proxy.port}", cert)
        assert data.get_range("bkt", "k", 0, 1) == b"0"
        # At once, while the others are still opening (two round trips each): the requests
        # take them as they open rather than opening connections of their own.
        read_together(data, AHEAD)
        assert data.connections_opened == AHEAD
        data.close()


def test_the_loops_requests_wait_for_the_connections_being_opened(
    tls_server: tuple[FakeS3, Path],
) -> None:
    server, cert = tls_server
    with LatencyProxy(("127.0.0.1", server.port), delay=DELAY, window=MiB) as proxy:
        data = plane(f"https://127.0.0.1:{proxy.port}", cert)
        assert data.get_range("bkt", "k", 0, 1) == b"0"
        direct = data.direct()
        assert direct is not None
        loop = Loop(timeout=30)
        runner = threading.Thread(target=loop.run, daemon=True)
        runner.start()
        answers: list[object] = []
        ended = threading.Semaphore(0)

        def done(answer: object, error: BaseException | None) -> None:
            answers.append(error if error is not None else answer)
            ended.release()

        # At once on the loop, while the others are still opening: each request takes one
        # of them as it opens (or the first, now idle) rather than opening its own.
        for _ in range(AHEAD):
            request = data.prepare_get("bkt", "k", 10, hashlib.md5(b"0123456789").hexdigest(), None)
            loop.spawn(nonblocking.exchange(direct, request, b"", most=MiB, key="k"), done)
        for _ in range(AHEAD):
            assert ended.acquire(timeout=30)
        loop.close()
        runner.join(10)
        assert [getattr(a, "body", a) for a in answers] == [b"0123456789"] * AHEAD
        assert data.connections_opened == AHEAD
        data.close()


def test_a_short_path_opens_nothing_ahead(tls_server: tuple[FakeS3, Path]) -> None:
    server, cert = tls_server
    data = plane(server.url, cert)
    assert data.get_range("bkt", "k", 0, 1) == b"0"
    assert opened_within(data, 2, 0.5) == 1
    data.close()
