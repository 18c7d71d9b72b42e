"""Lean S3 client: GET, PUT, UploadPart, HEAD, multipart start/finish and ListObjectsV2 over
keep-alive connections, at a fraction of botocore's per-request CPU.

Each request is one signed HTTP/1.1 exchange (:mod:`client`) on a connection the calling
thread keeps. Replies mean the same as on botocore's path: errors go through
:func:`s3longbow.stores.s3.errors.error_from_response`. A read is checked before a byte of it
is taken: its range, and that it is the version pinned.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from html import unescape
from typing import Any
from xml.etree import ElementTree

from s3longbow.errors import (
    ChecksumNotConfirmedError,
    LongbowError,
    PermanentError,
    SourceChangedError,
    TransientError,
)
from s3longbow.model import Bytes
from s3longbow.stores.s3 import http1
from s3longbow.stores.s3.client import Client, _Call, _clock_skew, _read_capped, _Url
from s3longbow.stores.s3.connection import Body, RangeBody, _Request
from s3longbow.stores.s3.errors import error_from_response
from s3longbow.stores.s3.nonblocking import Answer, Direct
from s3longbow.stores.s3.wire import (
    ListPage,
    _parse_error,
    _xml_text,
    encode_query_value,
    parse_list_page,
)

# A part's body is read in pieces this size: small enough that each is still in the CPU's
# cache when its checksum is computed, large enough that the loop costs nothing.
_PIECE = 256 * 1024

# A listing page is read whole; no page of 1,000 keys comes near this.
_MAX_LIST_PAGE = 32 * 1024 * 1024

_UPLOAD_ID = re.compile(r"<UploadId>(.*?)</UploadId>", re.DOTALL)

_RESULT_ETAG = re.compile(r"<ETag>(.*?)</ETag>", re.DOTALL)


class S3DataPlane(Client):
    """The calls that carry an object's bytes, its listing pages, its HEADs and the start and
    finish of its multipart uploads, to one S3-compatible endpoint (see :class:`Client`).
    Safe to share between threads. ``object_headers`` go with every request about an object
    (a side's SSE-C key), never with a listing or a bucket's HEAD."""

    def __init__(self, *args: Any, object_headers: dict[str, str] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self._object_headers = dict(object_headers or {})

    def _prepare(self, call: _Call, url: _Url | None = None) -> _Request:
        if call.key and self._object_headers:
            call = dataclasses.replace(call, headers={**self._object_headers, **call.headers})
        return super()._prepare(call, url)

    def get_range(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
        into: bytearray | None = None,
        each: Callable[[memoryview], None] | None = None,
    ) -> Bytes:
        """Read ``length`` bytes of an object from offset ``start`` (see get_object); into
        ``into`` when given (a view of it is returned), each piece shown to ``each`` as it
        arrives (see ObjectStore.get_range)."""
        return self._get(bucket, key, start, length, etag, None, version_id, into, each)

    @property
    def relays(self) -> bool:
        """Whether reply bodies from here can be relayed into another request as they arrive
        (by the kernel between plain-HTTP connections on Linux, else through a small buffer)."""
        return True

    def open_range(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
        whole: bool = False,
    ) -> RangeBody | None:
        """Ask for ``length`` bytes of an object from offset ``start`` and hold the reply
        open, its body unread, to relay it into a request to another endpoint (see
        :attr:`relays`); None when the reply does not state its length (read it with
        get_range instead). ``whole``: the whole object, without a Range header, as
        get_object reads it (the reply's headers carry its properties). Raises as get_range
        does."""
        call = self._get_call(bucket, key, start, length, etag, version_id, not whole)
        where = call.where
        connection, response = self._exchange(call, None)
        try:
            if response.status not in (200, 206):
                raise self._error(response, where, source=True)
            if response.length is None:
                self.drop(connection)
                return None
            if response.length > length:
                raise PermanentError(
                    f"{where}: the server returned more bytes than requested (Range ignored)"
                )
            if response.length < length:
                raise TransientError(f"{where}: short reply ({response.length} of {length} bytes)")
            check_reply(response, where, start, length, etag)
        except LongbowError:
            self.drop(connection)
            raise
        body = RangeBody(self, connection, response, length, where)
        if whole:
            body.headers.update((n.lower(), v) for n, v in response.getheaders())
        return body

    def get_object(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> tuple[bytes | bytearray, dict[str, str]]:
        """Read ``length`` bytes of an object from offset ``start``, with the response headers
        (names in lower case), which carry the object's properties.

        Args:
            bucket: Bucket name.
            key: Object key.
            start: First byte to read.
            length: How many bytes; with ``start`` 0 this must be the object's size (the object
            is read whole, without a Range header, so the reply carries its checksum).
            etag: The pinned ETag (without quotes); sent as ``If-Match`` when given.
            version_id: Read this version of the object (``versionId``) when given.

        Returns:
            Exactly ``length`` bytes, and the response headers.

        Raises:
            SourceChangedError: The object changed (412) or no longer exists.
            PermanentError: The server ignored the Range and sent more bytes.
            TransientError: Network failure, short read, wrong Content-Range, or a
                retryable reply.
            FatalError: Credentials or bucket errors.
        """
        headers: dict[str, str] = {}
        data = self._get(bucket, key, start, length, etag, headers, version_id)
        assert not isinstance(data, memoryview)  # read whole: no buffer of the caller's
        return data, headers

    def _get(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        etag: str | None,
        response_headers: dict[str, str] | None,
        version_id: str | None = None,
        into: bytearray | None = None,
        each: Callable[[memoryview], None] | None = None,
    ) -> Bytes:
        # A whole-object read (from get_object) asks for no range: only then does S3 send the
        # object's checksum. The length read is checked all the same.
        ranged = length > 0 and response_headers is None
        call = self._get_call(bucket, key, start, length, etag, version_id, ranged)
        where = call.where

        def read(response: http1.Reply) -> Bytes:
            if response.status not in (200, 206):
                raise self._error(response, where, source=True)
            # Whose bytes these are is checked before any is read.
            check_reply(response, where, start, length, etag)
            declared = response.length
            data: Bytes
            # A part read into its buffer, in pieces; anything else is read whole.
            view = memoryview(into)[:length] if into is not None and declared == length else None
            if view is not None:
                data = _read_pieces(response, view, each)
            elif declared is not None and declared <= length:
                data = response.read_buffer(declared)
            else:
                # One byte more than asked: a server that ignored Range must not make us buffer
                # a whole object; the unread rest is dropped with the connection.
                data = response.read(length + 1)
            if len(data) != length:
                if len(data) > length:
                    raise PermanentError(
                        f"{where}: the server returned more bytes than requested (Range ignored)"
                    )
                raise TransientError(f"{where}: short read ({len(data)} of {length} bytes)")
            if each is not None and view is None:
                each(memoryview(data))  # read whole: no buffer given, or no length stated
            if response_headers is not None:
                response_headers.update((n.lower(), v) for n, v in response.getheaders())
            return data

        return self._perform(call, None, read)

    def _get_call(
        self,
        bucket: str,
        key: str,
        start: int,
        length: int,
        etag: str | None,
        version_id: str | None,
        ranged: bool,
    ) -> _Call:
        """A GET of bytes ``start``.. of an object (the whole object, with its checksum
        where asked for, unless ``ranged``)."""
        end = start + length - 1
        where = f"reading {_describe(bucket, key)} bytes {start}-{end}"
        headers: dict[str, str] = {}
        if ranged:
            headers["Range"] = f"bytes={start}-{end}"
        elif self._checksum_mode:
            headers["x-amz-checksum-mode"] = "ENABLED"
        if etag:
            headers["If-Match"] = f'"{etag}"'
        query = f"versionId={encode_query_value(version_id)}" if version_id else ""
        return _Call("GET", bucket, key, query, headers, where)

    def put_object(
        self,
        bucket: str,
        key: str,
        data: Body,
        *,
        md5_b64: str,
        storage_class: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Write a whole object in one PUT.

        Args:
            bucket: Bucket name.
            key: Object key.
            data: The object's bytes, or another endpoint's reply relayed.
            md5_b64: Base64 MD5 of ``data``, sent as ``Content-MD5`` for the server to check.
            storage_class: Sent as ``x-amz-storage-class`` when given.
            headers: More headers to send (and sign): the object's properties.

        Returns:
            The ETag the server returned, without quotes ("" if it sent none).

        Raises:
            TransientError: Network failure, a digest mismatch, or a retryable reply.
            PermanentError: A reply that retrying will not change (e.g. access denied).
            FatalError: Credentials or bucket errors.
        """
        call = _put_call(bucket, key, len(data), md5_b64, storage_class, headers)
        return self._perform(call, data, self._etag_reader(call.where))

    def direct(self) -> Direct | None:
        """What exchanges on a non-blocking loop need (see :mod:`nonblocking`); None where
        requests go through a proxy."""
        if self._proxy is not None:
            return None
        pace = (self._min_rate, self._min_rate_window)
        return Direct(self._pool, self.endpoint_url, self._meter, self._rates, *pace)

    def prepare_get(
        self, bucket: str, key: str, size: int, etag: str, version: str | None
    ) -> _Request:
        """The signed request get_object sends for a whole object."""
        return self._prepare(self._get_call(bucket, key, 0, size, etag, version, False))

    def prepare_put(self, bucket: str, key: str, size: int, **how: Any) -> _Request:
        """The signed request put_object sends (`how`: md5_b64, storage_class, headers)."""
        return self._prepare(_put_call(bucket, key, size, **how))

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        data: Body,
        *,
        md5_b64: str | None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Upload one part of a multipart upload.

        Args:
            bucket: Bucket name.
            key: Object key.
            upload_id: The upload id from CreateMultipartUpload.
            number: Part number, from 1.
            data: The part's bytes, or another endpoint's reply relayed (it goes unguarded:
                no checksum is known before the bytes pass; the part's ETag, the MD5 the
                destination computed, is what proves it).
            md5_b64: Base64 MD5 of ``data``, sent as ``Content-MD5``; None to let the part's
                additional checksum (in ``headers``) guard it alone.
            headers: More headers to send (and sign): the part's additional checksum.

        Returns:
            The part's ETag, without quotes ("" if the server sent none).

        Raises:
            ChecksumNotConfirmedError: Sent without an MD5, the part's checksum did not come
                back in the reply (the server may ignore it).
            UploadMissingError: The upload no longer exists.
            TransientError: Network failure, a digest mismatch, or a retryable reply.
            PermanentError: A reply that retrying will not change.
            FatalError: Credentials or bucket errors.
        """
        sent = {**(headers or {}), "Content-Length": str(len(data))}
        if md5_b64 is not None:
            sent["Content-MD5"] = md5_b64
        # Already in canonical (sorted) order, so the signed and the sent query are the same.
        query = f"partNumber={number}&uploadId={encode_query_value(upload_id)}"
        where = f"uploading part {number} of {_describe(bucket, key)}"
        call = _Call("PUT", bucket, key, query, sent, where)
        etag_of = self._etag_reader(where)
        guard = {n.lower(): v for n, v in sent.items() if n.lower().startswith("x-amz-checksum-")}
        if md5_b64 is not None or (not guard and isinstance(data, RangeBody)):
            return self._perform(call, data, etag_of)
        if not guard:
            raise ValueError("a part needs a Content-MD5 or an additional checksum")

        def read(response: http1.Reply) -> str:
            etag = etag_of(response)
            for name, value in guard.items():
                if response.getheader(name) != value:
                    raise ChecksumNotConfirmedError(
                        f"{where}: the reply does not confirm the part's {name[15:].upper()} "
                        "checksum"
                    )
            return etag

        return self._perform(call, data, read)

    def head_object(
        self,
        bucket: str,
        key: str,
        *,
        etag: str | None = None,
        part_number: int | None = None,
        version_id: str | None = None,
    ) -> dict[str, str] | None:
        """HEAD an object (or one of its parts); its headers in lower case, None if missing.

        Raises:
            SourceChangedError: `etag` no longer matches (412).
            TransientError, PermanentError, FatalError: as for the other calls.
        """
        headers = {"If-Match": f'"{etag}"'} if etag else {}
        if self._checksum_mode:
            headers["x-amz-checksum-mode"] = "ENABLED"
        # In canonical (sorted) order, as it is signed.
        query = "&".join(
            ([f"partNumber={part_number}"] if part_number else [])
            + ([f"versionId={encode_query_value(version_id)}"] if version_id else [])
        )
        where = f"reading {_describe(bucket, key)}"
        call = _Call("HEAD", bucket, key, query, headers, where)

        def read(response: http1.Reply) -> dict[str, str] | None:
            if response.status == 404:
                _read_capped(response)
                return None
            if not 200 <= response.status < 300:
                raise self._error(response, where, source=True)
            _read_capped(response)
            return {name.lower(): value for name, value in response.getheaders()}

        return self._perform(call, None, read)

    def head_bucket(self, bucket: str) -> tuple[int, dict[str, str]]:
        """HEAD a bucket: the reply's status and its headers in lower case (any status)."""
        where = f"checking bucket {bucket!r}"
        call = _Call("HEAD", bucket, "", "", {}, where)

        def read(response: http1.Reply) -> tuple[int, dict[str, str]]:
            _read_capped(response)
            skewed = _clock_skew(response, where, "", b"")
            if skewed is not None:
                raise skewed
            return response.status, {name.lower(): v for name, v in response.getheaders()}

        return self._perform(call, None, read)

    def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        storage_class: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Start a multipart upload (its properties go in `headers`); return its upload id."""
        sent = {**(headers or {}), "Content-Length": "0"}
        if storage_class:
            sent["x-amz-storage-class"] = storage_class
        where = f"starting a multipart upload of {_describe(bucket, key)}"
        call = _Call("POST", bucket, key, "uploads=", sent, where)

        def read(response: http1.Reply) -> str:
            if not 200 <= response.status < 300:
                raise self._error(response, where)
            match = _UPLOAD_ID.search(_read_capped(response).decode("utf-8", "replace"))
            if not match or not match.group(1).strip():
                raise TransientError(f"{where}: the reply named no upload id")
            return unescape(match.group(1).strip())

        return self._perform(call, b"", read)

    def complete_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        algorithm: str | None = None,
        part_checksums: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Join the parts (number, ETag) into the object; return the ETag reported ("" if
        none: some servers leave it out). An upload started with a checksum algorithm lists
        each part's checksum (`part_checksums`, base64, in the order of `parts`); `headers`
        may carry the full-object checksum for the server to check."""
        tag = f"Checksum{algorithm}" if algorithm else ""
        sums = part_checksums or [""] * len(parts)
        body = (
            "<CompleteMultipartUpload>"
            + "".join(
                f"<Part><PartNumber>{number}</PartNumber><ETag>&quot;{_xml_text(etag)}&quot;"
                "</ETag>"
                + (f"<{tag}>{_xml_text(value)}</{tag}>" if tag and value else "")
                + "</Part>"
                for (number, etag), value in zip(parts, sums, strict=True)
            )
            + "</CompleteMultipartUpload>"
        ).encode()
        headers = {
            **(headers or {}),
            "Content-Length": str(len(body)),
            "Content-Type": "application/xml",
        }
        query = f"uploadId={encode_query_value(upload_id)}"
        where = f"completing the multipart upload of {_describe(bucket, key)}"
        call = _Call("POST", bucket, key, query, headers, where)

        def read(response: http1.Reply) -> str:
            if not 200 <= response.status < 300:
                raise self._error(response, where)
            text = _read_capped(response).decode("utf-8", "replace")
            # S3 may answer 200 and still put an error in the body (a failure found while
            # the reply was already streaming).
            if "<Error>" in text:
                code, message = _parse_error(text.encode())
                raise error_from_response(code or "InternalError", 400, message, where)
            match = _RESULT_ETAG.search(text)
            return unescape(match.group(1)).strip().strip('"') if match else ""

        # The server may hold its reply back for minutes while it joins the parts (S3 sends
        # blanks meanwhile): no minimum rate for this one.
        return self._perform(call, body, read, paced=False)

    def list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        start_after: str | None = None,
        marker: str | None = None,
        max_keys: int = 1000,
        restore_status: bool = False,
    ) -> ListPage:
        """One page of ListObjectsV2, keys in the store's order: from the start, after a
        continuation `token`, or after a key (`start_after`, or `marker` for a server that
        answers in the older ListObjects form); with `restore_status`, each archived object's
        restore status too (``x-amz-optional-object-attributes``).

        Keys are asked for URL-encoded (any character a key may hold travels in XML that way)
        and decoded here only when the reply says it encoded them, as some servers do not.

        Raises:
            TransientError, PermanentError, FatalError: as for the other calls (a bucket that
                does not exist, or access denied, is fatal).
        """
        params = {"encoding-type": "url", "list-type": "2", "max-keys": str(max_keys)}
        params["prefix"] = prefix
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["continuation-token"] = token
        if start_after:
            params["start-after"] = start_after
        if marker:
            params["marker"] = marker
        # Sorted by name and encoded, as SigV4's canonical query string needs it.
        query = "&".join(
            f"{encode_query_value(name)}={encode_query_value(value)}"
            for name, value in sorted(params.items())
        )
        where = f"listing s3://{bucket}/{prefix}"
        headers = {"x-amz-optional-object-attributes": "RestoreStatus"} if restore_status else {}
        call = _Call("GET", bucket, "", query, headers, where)

        def read(response: http1.Reply) -> ListPage:
            if response.status != 200:
                raise self._error(response, where)
            body = response.read(limit=_MAX_LIST_PAGE)
            try:
                return parse_list_page(body)
            except ElementTree.ParseError as exc:
                if b"<Error>" in body[:512]:
                    code, message = _parse_error(body)
                    raise error_from_response(code, 500, message, where) from None
                raise TransientError(f"{where}: the listing is not valid XML ({exc})") from None

        return self._perform(call, None, read)


