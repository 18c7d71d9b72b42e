"""What every copy of a pair shares: the stores, the ledger, the settings, memory, threads,
pace and the run's stop, plus what the copies have learned of the stores; and what one
attempt has counted."""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field

from s3longbow.config import TransferSettings
from s3longbow.errors import Interrupted, VerificationError
from s3longbow.jobs.base import UploadLedger
from s3longbow.model import Job, ObjectProperties
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer.bandwidth import BandwidthLimit
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.proof import Link


@dataclass
class Attempt:
    """What this attempt has counted in the progress display (to take back on retry)."""

    progressed: int = 0  # sent and reused
    reused: int = 0
    notes: list[str] = field(default_factory=list)


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
        """Wait until `nbytes` may be sent under the bandwidth limit."""
        if self.bandwidth is not None:
            self.bandwidth.take(nbytes)

    def check_stop(self) -> None:
        """Raise Interrupted when the run is shutting down."""
        if self.stop.is_set():
            raise Interrupted("the run is shutting down")

    def tags(self, job: Job, properties: ObjectProperties) -> tuple[tuple[str, str], ...]:
        """The source's tags, fetched only when the object has some (S3 sends no tag count
        for an object without tags, so no request is spent on those)."""
        if not self.settings.copy_tags or not properties.tag_count:
            return ()
        return self.src.get_tags(job.src_key)


__all__ = ["Attempt", "Context", "Interrupted", "Learned", "VerificationError"]
