"""Copy one range of a giant object's parts into the object's one upload, on whichever worker
took the range, and complete the object from the range that finds every range finished.

A fanned-out object is split into ranges of its parts, each a job of its own, so that idle
workers share it. Its record (a `SharedUploadLedger`) is where the ranges meet:

- the upload is begun exactly once: a range claims its creation before it creates it, and
  the others wait for the upload to be recorded (a claim whose worker died lapses);
- each range sends its parts as any copy in parts does, recording each part under the range,
  so a range taken over by another worker resumes from the parts the destination lists and
  the range recorded (or whose bytes have the MD5 the destination lists);
- a finished range is added to the object's set of finished ranges, once; the range whose
  addition finds the set full claims the completion, completes the upload and proves the
  object. Its message is deleted only after that, so a worker that dies in between leaves a
  range that comes back and completes the object;
- a range that cannot be copied for good (the source changed: every read is pinned to the
  source's ETag) fails the whole object with the reason and aborts its upload; ranges that
  run on find the object closed and stop.

No worker reads every byte of the object, so a fanned-out object is proven by what its
parts' records hold: the MD5s of parts cut at the source's own boundaries reproduce its
multipart ETag, and the checksums the destination lists for each part combine into the
source's full-object CRC (or its composite checksum); anything else is recorded unverified
with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from s3longbow import checksums
from s3longbow.config import TransferSettings
from s3longbow.errors import (
    ArchivedError,
    PermanentError,
    TransientError,
    UploadMissingError,
    VerificationError,
)
from s3longbow.jobs.base import SharedUpload, SharedUploadLedger
from s3longbow.model import Job, JobResult, JobState, ObjectDetails, PartInfo
from s3longbow.transfer import upload
from s3longbow.transfer.context import Attempt, Context
from s3longbow.transfer.multipart import MultipartCopy
from s3longbow.transfer.proof import CopyMethod, CopyPath, PartCheck, Proof, is_md5_etag
from s3longbow.transfer.sizing import part_count, part_range, part_size_for, range_parts

log = logging.getLogger(__name__)

# A claim to begin or complete the object lapses after this: long enough for one request,
# short enough that a worker that died holding it delays the object little.
CLAIM_SECONDS = 120.0
# Waiting for another range to begin the upload: at most this many looks, this far apart.
_WAIT_TRIES = 480
_WAIT_STEP = 0.5


class ObjectClosed(PermanentError):
    """The object this range belongs to failed, or a newer version took its place: the range
    has nothing left to do."""


def for_ranges(
    method: CopyMethod, job: Job, settings: TransferSettings, encrypts: bool
) -> CopyMethod:
    """The method of a copy whose parts many workers send: the same path and part checks,
    with a proof that the parts' records can give (see the module's docstring), else
    unverified with the reason. Pure.

    Args:
        method: What `proof.decide` chose for the object (with no copy on the server).
        job: The object.
        settings: The transfer settings (the part size of an object chosen to go whole).
        encrypts: The destination encrypts with KMS: its part ETags are no MD5s.
    """
    proof, checksum = method.proof, method.checksum
    if not method.multipart:
        # Small enough to go whole on one worker: its ranges still cut it into our parts.
        part_size = part_size_for(job.size, settings.part_size)
        reason = "the object was fanned out, and its parts cannot reproduce a one-part ETag"
        return CopyMethod(CopyPath.OWN_PARTS, Proof.UNVERIFIED, part_size, reason=reason)
    if proof is Proof.SOURCE_ETAG and not encrypts:
        return method
    combinable = checksum is not None and (
        checksum.parts is not None or checksum.algorithm in checksums.CRC_ALGORITHMS
    )
    if (
        proof is Proof.SOURCE_CHECKSUM
        and combinable
        and method.write_algorithm == (checksum.algorithm if checksum else None)
    ):
        return method
    if proof is Proof.SOURCE_MD5:
        reason = (
            "the source's ETag is the MD5 of all its bytes in order, which no one worker "
            "reads when the object's parts are copied by many"
        )
    elif proof is Proof.SOURCE_ETAG:
        reason = "the destination encrypts with KMS: its part ETags cannot reproduce the source's"
    elif proof is Proof.SOURCE_CHECKSUM and checksum is not None:
        reason = (
            f"the source's {checksum.algorithm} checksum cannot be combined from the parts' "
            "records (the parts carry no checksum of that algorithm)"
        )
    else:
        reason = method.reason
    # Each part keeps its own Content-MD5: nothing whole-object checks the bytes later.
    return dataclasses.replace(
        method, proof=Proof.UNVERIFIED, reason=reason, part_check=PartCheck.MD5, relay=False
    )


def copy_range(
    ctx: Context,
    job: Job,
    choose: Callable[[], tuple[CopyMethod, ObjectDetails | None]],
    attempt: Attempt,
    ledger: SharedUploadLedger,
) -> JobResult:
    """Copy the job's range of parts; complete the object when it is the last range.

    Args:
        choose: The object's method and pinned HEAD (chosen as for a copy through here).
        ledger: The object's record.

    Raises:
        ObjectClosed: The object failed or was replaced; nothing was sent for it.
        PermanentError: This range cannot be copied: the object is failed (with the reason)
            and its upload aborted.
        TransientError: The range is to be tried again (the object stays open).
    """
    if job.part_range is None:  # pragma: no cover - the copier dispatches only ranges here
        raise ValueError("copy_range needs a job with a part range")
    try:
        method, details = choose()
        method = for_ranges(method, job, ctx.settings, ctx.dst_encrypts)
        return _copy_range(ctx, job, method, details, attempt, ledger)
    except ObjectClosed:
        raise
    except UploadMissingError as exc:
        closed = ledger.object_closed(job)
        if closed is not None:
            raise ObjectClosed(f"the object can no longer be completed: {closed}") from None
        _close(ctx, job, ledger, JobState.FAILED, f"{exc}; the object cannot be completed")
        raise PermanentError(str(exc)) from None
    except ArchivedError as exc:
        _close(ctx, job, ledger, JobState.ARCHIVED, str(exc))
        raise
    except PermanentError as exc:
        _close(ctx, job, ledger, JobState.FAILED, str(exc))
        raise


def _copy_range(
    ctx: Context,
    job: Job,
    method: CopyMethod,
    details: ObjectDetails | None,
    attempt: Attempt,
    ledger: SharedUploadLedger,
) -> JobResult:
    assert job.part_range is not None
    shared = _open_upload(ctx, job, method, details, ledger)
    if method.part_size != shared.part_size:
        if method.path is CopyPath.SOURCE_PARTS:
            raise PermanentError(
                f"{ctx.dst.describe(job.dst_key)}: the object's upload was begun with "
                f"{shared.part_size}-byte parts, the source's own are {method.part_size} bytes"
            )
        method = dataclasses.replace(method, part_size=shared.part_size)
    # The range's view of the job: the object's upload, recorded under the range's own id.
    view = dataclasses.replace(
        job,
        upload_id=shared.upload_id,
        part_size=shared.part_size,
        upload_etag=shared.upload_etag,
    )
    count = part_count(job.size, shared.part_size)
    numbers = range_parts(job.part_range.index, job.part_range.count, count)
    sent = reused = 0
    if numbers:
        sent, reused = _send_parts(ctx, view, method, shared, list(numbers), attempt)
    span = f"parts {numbers.start}-{numbers.stop - 1}" if numbers else "no parts"
    result = JobResult(
        bytes_sent=sent,
        bytes_reused=reused,
        verify=f"range {job.part_range.index + 1} of {job.part_range.count}: {span} of {count}",
    )
    progress = ledger.range_finished(view, result)
    if progress.closed is not None:
        raise ObjectClosed(f"the object can no longer be completed: {progress.closed}")
    log.info(
        "%s: range %d of %d finished (%d of %d ranges done)",
        job.src_key,
        job.part_range.index + 1,
        job.part_range.count,
        progress.done,
        progress.total,
    )
    if progress.complete and ledger.claim_completion(view, CLAIM_SECONDS):
        verdict = _complete(ctx, view, method, shared, ledger, count)
        return dataclasses.replace(
            result, notes=(*attempt.notes, f"completed the object: {verdict}")
        )
    return dataclasses.replace(result, notes=tuple(attempt.notes))


def _open_upload(
    ctx: Context,
    job: Job,
    method: CopyMethod,
    details: ObjectDetails | None,
    ledger: SharedUploadLedger,
) -> SharedUpload:
    """The object's upload: the one recorded, else one this range begins after claiming its
    creation, else (another range holds the claim) the one it records, waited for."""
    for _ in range(_WAIT_TRIES):
        shared = ledger.shared_upload(job)
        if shared is not None:
            return shared
        if ledger.claim_creation(job, CLAIM_SECONDS):
            begun = _begin(ctx, job, method, details, ledger)
            if begun is not None:
                return begun
            continue
        closed = ledger.object_closed(job)
        if closed is not None:
            raise ObjectClosed(f"the object can no longer be completed: {closed}")
        ctx.check_stop()
        ctx.stop.wait(_WAIT_STEP)
    raise TransientError(
        f"{ctx.dst.describe(job.dst_key)}: no upload was begun for the object in "
        f"{_WAIT_TRIES * _WAIT_STEP:.0f} s; the range comes back later"
    )


def _begin(
    ctx: Context,
    job: Job,
    method: CopyMethod,
    details: ObjectDetails | None,
    ledger: SharedUploadLedger,
) -> SharedUpload | None:
    """Begin the object's upload under this range's claim; None when the claim lapsed and
    another range recorded one first (ours is aborted)."""
    details = details or ctx.src.details(job.src_key, job.etag, version_id=job.version_id)
    upload_id = ctx.dst.create_upload(
        job.dst_key,
        storage_class=ctx.settings.storage_class,
        properties=details.properties,
        tags=ctx.tags(job, details.properties),
        checksum_algorithm=method.write_algorithm,
    )
    shared = SharedUpload(upload_id, method.part_size, job.etag)
    if ledger.record_shared_upload(job, shared):
        log.info("%s: began the object's upload for its ranges", job.dst_key)
        return shared
    ctx.dst.abort_upload(job.dst_key, upload_id)
    closed = ledger.object_closed(job)
    if closed is not None:
        raise ObjectClosed(f"the object can no longer be completed: {closed}")
    return None


def _send_parts(
    ctx: Context,
    view: Job,
    method: CopyMethod,
    shared: SharedUpload,
    numbers: list[int],
    attempt: Attempt,
) -> tuple[int, int]:
    """Send the range's parts the upload lacks; (bytes sent, bytes reused)."""
    listed = ctx.dst.list_parts(view.dst_key, shared.upload_id)
    if listed is None:
        raise UploadMissingError(
            f"{ctx.dst.describe(view.dst_key)}: the object's upload {shared.upload_id} no "
            "longer exists"
        )
    wanted = set(numbers)
    mine = [p for p in listed if p.number in wanted]
    reusable, unrecorded = upload.valid_parts(ctx, view, mine, shared.part_size)
    reused = sum(p.size for p in reusable.values())
    if reusable:
        log.info(
            "%s: resuming a range with %d of its %d parts already sent",
            view.dst_key,
            len(reusable),
            len(numbers),
        )
        ctx.stats.reused(reused)
        attempt.progressed += reused
        attempt.reused += reused
    expected = {n: p.etag for n, p in {**unrecorded, **reusable}.items()}
    copy = MultipartCopy.reading(
        ctx, view, method, shared.upload_id, attempt, expected, frozenset(unrecorded)
    )
    try:
        done = copy.run_parts([n for n in numbers if n not in reusable])
    finally:
        copy.discard()
    sent = sum(p.size for n, p in done.items() if p.etag != expected.get(n))
    adopted = sum(p.size for n, p in done.items() if n in unrecorded and p.etag == expected[n])
    return sent, reused + adopted


