"""The choice of copy path and proof, as a table: job, source HEADs, stores, settings -> method."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from s3longbow.config import MiB, TransferSettings
from s3longbow.model import Checksum, Job, ObjectDetails, ObjectProperties
from s3longbow.stores.base import Capabilities
from s3longbow.transfer.proof import (
    CopyMethod,
    CopyPath,
    Link,
    PartCheck,
    Proof,
    SourceFacts,
    decide,
    settle_single,
    wants_details,
    wants_layout,
)

MD5 = hashlib.md5(b"an object").hexdigest()
EMPTY = hashlib.md5(b"").hexdigest()
MP3 = f"{hashlib.md5(b'parts').hexdigest()}-3"
MP1 = f"{hashlib.md5(b'part').hexdigest()}-1"
SETTINGS = TransferSettings()  # 8 MiB parts, 5 MiB threshold

S3 = Capabilities()  # Content-MD5 only, ETags are MD5s
AUTO = Capabilities(checksums="auto")
CRC32C_ONLY = Capabilities(checksums="CRC32C")
KMS = Capabilities(write_etags_md5=False)
FILES = Capabilities(content_etag=False, checksums="MD5")

CRC32 = Checksum("CRC32", "AAAAAA==")
CRC64 = Checksum("CRC64NVME", "AAAAAAAAAAA=")
SHA256 = Checksum("SHA256", "c2hh")
CRC32_3 = Checksum("CRC32", "Y29tcA==", parts=3)
CRC32C_1 = Checksum("CRC32C", "b25l", parts=1)


def job(size: int, etag: str | None = MD5, **fields: object) -> Job:
    made = Job(id=1, run_id=1, pair=0, src_key="k", dst_key="k", size=size, etag=etag)
    return dataclasses.replace(made, **fields)


def head(checksum: Checksum | None = None, *, encrypted: bool = False) -> ObjectDetails:
    return ObjectDetails(ObjectProperties(checksum=checksum, encrypted=encrypted))


def layout(part_size: int | None, count: int | None) -> ObjectDetails:
    return ObjectDetails(ObjectProperties(), part_size=part_size, parts_count=count)


def link(
    src: Capabilities = S3, dst: Capabilities = S3, *, server: bool = False, relay: bool = False
) -> Link:
    return Link(src=src, dst=dst, server_copy=server, relay=relay)


HIDDEN = "the source is a multipart object whose part layout the store hides"
IRREGULAR = "the source's part layout cannot be reproduced (irregular or small parts)"
NOT_MD5 = "the source ETag is not an MD5 (encrypted or provider-specific)"

# (id, job, HEAD, part-1 HEAD, link, the method chosen)
CASES = [
    (
        "zero-byte",
        job(0, EMPTY),
        None,
        None,
        link(),
        CopyMethod(path=CopyPath.ZERO_BYTE, proof=Proof.SOURCE_MD5),
    ),
    (
        "zero-byte file",
        job(0, "mtime-1-0"),
        None,
        None,
        link(FILES),
        CopyMethod(path=CopyPath.ZERO_BYTE, proof=Proof.LOCAL_READ),
    ),
    (
        "small: one PUT, proof from the reply",
        job(MiB),
        None,
        None,
        link(),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "at the threshold: one PUT",
        job(5 * MiB),
        None,
        None,
        link(),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "over the threshold, within one part: one PUT",
        job(7 * MiB),
        None,
        None,
        link(),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "relay between plain-HTTP endpoints",
        job(2 * MiB),
        None,
        None,
        link(relay=True),
        CopyMethod(path=CopyPath.RELAYED_SINGLE, proof=Proof.REPLY, relay=True),
    ),
    (
        "no relay below 1 MiB",
        job(MiB - 1),
        None,
        None,
        link(relay=True),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "no relay when a checksum of ours goes with every write",
        job(2 * MiB),
        None,
        None,
        link(dst=CRC32C_ONLY, relay=True),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "no relay when the destination's ETag cannot show what it received",
        job(2 * MiB),
        None,
        None,
        link(dst=KMS, relay=True),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "no relay of a source whose ETag is no MD5",
        job(2 * MiB, MP1),
        head(),
        layout(None, None),
        link(relay=True),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "parts of ours, proven by the MD5 hashed in order",
        job(20 * MiB),
        head(),
        None,
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_MD5,
            part_size=8 * MiB,
            etag_is_md5=True,
        ),
    ),
    (
        "parts under a CRC alone where the destination takes checksums",
        job(20 * MiB),
        head(),
        None,
        link(dst=AUTO),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_MD5,
            part_size=8 * MiB,
            etag_is_md5=True,
            write_algorithm="CRC32C",
            part_check=PartCheck.CRC,
        ),
    ),
    (
        "parts with MD5s once a CRC went unconfirmed",
        job(20 * MiB),
        head(),
        None,
        dataclasses.replace(link(dst=AUTO), crc_parts=False),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_MD5,
            part_size=8 * MiB,
            etag_is_md5=True,
        ),
    ),
    (
        "the destination's configured checksum guards the parts",
        job(20 * MiB),
        head(),
        None,
        link(dst=CRC32C_ONLY),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_MD5,
            part_size=8 * MiB,
            etag_is_md5=True,
            write_algorithm="CRC32C",
            part_check=PartCheck.CRC,
        ),
    ),
    (
        "the source's full CRC proves it rather than its MD5",
        job(20 * MiB),
        head(CRC32),
        None,
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_CHECKSUM,
            part_size=8 * MiB,
            checksum=CRC32,
            etag_is_md5=True,
        ),
    ),
    (
        "the source's full CRC, passed on and guarding the parts",
        job(20 * MiB),
        head(CRC64),
        None,
        link(dst=AUTO),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_CHECKSUM,
            part_size=8 * MiB,
            checksum=CRC64,
            etag_is_md5=True,
            write_algorithm="CRC64NVME",
            part_check=PartCheck.CRC,
        ),
    ),
    (
        "a multipart source copied with its own boundaries",
        job(20 * MiB, MP3),
        head(),
        layout(8 * MiB, 3),
        link(),
        CopyMethod(path=CopyPath.SOURCE_PARTS, proof=Proof.SOURCE_ETAG, part_size=8 * MiB),
    ),
    (
        "its parts relayed between plain-HTTP endpoints",
        job(20 * MiB, MP3),
        head(),
        layout(8 * MiB, 3),
        link(relay=True),
        CopyMethod(
            path=CopyPath.SOURCE_PARTS, proof=Proof.SOURCE_ETAG, part_size=8 * MiB, relay=True
        ),
    ),
    (
        "its parts under a CRC where the destination takes checksums",
        job(20 * MiB, MP3),
        head(),
        layout(8 * MiB, 3),
        link(dst=AUTO),
        CopyMethod(
            path=CopyPath.SOURCE_PARTS,
            proof=Proof.SOURCE_ETAG,
            part_size=8 * MiB,
            write_algorithm="CRC32C",
            part_check=PartCheck.CRC,
        ),
    ),
    (
        "its composite checksum passed on: the bytes are read, not relayed",
        job(20 * MiB, MP3),
        head(CRC32_3),
        layout(8 * MiB, 3),
        link(dst=AUTO, relay=True),
        CopyMethod(
            path=CopyPath.SOURCE_PARTS,
            proof=Proof.SOURCE_ETAG,
            part_size=8 * MiB,
            write_algorithm="CRC32",
            part_check=PartCheck.CRC,
        ),
    ),
    (
        "its parts with our MD5s where the destination's ETags are not MD5s",
        job(20 * MiB, MP3),
        head(),
        layout(8 * MiB, 3),
        link(dst=Capabilities(checksums="auto", write_etags_md5=False), relay=True),
        CopyMethod(path=CopyPath.SOURCE_PARTS, proof=Proof.SOURCE_ETAG, part_size=8 * MiB),
    ),
    (
        "a one-part multipart source, small: its own single part",
        job(3 * MiB, MP1),
        head(),
        layout(3 * MiB, 1),
        link(),
        CopyMethod(path=CopyPath.SOURCE_PARTS, proof=Proof.SOURCE_ETAG, part_size=3 * MiB),
    ),
    (
        "a small multipart source whose layout is hidden: one PUT",
        job(3 * MiB, MP3),
        head(),
        layout(None, None),
        link(),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "layout hidden, no checksum: unverified",
        job(20 * MiB, MP3),
        head(),
        layout(None, None),
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS, proof=Proof.UNVERIFIED, part_size=8 * MiB, reason=HIDDEN
        ),
    ),
    (
        "layout irregular (parts below 5 MiB): unverified",
        job(12 * MiB, MP3),
        head(),
        layout(4 * MiB, 3),
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS, proof=Proof.UNVERIFIED, part_size=8 * MiB, reason=IRREGULAR
        ),
    ),
    (
        "layout that disagrees with the ETag's count: unverified",
        job(20 * MiB, MP3),
        head(),
        layout(5 * MiB, 4),
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS, proof=Proof.UNVERIFIED, part_size=8 * MiB, reason=IRREGULAR
        ),
    ),
    (
        "layout hidden, a full-object CRC proves it in any parts",
        job(20 * MiB, MP3),
        head(Checksum("CRC32C", "AAAAAA==")),
        layout(None, None),
        link(dst=AUTO),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_CHECKSUM,
            part_size=8 * MiB,
            checksum=Checksum("CRC32C", "AAAAAA=="),
            write_algorithm="CRC32C",
            part_check=PartCheck.CRC,
        ),
    ),
    (
        "encrypted, no checksum: unverified",
        job(20 * MiB),
        head(encrypted=True),
        None,
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS, proof=Proof.UNVERIFIED, part_size=8 * MiB, reason=NOT_MD5
        ),
    ),
    (
        "encrypted, a SHA-256 of all bytes: hashed in order",
        job(20 * MiB),
        head(SHA256, encrypted=True),
        None,
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_CHECKSUM,
            part_size=8 * MiB,
            checksum=SHA256,
        ),
    ),
    (
        "encrypted multipart, a composite CRC: the source's boundaries",
        job(20 * MiB, MP3),
        head(CRC32_3, encrypted=True),
        layout(8 * MiB, 3),
        link(),
        CopyMethod(
            path=CopyPath.SOURCE_PARTS,
            proof=Proof.SOURCE_CHECKSUM,
            part_size=8 * MiB,
            checksum=CRC32_3,
        ),
    ),
    (
        "encrypted multipart, a composite CRC but the layout hidden: unverified",
        job(20 * MiB, MP3),
        head(CRC32_3, encrypted=True),
        layout(None, None),
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.UNVERIFIED,
            part_size=8 * MiB,
            reason=f"{NOT_MD5}; its composite CRC32 checksum cannot be used: {HIDDEN}",
        ),
    ),
    (
        "layout hidden and a composite checksum: both reasons",
        job(20 * MiB, MP3),
        head(CRC32_3),
        layout(None, None),
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.UNVERIFIED,
            part_size=8 * MiB,
            reason=f"{HIDDEN}; its composite CRC32 checksum cannot be used: {HIDDEN}",
        ),
    ),
    (
        "files: read as they are, in parts",
        job(20 * MiB, "mtime-1-2"),
        None,
        None,
        link(FILES, AUTO),
        CopyMethod(path=CopyPath.OWN_PARTS, proof=Proof.LOCAL_READ, part_size=8 * MiB),
    ),
    (
        "files: small, one PUT",
        job(MiB, "mtime-1-2"),
        None,
        None,
        link(FILES),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY),
    ),
    (
        "a resumed upload keeps the part size it began with",
        job(40 * MiB, upload_id="u", part_size=16 * MiB, upload_etag=MD5),
        head(),
        None,
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_MD5,
            part_size=16 * MiB,
            etag_is_md5=True,
        ),
    ),
    (
        "an upload of another version does not set the part size",
        job(40 * MiB, upload_id="u", part_size=16 * MiB, upload_etag="0" * 32),
        head(),
        None,
        link(),
        CopyMethod(
            path=CopyPath.OWN_PARTS,
            proof=Proof.SOURCE_MD5,
            part_size=8 * MiB,
            etag_is_md5=True,
        ),
    ),
    (
        "on the server: CopyObject, judged on the copy's ETag",
        job(MiB),
        None,
        None,
        link(server=True, relay=True),
        CopyMethod(path=CopyPath.SERVER_COPY, proof=Proof.SOURCE_MD5),
    ),
    (
        "on the server: zero bytes",
        job(0, EMPTY),
        None,
        None,
        link(server=True),
        CopyMethod(path=CopyPath.SERVER_COPY, proof=Proof.SOURCE_MD5),
    ),
    (
        "on the server: a source ETag that is no MD5",
        job(20 * MiB, MP3),
        head(),
        layout(None, None),
        link(server=True),
        CopyMethod(
            path=CopyPath.SERVER_COPY,
            proof=Proof.UNVERIFIED,
            reason="the source's ETag is not an MD5 to compare the copy with",
        ),
    ),
    (
        "on the server: the source's own parts keep its ETag",
        job(20 * MiB, MP3),
        head(),
        layout(8 * MiB, 3),
        link(dst=AUTO, server=True),
        CopyMethod(path=CopyPath.SERVER_PARTS, proof=Proof.SOURCE_ETAG, part_size=8 * MiB),
    ),
    (
        "on the server: over 5 GiB in parts of ours",
        job(6 * 1024 * MiB),
        head(),
        None,
        link(server=True),
        CopyMethod(
            path=CopyPath.SERVER_PARTS,
            proof=Proof.UNVERIFIED,
            part_size=8 * MiB,
            reason="the parts copied do not reproduce the source's ETag",
        ),
    ),
]


@pytest.mark.parametrize(
    ("job_", "details", "part_one", "link_", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    job_: Job,
    details: ObjectDetails | None,
    part_one: ObjectDetails | None,
    link_: Link,
    expected: CopyMethod,
) -> None:
    # The HEADs given are exactly those the choice asks for.
    assert wants_details(job_, link_, SETTINGS) == (details is not None)
    if details is not None:
        assert wants_layout(job_, details) == (part_one is not None)
    assert decide(job_, SourceFacts(details, part_one), link_, SETTINGS) == expected


def test_decide_refuses_to_guess_a_head_it_needs() -> None:
    with pytest.raises(ValueError, match="pinned HEAD"):
        decide(job(20 * MiB), SourceFacts(), link(), SETTINGS)
    with pytest.raises(ValueError, match="part 1"):
        decide(job(20 * MiB, MP3), SourceFacts(head()), link(), SETTINGS)


SINGLE = CopyMethod(path=CopyPath.SINGLE, proof=Proof.REPLY)
RELAYED = CopyMethod(path=CopyPath.RELAYED_SINGLE, proof=Proof.REPLY, relay=True)
NO_CHECKSUM = "the source ETag is not an MD5 and it carries no usable checksum"

# (id, method chosen, job, the reply's properties, link, the method settled)
SETTLED = [
    (
        "the ETag is the MD5: Content-MD5 proves it",
        SINGLE,
        job(MiB),
        ObjectProperties(),
        link(),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.SOURCE_MD5, etag_is_md5=True),
    ),
    (
        "relayed: nothing of ours goes with it",
        RELAYED,
        job(2 * MiB),
        ObjectProperties(),
        link(relay=True),
        CopyMethod(
            path=CopyPath.RELAYED_SINGLE, proof=Proof.SOURCE_MD5, etag_is_md5=True, relay=True
        ),
    ),
    (
        "relay declined: the reply shows encryption",
        RELAYED,
        job(2 * MiB),
        ObjectProperties(encrypted=True),
        link(relay=True),
        CopyMethod(path=CopyPath.RELAYED_SINGLE, proof=Proof.UNVERIFIED, reason=NO_CHECKSUM),
    ),
    (
        "relayed: the source's checksum of all its bytes goes on as it is",
        RELAYED,
        job(2 * MiB),
        ObjectProperties(checksum=CRC32),
        link(dst=AUTO, relay=True),
        CopyMethod(
            path=CopyPath.RELAYED_SINGLE,
            proof=Proof.SOURCE_MD5,
            etag_is_md5=True,
            write_algorithm="CRC32",
            relay=True,
        ),
    ),
    (
        "relay declined: the destination's checksum must be computed here",
        RELAYED,
        job(2 * MiB),
        ObjectProperties(checksum=CRC32),
        link(dst=CRC32C_ONLY, relay=True),
        CopyMethod(
            path=CopyPath.RELAYED_SINGLE,
            proof=Proof.SOURCE_MD5,
            etag_is_md5=True,
            write_algorithm="CRC32C",
        ),
    ),
    (
        "relay declined: a composite of one part is no checksum of all the bytes",
        RELAYED,
        job(2 * MiB),
        ObjectProperties(checksum=CRC32C_1),
        link(dst=AUTO, relay=True),
        CopyMethod(
            path=CopyPath.RELAYED_SINGLE,
            proof=Proof.SOURCE_MD5,
            etag_is_md5=True,
            write_algorithm="CRC32C",
        ),
    ),
    (
        "encrypted, its CRC of all bytes proves it",
        SINGLE,
        job(MiB),
        ObjectProperties(checksum=CRC32, encrypted=True),
        link(),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.SOURCE_CHECKSUM, checksum=CRC32),
    ),
    (
        "a one-part source's composite checksum proves it",
        SINGLE,
        job(MiB, MP1),
        ObjectProperties(checksum=CRC32C_1),
        link(dst=CRC32C_ONLY),
        CopyMethod(
            path=CopyPath.SINGLE,
            proof=Proof.SOURCE_CHECKSUM,
            checksum=CRC32C_1,
            write_algorithm="CRC32C",
        ),
    ),
    (
        "a composite of three parts cannot prove one PUT",
        SINGLE,
        job(MiB, MP3),
        ObjectProperties(checksum=CRC32_3),
        link(),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.UNVERIFIED, reason=NO_CHECKSUM),
    ),
    (
        "zero bytes: nothing to prove, no checksum",
        CopyMethod(path=CopyPath.ZERO_BYTE, proof=Proof.SOURCE_MD5),
        job(0, "not-an-md5"),
        ObjectProperties(),
        link(dst=CRC32C_ONLY),
        CopyMethod(path=CopyPath.ZERO_BYTE, proof=Proof.SOURCE_MD5),
    ),
    (
        "a file: read as it is",
        SINGLE,
        job(MiB, "mtime-1-2"),
        ObjectProperties(),
        link(FILES, CRC32C_ONLY),
        CopyMethod(path=CopyPath.SINGLE, proof=Proof.LOCAL_READ, write_algorithm="CRC32C"),
    ),
]


@pytest.mark.parametrize(
    ("method", "job_", "properties", "link_", "expected"),
    [case[1:] for case in SETTLED],
    ids=[case[0] for case in SETTLED],
)
def test_settle_single(
    method: CopyMethod,
    job_: Job,
    properties: ObjectProperties,
    link_: Link,
    expected: CopyMethod,
) -> None:
    assert settle_single(method, job_, properties, link_) == expected


def test_what_each_method_computes_and_reports() -> None:
    md5_parts = CopyMethod(path=CopyPath.OWN_PARTS, proof=Proof.SOURCE_MD5, part_size=8 * MiB)
    assert (md5_parts.ordered_hash, md5_parts.part_algorithms) == ("md5", ())
    assert md5_parts.verdict() == (True, "source-md5")
    sha = dataclasses.replace(
        md5_parts, proof=Proof.SOURCE_CHECKSUM, checksum=SHA256, write_algorithm="CRC32C"
    )
    assert (sha.ordered_hash, sha.part_algorithms) == ("sha256", ("CRC32C", "SHA256"))
    assert sha.verdict() == (True, "source-sha256")
    crc = dataclasses.replace(sha, checksum=CRC32, write_algorithm="CRC32")
    assert (crc.ordered_hash, crc.part_algorithms) == (None, ("CRC32",))
    single = CopyMethod(path=CopyPath.SINGLE, proof=Proof.SOURCE_MD5)
    assert single.ordered_hash is None  # Content-MD5 proves it: nothing hashed in order
    unverified = CopyMethod(path=CopyPath.SINGLE, proof=Proof.UNVERIFIED, reason="why")
    assert unverified.verdict() == (False, "why")
    with pytest.raises(ValueError, match="settled"):
        SINGLE.verdict()
