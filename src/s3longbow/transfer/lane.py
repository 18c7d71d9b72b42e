"""Small objects copied on one thread's loop (see :mod:`s3longbow.stores.s3.nonblocking`),
without a thread each: on a long path a small object's copy is two exchanges that spend
nearly all their time waiting, and a thread per object in flight costs more CPU in hand-offs
of the interpreter lock than the copies themselves.

An object goes on the loop when it is copied by one GET and one PUT through memory (smaller
than RELAY_MIN: larger ones are relayed by a thread) between two S3 endpoints reached
directly, proven by its ETag, an MD5, which goes on as Content-MD5 (the destination checks
the bytes against it, and its ETag must be that MD5), with nothing else to do: no bandwidth
limit, no --no-overwrite, no copy on the server, no earlier upload, not archived, every
version not asked for. Anything else, and anything only a reply shows (an error, an
encrypted source, tags to copy, an Object Lock, another ETag), raises :class:`HandBack`: the
job goes to the job threads, which start it over with their retries and their errors'
meanings. Nothing the loop did stands in their way: a PUT it made is overwritten by theirs.

A reply that asks to slow down (503 SlowDown, 429) is the one error asked again on the loop:
the exchange has cut its prefix's rate, so the request waits for the prefix's next slot and a
short backoff; handed back, the job would read its source again (a request, and bytes out of
the source's region, each time the destination throttles).
"""

from __future__ import annotations

import base64

from s3longbow import checksums
from s3longbow.errors import LongbowError, TransientError
from s3longbow.model import Checksum, Job, JobResult, needs_restore
from s3longbow.stores.s3.errors import error_from_response
from s3longbow.stores.s3.headers import _properties_from_headers
from s3longbow.stores.s3.lean import check_reply
from s3longbow.stores.s3.nonblocking import Direct, TooSlowError, exchange
from s3longbow.stores.s3.store import S3Store
from s3longbow.stores.s3.tasks import Step
from s3longbow.stores.s3.wire import _parse_error
from s3longbow.transfer import proof
from s3longbow.transfer.context import Context
from s3longbow.transfer.proof import RELAY_MIN, CopyMethod, CopyPath, is_md5_etag, settle_single


class HandBack(Exception):
    """The copy is not done on the loop: the job threads do it (the message says why)."""


class Refused(HandBack):
    """An outcome the job threads take as their own first try's (Attempt.refused) rather
    than ask again: the source refused the read for good (changed, gone, archived), or an
    exchange spent a whole window below the minimum rate."""

    def __init__(self, error: LongbowError) -> None:
        super().__init__(str(error))
        self.error = error


# Tries of a request the server keeps asking to slow down, before its job is handed back.
SLOWED_TRIES = 4

# The source's refusals that asking again would not change, as (status, code).
_FINAL_REFUSALS = frozenset(
    {(403, "InvalidObjectState"), (404, "NoSuchKey"), (412, "PreconditionFailed")}
)


def plan(ctx: Context, job: Job) -> CopyMethod | None:
    """The method of `job`'s copy when it can go on the loop, else None."""
    settings = ctx.settings
    if (
        job.part_range is not None
        or job.upload_id
        or job.restarts
        or not 0 < job.size < RELAY_MIN
        or not is_md5_etag(job.etag)
        or needs_restore(job.storage_class, job.restore)
        or settings.all_versions
        or settings.no_overwrite
        or ctx.bandwidth is not None
        or ctx.server_copy
        or ctx.dst_encrypts
        or not ctx.learned.relays  # the destination's ETags showed they are not MD5s
    ):
        return None
    link = ctx.link()
    if proof.wants_details(job, link, settings):
        return None
    method = proof.decide(job, proof.SourceFacts(), link, settings)
    return method if method.path is CopyPath.SINGLE else None


def directs(ctx: Context) -> tuple[Direct, Direct] | None:
    """How the loop reaches both stores, where it can (two S3 stores reached directly)."""
    src, dst = ctx.src, ctx.dst
    if not (isinstance(src, S3Store) and isinstance(dst, S3Store)):
        return None
    ways = src.direct(), dst.direct()
    if ways[0] is None or ways[1] is None:
        return None
    return ways[0], ways[1]


def copy(ctx: Context, job: Job, method: CopyMethod, src: Direct, dst: Direct) -> Step[JobResult]:
    """Copy `job`'s object (planned by :func:`plan`): GET it whole, PUT it with its MD5.

    Raises:
        HandBack: The job threads must do it.
        WireError: An exchange could not be done here (the job threads can).
    """
    source, target, md5 = ctx.src, ctx.dst, job.etag
    assert isinstance(source, S3Store) and isinstance(target, S3Store) and md5 is not None
    where = source.describe(job.src_key)
    read = source.direct_get(job.src_key, job.size, etag=md5, version_id=job.version_id)
    try:
        answer = yield from exchange(
            src, read, b"", most=job.size, key=job.src_key, slowed_tries=SLOWED_TRIES
        )
    except TooSlowError as exc:
        # A whole window spent: the job thread counts it as its first try, not try again.
        raise Refused(TransientError(f"reading {where}: {exc}")) from None
    if answer.status != 200:
        code, message = _parse_error(answer.body)
        if (answer.status, code) in _FINAL_REFUSALS:
            raise Refused(error_from_response(code, answer.status, message, where, source=True))
        raise HandBack(f"{where}: GET answered {answer.status}")
    check_reply(answer, where, 0, job.size, job.etag)
    body = answer.body
    if len(body) != job.size:
        raise HandBack(f"{where}: {len(body)} bytes read, {job.size} listed")
    properties = _properties_from_headers(answer.lowered())
    settled = settle_single(method, job, properties, ctx.link())
    if not settled.etag_is_md5 or settled.checksum is not None:
        raise HandBack(f"{where}: its ETag is not the MD5 of its bytes")
    if properties.lock is not None:
        raise HandBack(f"{where}: it has an Object Lock")
    if ctx.settings.copy_tags and properties.tag_count:
        raise HandBack(f"{where}: it has tags to copy")
    written, storage_class = ctx.writes(job, properties)
    checksum = None
    algorithm = settled.write_algorithm
    if algorithm is not None:
        carried = properties.checksum
        if carried is not None and carried.algorithm == algorithm and carried.parts is None:
            checksum = Checksum(algorithm, carried.value)
        else:
            checksum = Checksum(algorithm, checksums.checksum_b64(algorithm, body))
    write = target.direct_put(
        job.dst_key,
        job.size,
        md5_b64=base64.b64encode(bytes.fromhex(md5)).decode(),
        storage_class=storage_class,
        properties=written,
        tags=(),
        checksum=checksum,
    )
    try:
        answer = yield from exchange(
            dst, write, body, most=64 * 1024, key=job.dst_key, slowed_tries=SLOWED_TRIES
        )
    except TooSlowError as exc:
        raise Refused(TransientError(f"writing {target.describe(job.dst_key)}: {exc}")) from None
    if answer.status != 200:
        raise HandBack(f"{target.describe(job.dst_key)}: PUT answered {answer.status}")
    dst_etag = (answer.getheader("ETag") or "").removeprefix("W/").strip('"')
    if dst_etag != job.etag:
        raise HandBack(
            f"{target.describe(job.dst_key)}: the destination reports ETag {dst_etag!r}, the "
            f"source's MD5 is {job.etag}"
        )
    verified, how = settled.verdict()
    return JobResult(bytes_sent=job.size, verified=verified, verify=how, dst_etag=dst_etag)


__all__ = ["HandBack", "Refused", "copy", "directs", "plan"]