def _put_call(
    bucket: str,
    key: str,
    size: int,
    md5_b64: str,
    storage_class: str | None,
    headers: dict[str, str] | None,
) -> _Call:
    sent = {**(headers or {}), "Content-Length": str(size), "Content-MD5": md5_b64}
    if storage_class:
        sent["x-amz-storage-class"] = storage_class
    return _Call("PUT", bucket, key, "", sent, f"writing {_describe(bucket, key)}")


def check_reply(
    response: http1.Reply | Answer, where: str, start: int, length: int, etag: str | None
) -> None:
    """Refuse a read's reply that is not for what was asked: another range, or another
    version than the pinned one (a server that ignores If-Match still names the ETag)."""
    content_range = response.getheader("Content-Range")
    # Without Content-Range a 200 of exactly the right length is accepted: some servers
    # (rclone serve s3) answer ranged GETs that way.
    if content_range and length > 0:
        if not content_range.startswith(f"bytes {start}-{start + length - 1}/"):
            raise TransientError(
                f"{where}: the server answered with the wrong range ({content_range})"
            )
    sent = response.getheader("ETag")
    if etag and sent:
        sent = sent.removeprefix("W/").strip('"')
        if sent and sent != etag:
            raise SourceChangedError(
                f"{where}: the reply is for another version of the object (ETag {sent}, "
                f"pinned {etag})"
            )


def _read_pieces(
    response: http1.Reply,
    view: memoryview,
    each: Callable[[memoryview], None] | None,
) -> memoryview:
    """The body read into ``view`` in pieces, each shown to ``each`` right after it arrives;
    the part of ``view`` filled (less than all of it only if the body ends early)."""
    length = len(view)
    got = 0
    while got < length:
        n = response.readinto(view[got : got + _PIECE])
        if not n:
            break
        if each is not None:
            each(view[got : got + n])
        got += n
    return view[:got]


def _describe(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
