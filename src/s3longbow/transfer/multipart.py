"""Copy an object through this process in parts, resumably, with our part size or the
source's own part boundaries, and prove the parts before they become an object.

Reused parts are read again only when a proof or a checksum needs their bytes. A mismatch
found before completion re-reads every part, re-sends those whose bytes differ from what was
sent, and checks again; a second mismatch fails the attempt.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from s3longbow import checksums
from s3longbow.errors import ChecksumNotConfirmedError, TransientError, UploadMissingError
from s3longbow.model import Bytes, Checksum, Job, JobResult, ObjectDetails, PartInfo
from s3longbow.retry import with_retries
from s3longbow.stores.base import RELAY_BUFFER
from s3longbow.transfer import upload
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.context import Attempt, Context, Interrupted, VerificationError
from s3longbow.transfer.digests import OrderedHash, PartSums
from s3longbow.transfer.proof import CopyMethod, PartCheck, Proof, is_md5_etag, multipart_etag
from s3longbow.transfer.sizing import part_count, part_range

log = logging.getLogger(__name__)


def copy_multipart(
    ctx: Context,
    job: Job,
    method: CopyMethod,
    details: ObjectDetails | None,
    attempt: Attempt,
) -> JobResult:
    """Copy the object in parts into the job's open upload (or a new one), then complete it.

    Args:
        details: The source's pinned HEAD made while choosing the method.
    """
    opened = upload.resume_or_start(ctx, job, method, details)
    reusable, unrecorded = opened.reusable, opened.unrecorded
    count = part_count(job.size, method.part_size)
    reused_bytes = sum(p.size for p in reusable.values())
    if reusable:
        log.info(
            "%s: resuming upload with %d of %d parts already sent",
            job.dst_key,
            len(reusable),
            count,
        )
        ctx.stats.reused(reused_bytes)
        attempt.progressed += reused_bytes
        attempt.reused += reused_bytes
    # A part the destination holds but the ledger never heard of (the process died before
    # recording it) is read again and kept when its bytes have the MD5 the store lists.
    expected = {n: p.etag for n, p in {**unrecorded, **reusable}.items()}
    copy = MultipartCopy.reading(
        ctx, job, method, opened.upload_id, attempt, expected, frozenset(unrecorded)
    )
    # Reused parts are read again (not sent) only when a proof or a checksum needs them.
    reread = copy.hasher is not None or copy.sums is not None or copy.md5s is not None
    numbers = [n for n in range(1, count + 1) if reread or n not in reusable]
    try:
        done = copy.run_parts(numbers)
    finally:
        copy.discard()
    parts = {**reusable, **done}
    ordered = [parts[n] for n in range(1, count + 1)]
    verified, how = copy.check_before_complete(ordered)
    dst_etag = upload.complete(ctx, job, method, opened.upload_id, ordered)
    upload.check_after_complete(ctx, job, ordered, dst_etag)
    ctx.confirm_lock(job, opened.lock)
    sent = sum(p.size for n, p in done.items() if p.etag != expected.get(n))
    adopted = sum(p.size for n, p in done.items() if n in unrecorded and p.etag == expected[n])
    return JobResult(
        bytes_sent=sent,
        bytes_reused=reused_bytes + adopted,
        verified=verified,
        verify=how,
        dst_etag=dst_etag,
        notes=tuple(attempt.notes),
    )


class RelayEnded(TransientError):
    """A part set out to be relayed, and relaying no longer works: the object is copied
    again, its parts through memory (a relayed part holds no buffer to fall back on)."""


@dataclass
class MultipartCopy:
    """One reading of an object's parts into its upload, and what the parts read prove.

    Attributes:
        ctx: What every copy of the pair shares.
        job: The object.
        method: How it is copied and proven.
        upload_id: The destination's upload the parts go to.
        attempt: What this attempt has counted.
        expected: The ETags the destination already holds for some parts: a part whose bytes
            read have that MD5 is kept, not sent again.
        unrecorded: Those of the expected parts that the ledger has no record of (recorded
            when kept).
        hasher: The hash of all the bytes in part order, where the proof is one.
        sums: The checksums of each part, where the proof or the writes need them.
        md5s: The MD5 of each part's bytes, where they prove the copy instead of the
            destination's part ETags (which are no MD5s under KMS encryption).
        cancel: Set when a part failed: the others stop.
    """

    ctx: Context
    job: Job
    method: CopyMethod
    upload_id: str
    attempt: Attempt
    expected: dict[int, str] = field(default_factory=dict)
    unrecorded: frozenset[int] = frozenset()
    hasher: OrderedHash | None = None
    sums: PartSums | None = None
    md5s: dict[int, str] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def reading(
        cls,
        ctx: Context,
        job: Job,
        method: CopyMethod,
        upload_id: str,
        attempt: Attempt,
        expected: dict[int, str],
        unrecorded: frozenset[int] = frozenset(),
    ) -> MultipartCopy:
        """A reading with fresh digests for what the method's proof and writes need."""
        algorithm = method.ordered_hash
        algorithms = method.part_algorithms
        return cls(
            ctx=ctx,
            job=job,
            method=method,
            upload_id=upload_id,
            attempt=attempt,
            expected=expected,
            unrecorded=unrecorded,
            hasher=OrderedHash(algorithm) if algorithm is not None else None,
            sums=PartSums(algorithms) if algorithms else None,
            md5s={} if _md5s_prove(ctx, method) else None,
        )

    def discard(self) -> None:
        """Release the buffers still waiting to be hashed (the reading failed or is done)."""
        if self.hasher is not None:
            self.hasher.discard()

    # -- moving parts -----------------------------------------------------------------------

    def run_parts(self, numbers: list[int]) -> dict[int, PartInfo]:
        """Move parts with at most `part_threads` of this object's in flight at once.

        The window slot and the memory of each part are taken here, in part order, before the
        part is handed to the pool: a part waiting to be hashed only ever waits for earlier
        parts, which already hold theirs, so objects cannot starve each other of memory.
        """
        ctx = self.ctx
        part_size = self.method.part_size
        window = threading.Semaphore(ctx.settings.part_threads)
        futures: list[Future[PartInfo]] = []
        for number in numbers:
            if not self._take(window):
                break
            # A part read into memory takes a buffer of the full part size (the last one too),
            # so buffers are reused from part to part and object to object; a relayed part
            # holds only what passes through the relay, so a long path's many window-bound
            # streams fit in the memory of a few parts.
            relayed = self._relays(number)
            taken = ctx.budget.acquire(RELAY_BUFFER if relayed else part_size)
            release = _Release(ctx.budget, taken, window, part_size, relayed=relayed)
            future = ctx.part_pool.submit(self._part_task, number, release)
            future.add_done_callback(self._cancel_on_failure)
            futures.append(future)
        done = upload.parts_done(futures)
        ctx.check_stop()
        return done

    def _relays(self, number: int) -> bool:
        """Whether this part goes from the source's connection to the destination's."""
        return self.method.relay and self.ctx.learned.relays and number not in self.expected

    def _cancel_on_failure(self, future: Future[PartInfo]) -> None:
        if future.exception() is not None:
            self.cancel.set()

    def _take(self, window: threading.Semaphore) -> bool:
        """Wait for a window slot; False when the object or the run is being abandoned."""
        while not (self.cancel.is_set() or self.ctx.stop.is_set()):
            if window.acquire(timeout=0.1):
                return True
        return False

    def _part_task(self, number: int, release: _Release) -> PartInfo:
        ctx, job, method = self.ctx, self.job, self.method
        start, length = part_range(number, job.size, method.part_size)
        algorithm = method.write_algorithm
        expected_etag = self.expected.get(number)
        sums = self.sums

        def once() -> tuple[PartInfo, Bytes]:
            if self.cancel.is_set():
                raise Interrupted("another part of this object failed")
            ctx.check_stop()
            if release.relayed:
                # It holds no part-sized memory to fall back on: when relaying stopped
                # working, the object's next attempt reads its parts into memory.
                relayed = self._relay_part(number, start, length) if ctx.learned.relays else None
                if relayed is None:
                    raise RelayEnded(
                        f"part {number} of {job.src_key!r} can no longer be relayed; the "
                        "object is copied again through memory"
                    )
                ctx.ledger.record_part(job, self.upload_id, number, length, relayed)
                ctx.stats.sent(length)
                self.attempt.progressed += length
                return PartInfo(number, length, relayed, None), b""
            # The part's checksums are computed piece by piece as the bytes arrive.
            running = sums.running() if sums is not None else None
            data = ctx.src.get_range(
                job.src_key,
                start,
                length,
                etag=job.etag,
                version_id=job.version_id,
                into=release.buffer,
                each=running.update if running is not None else None,
            )
            part_sums: dict[str, str] = {}
            if sums is not None and running is not None:
                part_sums = sums.record(number, length, running)
            checksum = part_sums.get(algorithm) if algorithm else None
            guard = Checksum(algorithm, checksum) if algorithm and checksum else None
            etag = None
            if method.part_check is PartCheck.CRC and guard and expected_etag is None:
                etag = self._upload_crc_part(number, data, guard)
            if etag is None:
                md5 = hashlib.md5(data).digest()
                if self.md5s is not None:
                    self.md5s[number] = md5.hex()
                if expected_etag is not None and self._kept(number, md5, expected_etag):
                    # A reused part is valid; one the ledger did not know is recorded now.
                    if number in self.unrecorded:
                        ctx.ledger.record_part(
                            job, self.upload_id, number, length, expected_etag, checksum=checksum
                        )
                        ctx.stats.reused(length)
                        self.attempt.progressed += length
                        self.attempt.reused += length
                    return PartInfo(number, length, expected_etag, checksum), data
                etag = self._upload_md5_part(number, data, md5, guard)
            ctx.ledger.record_part(job, self.upload_id, number, length, etag, checksum=checksum)
            ctx.stats.sent(length)
            self.attempt.progressed += length
            return PartInfo(number, length, etag, checksum), data

        fed = False
        try:
            part, data = with_retries(
                once,
                attempts=ctx.settings.part_attempts,
                what=f"part {number} of {job.src_key!r}",
                should_stop=lambda: ctx.stop.is_set() or self.cancel.is_set(),
                give_up_on=(UploadMissingError, RelayEnded),
            )
            if self.hasher is not None:
                # The buffer is freed once every earlier part has been hashed.
                self.hasher.feed(number, data, release)
                fed = True
            return part
        finally:
            if not fed:
                release()

    def _kept(self, number: int, md5: bytes, expected_etag: str) -> bool:
        """Whether the part the destination holds is these bytes: its ETag is their MD5; or,
        where its ETags are no MD5s (KMS), the ledger recorded it, after the destination had
        checked it against the Content-MD5 of the same pinned source's bytes (a part the
        ledger never heard of cannot be told from another upload's, and is sent again)."""
        if self.md5s is not None:
            return number not in self.unrecorded
        return md5.hex() == expected_etag

    def _relay_part(self, number: int, start: int, length: int) -> str | None:
        """Relay a part from the source to the destination; its ETag, or None when the source's
        reply cannot be relayed (the part is then read as any other)."""
        ctx, job = self.ctx, self.job
        ctx.pace(length)
        body = ctx.src.open_range(
            job.src_key, start, length, etag=job.etag, version_id=job.version_id
        )
        if body is None:
            ctx.learned.relay_failed()  # the source does not state its replies' lengths
            return None
        with body:
            etag = ctx.dst.upload_part(job.dst_key, self.upload_id, number, body, md5_b64=None)
        if not is_md5_etag(etag):
            ctx.learned.relay_failed()
            raise TransientError(
                f"part {number} of {ctx.dst.describe(job.dst_key)}: the destination's ETag "
                f"{etag!r} is not an MD5, so it cannot prove a relayed part; parts go through "
                "memory now"
            )
        return etag

    def _upload_md5_part(self, number: int, data: Bytes, md5: bytes, guard: Checksum | None) -> str:
        """Send a part with its Content-MD5 (and checksum, if any); check the ETag returned."""
        ctx, job = self.ctx, self.job
        ctx.pace(len(data))
        etag = ctx.dst.upload_part(
            job.dst_key,
            self.upload_id,
            number,
            data,
            md5_b64=base64.b64encode(md5).decode(),
            checksum=guard,
        )
        if is_md5_etag(etag) and not ctx.dst_encrypts and etag != md5.hex():
            raise VerificationError(
                f"part {number} of {ctx.dst.describe(job.dst_key)}: the destination "
                f"reports ETag {etag}, the bytes sent have MD5 {md5.hex()}"
            )
        return etag

    def _upload_crc_part(self, number: int, data: Bytes, guard: Checksum) -> str | None:
        """Send a part guarded by its CRC alone; None when the destination did not confirm the
        checksum (it is then sent with an MD5, as every later part is)."""
        ctx, job = self.ctx, self.job
        if ctx.learned.parts_need_md5:
            return None
        ctx.pace(len(data))
        try:
            return ctx.dst.upload_part(
                job.dst_key, self.upload_id, number, data, md5_b64=None, checksum=guard
            )
        except ChecksumNotConfirmedError as exc:
            if ctx.learned.checksum_unconfirmed():
                log.info("%s; parts are sent with Content-MD5 from now on", exc)
            return None

    # -- proving the parts ------------------------------------------------------------------

    def check_before_complete(self, parts: list[PartInfo]) -> tuple[bool, str]:
        """Prove the parts against the source's fingerprint before they become an object.

        On a mismatch every part is read again once, parts whose bytes differ from what was
        sent are sent again, and the proof is repeated; a second mismatch fails the attempt.
        """
        job, method = self.job, self.method
        by_etags = method.proof is Proof.SOURCE_ETAG
        if self.md5s is not None:
            # Our MD5s of the parts, each checked by the destination as it arrived, stand for
            # the part ETags it cannot give; a mismatch cannot show which part to send again.
            ours, theirs = (
                multipart_etag([bytes.fromhex(self.md5s[p.number]) for p in parts]),
                job.etag or "",
            )
            if ours != theirs:
                upload.abort(self.ctx, job, self.upload_id)
                raise VerificationError(
                    f"{self.ctx.src.describe(job.src_key)}: the parts read give ETag {ours}, "
                    f"the source's is {theirs}"
                )
            return True, method.name
        if by_etags and not all(is_md5_etag(p.etag) for p in parts):
            return False, "the destination's part ETags are not MD5s"
        if method.proof not in (Proof.SOURCE_ETAG, Proof.SOURCE_MD5, Proof.SOURCE_CHECKSUM):
            return method.verdict()
        ours, theirs = _fingerprint(job, method, parts, self.hasher, self.sums)
        if ours != theirs:
            log.warning(
                "%s: the bytes read give %s, the source has %s; re-reading parts",
                job.src_key,
                ours,
                theirs,
            )
            again = self._repair(parts)
            ours, theirs = _fingerprint(job, method, parts, again.hasher, again.sums)
        if ours != theirs:
            upload.abort(self.ctx, job, self.upload_id)
            raise VerificationError(
                f"{self.ctx.src.describe(job.src_key)}: the bytes read give {method.name} "
                f"{ours}, the source's is {theirs}"
            )
        return True, method.name

    def _repair(self, parts: list[PartInfo]) -> MultipartCopy:
        """Read every part again; send again those whose bytes differ from what was sent.
        `parts` become the parts as repaired; returns the new reading (with its digests)."""
        expected = {p.number: p.etag for p in parts}
        again = MultipartCopy.reading(
            self.ctx, self.job, self.method, self.upload_id, self.attempt, expected
        )
        try:
            fixed = again.run_parts(sorted(expected))
        except BaseException:
            again.discard()
            raise
        resent = sorted(n for n, p in fixed.items() if p.etag != expected[n])
        if resent:
            self.attempt.notes.append(f"parts {resent} were read corrupted and sent again")
        parts[:] = [fixed[p.number] for p in parts]
        return again


