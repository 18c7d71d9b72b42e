"""The fault-injecting proxy: transparent forwarding, and each fault as a client sees it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import io
import json
import os
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from longbow_testkit.faultproxy import FAULT_KINDS, FaultProxy, Faults, Request
from longbow_testkit.servers import LocalServer

from ..conftest import Bucket, new_bucket

pytestmark = pytest.mark.timeout(90)

MiB = 1024 * 1024
# One attempt only: "max_attempts" counts retries in botocore, "total_max_attempts" attempts.
SINGLE_ATTEMPT = {"total_max_attempts": 1, "mode": "standard"}
RESET_ERRORS = (ConnectionClosedError, BotoConnectionError, ResponseStreamingError)
BODY_ERRORS = (ResponseStreamingError, IncompleteReadError, ConnectionClosedError)


def proxy_client(server: LocalServer, proxy: FaultProxy, **config: Any) -> Any:
    """A boto3 client set up like ``server.endpoint.client()`` but talking to the proxy."""
    return dataclasses.replace(server.endpoint, url=proxy.url).client(**config)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def proxy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("faultproxy")]


@pytest.fixture()
def proxy_for(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: ``proxy_for(upstream_url, faults)`` started now, stopped after the test."""
    proxies: list[FaultProxy] = []

    def make(upstream_url: str, faults: Faults | None = None) -> FaultProxy:
        proxy = FaultProxy(upstream_url, faults, io_timeout=30).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
        assert proxy.errors == []


