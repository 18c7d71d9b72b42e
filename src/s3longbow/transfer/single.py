"""Copy an object in one PUT: zero-byte, through memory, or relayed from the source's
connection, proven by what the GET's reply shows of the source (see proof.settle_single)."""

from __future__ import annotations

import base64
import hashlib

from s3longbow import checksums
from s3longbow.errors import NotReplacedError, TransientError
from s3longbow.model import Bytes, Checksum, Job, JobResult, ObjectProperties
from s3longbow.retry import with_retries
from s3longbow.stores.base import RELAY_BUFFER, Relayed
from s3longbow.transfer import upload
from s3longbow.transfer.context import Attempt, Context, VerificationError
from s3longbow.transfer.proof import CopyMethod, is_md5_etag, settle_single


def copy_single(ctx: Context, job: Job, method: CopyMethod, attempt: Attempt) -> JobResult:
    """Copy the object in one request, retried whole."""

    def once() -> JobResult:
        ctx.check_stop()
        attempt.raise_refusal()
        # A relayed body holds only what passes through the relay, so a long path's many
        # objects in flight are not bounded by the memory their sizes would take; one read
        # into memory holds its size.
        relaying = method.relay and ctx.learned.relays
        taken = ctx.budget.acquire(min(job.size, RELAY_BUFFER) if relaying else job.size)

        def whole() -> None:
            # Not relayed after all: the object's size is taken before it is read, what was
            # held given back first, so that no thread waits for memory while holding some.
            nonlocal taken
            if relaying:
                ctx.budget.release(taken)
                taken = 0
                taken = ctx.budget.acquire(job.size)

        try:
            opened = _open_relayed(ctx, job, method)
            if opened is not None:
                body, properties = opened
                with body:
                    settled = settle_single(method, job, properties, ctx.link())
                    data: Bytes | Relayed = body
                    if not settled.relay:  # the reply shows an encrypted source
                        whole()
                        data = body.read()
                    dst_etag = put_verified(ctx, job, settled, data, properties, paced=True)
            else:
                whole()
                data, properties = ctx.src.read_object(
                    job.src_key, job.size, etag=job.etag, version_id=job.version_id
                )
                settled = settle_single(method, job, properties, ctx.link())
                dst_etag = put_verified(ctx, job, settled, data, properties)
        finally:
            ctx.budget.release(taken)
        ctx.stats.sent(job.size)
        attempt.progressed += job.size
        verified, how = settled.verdict()
        return JobResult(
            bytes_sent=job.size,
            verified=verified,
            verify=how,
            dst_etag=dst_etag,
            notes=tuple(attempt.notes),
        )

    return with_retries(
        once,
        attempts=ctx.settings.part_attempts,
        what=f"copy of {job.src_key!r}",
        should_stop=ctx.stop.is_set,
    )


def _open_relayed(
    ctx: Context, job: Job, method: CopyMethod
) -> tuple[Relayed, ObjectProperties] | None:
    """The source's reply held open to be relayed into the PUT, where the method allows it
    and relaying still works."""
    if not (method.relay and ctx.learned.relays):
        return None
    # Paced before the reply is opened: its body must not wait on the socket meanwhile.
    ctx.pace(job.size)
    return ctx.src.open_object(job.src_key, job.size, etag=job.etag, version_id=job.version_id)


def put_verified(
    ctx: Context,
    job: Job,
    method: CopyMethod,
    data: Bytes | Relayed,
    properties: ObjectProperties,
    paced: bool = False,
) -> str:
    """PUT the bytes so that the copy is proven equal to the source; return the destination's
    ETag.

    `method` is settled from the reply (settle_single). Where the source's ETag is its MD5,
    it goes as Content-MD5 and the destination checks the bytes against it, with no hashing
    here; where the destination reports an ETag that is not an MD5 (so that check could not
    be seen), or the source has no MD5, the bytes are hashed here. A source proven by its
    additional checksum has it recomputed here, and sent on when the destination takes that
    algorithm.
    """
    seen = data if isinstance(data, Bytes) else None  # None: relayed, never in memory here
    source_md5 = job.etag if method.etag_is_md5 else None
    md5_hex = source_md5 or hashlib.md5(_bytes(seen)).hexdigest()
    proof = method.checksum
    if proof is not None:
        ours = checksums.checksum_b64(proof.algorithm, _bytes(seen))
        if proof.parts == 1:
            ours = checksums.composite(proof.algorithm, [ours]).value
        if ours != proof.value:
            raise VerificationError(
                f"{ctx.src.describe(job.src_key)}: the bytes read have {proof.algorithm} "
                f"{ours}, the source's is {proof.value}"
            )
    algorithm = method.write_algorithm
    checksum = None
    if algorithm is not None:
        source = properties.checksum
        if source is not None and source.algorithm == algorithm and source.parts is None:
            checksum = Checksum(algorithm, source.value)
        else:
            checksum = Checksum(algorithm, checksums.checksum_b64(algorithm, _bytes(seen)))
    if not paced:
        ctx.pace(len(data))
    written, storage_class = ctx.writes(job, properties)
    try:
        dst_etag = ctx.dst.put_object(
            job.dst_key,
            data,
            md5_b64=base64.b64encode(bytes.fromhex(md5_hex)).decode(),
            storage_class=storage_class,
            properties=written,
            tags=ctx.tags(job, properties),
            checksum=checksum,
            create_only=ctx.settings.no_overwrite,
        )
    except NotReplacedError:
        # The object an earlier try of this PUT made (its reply lost) refuses the retry.
        if not upload.written_already(ctx, job, md5_hex):
            raise
        dst_etag = md5_hex
    if is_md5_etag(dst_etag) and not ctx.dst_encrypts:
        if dst_etag != md5_hex:
            ctx.dst.delete_object(job.dst_key)
            raise VerificationError(
                f"{ctx.dst.describe(job.dst_key)}: the destination reports ETag "
                f"{dst_etag}, the source's MD5 is {md5_hex}"
            )
    elif seen is None:
        # Relayed: only the destination's ETag could have shown what it received.
        ctx.learned.relay_failed()
        ctx.dst.delete_object(job.dst_key)
        raise TransientError(
            f"{ctx.dst.describe(job.dst_key)}: the destination's ETag {dst_etag!r} is not "
            "an MD5, so a relayed object cannot be proven; objects go through memory now"
        )
    elif source_md5 is not None and hashlib.md5(seen).hexdigest() != source_md5:
        ctx.dst.delete_object(job.dst_key)
        raise VerificationError(
            f"{ctx.src.describe(job.src_key)}: the bytes read do not have the source's "
            f"MD5 {source_md5}"
        )
    return dst_etag


def _bytes(seen: Bytes | None) -> Bytes:
    """The bytes read into memory; a relayed body is never hashed here (its method says so)."""
    if seen is None:
        raise AssertionError("a relayed body has no bytes here to hash")
    return seen


__all__ = ["copy_single", "put_verified"]
