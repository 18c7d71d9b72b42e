"""Copy one object: zero-byte, single PUT with Content-MD5, or a resumable multipart upload.

Every read is pinned to the source identity the job recorded (its ETag), every body carries
its MD5 so the destination rejects a corrupted one, and multipart uploads resume from the parts
that both the destination lists and the job's ledger recorded with the same size and checksum.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass

from s3longbow.config import TransferSettings
from s3longbow.errors import (
    LongbowError,
    SourceChangedError,
    TransientError,
    UploadMissingError,
)
from s3longbow.jobs.base import UploadLedger
from s3longbow.model import Job, JobResult, PartInfo
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.retry import with_retries
from s3longbow.transfer.sizing import part_count, part_range, part_size_for

log = logging.getLogger(__name__)

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d+)$")
EMPTY_MD5 = hashlib.md5(b"").hexdigest()


class Interrupted(LongbowError):
    """The run is shutting down; the job goes back to the queue untouched."""


def is_md5_etag(etag: str | None) -> bool:
    """Whether an ETag is the plain MD5 of the object's bytes (single-part, no SSE-KMS)."""
    return etag is not None and _MD5_HEX.match(etag) is not None


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: md5 of the concatenated part digests, then -N."""
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


@dataclass
class Attempt:
    """Bytes this attempt has counted in the progress display (to take back on retry)."""

    progressed: int = 0


class Copier:
    """Copies objects from one store to another; shared by all job threads of a pair.

    Args:
        src: The source store.
        dst: The destination store.
        ledger: Where uploads and parts are recorded.
        settings: Transfer settings (threshold, part size, part threads, retries).
        budget: The shared bound on bytes held in memory.
        part_pool: Threads that move parts of multipart objects.
        stats: Progress counters.
        stop: Set when the run shuts down.
    """

    def __init__(
        self,
        src: ObjectStore,
        dst: ObjectStore,
        *,
        ledger: UploadLedger,
        settings: TransferSettings,
        budget: ByteBudget,
        part_pool: Executor,
        stats: Stats,
        stop: threading.Event,
    ) -> None:
        self.src = src
        self.dst = dst
        self.ledger = ledger
        self.settings = settings
        self.budget = budget
        self.part_pool = part_pool
        self.stats = stats
        self.stop = stop

    def copy(self, job: Job, attempt: Attempt | None = None) -> JobResult:
        """Copy the job's object; raise an ObjectError subclass when it cannot be done."""
        attempt = attempt or Attempt()
        if job.size == 0:
            return self._copy_single(job, attempt)
        if job.size <= self.settings.resumable_threshold:
            return self._copy_single(job, attempt)
        return self._copy_multipart(job, attempt)

    # -- single request ---------------------------------------------------------------------

    def _copy_single(self, job: Job, attempt: Attempt) -> JobResult:
        def once() -> JobResult:
            self._check_stop()
            with self.budget.hold(job.size):
                data = (
                    self.src.get_range(job.src_key, 0, job.size, etag=job.etag) if job.size else b""
                )
                digest = hashlib.md5(data)
                md5_hex = digest.hexdigest()
                if is_md5_etag(job.etag) and md5_hex != job.etag:
                    # The bytes we read are not the object the source lists: never write them.
                    raise TransientError(
                        f"{self.src.describe(job.src_key)}: the bytes read do not match the "
                        f"source's MD5 ({md5_hex} != {job.etag})"
                    )
                dst_etag = self.dst.put_object(
                    job.dst_key,
                    data,
                    md5_b64=base64.b64encode(digest.digest()).decode(),
                    storage_class=self.settings.storage_class,
                )
            if is_md5_etag(dst_etag) and dst_etag != md5_hex:
                raise TransientError(
                    f"{self.dst.describe(job.dst_key)}: the destination reports ETag "
                    f"{dst_etag}, expected {md5_hex}"
                )
            self.stats.sent(job.size)
            attempt.progressed += job.size
            verify = "source-md5" if is_md5_etag(job.etag) else "content-md5"
            return JobResult(bytes_sent=job.size, verify=verify, dst_etag=dst_etag)

        return with_retries(
            once,
            attempts=self.settings.part_attempts,
            what=f"copy of {job.src_key!r}",
            should_stop=self.stop.is_set,
        )

    # -- multipart --------------------------------------------------------------------------

    def _copy_multipart(self, job: Job, attempt: Attempt) -> JobResult:
        reusable, upload_id, part_size = self._resume_or_start(job)
        count = part_count(job.size, part_size)
        reused_bytes = sum(p.size for p in reusable.values())
        if reusable:
            log.info(
                "%s: resuming upload with %d of %d parts already sent",
                job.dst_key,
                len(reusable),
                count,
            )
            self.stats.reused(reused_bytes)
            attempt.progressed += reused_bytes
        missing = [n for n in range(1, count + 1) if n not in reusable]
        sent = self._send_parts(job, upload_id, part_size, missing, attempt)
        parts = sorted([*reusable.values(), *sent], key=lambda p: p.number)
        dst_etag = self._complete(job, upload_id, parts)
        verify = self._verify_multipart(job, parts, dst_etag)
        return JobResult(
            bytes_sent=sum(p.size for p in sent),
            bytes_reused=reused_bytes,
            verify=verify,
            dst_etag=dst_etag,
        )

    def _resume_or_start(self, job: Job) -> tuple[dict[int, PartInfo], str, int]:
        """Reuse the job's open upload where it is still valid, else start a new one."""
        if job.upload_id and job.part_size:
            if job.upload_etag == job.etag:
                listed = self.dst.list_parts(job.dst_key, job.upload_id)
                if listed is not None:
                    recorded = self.ledger.recorded_parts(job, job.upload_id)
                    count = part_count(job.size, job.part_size)
                    reusable = {}
                    for part in listed:
                        if not 1 <= part.number <= count:
                            continue
                        expected = part_range(part.number, job.size, job.part_size)[1]
                        if part.size == expected and recorded.get(part.number) == (
                            part.size,
                            part.etag,
                        ):
                            reusable[part.number] = part
                    return reusable, job.upload_id, job.part_size
            else:
                # The source changed since this upload began: its parts are of another version.
                log.info("%s: source changed since the upload began; starting over", job.dst_key)
                self.dst.abort_upload(job.dst_key, job.upload_id)
        part_size = part_size_for(job.size, self.settings.part_size)
        upload_id = self.dst.create_upload(job.dst_key, storage_class=self.settings.storage_class)
        self.ledger.set_upload(job, upload_id, part_size, job.etag)
        return {}, upload_id, part_size

    def _send_parts(
        self, job: Job, upload_id: str, part_size: int, numbers: list[int], attempt: Attempt
    ) -> list[PartInfo]:
        """Send parts with at most `part_threads` in flight for this object."""
        cancel = threading.Event()
        done: list[PartInfo] = []
        in_flight: set[Future[PartInfo]] = set()
        error: BaseException | None = None

        def collect(futures: set[Future[PartInfo]]) -> None:
            nonlocal error
            for future in futures:
                exc = future.exception()
                if exc is None:
                    done.append(future.result())
                elif error is None:
                    error = exc
                    cancel.set()

        for number in numbers:
            if error is not None or self.stop.is_set():
                break
            while len(in_flight) >= self.settings.part_threads:
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                collect(finished)
            if error is not None:
                break
            in_flight.add(
                self.part_pool.submit(
                    self._send_part, job, upload_id, part_size, number, cancel, attempt
                )
            )
        finished, _ = wait(in_flight)
        collect(finished)
        if error is not None:
            raise error
        self._check_stop()
        return done

    def _send_part(
        self,
        job: Job,
        upload_id: str,
        part_size: int,
        number: int,
        cancel: threading.Event,
        attempt: Attempt,
    ) -> PartInfo:
        start, length = part_range(number, job.size, part_size)

        def once() -> PartInfo:
            if cancel.is_set():
                raise Interrupted("another part of this object failed")
            self._check_stop()
            with self.budget.hold(length):
                data = self.src.get_range(job.src_key, start, length, etag=job.etag)
                digest = hashlib.md5(data)
                etag = self.dst.upload_part(
                    job.dst_key,
                    upload_id,
                    number,
                    data,
                    md5_b64=base64.b64encode(digest.digest()).decode(),
                )
            if is_md5_etag(etag) and etag != digest.hexdigest():
                raise TransientError(
                    f"part {number} of {self.dst.describe(job.dst_key)}: the destination "
                    f"reports ETag {etag}, expected {digest.hexdigest()}"
                )
            self.ledger.record_part(job, upload_id, number, length, etag)
            self.stats.sent(length)
            attempt.progressed += length
            return PartInfo(number, length, etag)

        return with_retries(
            once,
            attempts=self.settings.part_attempts,
            what=f"part {number} of {job.src_key!r}",
            should_stop=lambda: self.stop.is_set() or cancel.is_set(),
            give_up_on=(UploadMissingError,),
        )

    def _complete(self, job: Job, upload_id: str, parts: list[PartInfo]) -> str:
        try:
            return with_retries(
                lambda: self.dst.complete_upload(job.dst_key, upload_id, parts),
                attempts=self.settings.part_attempts,
                what=f"completing {job.dst_key!r}",
                give_up_on=(UploadMissingError,),
            )
        except UploadMissingError:
            # A retried Complete whose first try succeeded finds no upload: check the object.
            head = self.dst.head(job.dst_key)
            if head is not None and head.size == job.size:
                return head.etag or ""
            raise

    def _verify_multipart(self, job: Job, parts: list[PartInfo], dst_etag: str) -> str:
        """Check the finished object; return how it was verified."""
        head = self.dst.head(job.dst_key)
        if head is None or head.size != job.size:
            found = "missing" if head is None else f"{head.size} bytes"
            raise TransientError(
                f"{self.dst.describe(job.dst_key)}: after completion the object is {found}, "
                f"expected {job.size} bytes"
            )
        if not all(is_md5_etag(p.etag) for p in parts):
            return "size"
        ours = multipart_etag([bytes.fromhex(p.etag) for p in parts])
        reported = dst_etag or head.etag or ""
        if _MULTIPART_ETAG.match(reported) and reported != ours:
            raise TransientError(
                f"{self.dst.describe(job.dst_key)}: ETag {reported} after completion, "
                f"expected {ours} from the parts sent"
            )
        if job.etag == ours:
            return "source-etag"
        return "parts-md5"

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted("the run is shutting down")


__all__ = ["Copier", "Interrupted", "SourceChangedError", "is_md5_etag", "multipart_etag"]
