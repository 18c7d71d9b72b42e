"""The counting half of a dry run's pre-flight estimate: the requests each side of a copy will
get, by kind, and its bytes, object by object as planning hands them over. Pure: the
listing's objects and what both stores can do come in, counts go out (`preflight` turns them
into a duration and a cost; `probe` measures the stores).

Requests per object follow the engine's own choice of path (`transfer.proof.decide`), fed with
what a listing tells of the object (its size and ETag). What the listing cannot tell is
assumed, and said so in the estimate: the source is not encrypted with KMS or a customer key
and carries no additional checksum, a multipart source has regular parts (its ETag's count of
equal parts), and no object has tags (each object with tags costs one GetObjectTagging more).
Retries are not counted.

- one PUT (zero-byte, small, or one part): 1 GET at the source, 1 PUT at the destination;
- multipart: 1 HEAD (and 1 HEAD of part 1 for a multipart source) and 1 ranged GET per part
  at the source; CreateMultipartUpload, 1 UploadPart per part, CompleteMultipartUpload and
  1 HEAD (the object checked) at the destination;
- server-side copy: the same HEADs at the source; 1 CopyObject (and 1 HEAD where the source's
  ETag is no MD5 to compare with) at the destination;
- server-side multipart: the same HEADs; CreateMultipartUpload, 1 UploadPartCopy per part,
  CompleteMultipartUpload and 1 HEAD at the destination.

Listing requests are those the dry run made itself (the copy lists the same way), and
`--delete` deletes in batches of 1,000 keys, one DeleteObjects each.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass, field

from s3longbow.config import MIN_PART_SIZE, MiB, TransferSettings
from s3longbow.model import Job, JobId, ObjectDetails, ObjectProperties
from s3longbow.stores.base import EndpointFacts
from s3longbow.transfer.proof import (
    CopyPath,
    Link,
    SourceFacts,
    decide,
    is_md5_etag,
    multipart_parts,
    wants_details,
    wants_layout,
)
from s3longbow.transfer.sizing import part_count

DELETE_BATCH = 1000  # keys per DeleteObjects request
BASIS = "estimate from a probe"
ASSUMED = (
    "retries are not counted",
    "objects with tags cost one GetObjectTagging each more (a listing does not show tags)",
    "sources are assumed unencrypted by KMS, without additional checksums, and with regular parts",
)


class Kind(enum.StrEnum):
    """A kind of request, as S3 names it."""

    LIST = "LIST"
    HEAD = "HEAD"
    GET = "GET"
    PUT = "PUT"
    CREATE = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    COMPLETE = "CompleteMultipartUpload"
    COPY = "CopyObject"
    UPLOAD_PART_COPY = "UploadPartCopy"
    DELETE = "DeleteObjects"


# How S3 bills each kind: PUT, COPY, POST and LIST requests at one price, GET, HEAD and the
# rest at another; deletes are free.
WRITE_CLASS = frozenset(
    {
        Kind.LIST,
        Kind.PUT,
        Kind.CREATE,
        Kind.UPLOAD_PART,
        Kind.COMPLETE,
        Kind.COPY,
        Kind.UPLOAD_PART_COPY,
    }
)
READ_CLASS = frozenset({Kind.HEAD, Kind.GET})

# The paths, as the estimate groups them.
SINGLE = "single"
MULTIPART = "multipart"
SERVER_COPY = "server-copy"
SERVER_PARTS = "server-multipart"


@dataclass(frozen=True)
class ObjectRequests:
    """The requests and bytes of one object's copy.

    Attributes:
        path: SINGLE, MULTIPART, SERVER_COPY or SERVER_PARTS.
        source: Requests to the source, by kind.
        destination: Requests to the destination, by kind.
        streamed: Bytes that pass through this machine.
        on_server: Bytes the server copies.
        transfers: Requests that carry the bytes through this machine (one per part).
    """

    path: str
    source: Counter[Kind]
    destination: Counter[Kind]
    streamed: int = 0
    on_server: int = 0
    transfers: int = 0


def assumed_layout(size: int, etag: str | None) -> ObjectDetails | None:
    """The part layout of a multipart source, assumed regular: its ETag's count of equal
    parts (the last one shorter), each a whole number of MiB and at least S3's smallest part,
    as the usual tools cut them."""
    count = multipart_parts(etag)
    if count is None:
        return None
    even = -(-size // count)
    part = max(MIN_PART_SIZE, -(-even // MiB) * MiB)
    if part_count(size, part) != count:
        part = even or 1  # no whole-MiB layout fits: as even as can be
    return ObjectDetails(properties=ObjectProperties(), part_size=part, parts_count=count)


def object_requests(
    size: int, etag: str | None, link: Link, settings: TransferSettings
) -> ObjectRequests:
    """The requests one object's copy makes, by the engine's own choice of path (see the
    module's docstring for what is assumed)."""
    job = Job(id=JobId(""), run_id=0, pair=0, src_key="", dst_key="", size=size, etag=etag)
    source: Counter[Kind] = Counter()
    destination: Counter[Kind] = Counter()
    details = layout = None
    if wants_details(job, link, settings):
        details = ObjectDetails(properties=ObjectProperties())
        source[Kind.HEAD] += 1
        if wants_layout(job, details):
            layout = assumed_layout(size, etag)
            source[Kind.HEAD] += 1
    method = decide(job, SourceFacts(details=details, layout=layout), link, settings)
    path = method.path
    if (path is CopyPath.SERVER_PARTS or method.multipart) and details is None:
        source[Kind.HEAD] += 1  # the upload is created with the source's properties
    if path is CopyPath.SERVER_COPY:
        destination[Kind.COPY] += 1
        if not is_md5_etag(etag):
            destination[Kind.HEAD] += 1  # the copy's ETag cannot be compared: its size is
        return ObjectRequests(SERVER_COPY, source, destination, on_server=size)
    if path is CopyPath.SERVER_PARTS or method.multipart:
        parts = part_count(size, method.part_size)
        destination[Kind.CREATE] += 1
        destination[Kind.COMPLETE] += 1
        destination[Kind.HEAD] += 1  # the object checked after completion
        if path is CopyPath.SERVER_PARTS:
            destination[Kind.UPLOAD_PART_COPY] += parts
            return ObjectRequests(SERVER_PARTS, source, destination, on_server=size)
        source[Kind.GET] += parts
        destination[Kind.UPLOAD_PART] += parts
        return ObjectRequests(MULTIPART, source, destination, streamed=size, transfers=parts)
    source[Kind.GET] += 1
    destination[Kind.PUT] += 1
    return ObjectRequests(SINGLE, source, destination, streamed=size, transfers=1)


@dataclass
class PairTally:
    """What one pair's copy will take, counted object by object.

    Attributes:
        link: What both stores can do, as the engine's choice sees them.
        src: Where the source's requests go (None: a directory, no requests).
        dst: Where the destination's requests go (None: a directory).
    """

    link: Link
    src: EndpointFacts | None = None
    dst: EndpointFacts | None = None
    source: Counter[Kind] = field(default_factory=Counter)
    destination: Counter[Kind] = field(default_factory=Counter)
    objects: int = 0
    paths: Counter[str] = field(default_factory=Counter)
    streamed: int = 0
    on_server: int = 0
    transfers: int = 0
    deletes: int = 0

    def add(self, one: ObjectRequests) -> None:
        self.objects += 1
        self.paths[one.path] += 1
        self.transfers += one.transfers
        self.streamed += one.streamed
        self.on_server += one.on_server
        if self.src is not None:
            self.source.update(one.source)
        if self.dst is not None:
            self.destination.update(one.destination)

    def listed(self, source: int, destination: int) -> None:
        """The listing requests of each side."""
        if self.src is not None:
            self.source[Kind.LIST] += source
        if self.dst is not None:
            self.destination[Kind.LIST] += destination

    def delete(self, objects: int) -> None:
        """Destination objects `--delete` removes."""
        self.deletes += objects
        if self.dst is not None and objects:
            self.destination[Kind.DELETE] += math.ceil(objects / DELETE_BATCH)


@dataclass(frozen=True)
class Largest:
    """The largest object to copy: where the probe reads its throughput sample."""

    pair: int
    key: str
    size: int
    etag: str | None


class Estimator:
    """Counts, object by object as planning hands them over, what the copy will take.

    Calls for one pair come from one thread at a time (a planning sink's), pairs in turn.
    """

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings
        self.pairs: dict[int, PairTally] = {}
        self.largest: Largest | None = None

    def pair(
        self, index: int, link: Link, src: EndpointFacts | None, dst: EndpointFacts | None
    ) -> None:
        """Register a pair before its objects come."""
        self.pairs[index] = PairTally(link=link, src=src, dst=dst)

    def add(self, index: int, key: str, size: int, etag: str | None) -> None:
        """One object to copy."""
        tally = self.pairs[index]
        tally.add(object_requests(size, etag, tally.link, self.settings))
        if size and (self.largest is None or size > self.largest.size):
            self.largest = Largest(index, key, size, etag)

    def totals(self) -> tuple[Counter[Kind], Counter[Kind]]:
        """Requests of every pair, by side."""
        source: Counter[Kind] = Counter()
        destination: Counter[Kind] = Counter()
        for tally in self.pairs.values():
            source.update(tally.source)
            destination.update(tally.destination)
        return source, destination


__all__ = [
    "ASSUMED",
    "BASIS",
    "DELETE_BATCH",
    "MULTIPART",
    "READ_CLASS",
    "SERVER_COPY",
    "SERVER_PARTS",
    "SINGLE",
    "WRITE_CLASS",
    "Estimator",
    "Kind",
    "Largest",
    "ObjectRequests",
    "PairTally",
    "assumed_layout",
    "object_requests",
]
