"""How one object is copied and how the copy will be proven: a pure choice.

`decide` picks the path (zero-byte, one PUT through memory or relayed, parts of our size or
of the source's own layout, a copy on the server) and the proof (the source's MD5, its
multipart ETag, its additional checksum, a read of a file, or none and why) from the job, what
the pinned HEADs of the source said, what both stores can do and the settings. It makes no
request: `wants_details` and `wants_layout` say which HEADs it needs, and the caller makes them.

A single PUT makes no HEAD: its proof is settled by `settle_single` from the headers of the
GET that reads the object.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from dataclasses import dataclass

from s3longbow import checksums
from s3longbow.config import MAX_PART_SIZE, MIN_PART_SIZE, TransferSettings
from s3longbow.model import Checksum, Job, ObjectDetails, ObjectProperties
from s3longbow.stores.base import Capabilities
from s3longbow.transfer.sizing import part_count, part_size_for

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d+)$")
# Objects from this size are relayed rather than read into memory: below it, the relay's
# system calls cost about what the copies they save do.
RELAY_MIN = 1024 * 1024
_CRCS = checksums.CRC_ALGORITHMS


def is_md5_etag(etag: str | None) -> bool:
    """Whether an ETag is the plain MD5 of the object's bytes (single-part, no SSE-KMS)."""
    return etag is not None and _MD5_HEX.match(etag) is not None


def multipart_parts(etag: str | None) -> int | None:
    """The part count of a multipart ETag (md5-of-parts-N), else None."""
    match = _MULTIPART_ETAG.match(etag or "")
    return int(match.group(2)) if match else None


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: md5 of the concatenated part digests, then -N."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


class CopyPath(enum.StrEnum):
    """The way the bytes go."""

    ZERO_BYTE = "zero-byte"  # one PUT of nothing, with the source's properties
    SINGLE = "single"  # one PUT, the bytes read into memory
    RELAYED_SINGLE = "relayed-single"  # one PUT whose body stays on the source's connection
    OWN_PARTS = "own-parts"  # a resumable multipart upload with our part size
    SOURCE_PARTS = "source-parts"  # a multipart upload with the source's own part boundaries
    SERVER_COPY = "server-copy"  # CopyObject: no byte comes here
    SERVER_PARTS = "server-parts"  # UploadPartCopy part by part, resumable


class Proof(enum.StrEnum):
    """The fingerprint the copy is proven against."""

    SOURCE_MD5 = "source-md5"  # the source's ETag is the MD5 of its bytes
    SOURCE_ETAG = "source-etag"  # the MD5s of the parts reproduce the source's multipart ETag
    SOURCE_CHECKSUM = "source-checksum"  # the source's additional checksum (CRC or SHA)
    LOCAL_READ = "local-read"  # a source without content ETags (files), read as it is
    UNVERIFIED = "unverified"  # nothing can prove it: `CopyMethod.reason` says why
    REPLY = "reply"  # a single PUT: settled from the GET's headers (settle_single)


class PartCheck(enum.StrEnum):
    """What guards each part the process sends."""

    MD5 = "content-md5"  # Content-MD5 (and the write checksum, if any)
    CRC = "crc"  # the write checksum (a CRC) alone, which the destination confirms


