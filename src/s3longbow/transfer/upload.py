"""A multipart upload on the destination: resume the job's open one or start one, tell which
of its parts are valid, complete it, and check the object it became."""

from __future__ import annotations

import logging
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from s3longbow.errors import NotReplacedError, UploadMissingError
from s3longbow.model import Job, ObjectDetails, ObjectLock, PartInfo
from s3longbow.retry import with_retries
from s3longbow.transfer.context import Context, Interrupted, VerificationError
from s3longbow.transfer.proof import CopyMethod, is_md5_etag, multipart_etag, multipart_parts
from s3longbow.transfer.sizing import part_count, part_range

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    """An open upload and the parts of it that may be kept.

    Attributes:
        upload_id: The upload's id.
        reusable: Parts the destination lists AND the ledger recorded, with the expected size.
        unrecorded: Parts listed with the expected size and an MD5 ETag that the ledger has
            no record of (the process died before recording them): kept if the source's
            bytes have that MD5.
        lock: The Object Lock the object must have once complete (None: none).
    """

    upload_id: str
    reusable: dict[int, PartInfo] = field(default_factory=dict)
    unrecorded: dict[int, PartInfo] = field(default_factory=dict)
    lock: ObjectLock | None = None


def resume_or_start(
    ctx: Context, job: Job, method: CopyMethod, details: ObjectDetails | None
) -> Upload:
    """Reuse the job's open upload where it is still valid, else start a new one.

    Args:
        details: The source's pinned HEAD if one was made while choosing the method.
    """
    if job.upload_id:
        stale = job.upload_etag != job.etag or job.part_size != method.part_size
        if not stale:
            if details is None:
                # A pinned HEAD first: a source changed since the upload began (and not
                # yet re-planned) must not get any of its old parts reused.
                ctx.src.details(job.src_key, job.etag, version_id=job.version_id)
            listed = ctx.dst.list_parts(job.dst_key, job.upload_id)
            if listed is not None and method.relay and any(p.checksum for p in listed):
                # Begun with a checksum on every part (by a run that read the bytes): a
                # relayed part, which carries none, would be refused.
                log.info("%s: the open upload wants part checksums; starting over", job.dst_key)
                ctx.dst.abort_upload(job.dst_key, job.upload_id)
            elif listed is not None:
                reusable, unrecorded = valid_parts(ctx, job, listed, method.part_size)
                lock = ctx.lock_to_confirm(details.properties if details else None)
                return Upload(job.upload_id, reusable, unrecorded, lock)
        else:
            # Parts of another source version, or cut at other boundaries: never mix them.
            log.info("%s: the open upload no longer fits the source; starting over", job.dst_key)
            ctx.dst.abort_upload(job.dst_key, job.upload_id)
    # A part-1 HEAD may not carry the object's metadata: the plain one does.
    details = details or ctx.src.details(job.src_key, job.etag, version_id=job.version_id)
    written, storage_class = ctx.writes(job, details.properties)
    upload_id = ctx.dst.create_upload(
        job.dst_key,
        storage_class=storage_class,
        properties=written,
        tags=ctx.tags(job, details.properties),
        checksum_algorithm=method.write_algorithm,
    )
    ctx.ledger.set_upload(job, upload_id, method.part_size, job.etag)
    return Upload(upload_id, lock=written.lock)


def valid_parts(
    ctx: Context, job: Job, listed: list[PartInfo], part_size: int
) -> tuple[dict[int, PartInfo], dict[int, PartInfo]]:
    """Parts the destination lists AND the ledger recorded, with the expected size; and the
    listed parts of the expected size that the ledger does not know, whose ETags are MD5s to
    check the source's bytes against."""
    assert job.upload_id is not None
    recorded = ctx.ledger.recorded_parts(job, job.upload_id)
    count = part_count(job.size, part_size)
    valid, unrecorded = {}, {}
    for part in listed:
        if not 1 <= part.number <= count:
            continue
        if part.size != part_range(part.number, job.size, part_size)[1]:
            continue
        if recorded.get(part.number) == (part.size, part.etag):
            valid[part.number] = part
        elif (
            part.number not in recorded
            and is_md5_etag(part.etag)
            and not ctx.dst_encrypts
            and ctx.dst.capabilities.content_etag
        ):
            unrecorded[part.number] = part
    return valid, unrecorded


