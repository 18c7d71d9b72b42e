"""What every copy of a pair shares: the stores, the ledger, the settings, memory, threads,
pace and the run's stop, plus what the copies have learned of the stores; and what one
attempt has counted."""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field

from s3longbow.config import TransferSettings
from s3longbow.errors import Interrupted, VerificationError
from s3longbow.jobs.base import UploadLedger
from s3longbow.model import Job, ObjectLock, ObjectProperties
from s3longbow.progress.stats import Stats
from s3longbow.rewrites import rewrite
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer.bandwidth import BandwidthLimit
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.proof import Link

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """What this attempt has counted in the progress display (to take back on retry)."""

    progressed: int = 0  # sent and reused
    reused: int = 0
    notes: list[str] = field(default_factory=list)
    # The source's refusal of a read already made for this job (by the small-object lane):
    # raised where the read would be made, instead of asking again.
    refused: Exception | None = None

    def raise_refusal(self) -> None:
        """Raise the refusal already received, once."""
        refused, self.refused = self.refused, None
        if refused is not None:
            raise refused


class Learned:
    """What the copies of a pair have learned of the stores; set by any job or part thread.

    Args:
        relay: Both stores can relay (and relaying is allowed): bytes that need no checksum
            of ours go from connection to connection as they arrive, until a destination's
            ETag shows it cannot prove them.
    """

    def __init__(self, relay: bool) -> None:
        self._relay = relay
        self._parts_need_md5 = False
        self._lock = threading.Lock()

    @property
    def relays(self) -> bool:
        """Relaying is possible and has not failed."""
        return self._relay

    @property
    def parts_need_md5(self) -> bool:
        """The destination failed to confirm a part's checksum: MD5s from then on."""
        return self._parts_need_md5

    def relay_failed(self) -> None:
        """A relayed write could not be proven: bytes go through memory from now on."""
        with self._lock:
            self._relay = False

    def checksum_unconfirmed(self) -> bool:
        """A part's checksum went unconfirmed; True the first time (to say so once)."""
        with self._lock:
            first = not self._parts_need_md5
            self._parts_need_md5 = True
        return first


@dataclass
class Context:
    """What every copy of a pair shares (see Copier for the arguments).

    Attributes:
        server_copy: One endpoint and one account hold both sides: the server copies, no
            byte comes here.
        learned: What the copies have learned of the stores.
    """

    src: ObjectStore
    dst: ObjectStore
    ledger: UploadLedger
    settings: TransferSettings
    budget: ByteBudget
    part_pool: Executor
    stats: Stats
    stop: threading.Event
    bandwidth: BandwidthLimit | None
    server_copy: bool
    learned: Learned

    def link(self) -> Link:
        """The stores as the choice of a copy's method sees them now."""
        return Link(
            src=self.src.capabilities,
            dst=self.dst.capabilities,
            server_copy=self.server_copy,
            relay=self.learned.relays,
            crc_parts=not self.learned.parts_need_md5,
        )

    @property
    def dst_encrypts(self) -> bool:
        """Writes are KMS-encrypted: the destination's ETags are not MD5s of the bytes."""
        return not self.dst.capabilities.write_etags_md5

    def pace(self, nbytes: int) -> None:
        """Wait until `nbytes` may be sent under the bandwidth limit.

        Raises:
            Interrupted: The run began shutting down while this waited.
        """
        if self.bandwidth is not None:
            self.bandwidth.take(nbytes, self.stop)
            self.check_stop()

    def check_stop(self) -> None:
        """Raise Interrupted when the run is shutting down."""
        if self.stop.is_set():
            raise Interrupted("the run is shutting down")

    @property
    def rewrites(self) -> bool:
        """The run writes properties of its own (a content-type map, metadata to set)."""
        return bool(self.settings.content_type_map or self.settings.set_metadata)

    def writes(self, job: Job, properties: ObjectProperties) -> tuple[ObjectProperties, str | None]:
        """What the copy of `job` writes besides its bytes: the source's properties as the
        run rewrites them (see s3longbow.rewrites), with the source's Object Lock where the
        destination bucket has Object Lock (else without it, counted for the summary), and
        the storage class (the one given, or with `keep` the source's own)."""
        written = rewrite(
            properties,
            job.src_key,
            content_types=self.settings.content_type_map,
            metadata=self.settings.set_metadata,
            guessed_type=not self.src.capabilities.keeps_properties,
        )
        if written.lock and not self.dst.object_lock():
            where = self.dst.describe()
            if self.stats.lock_not_kept(where):
                log.warning(
                    "%s has no Object Lock: objects with retention or a legal hold are copied "
                    "without them",
                    where,
                )
            written = dataclasses.replace(written, lock=None)
        return written, self.storage_class(job, properties)

    def storage_class(self, job: Job, properties: ObjectProperties | None) -> str | None:
        """The class a copy is written in: the one given, or (keep) the source's own, as its
        reply or its listing names it (STANDARD: none named)."""
        if not self.settings.keeps_storage_class:
            return self.settings.storage_class
        return (properties.storage_class if properties else None) or job.storage_class

    def lock_to_confirm(self, properties: ObjectProperties | None) -> ObjectLock | None:
        """The Object Lock a copy written with `properties` must have (None: none)."""
        lock = properties.lock if properties is not None else None
        return lock if lock and self.dst.object_lock() else None

    def confirm_lock(self, job: Job, lock: ObjectLock | None) -> None:
        """Give the copy the lock its write asked for where the server kept none of it (some
        servers ignore the lock of a multipart upload's start)."""
        if lock is None:
            return
        kept = self.dst.details(job.dst_key, None).properties.lock
        if (lock.mode and not (kept and kept.mode)) or (
            lock.legal_hold and not (kept and kept.legal_hold)
        ):
            self.dst.set_lock(job.dst_key, lock)

    def tags(self, job: Job, properties: ObjectProperties) -> tuple[tuple[str, str], ...]:
        """The source's tags, fetched only when the object has some (S3 sends no tag count
        for an object without tags, so no request is spent on those)."""
        if not self.settings.copy_tags or not properties.tag_count:
            return ()
        return self.src.get_tags(job.src_key)


__all__ = ["Attempt", "Context", "Interrupted", "Learned", "VerificationError"]