def _complete(
    ctx: Context,
    view: Job,
    method: CopyMethod,
    shared: SharedUpload,
    ledger: SharedUploadLedger,
    count: int,
) -> str:
    """Complete the object from the parts every range recorded, prove it, record it done;
    the verdict. A mismatch is permanent: the object is failed and its upload aborted."""
    where = ctx.dst.describe(view.dst_key)
    recorded = ledger.object_parts(view, shared.upload_id)
    listed = ctx.dst.list_parts(view.dst_key, shared.upload_id)
    parts = _joined_parts(view, shared, recorded, listed, count, where)
    try:
        verified, how = _prove(ctx, view, method, parts)
        if listed is None:
            # Completed by an earlier delivery that died before recording it: the object
            # must be what these parts make.
            head = ctx.dst.head(view.dst_key)
            if head is None or head.size != view.size:
                raise PermanentError(f"{where}: the object's upload is gone and no copy is there")
            dst_etag = head.etag or ""
        else:
            dst_etag = upload.complete(ctx, view, method, shared.upload_id, parts)
        upload.check_after_complete(ctx, view, parts, dst_etag)
    except VerificationError as exc:
        raise PermanentError(str(exc)) from None
    verdict = how if verified else f"unverified ({how})"
    result = JobResult(bytes_sent=0, verified=verified, verify=how, dst_etag=dst_etag)
    if not ledger.finish_object(view, JobState.DONE, None, result):
        log.warning("%s: completed, but the object's record had been closed", view.dst_key)
    log.info("%s: completed from %d parts: %s", view.dst_key, count, verdict)
    return verdict


