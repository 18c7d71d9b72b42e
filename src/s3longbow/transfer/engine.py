"""Copy one object: zero-byte, single PUT with Content-MD5, or a resumable multipart upload,
and prove the copy against the source's own fingerprint.

Every read is pinned to the source identity the job recorded (its ETag); a source that changes
mid-copy is never mixed into one object: the upload is aborted and the job restarts once on
the new version. Every body carries its MD5 so the destination rejects a corrupted one (parts
whose MD5 would prove nothing more carry a CRC the destination checks and confirms instead,
where it takes checksums: see proof.py), and a multipart upload resumes from the parts that
both the destination lists and the job's ledger recorded with the same size and checksum.

Verification, chosen per object so that a run without resume reads every byte exactly once:
- a source whose ETag is a plain MD5 is hashed as it streams (in part order for multipart
  copies), and the digest must equal the ETag;
- a multipart source with a regular layout is copied with the same part boundaries, so the
  MD5s of the parts sent must reproduce its ETag (and the destination's ETag must equal it);
- a source whose ETag is no MD5 (KMS or customer-key encryption, some providers) is proven by
  the S3 additional checksum it carries: the checksum of all its bytes (CRCs of parts combine
  in any part layout), or a composite one, reproduced with the source's part boundaries;
- anything else is recorded as unverified, with the reason.
Writes carry an additional checksum (the source's algorithm, or the one configured for the
destination) where the destination takes them, so the destination checks every body too.
A mismatch found before completion re-reads the parts, re-sends those that differ, and checks
again; a copy found wrong after completion is deleted (this run wrote it) and retried.

The modules: proof.py chooses the path and the proof (pure); single.py, multipart.py and
server_copy.py copy by each path, over upload.py (the destination's multipart upload) and
context.py (what the copies of a pair share). This module holds the Copier: the choice's
requests, all versions of a key, and the restart on a changed source.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import Executor

from s3longbow.config import TransferSettings
from s3longbow.errors import ArchivedError, PermanentError, SourceChangedError, SourceGoneError
from s3longbow.jobs.base import SharedUploadLedger, UploadLedger
from s3longbow.model import Job, JobResult, ObjectDetails
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer import archive, proof, upload
from s3longbow.transfer.bandwidth import BandwidthLimit
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.context import (
    Attempt,
    Context,
    Interrupted,
    Learned,
    VerificationError,
)
from s3longbow.transfer.digests import OrderedHash, PartSums
from s3longbow.transfer.fanout import copy_range
from s3longbow.transfer.multipart import copy_multipart
from s3longbow.transfer.proof import (
    RELAY_MIN,
    CopyMethod,
    CopyPath,
    is_md5_etag,
    multipart_etag,
    multipart_parts,
)
from s3longbow.transfer.server_copy import copy_on_server
from s3longbow.transfer.single import copy_single
from s3longbow.verdicts import gone_reason

log = logging.getLogger(__name__)

# A source replaced during a copy restarts the job on the new version this many times.
MAX_SOURCE_RESTARTS = 1


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
        snapshot: What listed the pair's source when that was a past snapshot ("the
            inventory of ..."): a source deleted since then raises SourceGoneError (the job
            is skipped as gone) instead of failing. None: the source was listed live.
        shared: Where the ranges of fanned-out objects meet (a cluster's job table); None
            where the queue has no such objects.
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
        snapshot: str | None = None,
        shared: SharedUploadLedger | None = None,
    ) -> None:
        self.src = src
        self.shared = shared
        self.snapshot = snapshot
        self.dst = dst
        self.ledger = ledger
        self.settings = settings
        self.budget = budget
        self.part_pool = part_pool
        self.stats = stats
        self.stop = stop
        self.bandwidth = bandwidth
        self.context = Context(
            src=src,
            dst=dst,
            ledger=ledger,
            settings=settings,
            budget=budget,
            part_pool=part_pool,
            stats=stats,
            stop=stop,
            bandwidth=bandwidth,
            # One endpoint and one account hold both sides: the server copies, no byte
            # comes here.
            server_copy=settings.server_side_copy and dst.can_copy_from(src),
            # Both sides relay: bytes needing no checksum of ours pass as they arrive.
            learned=Learned(relay=settings.relay and dst.can_relay_from(src)),
        )

    def copy(self, job: Job, attempt: Attempt | None = None) -> JobResult:
        """Copy the job's object; raise an ObjectError subclass when it cannot be done."""
        attempt = attempt or Attempt()
        if job.part_range is not None:
            return self._copy_range(job, attempt)
        if self.settings.all_versions:
            return self._copy_history(job, attempt)
        # An archived source is known from its listing (or its restore asked for) before any
        # read; a read refused as archived means the same (see archive.py).
        asked = archive.before_copy(self.context, job)
        while True:
            try:
                return self._copy_once(job, attempt)
            except SourceChangedError:
                self._restart_on_new_version(job, attempt)
            except ArchivedError as exc:
                raise archive.refused(self.context, job, exc, asked=asked) from None

    def _copy_history(self, job: Job, attempt: Attempt) -> JobResult:
        """Give the destination key the source key's whole history, oldest version first.

        The destination's versions must be the source's first ones (the same sizes); the
        versions after them are copied in order, each pinned to its version id. Delete markers
        are not reproduced. A killed history resumes at the first version the destination
        lacks (and that version's open upload).
        """
        history = self.src.list_versions(job.src_key)
        present = self.dst.list_versions(job.dst_key)
        where = self.dst.describe(job.dst_key)
        if len(present) > len(history) or any(
            d.size != s.size for d, s in zip(present, history, strict=False)
        ):
            raise PermanentError(
                f"{where}: its {len(present)} version(s) are not the first versions of the "
                f"source's {len(history)}; no version was copied",
            )
        sent = reused = 0
        methods: list[str] = []
        for version in history[len(present) :]:
            self.context.check_stop()
            # The listing's storage class was the current version's: each read tells its own.
            one = dataclasses.replace(
                job,
                size=version.size,
                etag=version.etag,
                version_id=version.version_id,
                storage_class=None,
                restore=None,
            )
            if job.upload_etag != version.etag:
                one.upload_id = one.part_size = one.upload_etag = None  # another version's
            try:
                result = self._copy_once(one, attempt)
            except ArchivedError as exc:
                error = archive.refused(self.context, one, exc, asked=False)
                job.restore_requested = one.restore_requested
                raise error from None
            job.upload_id, job.part_size, job.upload_etag = None, None, None
            sent += result.bytes_sent
            reused += result.bytes_reused
            methods.append(result.verify if result.verified else f"unverified ({result.verify})")
        copied = len(history) - len(present)
        distinct = sorted(set(methods))
        return JobResult(
            bytes_sent=sent,
            bytes_reused=reused,
            verified=all(not m.startswith("unverified") for m in methods),
            verify=", ".join(distinct) or "no version to copy",
            notes=(*attempt.notes, f"{copied} of {len(history)} version(s) copied in order"),
        )

    def _copy_range(self, job: Job, attempt: Attempt) -> JobResult:
        """One range of a fanned-out object's parts (see fanout.py). Its bytes always come
        through here: copies on the server are not split among workers."""
        if self.shared is None:
            raise PermanentError(
                f"{self.src.describe(job.src_key)}: a range of parts can only be copied by a "
                "cluster worker (its job table records the object's upload)"
            )
        return copy_range(
            self.context, job, lambda: self.choose(job, on_server=False), attempt, self.shared
        )

    def _restart_on_new_version(self, job: Job, attempt: Attempt) -> None:
        """The pinned source changed: abort what was written and pin the new version, once."""
        if job.upload_id:
            upload.abort(self.context, job, job.upload_id)
        current = self.src.head(job.src_key)
        where = self.src.describe(job.src_key)
        if current is None:
            if self.snapshot is not None:
                raise SourceGoneError(gone_reason(self.snapshot, where))
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
        method, details = self.choose(job)
        ctx = self.context
        if method.path in (CopyPath.SERVER_COPY, CopyPath.SERVER_PARTS):
            return copy_on_server(ctx, job, method, details, attempt)
        if method.multipart:
            return copy_multipart(ctx, job, method, details, attempt)
        if job.upload_id:
            # Opened by an earlier run under other settings: its parts are never used now.
            upload.abort(ctx, job, job.upload_id)
        return copy_single(ctx, job, method, attempt)

    def choose(
        self, job: Job, *, on_server: bool = True
    ) -> tuple[CopyMethod, ObjectDetails | None]:
        """The path and proof for this object, with the source's pinned HEAD if one was made.

        The HEADs the choice needs are made here (see proof.wants_details); the source's
        version is pinned from the HEAD on a versioned bucket. `on_server=False` keeps the
        bytes coming through here even where the server could copy them."""
        link = self.context.link()
        if not on_server:
            link = dataclasses.replace(link, server_copy=False)
        details = layout = None
        if proof.wants_details(job, link, self.settings):
            details = self.src.details(job.src_key, job.etag, version_id=job.version_id)
            if details.archived:
                # Its HEAD shows what its listing could not (an Intelligent-Tiering archive
                # tier): no read would succeed, and no upload is started for it.
                raise ArchivedError(
                    f"{self.src.describe(job.src_key)}: the source object is archived",
                    storage_class=details.storage_class,
                )
            if details.version_id and not job.version_id:
                # Every later read asks for this version: an overwrite of the key during the
                # copy then changes nothing in it (the pinned ETag alone would restart it).
                job.version_id = details.version_id
            if proof.wants_layout(job, details):
                layout = self.src.details(
                    job.src_key, job.etag, part_one=True, version_id=job.version_id
                )
        facts = proof.SourceFacts(details=details, layout=layout)
        return proof.decide(job, facts, link, self.settings), details


__all__ = [
    "MAX_SOURCE_RESTARTS",
    "RELAY_MIN",
    "Attempt",
    "Copier",
    "CopyMethod",
    "Interrupted",
    "OrderedHash",
    "PartSums",
    "VerificationError",
    "is_md5_etag",
    "multipart_etag",
    "multipart_parts",
]
