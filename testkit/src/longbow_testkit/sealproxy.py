"""An S3 front that makes a local server look like a KMS-encrypted bucket (for tests).

Objects encrypted with KMS or a customer key have ETags that are not the MD5 of their bytes,
though they look like one; no local server produces such ETags. This reverse proxy sits on
127.0.0.1 in front of a real server and, for every object, replaces the ETag (in headers and
in listing XML) with an opaque value of the same form, marks GET and HEAD answers with
`x-amz-server-side-encryption: aws:kms`, and maps the opaque ETags of `If-Match` back.
Requests are signed again for the server with its own keys, since the proxy changes signed
headers. It can also flip one byte of the first GET body of chosen keys, to show that a copy
proven by the object's additional checksum catches corrupted reads. With `seal=False` it only
passes requests through, recording each one's headers (to see what a client really sends), and
can leave chosen reply headers out.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from longbow_testkit.servers import Endpoint

_ETAG_XML = re.compile(
    rb"<ETag>(&quot;|&#34;|\")?([0-9a-fA-F]{32}(?:-\d+)?)(&quot;|&#34;|\")?</ETag>"
)
_HOP_HEADERS = {
    "host",
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "user-agent",
}


class SealProxy:
    """The proxy's state: the ETag map and the keys whose first read is corrupted."""

    def __init__(self, upstream: Endpoint, *, seal: bool = True) -> None:
        self.upstream = upstream
        self.sealing = seal
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        # Called before each request is forwarded (method, path, headers); a status code
        # returned is answered instead, as an S3 error, and the request is not forwarded.
        self.before: Callable[[str, str, dict[str, str]], int | None] | None = None
        self._sealed: dict[str, str] = {}  # opaque -> real
        self._lock = threading.Lock()
        self.corrupt_once: set[str] = set()  # "bucket/key" whose next GET body is flipped
        # Reply headers (lower case) left out, as a server that does not know them would.
        self.hide_reply_headers: set[str] = set()
        self.corrupted = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def endpoint(self) -> Endpoint:
        """The proxy as an endpoint (same keys as the server behind it)."""
        up = self.upstream
        return Endpoint(up.kind, self.url, up.access_key, up.secret_key, up.region)

    def seal(self, etag: str) -> str:
        """The opaque ETag shown for a real one (same form: 32 hex digits, then -N if any)."""
        if not self.sealing:
            return etag
        real, dash, count = etag.partition("-")
        opaque = hashlib.md5(b"sealed:" + real.encode()).hexdigest() + dash + count
        with self._lock:
            self._sealed[opaque] = etag
        return opaque

    def unseal(self, etag: str) -> str:
        with self._lock:
            return self._sealed.get(etag, etag)

    def take_corruption(self, path: str) -> bool:
        with self._lock:
            name = unquote(path.split("?", 1)[0]).lstrip("/")
            if name in self.corrupt_once:
                self.corrupt_once.discard(name)
                self.corrupted += 1
                return True
            return False


def _handler(proxy: SealProxy) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(proxy.upstream.url)
    if target.hostname is None:
        raise ValueError(f"no host in the upstream URL {proxy.upstream.url}")
    host: str = target.hostname
    credentials = Credentials(proxy.upstream.access_key, proxy.upstream.secret_key)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return  # quiet: tests read the outcome, not the traffic

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = {k.lower(): v for k, v in self.headers.items()}
            with proxy._lock:
                proxy.requests.append((self.command, self.path, seen))
            status = proxy.before(self.command, self.path, seen) if proxy.before else None
            if status is not None:
                error = (
                    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
                    b"<Message>injected by the test</Message></Error>"
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            for name in ("If-Match", "If-None-Match"):
                value = headers.get(name, "").strip(chr(34))
                if value and value != "*":  # "*" (any object) is no ETag and stays bare
                    headers[name] = f'"{proxy.unseal(value)}"'
            request = AWSRequest(
                method=self.command,
                url=f"{proxy.upstream.url}{self.path}",
                data=body,
                headers=headers,
            )
            S3SigV4Auth(credentials, "s3", proxy.upstream.region).add_auth(request)
            conn = http.client.HTTPConnection(host, target.port, timeout=60)
            try:
                sent = dict(request.headers.items())
                sent["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=sent)
                response = conn.getresponse()
                data = response.read()
                reply = [(k, v) for k, v in response.getheaders()]
            finally:
                conn.close()
            object_read = self.command in ("GET", "HEAD") and "?" not in self.path.strip("/")
            out: list[tuple[str, str]] = []
            for name, value in reply:
                lower = name.lower()
                if lower in ("content-length", "transfer-encoding", "connection"):
                    continue
                if lower in proxy.hide_reply_headers:
                    continue
                if lower == "etag" and value.strip('"'):
                    value = f'"{proxy.seal(value.strip(chr(34)))}"'
                out.append((name, value))
            if proxy.sealing and object_read and 200 <= response.status < 300:
                out.append(("x-amz-server-side-encryption", "aws:kms"))
                if self.command == "GET" and data and proxy.take_corruption(self.path):
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
            if b"<ETag>" in data:
                data = _ETAG_XML.sub(
                    lambda m: (
                        b"<ETag>&quot;"
                        + proxy.seal(m.group(2).decode()).encode()
                        + b"&quot;</ETag>"
                    ),
                    data,
                )
            self.send_response(response.status, response.reason)
            for name, value in out:
                self.send_header(name, value)
            declared = next((v for n, v in reply if n.lower() == "content-length"), "0")
            # A HEAD's length is the object's, though no body follows.
            self.send_header(
                "Content-Length", declared if self.command == "HEAD" else str(len(data))
            )
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


@contextmanager
def seal_proxy(upstream: Endpoint, *, seal: bool = True) -> Iterator[SealProxy]:
    """Run a SealProxy in front of `upstream` for the duration of the block."""
    proxy = SealProxy(upstream, seal=seal)
    thread = threading.Thread(target=proxy._server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy._server.shutdown()
        proxy._server.server_close()
        thread.join(timeout=5)


__all__ = ["SealProxy", "seal_proxy"]
