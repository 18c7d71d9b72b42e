"""A small S3 server on 127.0.0.1 whose every answer a test can script, at the byte level.

Real servers do not misbehave on demand; servers in the wider world do: truncated listings
without a continuation token, V1-only listings, interim replies, trickling bodies, framing
that lies, redirects, wrong regions, clocks that disagree, idle connections closed under TLS.
:class:`FakeS3` answers the requests Longbow makes from a bucket held in memory (HEAD and GET
of objects and buckets with ranges, PUT, ListObjectsV2 in byte order, ListObjectVersions,
multipart uploads), records every request it receives, and lets a test replace any answer:

    with FakeS3() as server:
        server.objects["bkt", "a"] = b"data"
        server.on(lambda r: r.method == "GET", lambda r: interim(103) + server.answer(r))
        ...
        assert server.requests[0].header("authorization").startswith("AWS4-HMAC-SHA256")

An override returns the raw bytes of the reply (several replies, interim ones, garbage), or
an :class:`Action` (drop the connection, hang, trickle). Signatures are not checked unless a
test checks them itself from the recorded requests.
"""

from __future__ import annotations

import hashlib
import html
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.client import responses
from types import TracebackType
from urllib.parse import parse_qsl, quote, unquote, urlsplit


@dataclass
class Request:
    """One request as the server received it."""

    method: str
    target: str  # as on the request line
    path: str  # decoded
    query: dict[str, str]
    headers: list[tuple[str, bytes]]  # names in lower case, values as raw bytes
    body: bytes
    connection: int  # which connection (in accept order) carried it
    early: Answer | None = None  # answered before its body was read (see before_body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value.decode("latin-1")
        return None

    @property
    def bucket(self) -> str:
        return self.path.lstrip("/").split("/", 1)[0]

    @property
    def key(self) -> str:
        parts = self.path.lstrip("/").split("/", 1)
        return parts[1] if len(parts) > 1 else ""

    @property
    def signed_region(self) -> str | None:
        """The region the Authorization header's credential scope names."""
        auth = self.header("authorization") or ""
        if "Credential=" not in auth:
            return None
        return auth.split("Credential=")[1].split(",")[0].split("/")[2]


@dataclass(frozen=True)
class Action:
    """What to do instead of sending bytes: "drop" (close without a reply), "hang" (never
    answer), "trickle" (send `data` one byte every `delay` seconds), "close" (send `data`,
    then close without saying so)."""

    kind: str
    data: bytes = b""
    delay: float = 0.0


DROP = Action("drop")
HANG = Action("hang")


