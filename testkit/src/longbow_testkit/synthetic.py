"""A synthetic S3 listing endpoint: buckets of up to a billion keys that exist only as arithmetic.

Seeding ten million objects into a local server takes hours; listing them is what planning
measures. :class:`SyntheticS3` is a small HTTP/1.1 server on 127.0.0.1 whose buckets are key
spaces (:class:`KeySpace`): key ``i`` of ``count`` is ``data/{i // 1000:06d}/object-{i:09d}.bin``,
its size and ETag are computed from ``i``, and a destination can be the same space with every
k-th key missing or every m-th key of another size. Nothing is held in memory: where a page
starts (``start-after``, ``marker``, a continuation token) is found by bisection over the
index, since the names are in byte order by construction.

It answers what listing a bucket needs, path-style: HeadBucket, GetBucketLocation,
ListObjectsV2 (``prefix``, ``delimiter``, ``continuation-token``, ``start-after``,
``max-keys``, ``encoding-type=url``), the older ListObjects (``marker``) and HEAD of an
object. Signatures are not checked (any Authorization is accepted); anything else is
answered 501. ``delay`` holds every reply back that many seconds, as a far-away S3 would
(replies are computed on a thread per connection, so delayed requests overlap).

    with SyntheticS3({"src": KeySpace(10**6), "dst": KeySpace(10**6, missing_every=2)}) as s3:
        url = s3.url                           # http://127.0.0.1:PORT, path-style

Run as a program (``python -m longbow_testkit.synthetic --bucket src=1000000 --bucket
dst=1000000,missing=2``) it serves until SIGTERM or SIGINT, after printing one line
``listening 127.0.0.1:PORT``; :func:`start_process` starts it so, which keeps its CPU apart from
the caller's (:meth:`SyntheticProcess.cpu_seconds`).
"""

from __future__ import annotations

import argparse
import base64
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import IO
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

from longbow_testkit import procstat
from longbow_testkit.servers.endpoint import Endpoint

__all__ = ["KeySpace", "SyntheticProcess", "SyntheticS3", "start_process"]

_HOST = "127.0.0.1"
_MAX_KEYS = 1000  # what S3 sends at most in one page
_MODIFIED = "2026-01-01T00:00:00.000Z"
_REGION = "us-east-1"
# Key names: fixed-width decimal fields, so that byte order is index order.
_FOLDER_DIGITS = 6
_INDEX_DIGITS = 9
# ETags: the index times a large odd number, modulo 2^64, then the index itself.
_MIX = 0x9E3779B97F4A7C15
_WRAP = 2**64


@dataclass(frozen=True)
class KeySpace:
    """The keys of one synthetic bucket, each computed from its index.

    Attributes:
        count: Keys in the space (indexes 0 to count - 1), at most 10^9.
        missing_every: Index ``i`` is absent when ``i % missing_every == 0`` (0: none is).
        differs_every: A present index ``i`` with ``i % differs_every == 0`` has another size
            and ETag than the same index elsewhere (0: none has).
        per_folder: Keys per folder (``data/000123/``).
    """

    count: int
    missing_every: int = 0
    differs_every: int = 0
    per_folder: int = 1000

    def __post_init__(self) -> None:
        if not 0 <= self.count <= 10**_INDEX_DIGITS:
            raise ValueError(f"a key space holds 0 to 10^{_INDEX_DIGITS} keys, not {self.count}")
        if self.per_folder < 1 or self.count > self.per_folder * 10**_FOLDER_DIGITS:
            raise ValueError(
                f"{self.count} keys in folders of {self.per_folder} need more than "
                f"10^{_FOLDER_DIGITS} folders"
            )
        if self.missing_every < 0 or self.differs_every < 0:
            raise ValueError("missing_every and differs_every cannot be negative")

    def key(self, index: int) -> str:
        """The name of key `index` (whether or not it is present)."""
        return f"data/{index // self.per_folder:06d}/object-{index:09d}.bin"

    def present(self, index: int) -> bool:
        every = self.missing_every
        return 0 <= index < self.count and not (every and index % every == 0)

    def differs(self, index: int) -> bool:
        every = self.differs_every
        return bool(every) and index % every == 0

    def size(self, index: int) -> int:
        return 1024 + index % 4096 + (1 if self.differs(index) else 0)

    def etag(self, index: int) -> str:
        """A 32-digit hex ETag (the form of an MD5) computed from the index."""
        mixed = (index * _MIX + (7 if self.differs(index) else 0)) % _WRAP
        return f"{mixed:016x}{index:016x}"

    @property
    def present_count(self) -> int:
        """How many keys are present."""
        every = self.missing_every
        if not every:
            return self.count
        return self.count - (self.count + every - 1) // every

    # -- positions, by bisection over the index -------------------------------------------------

    def first_where(self, below: int, above: int, before: Callable[[int], bool]) -> int:
        """The first index in [below, above) for which ``before(index)`` is false, where
        `before` is true for a leading run of indexes and false after it."""
        while below < above:
            middle = (below + above) // 2
            if before(middle):
                below = middle + 1
            else:
                above = middle
        return below

    def first_after(self, name: str) -> int:
        """The first index whose key is greater than `name`."""
        return self.first_where(0, self.count, lambda i: self.key(i) <= name)

    def first_at_or_after(self, name: str) -> int:
        """The first index whose key is not less than `name`."""
        return self.first_where(0, self.count, lambda i: self.key(i) < name)

    def first_not_under(self, prefix: str) -> int:
        """The first index whose key is after every key that starts with `prefix`."""
        cut = len(prefix)
        return self.first_where(0, self.count, lambda i: self.key(i)[:cut] <= prefix)

    def next_present(self, index: int) -> int:
        """The first present index at or after `index` (`count` when there is none)."""
        every = self.missing_every
        if every == 1:
            return self.count
        if every and index % every == 0:
            index += 1
        return min(index, self.count)


