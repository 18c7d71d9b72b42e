"""The lean data plane against servers that bend HTTP/1.1 (longbow_testkit.fakes3): each
exchange either reads what its own request asked for, or fails as the error it is, and leaves
the next request a clean connection.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from longbow_testkit.fakes3 import DROP, Action, FakeS3, Request, error, interim, reply
from longbow_testkit.forwardproxy import ForwardProxy
from longbow_testkit.tls import self_signed_certificate
from s3longbow.errors import (
    FatalError,
    ReplyLostError,
    SourceChangedError,
    TransientError,
    UploadMissingError,
)
from s3longbow.stores.s3.dial import Proxy, proxy_for
from s3longbow.stores.s3.lean import S3DataPlane
from s3longbow.stores.s3.signing import StaticCredentials

MiB = 1024 * 1024


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def plane_for(server: FakeS3, **options: Any) -> S3DataPlane:
    settings: dict[str, Any] = {"read_timeout": 10, "connect_timeout": 5}
    settings.update(options)
    return S3DataPlane(
        server.url, "us-east-1", True, StaticCredentials("AKID", "secret"), 4, **settings
    )


@pytest.fixture()
def fake() -> Iterator[FakeS3]:
    with FakeS3() as server:
        for key in ("k1", "k2", "k3"):
            server.put("bkt", key, f"bytes of {key}".encode())
        yield server


@pytest.fixture()
def tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def test_an_early_hint_never_hands_one_request_anothers_body(fake: FakeS3) -> None:
    fake.on(
        lambda r: interim(103, {"Link": "</a>"}) + fake.answer(r) if r.method == "GET" else None
    )
    plane = plane_for(fake)
    for key in ("k1", "k2", "k3"):
        size = len(fake.objects["bkt", key])
        assert plane.get_range("bkt", key, 0, size) == f"bytes of {key}".encode()
    assert fake.connections == 1  # one kept connection carried them all
    plane.close()


def test_a_reply_nobody_asked_for_is_never_read_as_the_next_ones(fake: FakeS3) -> None:
    # A server that sends a stray reply after the one asked for.
    fake.on(lambda r: fake.answer(r) + reply(200, b"stray") if r.key == "k1" else None)
    plane = plane_for(fake)
    assert plane.get_range("bkt", "k1", 0, 10) == b"bytes of k"
    time.sleep(0.05)
    assert plane.get_range("bkt", "k2", 0, 10) == b"bytes of k"
    assert fake.connections == 2  # the one with bytes waiting on it was left
    plane.close()


def test_a_negative_chunk_size_fails_the_read_and_its_connection(fake: FakeS3) -> None:
    lying = reply(200, headers={"Transfer-Encoding": "chunked"}, length=False)
    fake.on(lambda r: lying + b"-1\r\n" + b"x" * 5_000_000 if r.key == "k1" else None)
    plane = plane_for(fake)
    with pytest.raises(TransientError, match="chunk size"):
        plane.get_range("bkt", "k1", 0, 10)
    assert plane.get_range("bkt", "k2", 0, 5) == b"bytes"
    plane.close()


@pytest.mark.parametrize("length", ["1_0", "+10", "10, 11", "0x0a"])
def test_a_content_length_that_is_not_a_number_fails_the_read(fake: FakeS3, length: str) -> None:
    fake.on(
        lambda r: reply(200, b"0123456789", {"Content-Length": length}) if r.key == "k1" else None
    )
    plane = plane_for(fake)
    with pytest.raises(TransientError, match="Content-Length"):
        plane.get_range("bkt", "k1", 0, 10)
    plane.close()


def test_a_reply_for_another_version_is_refused_before_its_body_is_read(fake: FakeS3) -> None:
    # A server that ignores If-Match: the ETag it names is not the pinned one.
    fake.on(
        lambda r: fake.answer(
            dataclasses.replace(r, headers=[h for h in r.headers if h[0] != "if-match"])
        )
    )
    plane = plane_for(fake)
    with pytest.raises(SourceChangedError, match="another version"):
        plane.get_range("bkt", "k1", 0, 5, etag="0" * 32)
    plane.close()


# --------------------------------------------------------------------------------------------
# Requests that must not be sent twice
# --------------------------------------------------------------------------------------------


def test_a_post_is_not_sent_again_when_its_reply_is_lost(fake: FakeS3) -> None:
    starts: list[str] = []

    def lose(request: Request) -> Any:
        if request.method == "POST":
            starts.append(request.key)
            fake.answer(request)  # started: the server holds an upload now
            return DROP
        return None

    plane = plane_for(fake)
    plane.get_range("bkt", "k1", 0, 5)  # the connection is kept and reused below
    fake.on(lose)
    with pytest.raises(ReplyLostError):
        plane.create_upload("bkt", "big")
    assert starts == ["big"], "a second POST would have left the first upload behind"
    plane.close()


def test_a_get_on_a_connection_the_server_dropped_is_sent_again_once(fake: FakeS3) -> None:
    plane = plane_for(fake)
    plane.get_range("bkt", "k1", 0, 5)
    dropped: list[int] = []
    fake.on(lambda r: DROP if not dropped and not dropped.append(1) else None)
    assert plane.get_range("bkt", "k2", 0, 5) == b"bytes"
    assert len(fake.of("GET")) == 3
    plane.close()


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------


def test_tls_connections_the_server_closed_while_idle_are_left_unused(
    tls: tuple[Path, ssl.SSLContext],
) -> None:
    cert, context = tls
    with FakeS3(tls=context) as server:
        server.on(lambda r: Action("close", server.answer(r)))  # each reply ends its connection
        plane = plane_for(server, ca_bundle=str(cert))
        for i in range(10):
            data = f"object {i}".encode()
            assert plane.put_object("bkt", f"k{i}", data, md5_b64=md5_b64(data))
            time.sleep(0.02)
        assert server.connections == 10 and len(server.requests) == 10
        plane.close()


@pytest.mark.parametrize("size", [10, 12_000])
def test_a_stray_reply_inside_a_tls_record_is_never_read_as_the_next_ones(
    tls: tuple[Path, ssl.SSLContext], size: int
) -> None:
    """The stray reply comes in the same TLS record as the reply asked for: for a body of
    12,000 bytes, the record is read in two pieces and the stray bytes stay decrypted inside
    TLS, where no poll of the socket sees them."""
    cert, context = tls
    with FakeS3(tls=context) as server:
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        server.put("bkt", "big", data)
        server.put("bkt", "k2", b"bytes of k2")
        server.on(lambda r: server.answer(r) + reply(200, b"stray") if r.key == "big" else None)
        plane = plane_for(server, ca_bundle=str(cert))
        assert plane.get_range("bkt", "big", 0, size) == data
        time.sleep(0.05)
        assert plane.get_range("bkt", "k2", 0, 10) == b"bytes of k"
        assert server.connections == 2  # the one with bytes waiting in it was left
        plane.close()


def test_new_tls_connections_resume_an_earlier_session(
    tls: tuple[Path, ssl.SSLContext],
) -> None:
    """A resumed handshake skips the certificate's checks (and, before TLS 1.3, a round
    trip): every connection after the first offers the session of one before."""
    cert, context = tls
    with FakeS3(tls=context) as server:
        server.on(lambda r: Action("close", server.answer(r)))  # each reply ends its connection
        plane = plane_for(server, ca_bundle=str(cert))
        for i in range(5):
            data = f"object {i}".encode()
            assert plane.put_object("bkt", f"k{i}", data, md5_b64=md5_b64(data))
        assert server.connections == 5
        assert context.session_stats()["hits"] == 4
        plane.close()


def test_a_session_the_server_no_longer_resumes_is_replaced(
    tls: tuple[Path, ssl.SSLContext],
) -> None:
    """A server that restarted (new ticket keys) resumes no session of before: the next
    connection's full handshake gives the session the ones after it offer."""
    cert, context = tls
    with FakeS3(tls=context) as server:
        server.on(lambda r: Action("close", server.answer(r)))  # each reply ends its connection
        plane = plane_for(server, ca_bundle=str(cert))

        def put(name: str) -> None:
            assert plane.put_object("bkt", name, b"x", md5_b64=md5_b64(b"x"))

        for i in range(3):
            put(f"before{i}")
        assert context.session_stats()["hits"] == 2
        restarted = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        restarted.load_cert_chain(cert, cert.with_name("key.pem"))
        server.tls = restarted
        for i in range(3):
            put(f"after{i}")
        assert server.connections == 6
        assert restarted.session_stats()["hits"] == 2  # all but the first after the restart
        plane.close()