# --------------------------------------------------------------------------------------------
# A tiny local upstream that reports what it received, for exact framing checks
# --------------------------------------------------------------------------------------------


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and "100 Continue" for Expect

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            for _ in range(10_000):
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    for _ in range(100):
                        if self.rfile.readline() in (b"\r\n", b"\n", b""):
                            return bytes(out)
                    raise ValueError("too many trailers")
                out += self.rfile.read(size)
                self.rfile.readline()
            raise ValueError("too many chunks")
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self) -> None:
        body = self._read_body()
        if self.path in ("/204", "/304"):
            self.send_response(int(self.path[1:]))
            self.end_headers()
            return
        size = int(self.path.rsplit("=", 1)[1]) if "size=" in self.path else 0
        info = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "host": self.headers.get("Host"),
                "te": self.headers.get("Transfer-Encoding"),
                "expect": self.headers.get("Expect"),
                "len": len(body),
                "md5": hashlib.md5(body).hexdigest(),
                "pad": "p" * size,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(info), 7):
                piece = info[start : start + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(info)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(info)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _reply


@pytest.fixture()
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def read_head(sock: socket.socket) -> bytes:
    """Read bytes up to and including the blank line that ends a response head."""
    data = b""
    for _ in range(1000):
        if b"\r\n\r\n" in data:
            return data
        piece = sock.recv(1)
        if not piece:
            break
        data += piece
    return data


# --------------------------------------------------------------------------------------------
# Transparent forwarding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["seaweed_src", "moto", "rclone"])
def test_pass_through_and_counts(kind: str, request: pytest.FixtureRequest, proxy_for) -> None:
    server: LocalServer = request.getfixturevalue(kind)
    bucket: Bucket = new_bucket(server, "fp")
    proxy = proxy_for(server.endpoint.url)
    s3 = proxy_client(server, proxy)
    name = bucket.name
    small = os.urandom(100_000)
    part1, part2 = os.urandom(5 * MiB), os.urandom(1234)
    try:
        s3.put_object(Bucket=name, Key="dir/a b.bin", Body=small)
        s3.put_object(Bucket=name, Key="expect.bin", Body=io.BytesIO(small))  # Expect: 100-continue
        assert s3.get_object(Bucket=name, Key="dir/a b.bin")["Body"].read() == small
        ranged = s3.get_object(Bucket=name, Key="expect.bin", Range="bytes=10-19")
        assert ranged["Body"].read() == small[10:20]
        upload_id = s3.create_multipart_upload(Bucket=name, Key="mp.bin")["UploadId"]  # POST
        etags = [
            s3.upload_part(
                Bucket=name, Key="mp.bin", UploadId=upload_id, PartNumber=n, Body=io.BytesIO(p)
            )["ETag"]
            for n, p in ((1, part1), (2, part2))
        ]
        parts = {"Parts": [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]}
        s3.complete_multipart_upload(
            Bucket=name, Key="mp.bin", UploadId=upload_id, MultipartUpload=parts
        )
        assert s3.head_object(Bucket=name, Key="mp.bin")["ContentLength"] == len(part1 + part2)
        assert s3.get_object(Bucket=name, Key="mp.bin")["Body"].read() == part1 + part2
        listing = s3.list_objects_v2(Bucket=name)
        assert sorted(o["Key"] for o in listing["Contents"]) == [
            "dir/a b.bin",
            "expect.bin",
            "mp.bin",
        ]
        s3.delete_object(Bucket=name, Key="expect.bin")
        assert sorted(bucket.keys()) == ["dir/a b.bin", "mp.bin"]
    finally:
        s3.close()
    assert proxy.counts == {
        "GET": 2,
        "GET-range": 1,
        "PUT": 2,
        "UploadPart": 2,
        "HEAD": 1,
        "POST": 2,
        "DELETE": 1,
        "other": 1,
    }
    assert proxy.counts_by_method == {"GET": 4, "PUT": 4, "POST": 2, "HEAD": 1, "DELETE": 1}
    assert proxy.faults_injected == dict.fromkeys(FAULT_KINDS, 0)
    sent = proxy.request_bytes  # the body bytes that went upstream, by class
    assert (sent["PUT"], sent["UploadPart"]) == (2 * len(small), len(part1) + len(part2))
    assert sent["POST"] > 0 and sent["GET"] == sent["HEAD"] == sent["DELETE"] == 0
    if kind == "moto":
        # Werkzeug answers "Connection: close", so the proxy (transparently) closes too.
        assert proxy.upstream_connections == proxy.connections_accepted
    else:
        # Twelve requests over one client connection and one upstream connection.
        assert proxy.connections_accepted == 1
        assert proxy.upstream_connections == 1
    proxy.reset_counts()
    assert set(proxy.counts.values()) == {0}
    assert proxy.counts_by_method == {}


def test_http_framing_keepalive_and_host(echo_url: str, proxy_for) -> None:
    proxy = proxy_for(echo_url)
    port = int(proxy.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        # Chunked request body; the Host header is forwarded as the client sent it.
        conn.request(
            "PUT",
            "/b/k?x=1",
            body=iter([b"abc", b"", b"defg"]),
            encode_chunked=True,
            headers={"Host": "signed.example:1234"},
        )
        seen = json.loads(conn.getresponse().read())
        assert seen["host"] == "signed.example:1234"
        assert seen["te"] == "chunked"
        assert (seen["len"], seen["md5"]) == (7, hashlib.md5(b"abcdefg").hexdigest())
        # Chunked response.
        conn.request("GET", "/chunked/k?size=3000")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert json.loads(response.read())["pad"] == "p" * 3000
        # HEAD, 204 and 304 carry no body; the next request on the connection still works.
        conn.request("HEAD", "/b/k")
        response = conn.getresponse()
        assert int(response.getheader("Content-Length")) > 0
        assert response.read() == b""
        for status in (204, 304):
            conn.request("DELETE" if status == 204 else "GET", f"/{status}")
            response = conn.getresponse()
            assert (response.status, response.read()) == (status, b"")
        conn.request("POST", "/b/k?uploads", body=b"x" * 5000)
        assert json.loads(conn.getresponse().read())["len"] == 5000
    finally:
        conn.close()
    assert proxy.connections_accepted == 1
    assert proxy.upstream_connections == 1
    assert proxy.counts == {
        "GET": 1,
        "GET-range": 0,
        "PUT": 1,
        "UploadPart": 0,
        "HEAD": 1,
        "POST": 1,
        "DELETE": 1,
        "other": 1,  # GET /304: no key, so not an object GET
    }


def test_expect_100_continue_is_relayed(echo_url: str, proxy_for) -> None:
    proxy = proxy_for(echo_url)
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        body = b"q" * 3000
        head = (
            f"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()
        for _ in range(2):  # twice, to show the connection stays usable
            sock.sendall(head)
            assert read_head(sock).startswith(b"HTTP/1.1 100")  # before any body byte is sent
            sock.sendall(body)
            final = read_head(sock)
            assert final.startswith(b"HTTP/1.1 200")
            length = int(final.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            seen = json.loads(sock.recv(length, socket.MSG_WAITALL))
            assert (seen["expect"], seen["len"]) == ("100-continue", 3000)
    assert proxy.connections_accepted == 1


# --------------------------------------------------------------------------------------------
# Each fault, as the client sees it
# --------------------------------------------------------------------------------------------


def test_reset_mid_body(seaweed_src: LocalServer, proxy_for) -> None:
    bucket = new_bucket(seaweed_src, "reset")
    data = os.urandom(300_000)
    bucket.put("obj", data)
    proxy = proxy_for(seaweed_src.endpoint.url, Faults(reset_mid_body=1.0))
    s3 = proxy_client(seaweed_src, proxy, retries=SINGLE_ATTEMPT)
    try:
        # Request body: cut while forwarding, then a reset; the upstream stores nothing.
        with pytest.raises(RESET_ERRORS):
            s3.put_object(Bucket=bucket.name, Key="new", Body=data)
        assert bucket.keys() == ["obj"]
        assert 0 < proxy.request_bytes["PUT"] < len(data)  # the part that crossed the wire
        # Response body: headers and part of the body arrive, then a reset.
        body = s3.get_object(Bucket=bucket.name, Key="obj")["Body"]
        with pytest.raises(BODY_ERRORS):
            body.read()
        body.close()
        # No body either way: reset before the response head.
        with pytest.raises(RESET_ERRORS):
            s3.head_object(Bucket=bucket.name, Key="obj")
    finally:
        s3.close()
    assert proxy.faults_injected["reset_mid_body"] == 3
    assert proxy.connections_accepted == 3  # each reset killed its connection


def test_stall_causes_read_timeout(seaweed_src: LocalServer, proxy_for) -> None:
    bucket = new_bucket(seaweed_src, "stall")
    data = os.urandom(400_000)
    bucket.put("obj", data)
    proxy = proxy_for(seaweed_src.endpoint.url, Faults(stall=1.0, stall_seconds=20))
    s3 = proxy_client(seaweed_src, proxy, retries=SINGLE_ATTEMPT, read_timeout=1)
    try:
        started = time.monotonic()
        body = s3.get_object(Bucket=bucket.name, Key="obj")["Body"]  # the head comes at once
        with pytest.raises(ReadTimeoutError):
            body.read()  # part of the body, then silence
        body.close()
        with pytest.raises(ReadTimeoutError):
            s3.put_object(Bucket=bucket.name, Key="small", Body=b"x")  # silence before the head
        assert time.monotonic() - started < 10
    finally:
        s3.close()
    assert proxy.faults_injected["stall"] == 2
    started = time.monotonic()
    proxy.stop()  # interrupts the two stalls still running
    assert time.monotonic() - started < 5
    assert proxy_threads() == []


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("slow_down", 503, "SlowDown"), ("internal_error", 500, "InternalError")],
)
def test_local_error_answers(
    fault: str, status: int, code: str, seaweed_src: LocalServer, proxy_for
) -> None:
    bucket = new_bucket(seaweed_src, "err")
    proxy = proxy_for(seaweed_src.endpoint.url, Faults(**{fault: 1.0}))
    s3 = proxy_client(seaweed_src, proxy, retries=SINGLE_ATTEMPT)
    try:
        for body in (b"abc", io.BytesIO(b"abc")):  # with and without Expect: 100-continue
            with pytest.raises(ClientError) as caught:
                s3.put_object(Bucket=bucket.name, Key="k", Body=body)
            assert caught.value.response["Error"]["Code"] == code
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        with pytest.raises(ClientError) as caught:
            s3.head_object(Bucket=bucket.name, Key="k")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    finally:
        s3.close()
    assert bucket.keys() == []  # never forwarded
    assert proxy.faults_injected[fault] == 3
    # The raw answer: S3 XML with the right headers, and the connection stays usable.
    port = int(proxy.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", f"/{bucket.name}/k")
            response = conn.getresponse()
            raw = response.read()
            assert response.status == status
            assert response.getheader("Content-Type") == "application/xml"
            assert int(response.getheader("Content-Length")) == len(raw)
            assert raw.startswith(b"<?xml ")
            root = ET.fromstring(raw)
            assert root.tag == "Error"
            assert root.findtext("Code") == code
            assert root.findtext("Message")
            assert root.findtext("RequestId")
    finally:
        conn.close()


def test_flip_response_byte(seaweed_src: LocalServer, proxy_for) -> None:
    bucket = new_bucket(seaweed_src, "flipget")
    data = os.urandom(200_000)
    bucket.put("obj", data)
    proxy = proxy_for(seaweed_src.endpoint.url, Faults(flip_response_byte=1.0, seed=3))
    s3 = proxy_client(seaweed_src, proxy, retries=SINGLE_ATTEMPT)
    try:
        for kwargs in ({}, {"Range": "bytes=1000-50999"}):
            got = s3.get_object(Bucket=bucket.name, Key="obj", **kwargs)["Body"].read()
            want = data[1000:51000] if kwargs else data
            assert len(got) == len(want)
            diffs = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
            assert len(diffs) == 1 and got[diffs[0]] ^ want[diffs[0]] == 0xFF
        s3.head_object(Bucket=bucket.name, Key="obj")  # no body: untouched
    finally:
        s3.close()
    assert bucket.get("obj") == data  # the stored object is intact
    assert proxy.faults_injected["flip_response_byte"] == 2


def test_flip_request_byte_rejected_by_content_md5(seaweed_src: LocalServer, proxy_for) -> None:
    bucket = new_bucket(seaweed_src, "flipput")
    proxy = proxy_for(seaweed_src.endpoint.url, Faults(flip_request_byte=1.0))
    s3 = proxy_client(seaweed_src, proxy, retries=SINGLE_ATTEMPT)
    data = os.urandom(100_000)
    try:
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket=bucket.name, Key="k", Body=data, ContentMD5=md5_b64(data))
        assert caught.value.response["Error"]["Code"] in ("BadDigest", "InvalidDigest")
        upload_id = bucket.client.create_multipart_upload(Bucket=bucket.name, Key="mp")["UploadId"]
        with pytest.raises(ClientError) as caught:
            s3.upload_part(
                Bucket=bucket.name,
                Key="mp",
                UploadId=upload_id,
                PartNumber=1,
                Body=io.BytesIO(data),
                ContentMD5=md5_b64(data),
            )
        assert caught.value.response["Error"]["Code"] in ("BadDigest", "InvalidDigest")
        bucket.client.abort_multipart_upload(Bucket=bucket.name, Key="mp", UploadId=upload_id)
    finally:
        s3.close()
    assert bucket.keys() == []
    assert proxy.faults_injected["flip_request_byte"] == 2


def test_flip_request_byte_reaches_a_server_that_does_not_check(moto: LocalServer, proxy_for):
    bucket = new_bucket(moto, "flipmoto")
    proxy = proxy_for(moto.endpoint.url, Faults(flip_request_byte=1.0))
    s3 = proxy_client(moto, proxy, retries=SINGLE_ATTEMPT)
    data = os.urandom(50_000)
    try:
        s3.put_object(Bucket=bucket.name, Key="k", Body=data)
    finally:
        s3.close()
    stored = bucket.get("k")
    assert len(stored) == len(data)
    assert sum(a != b for a, b in zip(stored, data, strict=True)) == 1


def test_flips_on_chunked_bodies(echo_url: str, proxy_for) -> None:
    proxy = proxy_for(echo_url, Faults(flip_request_byte=1.0, seed=1))
    port = int(proxy.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    payload = [b"0123456789"] * 5
    try:
        conn.request("PUT", "/b/k", body=iter(payload), encode_chunked=True)
        seen = json.loads(conn.getresponse().read())
        assert seen["len"] == 50
        assert seen["md5"] != hashlib.md5(b"".join(payload)).hexdigest()
        proxy.set_faults(Faults(flip_response_byte=1.0, seed=1))
        conn.request("GET", "/chunked/b/k?size=500")
        raw = conn.getresponse().read()
        proxy.set_faults(Faults())
        conn.request("GET", "/chunked/b/k?size=500")
        clean = conn.getresponse().read()
    finally:
        conn.close()
    assert len(raw) == len(clean)
    assert sum(a != b for a, b in zip(raw, clean, strict=True)) == 1
    assert proxy.connections_accepted == 1
    assert proxy.faults_injected["flip_request_byte"] == 1
    assert proxy.faults_injected["flip_response_byte"] == 1


def test_data_only_flips_spare_listings_and_documents(echo_url: str, proxy_for) -> None:
    proxy = proxy_for(echo_url)
    port = int(proxy.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def fetch(method: str, target: str, body: bytes | None = None) -> bytes:
        conn.request(method, target, body=body)
        return conn.getresponse().read()

    targets = ["/b?list-type=2&size=300", "/b/k?tagging&size=300", "/b/size=300"]  # echo pads
    try:
        clean = [fetch("GET", t) for t in targets]
        proxy.set_faults(Faults(flip_response_byte=1.0, flip_request_byte=1.0, data_only=True))
        flipped = [fetch("GET", t) for t in targets]
        assert flipped[:2] == clean[:2]  # a listing and a sub-resource document: untouched
        assert sum(a != b for a, b in zip(flipped[2], clean[2], strict=True)) == 1
        body = b"x" * 1000
        assert (
            json.loads(fetch("PUT", "/b/k?tagging", body))["md5"] == hashlib.md5(body).hexdigest()
        )
        assert json.loads(fetch("PUT", "/b/k", body))["md5"] != hashlib.md5(body).hexdigest()
    finally:
        conn.close()
    assert proxy.faults_injected["flip_response_byte"] == 1
    assert proxy.faults_injected["flip_request_byte"] == 1


# --------------------------------------------------------------------------------------------
# Limits, filters, reproducibility, hooks and shutdown
# --------------------------------------------------------------------------------------------


def test_max_faults_and_only_methods(seaweed_src: LocalServer, proxy_for) -> None:
    bucket = new_bucket(seaweed_src, "limits")
    bucket.put("k", b"data")
    proxy = proxy_for(seaweed_src.endpoint.url, Faults(internal_error=1.0, max_faults=2))
    s3 = proxy_client(seaweed_src, proxy, retries=SINGLE_ATTEMPT)
    try:
        outcomes = []
        for _ in range(4):
            try:
                s3.head_object(Bucket=bucket.name, Key="k")
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        assert outcomes == [500, 500, "ok", "ok"]
        assert proxy.faults_injected["internal_error"] == 2

        proxy.set_faults(Faults(slow_down=1.0, only_methods=frozenset({"GET"})))
        s3.put_object(Bucket=bucket.name, Key="k2", Body=b"more")
        s3.head_object(Bucket=bucket.name, Key="k2")
        with pytest.raises(ClientError) as caught:
            s3.get_object(Bucket=bucket.name, Key="k2")
        assert caught.value.response["Error"]["Code"] == "SlowDown"
        assert proxy.faults_injected["slow_down"] == 1
    finally:
        s3.close()
    assert bucket.get("k2") == b"more"


def test_seed_makes_choices_reproducible(echo_url: str, proxy_for) -> None:
    proxy = proxy_for(echo_url)
    port = int(proxy.url.rsplit(":", 1)[1])

    def statuses() -> list[int]:
        proxy.set_faults(Faults(slow_down=0.5, seed=1234))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            out = []
            for _ in range(24):
                conn.request("GET", "/b/k")
                response = conn.getresponse()
                response.read()
                out.append(response.status)
            return out
        finally:
            conn.close()

    first = statuses()
    assert set(first) == {200, 503}
    assert statuses() == first


def test_on_request_hook_acts_at_a_precise_moment(seaweed_src: LocalServer, proxy_for) -> None:
    bucket = new_bucket(seaweed_src, "hook")
    bucket.put("obj", b"A" * 100)
    proxy = proxy_for(seaweed_src.endpoint.url)
    seen: list[Request] = []

    @proxy.on_request
    def overwrite_on_third_ranged_get(req: Request) -> None:
        seen.append(req)
        if req.kind == "GET-range" and sum(r.kind == "GET-range" for r in seen) == 3:
            bucket.put("obj", b"B" * 100)  # directly upstream, before this GET is forwarded

    def failing_hook(req: Request) -> None:
        raise RuntimeError("hook failure must not break the request")

    proxy.on_request(failing_hook)
    s3 = proxy_client(seaweed_src, proxy)
    try:
        pieces = [
            s3.get_object(Bucket=bucket.name, Key="obj", Range=f"bytes={i * 10}-{i * 10 + 9}")[
                "Body"
            ].read()
            for i in range(5)
        ]
    finally:
        s3.close()
    assert pieces == [b"A" * 10] * 2 + [b"B" * 10] * 3
    first = seen[0]
    assert (first.method, first.bucket, first.key, first.kind) == (
        "GET",
        bucket.name,
        "obj",
        "GET-range",
    )
    assert first.headers["range"] == "bytes=0-9"
    assert first.headers["host"] == proxy.url.removeprefix("http://")
    assert len(proxy.hook_errors) == 5


def test_stop_leaves_no_threads(echo_url: str) -> None:
    proxy = FaultProxy(echo_url, Faults(stall=1.0, stall_seconds=60)).start()
    host, port = proxy.url.removeprefix("http://").split(":")
    idle = socket.create_connection((host, int(port)), timeout=10)
    partial = socket.create_connection((host, int(port)), timeout=10)
    stalled = socket.create_connection((host, int(port)), timeout=10)
    try:
        partial.sendall(b"GET /b/k HTTP/1.1\r\nHost: h\r\n")  # head never finished
        stalled.sendall(b"GET /b/k HTTP/1.1\r\nHost: h\r\n\r\n")
        assert stalled.recv(100, socket.MSG_PEEK)  # head and part of the body, then the stall
        for _ in range(500):  # up to 10 s
            if proxy.faults_injected["stall"]:
                break
            time.sleep(0.02)
        assert len(proxy_threads()) == 4  # accept + three connections
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 5
        assert proxy_threads() == []
        for sock in (idle, partial):
            assert sock.recv(100) == b""  # closed by the proxy
        proxy.stop()  # idempotent
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=2).close()
    finally:
        for sock in (idle, partial, stalled):
            sock.close()
        proxy.stop()
    assert proxy.errors == []


def test_faults_validation() -> None:
    with pytest.raises(ValueError):
        Faults(slow_down=1.5)
    with pytest.raises(ValueError):
        Faults(stall_seconds=-1)
    with pytest.raises(ValueError):
        Faults(max_faults=-1)
    assert Faults(only_methods={"get"}).only_methods == frozenset({"GET"})  # type: ignore[arg-type]