def complete(
    ctx: Context, job: Job, method: CopyMethod, upload_id: str, parts: list[PartInfo]
) -> str:
    """Join the parts; the destination's ETag of the object."""
    algorithm = method.write_algorithm
    create_only = ctx.settings.no_overwrite
    try:
        return with_retries(
            lambda: ctx.dst.complete_upload(
                job.dst_key, upload_id, parts, algorithm=algorithm, create_only=create_only
            ),
            attempts=ctx.settings.part_attempts,
            what=f"completing {job.dst_key!r}",
            give_up_on=(UploadMissingError,),
        )
    except UploadMissingError:
        # A retried Complete whose first try succeeded finds no upload: check the object.
        head = ctx.dst.head(job.dst_key)
        if head is not None and head.size == job.size:
            return head.etag or ""
        raise
    except NotReplacedError:
        # Or, under --no-overwrite, the object its first try made refuses the retry.
        ours = parts_etag(parts) if all(is_md5_etag(p.etag) for p in parts) else None
        if ours is None or not written_already(ctx, job, ours):
            raise
        # The same bytes in the same parts were written by another try: this upload, if it is
        # still open, holds nothing the object needs.
        ctx.dst.abort_upload(job.dst_key, upload_id)
        return ours


def written_already(ctx: Context, job: Job, etag: str) -> bool:
    """Whether the destination holds an object of the job's size with the ETag this job's
    write gives it: a write refused as --no-overwrite's "exists" after a try whose reply was
    lost (or said it failed) made the object. Never where the destination encrypts (its ETags
    are not the bytes' MD5s)."""
    if ctx.dst_encrypts:
        return False
    head = ctx.dst.head(job.dst_key)
    if head is None or head.size != job.size or head.etag != etag:
        return False
    log.info("%s: the object an earlier try wrote is there (ETag %s)", job.dst_key, etag)
    return True


def check_after_complete(ctx: Context, job: Job, parts: list[PartInfo], dst_etag: str) -> None:
    """The object must have the source's size and (where comparable) the parts' ETag."""
    head = ctx.dst.head(job.dst_key)
    problem = None
    if head is None or head.size != job.size:
        found = "missing" if head is None else f"{head.size} bytes"
        problem = f"after completion the object is {found}, the source has {job.size}"
    elif not ctx.dst_encrypts and all(is_md5_etag(p.etag) for p in parts):
        ours = parts_etag(parts)
        reported = dst_etag if multipart_parts(dst_etag) else head.etag or ""
        if multipart_parts(reported) and reported != ours:
            problem = f"the destination's ETag is {reported}, the parts sent give {ours}"
    if problem:
        # This run wrote the object and it is wrong: remove it rather than leave it.
        ctx.dst.delete_object(job.dst_key)
        ctx.ledger.set_upload(job, None, None, None)
        raise VerificationError(f"{ctx.dst.describe(job.dst_key)}: {problem}")


def abort(ctx: Context, job: Job, upload_id: str) -> None:
    """Abandon the upload and forget it in the ledger."""
    ctx.dst.abort_upload(job.dst_key, upload_id)
    ctx.ledger.set_upload(job, None, None, None)


def parts_etag(parts: list[PartInfo]) -> str:
    """The multipart ETag that parts with these MD5 ETags make."""
    return multipart_etag([bytes.fromhex(p.etag) for p in parts])


def parts_done(futures: list[Future[PartInfo]]) -> dict[int, PartInfo]:
    """Wait for every part; raise the first real failure (before any part that only stopped
    because another failed)."""
    wait(futures)
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        real = [e for e in errors if not isinstance(e, Interrupted)]
        raise (real or errors)[0]
    return {f.result().number: f.result() for f in futures}


__all__ = [
    "Upload",
    "abort",
    "check_after_complete",
    "complete",
    "parts_done",
    "parts_etag",
    "resume_or_start",
    "valid_parts",
    "written_already",
]