def _joined_parts(
    view: Job,
    shared: SharedUpload,
    recorded: dict[int, PartInfo],
    listed: list[PartInfo] | None,
    count: int,
    where: str,
) -> list[PartInfo]:
    """Every part of the object as its range recorded it (and, while the upload is open, as
    the destination lists it: same size and ETag), with the checksum the range computed (or,
    where it recorded none, the one the destination lists)."""
    by_number = {p.number: p for p in listed or ()}
    parts, wrong = [], []
    for number in range(1, count + 1):
        length = part_range(number, view.size, shared.part_size)[1]
        record = recorded.get(number)
        found = by_number.get(number)
        if record is None or record.size != length:
            wrong.append(number)
        elif listed is not None and (
            found is None or (found.size, found.etag) != (record.size, record.etag)
        ):
            wrong.append(number)
        else:
            checksum = record.checksum or (found.checksum if found else None)
            parts.append(PartInfo(number, record.size, record.etag, checksum))
    if wrong:
        shown = ", ".join(str(n) for n in wrong[:10]) + (", ..." if len(wrong) > 10 else "")
        raise PermanentError(
            f"{where}: part(s) {shown} are not in the upload as their ranges recorded them; "
            "the object cannot be completed"
        )
    return parts


def _prove(ctx: Context, view: Job, method: CopyMethod, parts: list[PartInfo]) -> tuple[bool, str]:
    """(proven, the proof's name or why not) from the parts' records."""
    where = ctx.src.describe(view.src_key)
    if method.proof is Proof.SOURCE_ETAG:
        if not all(is_md5_etag(p.etag) for p in parts):
            return False, "the destination's part ETags are not MD5s"
        ours = upload.parts_etag(parts)
        if ours != view.etag:
            raise VerificationError(
                f"{where}: the parts sent give ETag {ours}, the source's is {view.etag}"
            )
        return True, method.name
    checksum = method.checksum
    if method.proof is Proof.SOURCE_CHECKSUM and checksum is not None:
        values = [p.checksum for p in parts]
        if any(v is None for v in values):
            return False, f"the destination lists no {checksum.algorithm} checksum of every part"
        if checksum.parts is not None:
            ours = checksums.composite(checksum.algorithm, [v for v in values if v]).value
        else:
            pairs = [(v, p.size) for v, p in zip(values, parts, strict=True) if v]
            ours = checksums.full_object(checksum.algorithm, pairs).value
        if ours != checksum.value:
            raise VerificationError(
                f"{where}: the parts sent give {method.name} {ours}, the source's is "
                f"{checksum.value}"
            )
        return True, method.name
    return method.verdict()


def _close(
    ctx: Context, job: Job, ledger: SharedUploadLedger, state: JobState, reason: str
) -> None:
    """End the object with this range's failure and abort its upload (best effort: the
    range's own failure is recorded by the caller either way)."""
    try:
        shared = ledger.shared_upload(job)
        if not ledger.finish_object(job, state, reason, None):
            return  # already done, or closed by another range (which aborted the upload)
        if shared is not None:
            ctx.dst.abort_upload(job.dst_key, shared.upload_id)
        log.warning("%s: the fanned-out object ends %s: %s", job.src_key, state.value, reason)
    except Exception as exc:  # noqa: BLE001 - the range's failure is still recorded
        log.warning("%s: could not close the fanned-out object: %s", job.src_key, exc)


__all__ = ["CLAIM_SECONDS", "ObjectClosed", "copy_range", "for_ranges"]
