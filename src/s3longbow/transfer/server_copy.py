"""Copy on the server, where one endpoint and one account hold both sides: CopyObject, or
UploadPartCopy part by part (resumable) with the source's own part layout or above 5 GiB."""

from __future__ import annotations

from s3longbow.errors import NotReplacedError, UploadMissingError
from s3longbow.model import Job, JobResult, ObjectDetails, PartInfo
from s3longbow.retry import with_retries
from s3longbow.transfer import upload
from s3longbow.transfer.context import Attempt, Context, VerificationError
from s3longbow.transfer.proof import CopyMethod, CopyPath, Proof, is_md5_etag
from s3longbow.transfer.sizing import part_count, part_range


def copy_on_server(
    ctx: Context,
    job: Job,
    method: CopyMethod,
    details: ObjectDetails | None,
    attempt: Attempt,
) -> JobResult:
    """Copy the object on the server (method.path is SERVER_COPY or SERVER_PARTS).

    Args:
        details: The source's pinned HEAD if one was made while choosing the method.
    """
    if method.path is CopyPath.SERVER_PARTS:
        return _copy_parts(ctx, job, method, details, attempt)

    # The source's properties are read where the copy writes its own (rewritten, with the
    # source's class or Object Lock): the server copies the rest as they are.
    if details is None and (
        ctx.rewrites or ctx.settings.keeps_storage_class or ctx.dst.object_lock()
    ):
        details = ctx.src.details(job.src_key, job.etag, version_id=job.version_id)
    written = storage_class = None
    if details is not None:
        written, storage_class = ctx.writes(job, details.properties)
    else:
        storage_class = ctx.storage_class(job, None)
    lock = written.lock if written is not None else None
    replace = written is not None and (ctx.rewrites or bool(lock))

    def once() -> JobResult:
        ctx.check_stop()
        try:
            dst_etag = ctx.dst.copy_object(
                ctx.src,
                job.src_key,
                job.dst_key,
                etag=job.etag,
                version_id=job.version_id,
                storage_class=storage_class,
                copy_tags=ctx.settings.copy_tags,
                properties=written if replace else None,
                create_only=ctx.settings.no_overwrite,
            )
        except NotReplacedError:
            # The copy an earlier try made (its reply lost) refuses the retry: where the
            # source's ETag is its MD5, a copy of it carries that ETag and can be known.
            if not (is_md5_etag(job.etag) and not _keyed(ctx)):
                raise
            if not upload.written_already(ctx, job, job.etag or ""):
                raise
            dst_etag = job.etag or ""
        verified, how = _check_copy(ctx, job, dst_etag, method.reason)
        ctx.confirm_lock(job, lock)
        ctx.stats.sent(job.size)
        attempt.progressed += job.size
        return JobResult(
            bytes_sent=job.size,
            verified=verified,
            verify=how,
            dst_etag=dst_etag,
            notes=(*attempt.notes, "copied on the server"),
        )

    return with_retries(
        once,
        attempts=ctx.settings.part_attempts,
        what=f"server-side copy of {job.src_key!r}",
        should_stop=ctx.stop.is_set,
    )


def _check_copy(ctx: Context, job: Job, dst_etag: str, reason: str) -> tuple[bool, str]:
    """A copy whose ETag equals the source's MD5 is proven; a different one is wrong only
    when the source's ETag really is its MD5 (not under KMS or a customer key)."""
    if job.etag and dst_etag == job.etag and is_md5_etag(dst_etag) and not _keyed(ctx):
        return True, "source-md5"
    if is_md5_etag(job.etag) and is_md5_etag(dst_etag) and not ctx.dst_encrypts and not _keyed(ctx):
        details = ctx.src.details(job.src_key, job.etag, version_id=job.version_id)
        if not details.properties.encrypted:
            ctx.dst.delete_object(job.dst_key)
            raise VerificationError(
                f"{ctx.dst.describe(job.dst_key)}: the server's copy has ETag {dst_etag}, "
                f"the source's MD5 is {job.etag}"
            )
    head = ctx.dst.head(job.dst_key)
    if head is None or head.size != job.size:
        found = "missing" if head is None else f"{head.size} bytes"
        raise VerificationError(
            f"{ctx.dst.describe(job.dst_key)}: after the server's copy the object is "
            f"{found}, the source has {job.size}"
        )
    return False, reason or "the source's ETag is not an MD5 to compare the copy with"


def _keyed(ctx: Context) -> bool:
    """Either side is encrypted with a customer key: no ETag is an MD5 of the bytes."""
    return ctx.src.capabilities.customer_key or ctx.dst.capabilities.customer_key


def _copy_parts(
    ctx: Context,
    job: Job,
    method: CopyMethod,
    details: ObjectDetails | None,
    attempt: Attempt,
) -> JobResult:
    # Parts the ledger never recorded are copied again: the server copies them cheaply.
    opened = upload.resume_or_start(ctx, job, method, details)
    reusable, upload_id = opened.reusable, opened.upload_id
    count = part_count(job.size, method.part_size)
    reused = sum(p.size for p in reusable.values())
    if reusable:
        ctx.stats.reused(reused)
        attempt.progressed += reused
        attempt.reused += reused
    todo = [n for n in range(1, count + 1) if n not in reusable]
    futures = [
        ctx.part_pool.submit(_copy_part, ctx, job, upload_id, method, n, attempt) for n in todo
    ]
    parts = {**reusable, **upload.parts_done(futures)}
    ordered = [parts[n] for n in range(1, count + 1)]
    by_etags = method.proof is Proof.SOURCE_ETAG
    if by_etags and not all(is_md5_etag(p.etag) for p in ordered):
        verified, how = False, "the part ETags the server gave are not MD5s"
    elif by_etags:
        ours = upload.parts_etag(ordered)
        if ours != job.etag:
            upload.abort(ctx, job, upload_id)
            raise VerificationError(
                f"{ctx.src.describe(job.src_key)}: the parts copied give ETag {ours}, the "
                f"source's is {job.etag}"
            )
        verified, how = True, "source-etag"
    else:
        verified, how = method.verdict()
    dst_etag = upload.complete(ctx, job, method, upload_id, ordered)
    upload.check_after_complete(ctx, job, ordered, dst_etag)
    ctx.confirm_lock(job, opened.lock)
    return JobResult(
        bytes_sent=job.size - reused,
        bytes_reused=reused,
        verified=verified,
        verify=how,
        dst_etag=dst_etag,
        notes=(*attempt.notes, "copied on the server"),
    )


def _copy_part(
    ctx: Context, job: Job, upload_id: str, method: CopyMethod, number: int, attempt: Attempt
) -> PartInfo:
    start, length = part_range(number, job.size, method.part_size)

    def once() -> PartInfo:
        ctx.check_stop()
        etag = ctx.dst.upload_part_copy(
            ctx.src,
            job.src_key,
            job.dst_key,
            upload_id,
            number,
            start,
            length,
            etag=job.etag,
            version_id=job.version_id,
        )
        ctx.ledger.record_part(job, upload_id, number, length, etag)
        ctx.stats.sent(length)
        attempt.progressed += length
        return PartInfo(number, length, etag)

    return with_retries(
        once,
        attempts=ctx.settings.part_attempts,
        what=f"server-side copy of part {number} of {job.src_key!r}",
        should_stop=ctx.stop.is_set,
        give_up_on=(UploadMissingError,),
    )


__all__ = ["copy_on_server"]