@dataclass(frozen=True)
class _Page:
    """One listing page, in order: the index of each key, or the name of a common prefix."""

    entries: list[int | str]
    truncated: bool
    last: str | None  # the last name of the page


def list_page(
    space: KeySpace, prefix: str, delimiter: str, after: str | None, max_keys: int
) -> _Page:
    """A page of the listing of `space`: names that start with `prefix` and come after
    `after`, keys rolled up to common prefixes at the first `delimiter` past the prefix.

    Going on after a common prefix skips every key under it, as S3 does for a continuation
    token, a ``start-after`` or a ``marker`` naming it.
    """
    start = space.first_at_or_after(prefix) if prefix else 0
    end = space.first_not_under(prefix) if prefix else space.count
    if after is not None:
        start = max(start, _resume(space, prefix, delimiter, after))
    entries: list[int | str] = []
    index = space.next_present(start)
    every = space.missing_every
    if not delimiter:
        # The common case of a big listing: a run of keys, taken in one go (at least every
        # other index is present when some are missing).
        if every == 1:
            index = end
        elif every:
            entries += [i for i in range(index, min(end, index + 2 * max_keys + 2)) if i % every]
            del entries[max_keys:]
        else:
            entries += range(index, min(end, index + max_keys))
        if entries:
            index = space.next_present(int(entries[-1]) + 1)
    else:
        cut = len(prefix)
        while index < end and len(entries) < max_keys:
            key = space.key(index)
            found = key.find(delimiter, cut)
            if found >= 0:
                group = key[: found + len(delimiter)]
                entries.append(group)
                index = space.first_not_under(group)
            else:
                entries.append(index)
                index += 1
            index = space.next_present(index)
    if not entries:
        return _Page([], False, None)
    last = entries[-1]
    return _Page(entries, index < end, last if isinstance(last, str) else space.key(last))