def _md5s_prove(ctx: Context, method: CopyMethod) -> bool:
    """A source copied with its own part boundaries is proven by its parts' MD5s; where the
    destination encrypts with KMS its part ETags are no MD5s, so ours are kept instead."""
    return method.proof is Proof.SOURCE_ETAG and ctx.dst_encrypts


def _fingerprint(
    job: Job,
    method: CopyMethod,
    parts: list[PartInfo],
    hasher: OrderedHash | None,
    sums: PartSums | None,
) -> tuple[str, str]:
    """(what the bytes read give, what the source says) for the method's proof."""
    if method.proof is Proof.SOURCE_ETAG:
        return upload.parts_etag(parts), job.etag or ""
    if method.proof is Proof.SOURCE_MD5:
        assert hasher is not None
        return hasher.hexdigest(), job.etag or ""
    proof = method.checksum
    assert proof is not None
    if hasher is not None:
        return hasher.b64digest(), proof.value
    assert sums is not None
    values = sums.of(proof.algorithm, len(parts))
    if proof.parts is not None:
        return checksums.composite(proof.algorithm, [v for v, _ in values]).value, proof.value
    return checksums.full_object(proof.algorithm, values).value, proof.value


class _Release:
    """Gives back a part's memory, its buffer and its window slot exactly once."""

    def __init__(
        self,
        budget: ByteBudget,
        taken: int,
        window: threading.Semaphore,
        size: int,
        *,
        relayed: bool = False,
    ) -> None:
        self._budget, self._taken, self._window = budget, taken, window
        self._size = size
        self.relayed = relayed  # the part took the memory of a relay, not of a buffer
        self._buffer: bytearray | None = None  # taken when first read into
        self._done = False
        self._lock = threading.Lock()

    @property
    def buffer(self) -> bytearray:
        if self.relayed:
            raise RuntimeError("a relayed part has no buffer of its own")
        if self._buffer is None:
            self._buffer = self._budget.buffer(self._size)
        return self._buffer

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        if self._buffer is not None:
            self._budget.give_back(self._buffer)
        self._budget.release(self._taken)
        self._window.release()


__all__ = ["MultipartCopy", "copy_multipart"]
