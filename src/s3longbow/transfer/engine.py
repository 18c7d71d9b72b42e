"""Copy one object: zero-byte, single PUT with Content-MD5, or a resumable multipart upload,
and prove the copy against the source's own fingerprint.

Every read is pinned to the source identity the job recorded (its ETag); a source that changes
mid-copy is never mixed into one object: the upload is aborted and the job restarts once on
the new version. Every body carries its MD5 so the destination rejects a corrupted one, and a
multipart upload resumes from the parts that both the destination lists and the job's ledger
recorded with the same size and checksum.

Verification, chosen per object so that a run without resume reads every byte exactly once:
- a source whose ETag is a plain MD5 is hashed as it streams (in part order for multipart
  copies), and the digest must equal the ETag;
- a multipart source with a regular layout is copied with the same part boundaries, so the
  MD5s of the parts sent must reproduce its ETag (and the destination's ETag must equal it);
- anything else is recorded as unverified, with the reason.
A mismatch found before completion re-reads the parts, re-sends those that differ, and checks
again; a copy found wrong after completion is deleted (this run wrote it) and retried.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field

from s3longbow.config import MIN_PART_SIZE, TransferSettings
from s3longbow.errors import (
    LongbowError,
    SourceChangedError,
    TransientError,
    UploadMissingError,
)
from s3longbow.jobs.base import UploadLedger
from s3longbow.model import Job, JobResult, ObjectProperties, PartInfo
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer.bandwidth import BandwidthLimit
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.retry import with_retries
from s3longbow.transfer.sizing import part_count, part_range, part_size_for

log = logging.getLogger(__name__)

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d+)$")
# A source replaced during a copy restarts the job on the new version this many times.
MAX_SOURCE_RESTARTS = 1


class Interrupted(LongbowError):
    """The run is shutting down; the job goes back to the queue untouched."""


class VerificationError(TransientError):
    """The bytes copied do not match the source's fingerprint."""


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


@dataclass
class Attempt:
    """What this attempt has counted in the progress display (to take back on retry)."""

    progressed: int = 0  # sent and reused
    reused: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """How one object is copied and how the copy will be proven.

    Attributes:
        multipart: Copy in parts (resumable) rather than one PUT.
        part_size: Part size of a multipart copy.
        source_layout: The parts have the source's own boundaries: the ETag must reproduce.
        whole_md5: The source ETag is the MD5 of all bytes: hash them in order.
        unverified: Why the copy cannot be proven against the source ("" when it can).
    """

    multipart: bool
    part_size: int = 0
    source_layout: bool = False
    whole_md5: bool = False
    unverified: str = ""


class OrderedMd5:
    """MD5 of parts fed in any order, hashed in part order. A part's buffer is held (and its
    `release` called) only until every earlier part has been hashed."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5()
        self._next = 1
        self._pending: dict[int, tuple[bytes, Callable[[], None]]] = {}
        self._lock = threading.Lock()

    def feed(self, number: int, data: bytes, release: Callable[[], None]) -> None:
        with self._lock:
            self._pending[number] = (data, release)
            while self._next in self._pending:
                chunk, done = self._pending.pop(self._next)
                self._md5.update(chunk)
                done()
                self._next += 1

    def discard(self) -> None:
        """Release every buffer still waiting (the copy failed)."""
        with self._lock:
            for _, done in self._pending.values():
                done()
            self._pending.clear()

    def hexdigest(self) -> str:
        with self._lock:
            if self._pending:
                raise RuntimeError("parts are still missing")
            return self._md5.hexdigest()


class _Release:
    """Gives back a part's memory and window slot exactly once."""

    def __init__(self, budget: ByteBudget, taken: int, window: threading.Semaphore) -> None:
        self._budget, self._taken, self._window = budget, taken, window
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._budget.release(self._taken)
        self._window.release()