def reply(
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    *,
    length: bool = True,
) -> bytes:
    """The raw bytes of a reply (a Content-Length is added unless `length` is False)."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if length and not any(name.lower() == "content-length" for name, _ in items):
        items.append(("Content-Length", str(len(body))))
    head = f"HTTP/1.1 {status} {responses.get(status, 'Whatever')}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in items)
    return head.encode("utf-8") + b"\r\n" + body


def interim(status: int = 103, headers: dict[str, str] | None = None) -> bytes:
    """An interim (1xx) reply."""
    return reply(status, headers=headers, length=False)


def error(status: int, code: str, message: str = "", extra: str = "") -> bytes:
    body = (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>{html.escape(message)}</Message>{extra}</Error>"
    ).encode()
    return reply(status, body, {"Content-Type": "application/xml"})


Answer = bytes | Action
Override = Callable[[Request], Answer | None]


@dataclass
class _Upload:
    bucket: str
    key: str
    parts: dict[int, bytes] = field(default_factory=dict)
    initiated: float = field(default_factory=time.time)


class FakeS3:
    """The server (see the module's docstring). Use it as a context manager.

    Args:
        tls: Serve https with this context instead of plain http.
        page_size: Most keys a listing page holds (unless the request asks for fewer).
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None, page_size: int = 1000) -> None:
        self.tls = tls
        self.page_size = page_size
        self.objects: dict[tuple[str, str], bytes] = {}
        self.etags: dict[tuple[str, str], str] = {}  # where not the MD5 of the bytes
        self.metadata: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        self.buckets: set[str] = {"bkt"}
        self.requests: list[Request] = []
        self.connections = 0
        self.uploads: dict[str, _Upload] = {}
        self._overrides: list[Override] = []
        self._early: list[Override] = []
        self._lock = threading.Lock()
        self._upload_ids = 0
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def put(self, bucket: str, key: str, data: bytes, **metadata: bytes) -> None:
        self.buckets.add(bucket)
        self.objects[bucket, key] = data
        self.metadata[bucket, key] = list(metadata.items())

    def on(self, answer: Override) -> None:
        """Answer with `answer(request)` where it returns bytes or an Action (None: as
        before); the newest override is asked first."""
        self._overrides.insert(0, answer)

    def before_body(self, answer: Override) -> None:
        """Answer from the request's head alone, before its body is read (the body is then
        never read and the connection ends after the answer), where `answer` says so."""
        self._early.insert(0, answer)

    def of(self, method: str, *, query: str | None = None) -> list[Request]:
        """The requests received with `method` (and a query parameter named `query`)."""
        return [
            r for r in self.requests if r.method == method and (query is None or query in r.query)
        ]

    # -- serving ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with self._lock:
            self._open.append(conn)
        try:
            conn.settimeout(30)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                reader = conn.makefile("rb")
                while not self._stop.is_set():
                    request = _read_request(reader, number, self._early_answer)
                    if request is None:
                        return
                    with self._lock:
                        self.requests.append(request)
                    if request.early is not None:
                        # Answered before the body: read and drop the rest until the client
                        # closes (a lingering close: an abrupt one would reset the connection
                        # and lose the answer on its way).
                        self._send(conn, request.early)
                        conn.settimeout(5)
                        while reader.read1(65536):
                            pass
                        return
                    answer = self._answer_for(request)
                    if request.method == "HEAD" and isinstance(answer, bytes):
                        answer = _head_only(answer)  # a reply to HEAD has no body
                    if not self._send(conn, answer):
                        return
        except (OSError, ValueError):
            return  # the client went away, or sent what this server cannot read

    def _early_answer(self, request: Request) -> Answer | None:
        for override in list(self._early):
            answer = override(request)
            if answer is not None:
                return answer
        return None

    def _answer_for(self, request: Request) -> Answer:
        for override in list(self._overrides):
            answer = override(request)
            if answer is not None:
                return answer
        return self.answer(request)

    def _send(self, conn: socket.socket, answer: Answer) -> bool:
        """Send an answer; False when the connection is to end."""
        if isinstance(answer, bytes):
            conn.sendall(answer)
            return True
        if answer.kind == "drop":
            return False
        if answer.kind == "hang":
            self._stop.wait(60)
            return False
        if answer.kind == "close":
            conn.sendall(answer.data)
            return False
        if answer.kind == "trickle":
            for i in range(len(answer.data)):
                if self._stop.wait(answer.delay):
                    return False
                conn.sendall(answer.data[i : i + 1])
            return True
        raise ValueError(answer.kind)

    # -- the default answers: a bucket held in memory -----------------------------------------

    def answer(self, request: Request) -> bytes:
        """What a plain S3 server would answer."""
        bucket, key, q = request.bucket, request.key, request.query
        if bucket not in self.buckets:
            return error(404, "NoSuchBucket", "The specified bucket does not exist")
        if not key:
            if request.method == "HEAD":
                return reply(200, headers={"x-amz-bucket-region": "us-east-1"})
            if "versions" in q:
                return self._versions(request)
            if "uploads" in q and request.method == "GET":
                return self._list_uploads(request)
            if "delete" in q and request.method == "POST":
                for key_text in re.findall(r"<Key>(.*?)</Key>", request.body.decode()):
                    self.objects.pop((bucket, html.unescape(key_text)), None)
                return reply(200, b"<DeleteResult></DeleteResult>")
            if request.method == "GET":
                return self._list(request)
            return error(405, "MethodNotAllowed")
        if request.method == "POST" and "uploads" in q:
            with self._lock:
                self._upload_ids += 1
                upload_id = f"up{self._upload_ids}"
                self.uploads[upload_id] = _Upload(bucket, key)
            started = (
                f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket>"
                f"<Key>{html.escape(key)}</Key><UploadId>{upload_id}</UploadId>"
                "</InitiateMultipartUploadResult>"
            )
            return reply(200, started.encode())
        if "uploadId" in q:
            return self._multipart(request)
        if request.method == "PUT":
            self.objects[bucket, key] = request.body
            self.etags.pop((bucket, key), None)
            self.metadata[bucket, key] = [
                (name, value) for name, value in request.headers if name.startswith("x-amz-meta-")
            ]
            return reply(200, headers={"ETag": f'"{hashlib.md5(request.body).hexdigest()}"'})
        if request.method == "DELETE":
            self.objects.pop((bucket, key), None)
            return reply(204)
        data = self.objects.get((bucket, key))
        if data is None:
            if request.method == "HEAD":
                return reply(404)
            return error(404, "NoSuchKey", "The specified key does not exist.")
        etag = self.etags.get((bucket, key)) or hashlib.md5(data).hexdigest()
        if_match = request.header("if-match")
        if if_match and if_match.strip('"') != etag:
            return error(412, "PreconditionFailed")
        headers: list[tuple[str, str]] = [
            ("ETag", f'"{etag}"'),
            ("Last-Modified", formatdate(1_700_000_000, usegmt=True)),
        ]
        for name, value in self.metadata.get((bucket, key), []):
            headers.append((name, value.decode("latin-1")))
        body = data
        status = 200
        ranged = request.header("range")
        if ranged:
            first, last = (int(n) for n in ranged.split("=")[1].split("-"))
            body = data[first : last + 1]
            status = 206
            headers.append(("Content-Range", f"bytes {first}-{last}/{len(data)}"))
        headers.append(("Content-Length", str(len(body))))
        raw = reply(status, headers=headers, length=False)
        # Header values were given as Latin-1 text standing for raw bytes.
        return raw.decode("utf-8").encode("latin-1") + (b"" if request.method == "HEAD" else body)

    def keys(self, bucket: str) -> list[str]:
        return sorted(k for b, k in self.objects if b == bucket)

    def list_page(self, request: Request) -> tuple[list[str], bool]:
        """The keys of the listing page a request asks for, and whether more follow (byte
        order; start-after, marker and continuation tokens are the last key sent)."""
        q = request.query
        after = q.get("continuation-token") or q.get("start-after") or q.get("marker") or ""
        size = min(int(q.get("max-keys", "1000")), self.page_size)
        keys = [k for k in self.keys(request.bucket) if k.startswith(q.get("prefix", ""))]
        keys = [k for k in keys if k > after]
        return keys[:size], len(keys) > size

    def _list(self, request: Request, *, token: bool = True) -> bytes:
        keys, truncated = self.list_page(request)
        return list_reply(
            [(k, self.objects[request.bucket, k]) for k in keys],
            truncated=truncated,
            token=keys[-1] if truncated and token and keys else None,
        )

    def _versions(self, request: Request) -> bytes:
        q = request.query
        after = q.get("key-marker", "")
        size = min(int(q.get("max-keys", "1000")), self.page_size)
        keys = [k for k in self.keys(request.bucket) if k.startswith(q.get("prefix", ""))]
        keys = [k for k in keys if k > after]
        page, truncated = keys[:size], len(keys) > size
        entries = "".join(
            f"<Version><Key>{html.escape(k)}</Key><VersionId>v1</VersionId>"
            f"<IsLatest>true</IsLatest><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
            f'<ETag>"{hashlib.md5(self.objects[request.bucket, k]).hexdigest()}"</ETag>'
            f"<Size>{len(self.objects[request.bucket, k])}</Size></Version>"
            for k in page
        )
        body = (
            "<ListVersionsResult><Name>bkt</Name>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{entries}"
            "</ListVersionsResult>"
        )
        return reply(200, body.encode(), {"Content-Type": "application/xml"})

    def _list_uploads(self, request: Request) -> bytes:
        entries = "".join(
            f"<Upload><Key>{html.escape(u.key)}</Key><UploadId>{upload_id}</UploadId>"
            f"<Initiated>{time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime(u.initiated))}"
            "</Initiated></Upload>"
            for upload_id, u in list(self.uploads.items())
            if u.bucket == request.bucket and u.key.startswith(request.query.get("prefix", ""))
        )
        body = f"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>{entries}"
        return reply(200, (body + "</ListMultipartUploadsResult>").encode())

    def _multipart(self, request: Request) -> bytes:
        upload = self.uploads.get(request.query["uploadId"])
        if upload is None:
            return error(404, "NoSuchUpload", "The specified upload does not exist.")
        if request.method == "PUT":
            number = int(request.query["partNumber"])
            upload.parts[number] = request.body
            return reply(200, headers={"ETag": f'"{hashlib.md5(request.body).hexdigest()}"'})
        if request.method == "DELETE":
            self.uploads.pop(request.query["uploadId"], None)
            return reply(204)
        if request.method == "POST":
            parts = [upload.parts[n] for n in sorted(upload.parts)]
            self.objects[upload.bucket, upload.key] = b"".join(parts)
            self.uploads.pop(request.query["uploadId"], None)
            digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts))
            etag = f"{digest.hexdigest()}-{len(parts)}"
            self.etags[upload.bucket, upload.key] = etag
            body = f"<CompleteMultipartUploadResult><ETag>&quot;{etag}&quot;</ETag>"
            return reply(200, (body + "</CompleteMultipartUploadResult>").encode())
        listed = "".join(
            f"<Part><PartNumber>{n}</PartNumber><Size>{len(p)}</Size>"
            f'<ETag>"{hashlib.md5(p).hexdigest()}"</ETag></Part>'
            for n, p in sorted(upload.parts.items())
        )
        body = f"<ListPartsResult><IsTruncated>false</IsTruncated>{listed}</ListPartsResult>"
        return reply(200, body.encode())

    # -- lifetime -------------------------------------------------------------------------------

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

    def __enter__(self) -> FakeS3:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def list_reply(
    objects: list[tuple[str, bytes]],
    *,
    truncated: bool,
    token: str | None = None,
    v1: bool = False,
    next_marker: str | None = None,
    prefixes: list[str] | None = None,
) -> bytes:
    """A ListObjectsV2 reply (the older ListObjects form with `v1`), keys URL-encoded."""
    entries = "".join(
        f"<Contents><Key>{quote(k, safe='/')}</Key><Size>{len(data)}</Size>"
        f'<ETag>"{hashlib.md5(data).hexdigest()}"</ETag>'
        "<LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>"
        for k, data in objects
    )
    entries += "".join(
        f"<CommonPrefixes><Prefix>{quote(p, safe='/')}</Prefix></CommonPrefixes>"
        for p in prefixes or []
    )
    top = f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
    top += "<EncodingType>url</EncodingType>"
    if v1:
        top += "<Marker></Marker>"
        if next_marker:
            top += f"<NextMarker>{quote(next_marker, safe='/')}</NextMarker>"
    else:
        top += f"<KeyCount>{len(objects)}</KeyCount>"
        if token:
            top += f"<NextContinuationToken>{html.escape(token)}</NextContinuationToken>"
    body = f"<ListBucketResult><Name>bkt</Name>{top}{entries}</ListBucketResult>"
    return reply(200, body.encode(), {"Content-Type": "application/xml"})