def test_a_tls_connection_closed_as_the_request_goes_out_is_stale(
    tls: tuple[Path, ssl.SSLContext],
) -> None:
    cert, context = tls
    with FakeS3(tls=context) as server:
        server.put("bkt", "k", b"tls bytes")
        plane = plane_for(server, ca_bundle=str(cert))
        assert plane.get_range("bkt", "k", 0, 3) == b"tls"
        closed: list[int] = []
        # The server closes the kept connection on the next request, without a reply.
        server.on(lambda r: DROP if not closed and not closed.append(1) else None)
        assert plane.get_range("bkt", "k", 4, 5) == b"bytes"
        plane.close()


def test_an_error_sent_before_a_large_body_was_read_is_read_on_tls(
    tls: tuple[Path, ssl.SSLContext],
) -> None:
    cert, context = tls
    with FakeS3(tls=context) as server:
        server.before_body(
            lambda r: (
                error(404, "NoSuchUpload", "The upload was aborted") if r.method == "PUT" else None
            )
        )
        plane = plane_for(server, ca_bundle=str(cert))
        body = b"p" * (16 * MiB)
        with pytest.raises(UploadMissingError, match="NoSuchUpload"):
            plane.upload_part("bkt", "k", "gone", 1, body, md5_b64=md5_b64(body))
        plane.close()