def contents_xml(space: KeySpace, indexes: list[int]) -> str:
    """The ``<Contents>`` elements of keys `indexes`, as a ListObjects reply holds them.

    The names, sizes and ETags of :class:`KeySpace`, computed inline: this is most of the
    server's work, and a method call per field would double it. Generated keys hold only
    characters that neither URL encoding nor XML changes.
    """
    per, every = space.per_folder, space.differs_every
    if every:
        return "".join(
            [
                _CONTENTS
                % (i // per, i, (i * _MIX + 7 * (i % every == 0)) % _WRAP, i, _size(i, every))
                for i in indexes
            ]
        )
    return "".join(
        [_CONTENTS % (i // per, i, i * _MIX % _WRAP, i, 1024 + i % 4096) for i in indexes]
    )


def _size(index: int, every: int) -> int:
    return 1024 + index % 4096 + (index % every == 0)


_CONTENTS = (
    f"<Contents><Key>data/%0{_FOLDER_DIGITS}d/object-%0{_INDEX_DIGITS}d.bin</Key>"
    f"<LastModified>{_MODIFIED}</LastModified><ETag>&quot;%016x%016x&quot;</ETag>"
    "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
)


def _resume(space: KeySpace, prefix: str, delimiter: str, after: str) -> int:
    """Where a listing goes on after the name `after`."""
    if delimiter and after.startswith(prefix):
        found = after.find(delimiter, len(prefix))
        if found >= 0 and found + len(delimiter) == len(after):
            return space.first_not_under(after)  # a common prefix: past every key under it
    return space.first_after(after)


def _token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii")


def _untoken(token: str) -> str | None:
    try:
        name = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        return name.decode("utf-8") or None
    except (ValueError, UnicodeDecodeError):
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SyntheticS3"  # the Server header (not SeaweedFS: keys in byte order)
    sys_version = ""
    # A reply leaves in one write (head and body buffered, flushed after each request) and at
    # once: two small writes would wait for the client's delayed acknowledgement.
    wbufsize = 256 * 1024
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        return None  # no line per request on stderr

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_PUT(self) -> None:
        self._refuse()

    def do_POST(self) -> None:
        self._refuse()

    def do_DELETE(self) -> None:
        self._refuse()

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._error(501, "NotImplemented", "this synthetic endpoint only lists")

    def _handle(self, *, head: bool) -> None:
        server = self.server
        server.count_request()
        if server.delay:
            time.sleep(server.delay)
        parts = urlsplit(self.path)
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        space = server.buckets.get(bucket)
        if space is None:
            self._error(404, "NoSuchBucket", "The specified bucket does not exist", head=head)
            return
        if key:
            self._object(space, key, head=head)
        elif head:
            self._send(200, b"", head=True)
        elif "location" in query:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><LocationConstraint '
                'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></LocationConstraint>'
            )
            self._send(200, body.encode())
        elif set(query) & {"versions", "uploads", "versioning", "tagging", "policy", "acl"}:
            self._error(501, "NotImplemented", "this synthetic endpoint only lists")
        else:
            self._list(bucket, space, query)

    def _object(self, space: KeySpace, key: str, *, head: bool) -> None:
        index = space.first_at_or_after(key)
        if index >= space.count or space.key(index) != key or not space.present(index):
            self._error(404, "NoSuchKey", "The specified key does not exist.", head=head)
            return
        if not head:
            self._error(501, "NotImplemented", "this synthetic endpoint holds no bytes")
            return
        self.send_response(200)
        self._headers("")
        self.send_header("Content-Length", str(space.size(index)))
        self.send_header("ETag", f'"{space.etag(index)}"')
        self.send_header("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
        self.end_headers()

    def _list(self, bucket: str, space: KeySpace, query: Mapping[str, str]) -> None:
        v2 = query.get("list-type") == "2"
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        encode = query.get("encoding-type", "").lower() == "url"
        try:
            max_keys = max(0, min(int(query.get("max-keys", _MAX_KEYS)), _MAX_KEYS))
        except ValueError:
            self._error(400, "InvalidArgument", "max-keys is not a number")
            return
        after: str | None = None
        token = query.get("continuation-token") if v2 else None
        if token is not None:
            after = _untoken(token)
            if after is None:
                self._error(400, "InvalidArgument", "The continuation token provided is incorrect")
                return
        elif v2 and query.get("start-after"):
            after = query["start-after"]
        elif not v2 and query.get("marker"):
            after = query["marker"]
        page = list_page(space, prefix, delimiter, after, max_keys)
        self.server.count_keys(len(page.entries))

        def name(text: str) -> str:
            return quote(text, safe="/") if encode else escape(text)

        head = [
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{name(prefix)}</Prefix>"
            f"<MaxKeys>{max_keys}</MaxKeys>"
        ]
        if delimiter:
            head.append(f"<Delimiter>{name(delimiter)}</Delimiter>")
        if encode:
            head.append("<EncodingType>url</EncodingType>")
        head.append(f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>")
        if v2:
            head.append(f"<KeyCount>{len(page.entries)}</KeyCount>")
            if token is not None:
                head.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
            if query.get("start-after"):
                head.append(f"<StartAfter>{name(query['start-after'])}</StartAfter>")
            if page.truncated and page.last is not None:
                head.append(f"<NextContinuationToken>{_token(page.last)}</NextContinuationToken>")
        else:
            head.append(f"<Marker>{name(query.get('marker', ''))}</Marker>")
            if page.truncated and page.last is not None:
                head.append(f"<NextMarker>{name(page.last)}</NextMarker>")
        head.append(contents_xml(space, [e for e in page.entries if isinstance(e, int)]))
        head += [
            f"<CommonPrefixes><Prefix>{name(e)}</Prefix></CommonPrefixes>"
            for e in page.entries
            if isinstance(e, str)
        ]
        head.append("</ListBucketResult>")
        self._send(200, "".join(head).encode("utf-8"))

    def _headers(self, content_type: str) -> None:
        self.send_header("x-amz-bucket-region", _REGION)
        if content_type:
            self.send_header("Content-Type", content_type)

    def _send(self, status: int, body: bytes, *, head: bool = False) -> None:
        self.send_response(status)
        self._headers("application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, *, head: bool = False) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error>"
        )
        self._send(status, body.encode(), head=head)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, buckets: Mapping[str, KeySpace], delay: float, port: int) -> None:
        super().__init__((_HOST, port), _Handler)
        self.buckets = dict(buckets)
        self.delay = delay
        self.requests = 0
        self.keys = 0  # names (keys and common prefixes) listed
        self._lock = threading.Lock()

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_keys(self, names: int) -> None:
        with self._lock:
            self.keys += names


class SyntheticS3:
    """The server (see the module's docstring), serving on a thread of this process.

    Args:
        buckets: Bucket name to its key space.
        delay: Seconds every reply is held back.
        port: Port to listen on (0: any free one).
    """

    def __init__(
        self, buckets: Mapping[str, KeySpace], *, delay: float = 0.0, port: int = 0
    ) -> None:
        self._server = _Server(buckets, delay, port)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="synthetic-s3", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def endpoint(self) -> Endpoint:
        """The server as an :class:`Endpoint` (any keys are accepted), for boto3 clients."""
        return Endpoint("synthetic", self.url, "synthetic", "synthetic-secret")

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        return self._server.requests

    @property
    def keys_listed(self) -> int:
        """Names (keys and common prefixes) sent in listing pages so far."""
        return self._server.keys

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SyntheticS3:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- as a separate process ---------------------------------------------------------------------


class SyntheticProcess:
    """A synthetic endpoint running as its own process (:func:`start_process`)."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far (Linux)."""
        return procstat.cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()

    def __enter__(self) -> SyntheticProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def describe(space: KeySpace) -> str:
    """A key space as the command line names it: ``COUNT[,missing=K][,differs=M]``."""
    text = str(space.count)
    if space.missing_every:
        text += f",missing={space.missing_every}"
    if space.differs_every:
        text += f",differs={space.differs_every}"
    if space.per_folder != 1000:
        text += f",per_folder={space.per_folder}"
    return text


def parse_bucket(text: str) -> tuple[str, KeySpace]:
    """``NAME=COUNT[,missing=K][,differs=M][,per_folder=F]`` as a bucket and its key space."""
    name, _, spec = text.partition("=")
    count, *options = spec.split(",")
    fields = {"missing": "missing_every", "differs": "differs_every", "per_folder": "per_folder"}
    values: dict[str, int] = {}
    for option in options:
        option_name, _, value = option.partition("=")
        if option_name not in fields:
            raise ValueError(f"unknown key space option {option_name!r} in {text!r}")
        values[fields[option_name]] = int(value)
    return name, KeySpace(int(count), **values)


def start_process(
    buckets: Mapping[str, KeySpace],
    *,
    delay: float = 0.0,
    python: str = sys.executable,
    stderr: IO[str] | int | None = None,
) -> SyntheticProcess:
    """Start a synthetic endpoint in a process of its own; return once it listens."""
    argv = [python, "-m", "longbow_testkit.synthetic", "--delay", repr(delay)]
    for name, space in buckets.items():
        argv += ["--bucket", f"{name}={describe(space)}"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"synthetic S3 endpoint did not start (said {line!r})")
    return SyntheticProcess(proc, int(line.rsplit(":", 1)[1]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--bucket",
        action="append",
        required=True,
        type=parse_bucket,
        help="NAME=COUNT[,missing=K][,differs=M][,per_folder=F] (repeat for more buckets)",
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each reply waits")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    args = parser.parse_args(argv)
    server = SyntheticS3(dict(args.bucket), delay=args.delay, port=args.port)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    print(f"listening {_HOST}:{server.port}", flush=True)
    while not stopped.wait(0.5):
        pass
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
