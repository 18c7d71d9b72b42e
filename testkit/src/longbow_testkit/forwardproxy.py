"""A small forward HTTP proxy on 127.0.0.1, as companies put between their machines and S3.

It opens CONNECT tunnels (for https endpoints) and forwards requests whose request line names
a whole URL (for http endpoints), relaying every byte untouched both ways, and records what it
saw: the requests' first lines and the Proxy-Authorization each carried. With `credentials`
it refuses (407) a client that does not give them.
"""

from __future__ import annotations

import base64
import socket
import threading
from types import TracebackType
from urllib.parse import urlsplit


class ForwardProxy:
    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.lines: list[str] = []  # the first request line of each client connection
        self.authorizations: list[str | None] = []
        self.agents: list[str | None] = []  # the User-Agent of each first request
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    @property
    def tunnels(self) -> list[str]:
        return [line for line in self.lines if line.startswith("CONNECT ")]

    @property
    def forwarded(self) -> list[str]:
        return [line for line in self.lines if not line.startswith("CONNECT ")]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(30)
        with self._lock:
            self._open.append(client)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                piece = client.recv(65536)
                if not piece:
                    client.close()
                    return
                head += piece
            first, _, rest = head.partition(b"\r\n")
            line = first.decode("latin-1")
            fields = {
                name.strip().lower(): value.strip()
                for name, _, value in (
                    raw.decode("latin-1").partition(":")
                    for raw in rest.split(b"\r\n\r\n")[0].split(b"\r\n")
                )
            }
            authorization = fields.get("proxy-authorization")
            with self._lock:
                self.lines.append(line)
                self.authorizations.append(authorization)
                self.agents.append(fields.get("user-agent"))
            if self.credentials is not None:
                expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
                if authorization != expected:
                    client.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                    )
                    client.close()
                    return
            method, target, _ = line.split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                leftover = head.split(b"\r\n\r\n", 1)[1]
            else:
                # A whole URL on the request line: forwarded as it is (servers accept it), and
                # the connection stays a pipe to that endpoint.
                parts = urlsplit(target)
                upstream = socket.create_connection(
                    (parts.hostname or "", parts.port or 80), timeout=30
                )
                leftover = head
            with self._lock:
                self._open.append(upstream)
            if leftover:
                upstream.sendall(leftover)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            thread = threading.Thread(target=_pump, args=(a, b), daemon=True)
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


__all__ = ["ForwardProxy"]