def test_an_authority_that_vouches_for_nothing_here_is_refused(
    tls: tuple[Path, ssl.SSLContext], tmp_path: Path
) -> None:
    _, context = tls
    (tmp_path / "other").mkdir()
    other, _ = self_signed_certificate(tmp_path / "other")
    with FakeS3(tls=context) as server:
        plane = plane_for(server, ca_bundle=str(other))
        with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
            plane.head_object("bkt", "k")
        plane.close()
        unverified = plane_for(server, ca_bundle=str(other), verify_tls=False)
        assert unverified.head_object("bkt", "k") is None  # reached: the key is just missing
        unverified.close()


# --------------------------------------------------------------------------------------------
# Proxies
# --------------------------------------------------------------------------------------------


def test_plain_http_through_a_proxy_names_the_whole_url(fake: FakeS3) -> None:
    with ForwardProxy() as proxy:
        plane = plane_for(fake, proxy=Proxy.from_url(proxy.url()))
        assert plane.get_range("bkt", "k1", 0, 5) == b"bytes"
        assert proxy.forwarded == [f"GET {fake.url}/bkt/k1 HTTP/1.1"]
        assert fake.requests[0].target == f"{fake.url}/bkt/k1"
        plane.close()


def test_https_through_a_proxy_tunnel_with_credentials(
    tls: tuple[Path, ssl.SSLContext],
) -> None:
    cert, context = tls
    with ForwardProxy(credentials=("u", "p@ss")) as proxy, FakeS3(tls=context) as server:
        server.put("bkt", "k", b"through a tunnel")
        plane = plane_for(
            server, ca_bundle=str(cert), proxy=Proxy.from_url(proxy.url("u", "p%40ss"))
        )
        assert plane.get_range("bkt", "k", 0, 16) == b"through a tunnel"
        assert proxy.tunnels == [f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"]
        assert server.requests[0].target == "/bkt/k"  # inside the tunnel: the path alone
        plane.close()
        refused = plane_for(
            server, ca_bundle=str(cert), proxy=Proxy.from_url(proxy.url("u", "wrong"))
        )
        with pytest.raises(FatalError, match="407") as info:
            refused.get_range("bkt", "k", 0, 16)
        assert "wrong" not in str(info.value)
        refused.close()


@pytest.mark.parametrize(
    ("no_proxy", "proxied"),
    [
        ("", True),
        ("127.0.0.1", False),
        ("example.com,127.0.0.1:9000", False),
        ("*", False),
        ("other.example", True),
    ],
)
def test_the_proxy_for_an_endpoint_follows_no_proxy(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, proxied: bool
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    found = proxy_for("http://127.0.0.1:9000")
    assert (found is not None) == proxied
    if found is not None:
        assert (found.host, found.port) == ("proxy.example", 3128)
    assert proxy_for("https://127.0.0.1:9000") is None  # no HTTPS_PROXY for https


# --------------------------------------------------------------------------------------------
# The minimum rate, and names in the request line
# --------------------------------------------------------------------------------------------


def test_a_trickling_reply_fails_within_its_window(fake: FakeS3) -> None:
    fake.on(lambda r: Action("trickle", fake.answer(r), delay=0.02) if r.key == "k1" else None)
    plane = plane_for(fake, min_rate=1000, min_rate_window=0.5)
    started = time.monotonic()
    with pytest.raises(TransientError, match="below the minimum"):
        plane.get_range("bkt", "k1", 0, 10)
    assert time.monotonic() - started < 5
    plane.close()


def test_a_bucket_name_is_encoded_in_the_request_line(fake: FakeS3) -> None:
    plane = plane_for(fake)
    assert plane.head_object("odd bucket\r\nX-Injected: 1", "k") is None  # no such bucket
    target = fake.requests[-1].target
    assert target.startswith("/odd%20bucket%0D%0AX-Injected%3A%201/")
    assert all(name != "x-injected" for name, _ in fake.requests[-1].headers)
    plane.close()
