"""The relay between two sockets (real TCP and TLS connections over loopback): inside the
kernel between plain sockets, through a small buffer over TLS."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from longbow_testkit.tls import self_signed_certificate
from s3longbow.stores.s3 import splice

pytestmark = pytest.mark.skipif(not splice.AVAILABLE, reason="splice(2) is Linux-only")


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(source writer, source reader, destination writer, destination reader)."""
    src_w, src_r = _tcp_pair()
    dst_w, dst_r = _tcp_pair()
    yield src_w, src_r, dst_w, dst_r
    for sock in (src_w, src_r, dst_w, dst_r):
        sock.close()


def _read_all(sock: socket.socket, into: bytearray) -> None:
    while chunk := sock.recv(1 << 16):
        into += chunk


def test_relays_exactly_the_length_asked(sockets: tuple[socket.socket, ...]) -> None:
    src_w, src_r, dst_w, dst_r = sockets
    data = os.urandom(3 * (1 << 20) + 12345)  # several pipe-fulls and an odd tail
    trailing = b"next reply"
    writer = threading.Thread(target=src_w.sendall, args=(data + trailing,))
    received = bytearray()
    reader = threading.Thread(target=_read_all, args=(dst_r, received))
    writer.start()
    reader.start()
    src_r.settimeout(10)  # non-blocking underneath, as a kept connection is
    dst_w.settimeout(10)
    splice.relay(src_r, dst_w, len(data))
    dst_w.shutdown(socket.SHUT_WR)
    writer.join(10)
    reader.join(10)
    assert bytes(received) == data
    # Bytes beyond the length stay on the source socket for whoever reads it next.
    assert src_r.recv(100) == trailing


def test_a_source_that_ends_early_is_a_source_failure(sockets: tuple[socket.socket, ...]) -> None:
    src_w, src_r, dst_w, _ = sockets
    src_w.sendall(b"x" * 1000)
    src_w.close()
    src_r.settimeout(5)
    with pytest.raises(splice.SourceFailure, match="after 1000 of 5000 bytes"):
        splice.relay(src_r, dst_w, 5000)


def test_a_silent_source_times_out_as_a_source_failure(
    sockets: tuple[socket.socket, ...],
) -> None:
    _, src_r, dst_w, _ = sockets
    src_r.settimeout(0.2)
    with pytest.raises(splice.SourceFailure, match="TimeoutError"):
        splice.relay(src_r, dst_w, 10)


def test_a_closed_destination_is_an_os_error_not_a_source_failure(
    sockets: tuple[socket.socket, ...],
) -> None:
    src_w, src_r, dst_w, dst_r = sockets
    dst_r.close()
    dst_w.settimeout(5)
    src_r.settimeout(5)

    def send() -> None:
        try:
            src_w.sendall(b"y" * (4 << 20))
        except OSError:
            pass  # the relay gave up and the source socket closed: expected

    writer = threading.Thread(target=send)
    writer.start()
    with pytest.raises(OSError) as caught:
        splice.relay(src_r, dst_w, 4 << 20)
    assert not isinstance(caught.value, splice.SourceFailure)
    src_r.close()  # unblocks the writer
    writer.join(10)


# -- through the process: TLS -------------------------------------------------------------------


def _tls_pair(cert: Path, key: Path) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """(server side, client side) of one TLS connection over loopback."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    served: list[ssl.SSLSocket] = []
    handshake = threading.Thread(
        target=lambda: served.append(server_ctx.wrap_socket(accepted, server_side=True))
    )
    handshake.start()
    client = client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    handshake.join(10)
    return served[0], client


def test_tls_bodies_are_relayed_through_a_small_buffer_exactly(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    src_server, src_client = _tls_pair(cert, key)  # the source's server writes, we read
    dst_client, dst_server = _tls_pair(cert, key)[::-1]  # we write, the destination reads
    data = os.urandom(5 * splice.CHUNK + 777)  # several buffers and an odd tail
    trailing = b"the next reply"
    writer = threading.Thread(target=src_server.sendall, args=(data + trailing,))
    received = bytearray()

    def read() -> None:
        while len(received) < len(data):
            received.extend(dst_server.recv(1 << 16))

    reader = threading.Thread(target=read)
    writer.start()
    reader.start()
    steps: list[int] = []
    for sock in (src_client, dst_client):
        sock.settimeout(10)
    splice.relay(src_client, dst_client, len(data), steps.append)
    writer.join(10)
    reader.join(10)
    assert bytes(received) == data
    assert max(steps) <= splice.CHUNK and sum(steps) == len(data)
    # Bytes beyond the length stay on the source connection for the next reply.
    assert src_client.recv(100) == trailing
    for sock in (src_server, src_client, dst_client, dst_server):
        sock.close()


def test_a_tls_source_that_ends_early_is_a_source_failure(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    src_server, src_client = _tls_pair(cert, key)
    dst_client, dst_server = _tls_pair(cert, key)[::-1]
    src_server.sendall(b"z" * 3000)
    src_server.close()
    src_client.settimeout(5)
    with pytest.raises(splice.SourceFailure, match="after 3000 of 9000 bytes"):
        splice.relay(src_client, dst_client, 9000)
    for sock in (src_client, dst_client, dst_server):
        sock.close()