def _head_only(answer: bytes) -> bytes:
    """A reply's head alone (every reply in `answer`, for interim ones before it)."""
    head, blank, _ = answer.rpartition(b"\r\n\r\n")
    return head + blank if blank else answer


def _read_request(
    reader: object, number: int, early: Callable[[Request], Answer | None]
) -> Request | None:
    """One request from the connection's reader (its body left unread when `early` answers
    from its head); None at the end of the stream."""
    readline = reader.readline  # type: ignore[attr-defined]
    read = reader.read  # type: ignore[attr-defined]
    line = readline(65537)
    while line in (b"\r\n", b"\n"):
        line = readline(65537)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: list[tuple[str, bytes]] = []
    while True:
        raw = readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.partition(b":")
        headers.append((name.decode("latin-1").strip().lower(), value.strip()))
    parts = urlsplit(target)
    request = Request(
        method=method,
        target=target,
        path=unquote(parts.path),
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=headers,
        body=b"",
        connection=number,
    )
    request.early = early(request)
    if request.early is None:
        length = next((int(v) for n, v in headers if n == "content-length"), 0)
        request.body = read(length) if length else b""
    return request


__all__ = [
    "DROP",
    "HANG",
    "Action",
    "FakeS3",
    "Request",
    "error",
    "interim",
    "list_reply",
    "reply",
]