@dataclass(frozen=True, slots=True)
class Link:
    """The two stores as the choice sees them, with what the copies have learned of them.

    Attributes:
        src: The source's capabilities.
        dst: The destination's capabilities.
        server_copy: One endpoint and one account hold both sides: the server copies.
        relay: Relaying is allowed and still works: bytes that need no checksum of ours
            may go from the source's connection to the destination's as they arrive.
        crc_parts: Parts may go under a CRC alone (the destination has not yet failed to
            confirm one).
    """

    src: Capabilities
    dst: Capabilities
    server_copy: bool = False
    relay: bool = False
    crc_parts: bool = True

    @property
    def dst_encrypts(self) -> bool:
        """Writes are KMS-encrypted: the destination's ETags are not MD5s of the bytes."""
        return not self.dst.write_etags_md5


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What pinned HEADs of the source said, when `wants_details`/`wants_layout` asked.

    Attributes:
        details: The plain HEAD: properties, checksum, encryption, version.
        layout: The HEAD of part 1: the source's part size and count, where the store tells.
    """

    details: ObjectDetails | None = None
    layout: ObjectDetails | None = None


@dataclass(frozen=True, slots=True)
class CopyMethod:
    """How one object is copied and how the copy will be proven.

    Attributes:
        path: The way the bytes go.
        proof: The fingerprint that will prove the copy.
        part_size: The part size of a copy in parts (0 for one request).
        reason: Why the copy cannot be proven (with `Proof.UNVERIFIED`), else "".
        checksum: The source's additional checksum the copy must reproduce (when its ETag
            cannot prove it): of all the bytes, or composite (with the source's parts).
        etag_is_md5: The source's ETag is the MD5 of its bytes: a single PUT sends it as
            Content-MD5, so the destination checks the bytes against the source's own digest.
        write_algorithm: The additional checksum every write carries for the destination to
            check (None: Content-MD5 only).
        part_check: What guards each part sent: Content-MD5, or the write checksum (a CRC)
            alone where the whole-object proof or the destination's part ETags prove them.
        relay: The bytes go from the source's connection to the destination's inside the
            kernel, with no checksum of ours (where the source's reply allows): a whole
            object whose ETag is its MD5, or the parts of a source copied with its own
            boundaries, which the destination's part ETags prove.
    """

    path: CopyPath
    proof: Proof
    part_size: int = 0
    reason: str = ""
    checksum: Checksum | None = None
    etag_is_md5: bool = False
    write_algorithm: str | None = None
    part_check: PartCheck = PartCheck.MD5
    relay: bool = False

    @property
    def multipart(self) -> bool:
        """The bytes come through this process in parts."""
        return self.path in (CopyPath.OWN_PARTS, CopyPath.SOURCE_PARTS)

    @property
    def part_algorithms(self) -> tuple[str, ...]:
        """The checksums computed on every part."""
        wanted = [self.write_algorithm, self.checksum.algorithm if self.checksum else None]
        return tuple(dict.fromkeys(a for a in wanted if a))

    @property
    def ordered_hash(self) -> str | None:
        """The hash (hashlib's name) of all the bytes in part order that proves a copy in
        parts, or None where the proof needs none (a CRC combines; ETags come per part)."""
        if not self.multipart:
            return None
        if self.proof is Proof.SOURCE_MD5:
            return "md5"
        checksum = self.checksum
        if (
            self.proof is Proof.SOURCE_CHECKSUM
            and checksum is not None
            and checksum.parts is None
            and checksum.algorithm not in checksums.CRC_ALGORITHMS
        ):
            return checksum.algorithm.lower()
        return None

    @property
    def name(self) -> str:
        """The proof as a job's verdict names it ("source-md5", "source-crc32c", ...)."""
        if self.proof is Proof.SOURCE_CHECKSUM and self.checksum is not None:
            return f"source-{self.checksum.algorithm.lower()}"
        return str(self.proof)

    def verdict(self) -> tuple[bool, str]:
        """(proven, the proof's name) where a proof exists, else (False, the reason)."""
        if self.proof is Proof.REPLY:
            raise ValueError("a single PUT's proof is settled from its reply first")
        if self.proof is Proof.UNVERIFIED:
            return False, self.reason
        return True, self.name


def own_part_size(job: Job, settings: TransferSettings) -> int:
    """Our part size for the object: a resumed upload keeps the one it began with, whatever
    the setting is now."""
    if job.upload_id and job.part_size and job.upload_etag == job.etag:
        return job.part_size
    return part_size_for(job.size, settings.part_size)


def _in_parts(job: Job, settings: TransferSettings, part_size: int) -> bool:
    # An object that fits in one part gains nothing from an upload of one part (there is
    # nothing to resume): one PUT moves it with fewer requests, and a source whose ETag is
    # its MD5 is then proven by Content-MD5 alone, with no hashing here.
    return job.size > settings.resumable_threshold and job.size > part_size


def wants_details(job: Job, link: Link, settings: TransferSettings) -> bool:
    """Whether the choice needs the source's pinned HEAD. A single PUT decides its proof from
    the GET's headers (no extra request); a copy in parts, or of a multipart source, starts
    with the HEAD, which tells whether the ETag can be trusted as an MD5 (not under KMS or
    customer-key encryption), which checksum the source carries, and the properties the
    upload is created with."""
    if job.size == 0 or not link.src.content_etag:
        return False
    if multipart_parts(job.etag) is not None:
        return True
    return _in_parts(job, settings, own_part_size(job, settings))


def wants_layout(job: Job, details: ObjectDetails) -> bool:
    """Whether the choice needs the source's part layout (a HEAD of part 1): its multipart
    ETag, or its composite checksum, is reproduced only with the same part boundaries."""
    props = details.properties
    if multipart_parts(job.etag) is not None and not props.encrypted:
        return True
    if is_md5_etag(job.etag) and not props.encrypted:
        return False
    return props.checksum is not None and props.checksum.parts is not None


def source_layout(job: Job, count: int, layout: ObjectDetails) -> int | str:
    """The source's regular part size (same boundaries reproduce its fingerprints), or why its
    layout of `count` parts cannot be reproduced."""
    size, n = layout.part_size, layout.parts_count
    if size is None or n is None:
        return "the source is a multipart object whose part layout the store hides"
    if n == count and part_count(job.size, size) == n and (size >= MIN_PART_SIZE or n == 1):
        return size
    return "the source's part layout cannot be reproduced (irregular or small parts)"


def write_algorithm(dst: Capabilities, source: Checksum | None) -> str | None:
    """The additional checksum writes carry: the destination's configured one, else the
    source's own (so the copy has the same kind of checksum), else none."""
    policy = dst.checksums
    if policy == "MD5":
        return None
    if policy == "auto":
        return source.algorithm if source is not None else None
    return policy


def decide(job: Job, source: SourceFacts, link: Link, settings: TransferSettings) -> CopyMethod:
    """Pick the path and the proof for this object (see the module's docstring).

    Args:
        job: The object (its size and pinned ETag, and any open upload).
        source: The HEADs that `wants_details` and `wants_layout` asked for.
        link: What both stores can do, and what the copies learned of them.
        settings: The transfer settings (threshold, part size).

    Raises:
        ValueError: A HEAD the choice needs is missing from `source`.
    """
    method = _through_here(job, source, link, settings)
    return _on_server(job, method, settings, link) if link.server_copy else method


def _through_here(
    job: Job, source: SourceFacts, link: Link, settings: TransferSettings
) -> CopyMethod:
    """The choice for bytes that pass through this process."""
    if job.size == 0:
        empty = Proof.SOURCE_MD5 if link.src.content_etag else Proof.LOCAL_READ
        return CopyMethod(path=CopyPath.ZERO_BYTE, proof=empty)
    part_size = own_part_size(job, settings)
    in_parts = _in_parts(job, settings, part_size)
    if not link.src.content_etag:
        if in_parts:
            return CopyMethod(path=CopyPath.OWN_PARTS, proof=Proof.LOCAL_READ, part_size=part_size)
        return _single(job, link)
    count = multipart_parts(job.etag)
    if count is None and not in_parts:
        return _single(job, link)
    details = source.details
    if details is None:
        raise ValueError("the choice for a copy in parts needs the source's pinned HEAD")
    # A source read with a customer key is encrypted whether or not its reply says so.
    props = details.properties
    if link.src.customer_key and not props.encrypted:
        props = dataclasses.replace(props, encrypted=True)
    carried = props.checksum  # the source's own additional checksum
    write = write_algorithm(link.dst, carried)
    etag_md5 = is_md5_etag(job.etag) and not props.encrypted

    def own(kind: Proof, checksum: Checksum | None = None, reason: str = "") -> CopyMethod:
        if not in_parts:
            return _single(job, link)
        return CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=kind,
            part_size=part_size,
            reason=reason,
            checksum=checksum,
            etag_is_md5=etag_md5,
            write_algorithm=write,
        )

    if count is not None and not props.encrypted:
        layout = source_layout(job, count, _layout(source))
        if isinstance(layout, int):
            method = CopyMethod(
                path=CopyPath.SOURCE_PARTS,
                proof=Proof.SOURCE_ETAG,
                part_size=layout,
                write_algorithm=write,
            )
            return _guarded(method, link)
        reason = layout
    elif etag_md5:
        if carried is not None and carried.parts is None and carried.algorithm in _CRCS:
            # The source's own CRC of all its bytes proves the copy as its MD5 would; it is
            # combined from the parts' CRCs, computed as the bytes arrive, where the MD5
            # would be hashed here in order at a small fraction of that speed.
            return _guarded(own(Proof.SOURCE_CHECKSUM, carried), link)
        return _guarded(own(Proof.SOURCE_MD5), link)
    else:
        reason = "the source ETag is not an MD5 (encrypted or provider-specific)"
    if carried is not None and carried.parts is None:
        # Any part boundaries reproduce it; a CRC proof needs no MD5 of the parts either.
        return _guarded(own(Proof.SOURCE_CHECKSUM, carried), link)
    if carried is not None and carried.parts is not None:
        layout = source_layout(job, carried.parts, _layout(source))
        if isinstance(layout, int):
            return CopyMethod(
                path=CopyPath.SOURCE_PARTS,
                proof=Proof.SOURCE_CHECKSUM,
                part_size=layout,
                checksum=carried,
                write_algorithm=write,
            )
        reason = f"{reason}; its composite {carried.algorithm} checksum cannot be used: {layout}"
    return own(Proof.UNVERIFIED, reason=reason)


def _layout(source: SourceFacts) -> ObjectDetails:
    if source.layout is None:
        raise ValueError("the choice needs the source's part layout (a HEAD of part 1)")
    return source.layout


def _single(job: Job, link: Link) -> CopyMethod:
    """One PUT, relayed where that may pay: relaying allowed, an object large enough that a
    copy through memory costs more than the relay, and a source ETag that can be its
    MD5 (checked again on its reply), with no checksum of ours to go with the write and a
    destination whose ETag shows what it received."""
    relay = (
        link.relay
        and job.size >= RELAY_MIN
        and is_md5_etag(job.etag)
        and not link.dst_encrypts
        and link.dst.checksums in ("auto", "MD5")
    )
    if relay:
        return CopyMethod(path=CopyPath.RELAYED_SINGLE, proof=Proof.REPLY, relay=True)
    return CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY)


def _guarded(method: CopyMethod, link: Link) -> CopyMethod:
    """Parts that need no MD5 of ours travel under a CRC the destination checks and confirms
    instead (about 30 times cheaper), where it takes checksums:
    - a single-part source copied in parts is hashed once, in order, to prove its MD5; a
      second MD5 per part (Content-MD5) would double that cost;
    - a multipart source copied with its own part boundaries is proven by the MD5s of its
      parts, which the destination computes itself as their ETags: once it confirms it
      received the very bytes read, its ETags must reproduce the source's."""
    if not method.multipart or not link.crc_parts:
        return method
    by_etags = method.proof is Proof.SOURCE_ETAG
    if by_etags and link.dst_encrypts:
        return method  # the destination's ETags are no MD5s: ours prove the parts
    if by_etags and link.relay and method.write_algorithm is None:
        # Nothing to compute on the bytes: they need not be held in this process.
        return dataclasses.replace(method, relay=True)
    algorithm = method.write_algorithm
    if algorithm is None and link.dst.checksums == "auto":
        algorithm = "CRC32C"
    if algorithm not in _CRCS:
        return method
    return dataclasses.replace(method, write_algorithm=algorithm, part_check=PartCheck.CRC)


def _on_server(job: Job, method: CopyMethod, settings: TransferSettings, link: Link) -> CopyMethod:
    """The server copies: with CopyObject, or part by part with UploadPartCopy where the
    source's own part layout keeps its ETag (and the copy resumable) or the object is over
    5 GiB. No checksum of ours goes with the writes. Where either side uses a customer key
    (SSE-C), no ETag is an MD5 of the bytes: such a copy cannot be proven by them."""
    keyed = link.src.customer_key or link.dst.customer_key
    by_etags = (
        method.path is CopyPath.SOURCE_PARTS and method.proof is Proof.SOURCE_ETAG and not keyed
    )
    if by_etags or job.size > MAX_PART_SIZE:
        return CopyMethod(
            path=CopyPath.SERVER_PARTS,
            proof=Proof.SOURCE_ETAG if by_etags else Proof.UNVERIFIED,
            part_size=method.part_size or own_part_size(job, settings),
            reason="" if by_etags else "the parts copied do not reproduce the source's ETag",
            # An open upload begun with part checksums is not resumed where the parts would
            # have been relayed, as on the path through this process.
            relay=method.relay,
        )
    if keyed:
        return CopyMethod(
            path=CopyPath.SERVER_COPY,
            proof=Proof.UNVERIFIED,
            reason="encrypted with a customer key (SSE-C): no ETag is the MD5 of the bytes",
        )
    if is_md5_etag(job.etag):
        # Proven when the copy's ETag is the source's MD5; a copy with another ETag is judged
        # wrong unless the source turns out to be encrypted (see server_copy).
        return CopyMethod(path=CopyPath.SERVER_COPY, proof=Proof.SOURCE_MD5)
    return CopyMethod(
        path=CopyPath.SERVER_COPY,
        proof=Proof.UNVERIFIED,
        reason="the source's ETag is not an MD5 to compare the copy with",
    )


def settle_single(
    method: CopyMethod, job: Job, properties: ObjectProperties, link: Link
) -> CopyMethod:
    """A single PUT's proof, from the properties the GET's reply shows.

    When the source's ETag is its MD5 (not under KMS or a customer key), that very digest
    goes out as Content-MD5: the destination checks the bytes against the source's own
    fingerprint. A source without an MD5 is proven by its additional checksum of all the
    bytes (or its composite of one part), recomputed here. A relayed body stays on the
    connection only when its ETag is its MD5 and no checksum must be computed here to go
    with it (none, or the source's own of all its bytes).
    """
    source = properties.checksum
    encrypted = properties.encrypted or link.src.customer_key
    etag_md5 = is_md5_etag(job.etag) and not encrypted
    checksum = None
    reason = ""
    if job.size == 0 or etag_md5:
        proof = Proof.SOURCE_MD5
    elif source is not None and source.parts in (None, 1):
        proof, checksum = Proof.SOURCE_CHECKSUM, source
    else:
        proof = Proof.UNVERIFIED
        reason = "the source ETag is not an MD5 and it carries no usable checksum"
    if not link.src.content_etag:
        proof, reason = Proof.LOCAL_READ, ""
    write = write_algorithm(link.dst, source) if job.size else None
    # The source's own checksum of all its bytes goes on as it is (the destination checks
    # the bytes against it): the bytes need not pass through here for it.
    carried = source is not None and source.algorithm == write and source.parts is None
    return CopyMethod(
        path=method.path,
        proof=proof,
        reason=reason,
        checksum=checksum,
        etag_is_md5=etag_md5,
        write_algorithm=write,
        relay=method.relay and not encrypted and (write is None or carried),
    )


__all__ = [
    "RELAY_MIN",
    "CopyMethod",
    "CopyPath",
    "Link",
    "PartCheck",
    "Proof",
    "SourceFacts",
    "decide",
    "is_md5_etag",
    "multipart_etag",
    "multipart_parts",
    "own_part_size",
    "settle_single",
    "source_layout",
    "wants_details",
    "wants_layout",
    "write_algorithm",
]
