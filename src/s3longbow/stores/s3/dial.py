"""Opening a connection to an endpoint: directly, or through an HTTP proxy (a ``CONNECT``
tunnel for TLS), with TLS as the side's trust says, and finding the proxy an endpoint's
requests take from the environment, as botocore finds it.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from s3longbow.stores.s3.http1 import Reply
from s3longbow.stores.s3.stream import Stream

if TYPE_CHECKING:  # loaded only for https endpoints
    import ssl


class ProxyError(OSError):
    """The proxy refused to open a tunnel to the endpoint (`status`: its reply's)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it listens, and the Proxy-Authorization its URL's credentials
    give (never printed)."""

    host: str
    port: int
    authorization: str | None = None

    def __repr__(self) -> str:
        return f"Proxy({self.host}:{self.port})"

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """A proxy from ``http://[user:password@]host[:port]``.

        Raises:
            ValueError: Not an http:// proxy URL (the message never holds its credentials).
        """
        from urllib.parse import urlsplit

        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"proxy URL scheme {parts.scheme!r} is not supported: give an http:// proxy "
                f"(host {parts.hostname or '?'})"
            )
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        return cls(parts.hostname, parts.port or 80, authorization)


def connect(
    host: str,
    port: int,
    *,
    connect_timeout: float,
    read_timeout: float,
    tls: ssl.SSLContext | None = None,
    session: ssl.SSLSession | None = None,
    proxy: Proxy | None = None,
) -> socket.socket:
    """A connected socket (TLS when `tls` is given, with the host name checked as the context
    says) whose sends and receives wait at most `read_timeout` seconds. Through `proxy`, TLS
    runs inside a CONNECT tunnel; plain HTTP goes to the proxy itself (requests then name the
    endpoint in their request line). A TLS `session` of an earlier connection to the same
    host is offered for resumption (the server may decline: a full handshake then).

    Raises:
        OSError: Resolving, connecting, the proxy's tunnel or the TLS handshake failed
            (``ssl.SSLError``, ProxyError and timeouts included).
    """
    address = (proxy.host, proxy.port) if proxy is not None else (host, port)
    sock = socket.create_connection(address, connect_timeout)
    try:
        # Requests are written in one piece: nothing gains from delaying a small segment.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if proxy is not None and tls is not None:
            _open_tunnel(sock, host, port, proxy)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host, session=session)
        sock.settimeout(read_timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def _open_tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy) -> None:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
    stream = Stream(sock)
    reply = Reply(stream, "CONNECT")
    reply.begin()
    if not 200 <= reply.status < 300:
        raise ProxyError(
            f"the proxy {proxy.host}:{proxy.port} refused a tunnel to {authority}: "
            f"{reply.status} {reply.reason}"
            + (" (check the proxy's credentials)" if reply.status == 407 else ""),
            reply.status,
        )
    if stream.buffered():
        raise ProxyError(f"the proxy {proxy.host}:{proxy.port} sent bytes nobody asked for")


def proxy_for(url: str) -> Proxy | None:
    """The HTTP proxy that requests to `url` go through, as the environment says
    (``HTTPS_PROXY`` / ``HTTP_PROXY`` by the URL's scheme, unless ``NO_PROXY`` names its
    host), read the way botocore reads it, so both clients take the same way.

    Raises:
        ValueError: The proxy variable holds a URL this client cannot use (the message
            names no credentials).
    """
    names = ("https_proxy", "http_proxy", "no_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return None  # the usual case, decided without importing urllib.request (~40 ms)
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy_url = proxies.get(parts.scheme)
    # proxy_bypass_environment is the function botocore's own lookup uses (not in typeshed).
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy_url or bypass(parts.netloc, proxies):
        return None
    return Proxy.from_url(proxy_url)


# Contexts made so far, by trust. A run's stores (the source's and the destination's, and
# every pair's) share one where their trust is the same: loading OpenSSL's default
# authorities takes ~18 ms of CPU per context, paid once per process instead of once per
# store. Bounded: a process that is given many bundles (a test session) keeps the newest.
_CONTEXTS_KEPT = 16
_contexts: dict[tuple[str | None, bool, tuple[int, int] | None], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def tls_context(ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    """Certificates and host names checked against `ca_bundle` (PEM), or OpenSSL's default
    authorities without one; nothing checked when `verify` is off. The same trust gives the
    same context (a bundle file changed since is read again)."""
    key = (ca_bundle, verify, _stamp(ca_bundle))
    with _contexts_lock:
        context = _contexts.get(key)
        if context is None:
            context = _new_context(ca_bundle, verify)
            _contexts[key] = context
            while len(_contexts) > _CONTEXTS_KEPT:
                del _contexts[next(iter(_contexts))]
    return context


def _stamp(path: str | None) -> tuple[int, int] | None:
    """A bundle file's modification time and size (None: no file, or none to read: the
    context's creation says why)."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _new_context(ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    import ssl  # only https pays for its import (~20 ms)

    context = ssl.create_default_context(cafile=ca_bundle)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
