"""The latency proxy: delays each direction, caps bytes in flight per connection, relays bytes
unchanged, passes half-closes and resets along, and stops cleanly."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from longbow_testkit.latencyproxy import LatencyProxy, start_process

MiB = 1024 * 1024
Handler = Callable[[socket.socket], None]


@contextmanager
def upstream(handle: Handler) -> Iterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1 running ``handle`` on each connection in a thread."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    threads: list[threading.Thread] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=_run, args=(handle, conn), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (Linux)
        listener.close()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)


def _run(handle: Handler, conn: socket.socket) -> None:
    with conn:
        try:
            handle(conn)
        except OSError:
            pass


def echo(conn: socket.socket) -> None:
    while data := conn.recv(MiB):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(MiB):
        chunks.append(data)
    return b"".join(chunks)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_each_round_trip_takes_twice_the_delay() -> None:
    delay = 0.05
    with upstream(echo) as target, LatencyProxy(target, delay=delay, window=MiB) as proxy:
        with socket.create_connection(proxy.address) as sock:
            started = time.monotonic()
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            # A new connection pays the handshake's round trip first.
            first = time.monotonic() - started
            assert 4 * delay <= first < 4 * delay + 0.15
            for _ in range(3):
                started = time.monotonic()
                sock.sendall(b"ping")
                assert sock.recv(4) == b"ping"
                elapsed = time.monotonic() - started
                assert 2 * delay <= elapsed < 2 * delay + 0.1


def test_without_handshake_the_first_exchange_is_one_round_trip() -> None:
    delay = 0.05
    with (
        upstream(echo) as target,
        LatencyProxy(target, delay=delay, window=MiB, handshake=False) as proxy,
        socket.create_connection(proxy.address) as sock,
    ):
        started = time.monotonic()
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        assert 2 * delay <= time.monotonic() - started < 2 * delay + 0.1


def _sink_until_eof(conn: socket.socket) -> None:
    total = 0
    while data := conn.recv(MiB):
        total += len(data)
    conn.sendall(total.to_bytes(8, "big"))


def _upload_seconds(address: tuple[str, int], size: int) -> float:
    """Seconds from the first byte sent to the far end's count of the last one."""
    with socket.create_connection(address) as sock:
        sock.sendall(b"\0")  # the handshake's round trip is not part of the rate
        time.sleep(0.25)
        started = time.monotonic()
        sock.sendall(os.urandom(size - 1))
        sock.shutdown(socket.SHUT_WR)
        assert int.from_bytes(read_all(sock), "big") == size
        return time.monotonic() - started


def test_the_window_caps_each_connection_not_the_proxy() -> None:
    # 1 MiB in flight per 100 ms round trip: at most 10.5 MB/s per connection.
    delay, window, size = 0.05, MiB, 6 * MiB
    with (
        upstream(_sink_until_eof) as target,
        LatencyProxy(target, delay=delay, window=window) as proxy,
    ):
        alone = _upload_seconds(proxy.address, size)
        # 6 windows: the last leaves 5 round trips after the first, and its count comes back
        # one round trip later.
        assert alone >= 6 * 2 * delay
        assert size / alone <= window / (2 * delay)
        assert size / alone >= 0.5 * window / (2 * delay)  # and it is not held much below
        results: list[float] = []
        threads = [
            threading.Thread(target=lambda: results.append(_upload_seconds(proxy.address, size)))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Three connections at once each move at the rate of one alone.
        assert len(results) == 3 and max(results) < 1.5 * alone
        assert all(elapsed >= 6 * 2 * delay for elapsed in results)


def test_bytes_arrive_unchanged_and_in_order_both_ways() -> None:
    data = os.urandom(3 * MiB + 12345)
    rnd = random.Random(7)
    with (
        upstream(echo) as target,
        LatencyProxy(target, delay=0.005, window=256 * 1024) as proxy,
        socket.create_connection(proxy.address) as sock,
    ):
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_all(sock)))
        reader.start()
        offset = 0
        while offset < len(data):
            step = rnd.choice((1, 7, 1000, 65536, 300_000))
            sock.sendall(data[offset : offset + step])
            offset += step
        sock.shutdown(socket.SHUT_WR)
        reader.join(30)
        assert received == [data]
        wait_for(lambda: proxy.stats().open == 0)
        stats = proxy.stats()
        assert (stats.connections, stats.bytes_up, stats.bytes_down) == (1, len(data), len(data))