class Copier:
    """Copies objects from one store to another; shared by all job threads of a pair.

    Args:
        src: The source store.
        dst: The destination store.
        ledger: Where uploads, parts and source changes are recorded.
        settings: Transfer settings (threshold, part size, part threads, retries).
        budget: The shared bound on bytes held in memory.
        part_pool: Threads that move parts of multipart objects.
        stats: Progress counters.
        stop: Set when the run shuts down.
        bandwidth: The process's shared bandwidth limit, if any (paces every upload).
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
        bandwidth: BandwidthLimit | None = None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.ledger = ledger
        self.settings = settings
        self.budget = budget
        self.part_pool = part_pool
        self.stats = stats
        self.stop = stop
        self.bandwidth = bandwidth

    def _pace(self, nbytes: int) -> None:
        if self.bandwidth is not None:
            self.bandwidth.take(nbytes)

    def copy(self, job: Job, attempt: Attempt | None = None) -> JobResult:
        """Copy the job's object; raise an ObjectError subclass when it cannot be done."""
        attempt = attempt or Attempt()
        while True:
            try:
                return self._copy_once(job, attempt)
            except SourceChangedError:
                self._restart_on_new_version(job, attempt)

    def _restart_on_new_version(self, job: Job, attempt: Attempt) -> None:
        """The pinned source changed: abort what was written and pin the new version, once."""
        if job.upload_id:
            self.dst.abort_upload(job.dst_key, job.upload_id)
            self.ledger.set_upload(job, None, None, None)
        current = self.src.head(job.src_key)
        where = self.src.describe(job.src_key)
        if current is None:
            raise SourceChangedError(f"{where}: the source object no longer exists")
        if current.etag == job.etag and current.size == job.size:
            raise SourceChangedError(f"{where}: reads of the source failed its pinned identity")
        if job.restarts >= MAX_SOURCE_RESTARTS:
            raise SourceChangedError(
                f"{where}: the source changed during the copy again (ETag {job.etag} became "
                f"{current.etag}); no mixed object was written"
            )
        log.warning("%s changed during the copy; starting over on the new version", where)
        attempt.notes.append(
            f"source changed during the copy (ETag {job.etag} -> {current.etag}); "
            "restarted on the new version"
        )
        self.stats.unsend(attempt.progressed - attempt.reused)
        self.stats.reused(-attempt.reused)
        attempt.progressed = attempt.reused = 0
        self.ledger.update_source(job, current)

    def _copy_once(self, job: Job, attempt: Attempt) -> JobResult:
        plan = self._plan(job)
        if plan.multipart:
            return self._copy_multipart(job, plan, attempt)
        return self._copy_single(job, plan, attempt)

    def _plan(self, job: Job) -> Plan:
        """Pick the path and the proof for this object."""
        if job.size == 0:
            return Plan(multipart=False)
        if not self.src.capabilities.content_etag:
            own = self._own_part_size(job)
            return Plan(multipart=job.size > self.settings.resumable_threshold, part_size=own)
        count = multipart_parts(job.etag)
        if count is not None:
            details = self.src.details(job.src_key, job.etag, part_one=True)
            size, n = details.part_size, details.parts_count
            if size is not None and n is not None:
                regular = n == count and part_count(job.size, size) == n
                if regular and (size >= MIN_PART_SIZE or n == 1):
                    return Plan(multipart=True, part_size=size, source_layout=True)
                reason = "the source's part layout cannot be reproduced (irregular or small parts)"
            else:
                reason = "the source is a multipart object whose part layout the store hides"
            return Plan(
                multipart=job.size > self.settings.resumable_threshold,
                part_size=self._own_part_size(job),
                unverified=reason,
            )
        if is_md5_etag(job.etag):
            return Plan(
                multipart=job.size > self.settings.resumable_threshold,
                part_size=self._own_part_size(job),
                whole_md5=True,
            )
        return Plan(
            multipart=job.size > self.settings.resumable_threshold,
            part_size=self._own_part_size(job),
            unverified="the source ETag is not an MD5 (encrypted or provider-specific)",
        )

    def _own_part_size(self, job: Job) -> int:
        # A resumed upload keeps the part size it began with, whatever the setting is now.
        if job.upload_id and job.part_size and job.upload_etag == job.etag:
            return job.part_size
        return part_size_for(job.size, self.settings.part_size)

    def _verdict(self, plan: Plan, method: str) -> tuple[bool, str]:
        if not self.src.capabilities.content_etag:
            return True, "local-read"
        if plan.unverified:
            return False, plan.unverified
        return True, method

    # -- single request ---------------------------------------------------------------------

    def _copy_single(self, job: Job, plan: Plan, attempt: Attempt) -> JobResult:
        def once() -> JobResult:
            self._check_stop()
            with self.budget.hold(job.size):
                data, properties = self.src.read_object(job.src_key, job.size, etag=job.etag)
                dst_etag = self._put_verified(job, data, properties)
            self.stats.sent(job.size)
            attempt.progressed += job.size
            if is_md5_etag(job.etag) or job.size == 0:
                verified, how = True, "source-md5"
            else:
                verified, how = self._verdict(plan, "content-md5")
            return JobResult(
                bytes_sent=job.size,
                verified=verified,
                verify=how,
                dst_etag=dst_etag,
                notes=tuple(attempt.notes),
            )

        return with_retries(
            once,
            attempts=self.settings.part_attempts,
            what=f"copy of {job.src_key!r}",
            should_stop=self.stop.is_set,
        )

    def _put_verified(self, job: Job, data: bytes, properties: ObjectProperties) -> str:
        """PUT the bytes so that the copy is proven equal to the source's MD5.

        When the source's ETag is its MD5, that very digest goes out as Content-MD5: the
        destination then checks the bytes against the source's own fingerprint, and a read or
        a write corrupted on the way is refused, with no hashing here. Where the destination
        reports an ETag that is not an MD5 (so neither check could be seen), or the source has
        no MD5, the bytes are hashed here.
        """
        source_md5 = job.etag if is_md5_etag(job.etag) else None
        md5_hex = source_md5 or hashlib.md5(data).hexdigest()
        self._pace(len(data))
        dst_etag = self.dst.put_object(
            job.dst_key,
            data,
            md5_b64=base64.b64encode(bytes.fromhex(md5_hex)).decode(),
            storage_class=self.settings.storage_class,
            properties=properties,
            tags=self._tags(job, properties),
        )
        if is_md5_etag(dst_etag):
            if dst_etag != md5_hex:
                self.dst.delete_object(job.dst_key)
                raise VerificationError(
                    f"{self.dst.describe(job.dst_key)}: the destination reports ETag "
                    f"{dst_etag}, the source's MD5 is {md5_hex}"
                )
        elif source_md5 is not None and hashlib.md5(data).hexdigest() != source_md5:
            self.dst.delete_object(job.dst_key)
            raise VerificationError(
                f"{self.src.describe(job.src_key)}: the bytes read do not have the source's "
                f"MD5 {source_md5}"
            )
        return dst_etag

    # -- multipart --------------------------------------------------------------------------

    def _copy_multipart(self, job: Job, plan: Plan, attempt: Attempt) -> JobResult:
        reusable, upload_id = self._resume_or_start(job, plan)
        part_size = plan.part_size
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
            attempt.reused += reused_bytes
        hasher = OrderedMd5() if plan.whole_md5 else None
        # Reused parts are read again only when the whole-object MD5 needs their bytes.
        numbers = [n for n in range(1, count + 1) if hasher is not None or n not in reusable]
        expected = {n: p.etag for n, p in reusable.items()}
        try:
            done = self._run_parts(job, upload_id, part_size, numbers, expected, hasher, attempt)
        finally:
            if hasher is not None:
                hasher.discard()
        parts = {**reusable, **done}
        ordered = [parts[n] for n in range(1, count + 1)]
        verified, how = self._check_before_complete(job, plan, upload_id, ordered, hasher, attempt)
        dst_etag = self._complete(job, upload_id, ordered)
        self._check_after_complete(job, ordered, dst_etag)
        sent = sum(p.size for n, p in done.items() if n not in reusable or p != reusable[n])
        return JobResult(
            bytes_sent=sent,
            bytes_reused=reused_bytes,
            verified=verified,
            verify=how,
            dst_etag=dst_etag,
            notes=tuple(attempt.notes),
        )

    def _resume_or_start(self, job: Job, plan: Plan) -> tuple[dict[int, PartInfo], str]:
        """Reuse the job's open upload where it is still valid, else start a new one."""
        if job.upload_id:
            stale = job.upload_etag != job.etag or job.part_size != plan.part_size
            if not stale:
                # A pinned HEAD first: a source changed since the upload began (and not yet
                # re-planned) must not get any of its old parts reused.
                self.src.details(job.src_key, job.etag)
                listed = self.dst.list_parts(job.dst_key, job.upload_id)
                if listed is not None:
                    return self._valid_parts(job, listed, plan.part_size), job.upload_id
            else:
                # Parts of another source version, or cut at other boundaries: never mix them.
                log.info(
                    "%s: the open upload no longer fits the source; starting over", job.dst_key
                )
                self.dst.abort_upload(job.dst_key, job.upload_id)
        # A part-1 HEAD may not carry the object's metadata: ask for it plainly.
        details = self.src.details(job.src_key, job.etag)
        upload_id = self.dst.create_upload(
            job.dst_key,
            storage_class=self.settings.storage_class,
            properties=details.properties,
            tags=self._tags(job, details.properties),
        )
        self.ledger.set_upload(job, upload_id, plan.part_size, job.etag)
        return {}, upload_id

    def _tags(self, job: Job, properties: ObjectProperties) -> tuple[tuple[str, str], ...]:
        """The source's tags, fetched only when the object has some (S3 sends no tag count
        for an object without tags, so no request is spent on those)."""
        if not self.settings.copy_tags or not properties.tag_count:
            return ()
        return self.src.get_tags(job.src_key)

    def _valid_parts(self, job: Job, listed: list[PartInfo], part_size: int) -> dict[int, PartInfo]:
        """Parts the destination lists AND the ledger recorded, with the expected size."""
        assert job.upload_id is not None
        recorded = self.ledger.recorded_parts(job, job.upload_id)
        count = part_count(job.size, part_size)
        valid = {}
        for part in listed:
            if not 1 <= part.number <= count:
                continue
            expected = part_range(part.number, job.size, part_size)[1]
            if part.size == expected and recorded.get(part.number) == (part.size, part.etag):
                valid[part.number] = part
        return valid

    def _run_parts(
        self,
        job: Job,
        upload_id: str,
        part_size: int,
        numbers: list[int],
        expected: dict[int, str],
        hasher: OrderedMd5 | None,
        attempt: Attempt,
    ) -> dict[int, PartInfo]:
        """Move parts with at most `part_threads` buffers held for this object at once.

        The window slot and the memory of each part are taken here, in part order, before the
        part is handed to the pool: a part waiting to be hashed only ever waits for earlier
        parts, which already hold theirs, so objects cannot starve each other of memory.
        """
        window = threading.Semaphore(self.settings.part_threads)
        cancel = threading.Event()
        futures: list[Future[PartInfo]] = []
        for number in numbers:
            if not self._take(window, cancel):
                break
            length = part_range(number, job.size, part_size)[1]
            taken = self.budget.acquire(length)
            future = self.part_pool.submit(
                self._part_task,
                job,
                upload_id,
                part_size,
                number,
                expected.get(number),
                hasher,
                _Release(self.budget, taken, window),
                cancel,
                attempt,
            )
            future.add_done_callback(lambda f: f.exception() is not None and cancel.set())
            futures.append(future)
        wait(futures)
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            real = [e for e in errors if not isinstance(e, Interrupted)]
            raise (real or errors)[0]
        self._check_stop()
        return {f.result().number: f.result() for f in futures}

    def _take(self, window: threading.Semaphore, cancel: threading.Event) -> bool:
        """Wait for a window slot; False when the object or the run is being abandoned."""
        while not (cancel.is_set() or self.stop.is_set()):
            if window.acquire(timeout=0.1):
                return True
        return False

    def _part_task(
        self,
        job: Job,
        upload_id: str,
        part_size: int,
        number: int,
        expected_etag: str | None,
        hasher: OrderedMd5 | None,
        release: _Release,
        cancel: threading.Event,
        attempt: Attempt,
    ) -> PartInfo:
        start, length = part_range(number, job.size, part_size)

        def once() -> tuple[PartInfo, bytes]:
            if cancel.is_set():
                raise Interrupted("another part of this object failed")
            self._check_stop()
            data = self.src.get_range(job.src_key, start, length, etag=job.etag)
            digest = hashlib.md5(data)
            if expected_etag is not None and digest.hexdigest() == expected_etag:
                return PartInfo(number, length, expected_etag), data  # reused part is valid
            self._pace(length)
            etag = self.dst.upload_part(
                job.dst_key,
                upload_id,
                number,
                data,
                md5_b64=base64.b64encode(digest.digest()).decode(),
            )
            if is_md5_etag(etag) and etag != digest.hexdigest():
                raise VerificationError(
                    f"part {number} of {self.dst.describe(job.dst_key)}: the destination "
                    f"reports ETag {etag}, the bytes sent have MD5 {digest.hexdigest()}"
                )
            self.ledger.record_part(job, upload_id, number, length, etag)
            self.stats.sent(length)
            attempt.progressed += length
            return PartInfo(number, length, etag), data

        fed = False
        try:
            part, data = with_retries(
                once,
                attempts=self.settings.part_attempts,
                what=f"part {number} of {job.src_key!r}",
                should_stop=lambda: self.stop.is_set() or cancel.is_set(),
                give_up_on=(UploadMissingError,),
            )
            if hasher is not None:
                # The buffer is freed once every earlier part has been hashed.
                hasher.feed(number, data, release)
                fed = True
            return part
        finally:
            if not fed:
                release()

    def _check_before_complete(
        self,
        job: Job,
        plan: Plan,
        upload_id: str,
        parts: list[PartInfo],
        hasher: OrderedMd5 | None,
        attempt: Attempt,
    ) -> tuple[bool, str]:
        """Prove the parts against the source's fingerprint before they become an object.

        On a mismatch every part is read again once, parts whose bytes differ from what was
        sent are sent again, and the proof is repeated; a second mismatch fails the attempt.
        """
        if plan.source_layout:
            if not all(is_md5_etag(p.etag) for p in parts):
                return False, "the destination's part ETags are not MD5s"
            ours = multipart_etag([bytes.fromhex(p.etag) for p in parts])
            if ours != job.etag:
                log.warning(
                    "%s: parts give ETag %s, source has %s; re-reading parts",
                    job.src_key,
                    ours,
                    job.etag,
                )
                parts[:] = self._repair(job, plan, upload_id, parts, attempt)[0]
                ours = multipart_etag([bytes.fromhex(p.etag) for p in parts])
            if ours != job.etag:
                self._abort(job, upload_id)
                raise VerificationError(
                    f"{self.src.describe(job.src_key)}: the parts read give ETag {ours}, the "
                    f"source's ETag is {job.etag}"
                )
            return True, "source-etag"
        if plan.whole_md5 and hasher is not None:
            whole = hasher.hexdigest()
            if whole != job.etag:
                log.warning(
                    "%s: bytes read have MD5 %s, source has %s; re-reading parts",
                    job.src_key,
                    whole,
                    job.etag,
                )
                repaired, whole_again = self._repair(job, plan, upload_id, parts, attempt)
                parts[:] = repaired
                whole = whole_again or whole
            if whole != job.etag:
                self._abort(job, upload_id)
                raise VerificationError(
                    f"{self.src.describe(job.src_key)}: the bytes read have MD5 {whole}, the "
                    f"source's ETag is {job.etag}"
                )
            return True, "source-md5"
        return self._verdict(plan, "content-md5")

    def _repair(
        self, job: Job, plan: Plan, upload_id: str, parts: list[PartInfo], attempt: Attempt
    ) -> tuple[list[PartInfo], str | None]:
        """Read every part again; send again those whose bytes differ from what was sent."""
        hasher = OrderedMd5() if plan.whole_md5 else None
        expected = {p.number: p.etag for p in parts}
        try:
            fixed = self._run_parts(
                job, upload_id, plan.part_size, sorted(expected), expected, hasher, attempt
            )
            whole = hasher.hexdigest() if hasher is not None else None
        finally:
            if hasher is not None:
                hasher.discard()
        resent = sorted(n for n, p in fixed.items() if p.etag != expected[n])
        if resent:
            attempt.notes.append(f"parts {resent} were read corrupted and sent again")
        return [fixed[p.number] for p in parts], whole

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

    def _check_after_complete(self, job: Job, parts: list[PartInfo], dst_etag: str) -> None:
        """The object must have the source's size and (where comparable) the parts' ETag."""
        head = self.dst.head(job.dst_key)
        problem = None
        if head is None or head.size != job.size:
            found = "missing" if head is None else f"{head.size} bytes"
            problem = f"after completion the object is {found}, the source has {job.size}"
        elif all(is_md5_etag(p.etag) for p in parts):
            ours = multipart_etag([bytes.fromhex(p.etag) for p in parts])
            reported = dst_etag if multipart_parts(dst_etag) else head.etag or ""
            if multipart_parts(reported) and reported != ours:
                problem = f"the destination's ETag is {reported}, the parts sent give {ours}"
        if problem:
            # This run wrote the object and it is wrong: remove it rather than leave it.
            self.dst.delete_object(job.dst_key)
            self.ledger.set_upload(job, None, None, None)
            raise VerificationError(f"{self.dst.describe(job.dst_key)}: {problem}")

    def _abort(self, job: Job, upload_id: str) -> None:
        self.dst.abort_upload(job.dst_key, upload_id)
        self.ledger.set_upload(job, None, None, None)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted("the run is shutting down")


__all__ = [
    "Attempt",
    "Copier",
    "Interrupted",
    "VerificationError",
    "is_md5_etag",
    "multipart_etag",
    "multipart_parts",
]