def test_a_half_close_arrives_after_the_bytes_sent_before_it() -> None:
    delay = 0.04
    seen: list[tuple[bytes, float]] = []

    def answer_after_eof(conn: socket.socket) -> None:
        request = read_all(conn)  # up to the client's half-close
        seen.append((request, time.monotonic()))
        conn.sendall(b"reply:" + request)
        # returning closes the socket: the end travels back too

    with (
        upstream(answer_after_eof) as target,
        LatencyProxy(target, delay=delay, window=MiB) as proxy,
    ):
        with socket.create_connection(proxy.address) as sock:
            sock.sendall(b"request")
            sock.shutdown(socket.SHUT_WR)
            closed_at = time.monotonic()
            assert read_all(sock) == b"reply:request"  # then EOF
            back_at = time.monotonic()
        assert seen[0][0] == b"request"
        assert seen[0][1] - closed_at >= delay  # the end of the request came a delay later
        assert back_at - closed_at >= 2 * delay
        wait_for(lambda: proxy.stats().open == 0)


def test_the_server_closing_first_reaches_the_client() -> None:
    def greet_and_close(conn: socket.socket) -> None:
        conn.sendall(b"bye")

    with (
        upstream(greet_and_close) as target,
        LatencyProxy(target, delay=0.01, window=MiB) as proxy,
    ):
        with socket.create_connection(proxy.address) as sock:
            assert read_all(sock) == b"bye"
            # The client's own end of the stream still travels, and then both are closed.
        wait_for(lambda: proxy.stats().open == 0)


def test_a_client_gone_before_the_servers_end_of_stream_frees_both_sockets() -> None:
    # The client ends its stream and closes; the server answers its end with a last byte,
    # then ends its own. The last byte meets a closed socket (a reset the proxy does not read:
    # the client's end of stream had already arrived), and the end of stream after it must
    # still free both sockets rather than leak them.
    def answer_the_end(conn: socket.socket) -> None:
        read_all(conn)
        conn.sendall(b"!")
        time.sleep(0.1)

    with (
        upstream(answer_the_end) as target,
        LatencyProxy(target, delay=0.01, window=MiB) as proxy,
    ):
        for _ in range(3):
            sock = socket.create_connection(proxy.address)
            sock.shutdown(socket.SHUT_WR)
            sock.close()
        wait_for(lambda: proxy.stats().open == 0)


def test_a_reset_aborts_the_other_side() -> None:
    outcome: list[bytes | str] = []

    def wait_for_end(conn: socket.socket) -> None:
        try:
            outcome.append(read_all(conn))
        except ConnectionResetError:
            outcome.append("reset")

    with (
        upstream(wait_for_end) as target,
        LatencyProxy(target, delay=0.01, window=MiB) as proxy,
    ):
        sock = socket.create_connection(proxy.address)
        sock.sendall(b"partial")
        time.sleep(0.1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()  # an RST, not a FIN
        wait_for(lambda: bool(outcome))
        assert outcome[0] in ("reset", b"partial")
        wait_for(lambda: proxy.stats().open == 0)


def test_an_unreachable_upstream_closes_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with (
        LatencyProxy(("127.0.0.1", port), delay=0.01, window=MiB) as proxy,
        socket.create_connection(proxy.address) as sock,
    ):
        sock.settimeout(5)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        wait_for(lambda: proxy.stats().open == 0)


def test_stop_ends_connections_and_the_thread() -> None:
    with upstream(echo) as target:
        proxy = LatencyProxy(target, delay=0.01, window=MiB).start()
        sock = socket.create_connection(proxy.address)
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        threads_before = {t.name for t in threading.enumerate()}
        assert "latency-proxy" in threads_before
        proxy.stop()
        assert "latency-proxy" not in {t.name for t in threading.enumerate()}
        sock.settimeout(5)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        sock.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=2)
        proxy.stop()  # idempotent


def test_as_a_process_it_reports_its_cpu_and_what_it_relayed() -> None:
    data = os.urandom(2 * MiB)
    with upstream(echo) as target:
        proxy = start_process(target, delay=0.005, window=4 * MiB)
        try:
            with socket.create_connection(proxy.address) as sock:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                assert read_all(sock) == data
            assert proxy.cpu_seconds() > 0
        finally:
            stats = proxy.stop()
        assert proxy.proc.returncode == 0
        assert (stats.connections, stats.bytes_up, stats.bytes_down) == (1, len(data), len(data))


@pytest.mark.parametrize("bad", [{"delay": -1.0, "window": MiB}, {"delay": 0.1, "window": 0}])
def test_rejects_a_negative_delay_or_an_empty_window(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LatencyProxy(("127.0.0.1", 1), delay=bad["delay"], window=int(bad["window"]))
