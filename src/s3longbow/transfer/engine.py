"""Copy one object: zero-byte, single PUT with Content-MD5, or a resumable multipart upload,
and prove the copy against the source's own fingerprint.

Every read is pinned to the source identity the job recorded (its ETag); a source that changes
mid-copy is never mixed into one object: the upload is aborted and the job restarts once on
the new version. Every body carries its MD5 so the destination rejects a corrupted one (parts
whose MD5 would prove nothing more, see `Copier._checksum_guarded`, carry a CRC the
destination checks and confirms instead, where it takes checksums), and a multipart upload
resumes from the parts that both the destination lists and the job's ledger recorded with the
same size and checksum.

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
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field

from s3longbow import checksums
from s3longbow.config import MAX_PART_SIZE, MIN_PART_SIZE, TransferSettings
from s3longbow.errors import (
    ChecksumNotConfirmedError,
    LongbowError,
    PermanentError,
    SourceChangedError,
    TransientError,
    UploadMissingError,
)
from s3longbow.jobs.base import UploadLedger
from s3longbow.model import (
    Bytes,
    Checksum,
    Job,
    JobResult,
    ObjectDetails,
    ObjectProperties,
    PartInfo,
)
from s3longbow.progress.stats import Stats
from s3longbow.retry import with_retries
from s3longbow.stores.base import ObjectStore, Relayed
from s3longbow.transfer.bandwidth import BandwidthLimit
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.sizing import part_count, part_range, part_size_for

log = logging.getLogger(__name__)

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d+)$")
# A source replaced during a copy restarts the job on the new version this many times.
MAX_SOURCE_RESTARTS = 1
# Objects from this size are relayed between plain-HTTP endpoints rather than read into memory:
# below it, the pipe's system calls cost about what the copies they save do.
RELAY_MIN = 1024 * 1024


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
        details: The pinned HEAD of the source made while planning (multipart copies).
        proof: The source's additional checksum the copy must reproduce (when its ETag
            cannot prove it).
        write_algorithm: The additional checksum every write carries for the destination to
            check (None: Content-MD5 only).
        checksum_parts: Parts go without Content-MD5, guarded by `write_algorithm` (a CRC)
            alone: the whole-object MD5, or the destination's part ETags, prove them.
        relay: Parts (of a source copied with its own part boundaries) go from the source's
            connection to the destination's inside the kernel, with no checksum of ours: the
            destination's part ETags, the MD5s of what it received, prove them.
    """

    multipart: bool
    part_size: int = 0
    source_layout: bool = False
    whole_md5: bool = False
    unverified: str = ""
    details: ObjectDetails | None = None
    proof: Checksum | None = None
    write_algorithm: str | None = None
    checksum_parts: bool = False
    relay: bool = False

    @property
    def part_algorithms(self) -> tuple[str, ...]:
        """The checksums computed on every part."""
        wanted = [self.write_algorithm, self.proof.algorithm if self.proof else None]
        return tuple(dict.fromkeys(a for a in wanted if a))

    @property
    def ordered_proof(self) -> bool:
        """The proof is a hash of all the bytes in order (not a CRC, which combines)."""
        return (
            self.proof is not None
            and self.proof.parts is None
            and self.proof.algorithm not in checksums.CRC_ALGORITHMS
        )


class OrderedHash:
    """A hash (MD5 by default) of parts fed in any order, hashed in part order. A part's
    buffer is held (and its `release` called) only until every earlier part has been hashed."""

    def __init__(self, algorithm: str = "md5") -> None:
        self._md5 = hashlib.new(algorithm)
        self._next = 1
        self._pending: dict[int, tuple[Bytes, Callable[[], None]]] = {}
        self._lock = threading.Lock()

    def feed(self, number: int, data: Bytes, release: Callable[[], None]) -> None:
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

    def b64digest(self) -> str:
        with self._lock:
            if self._pending:
                raise RuntimeError("parts are still missing")
            return base64.b64encode(self._md5.digest()).decode()


class PartSums:
    """The additional checksums of each part, computed as the parts stream (thread-safe)."""

    def __init__(self, algorithms: tuple[str, ...]) -> None:
        self.algorithms = algorithms
        self._values: dict[int, tuple[int, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def running(self) -> checksums.Running:
        """Checksums to feed one read of a part, piece by piece."""
        return checksums.Running(self.algorithms)

    def record(self, number: int, length: int, running: checksums.Running) -> dict[str, str]:
        """Keep part `number`'s checksums (fed all its `length` bytes); return them."""
        sums = running.b64()
        with self._lock:
            self._values[number] = (length, sums)
        return sums

    def of(self, algorithm: str, count: int) -> list[tuple[str, int]]:
        """(checksum, size) of parts 1..count, in part order."""
        with self._lock:
            return [
                (self._values[n][1][algorithm], self._values[n][0]) for n in range(1, count + 1)
            ]


class _Release:
    """Gives back a part's memory, its buffer and its window slot exactly once."""

    def __init__(
        self, budget: ByteBudget, taken: int, window: threading.Semaphore, size: int
    ) -> None:
        self._budget, self._taken, self._window = budget, taken, window
        self._size = size
        self._buffer: bytearray | None = None  # taken when first read into (a relay needs none)
        self._done = False
        self._lock = threading.Lock()

    @property
    def buffer(self) -> bytearray:
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
        # One endpoint and one account hold both sides: the server copies, no byte comes here.
        self.server_side = settings.server_side_copy and dst.can_copy_from(src)
        # Set once the destination fails to confirm a part's checksum: MD5s from then on.
        self._parts_need_md5 = False
        # Both sides on plain HTTP: parts needing no checksum of ours skip the process.
        self.relays = settings.relay and dst.can_relay_from(src)

    def _pace(self, nbytes: int) -> None:
        if self.bandwidth is not None:
            self.bandwidth.take(nbytes)

    def copy(self, job: Job, attempt: Attempt | None = None) -> JobResult:
        """Copy the job's object; raise an ObjectError subclass when it cannot be done."""
        attempt = attempt or Attempt()
        if self.settings.all_versions:
            return self._copy_history(job, attempt)
        while True:
            try:
                return self._copy_once(job, attempt)
            except SourceChangedError:
                self._restart_on_new_version(job, attempt)

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
            self._check_stop()
            one = dataclasses.replace(
                job, size=version.size, etag=version.etag, version_id=version.version_id
            )
            if job.upload_etag != version.etag:
                one.upload_id = one.part_size = one.upload_etag = None  # another version's
            result = self._copy_once(one, attempt)
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
        if self.server_side:
            return self._copy_on_server(job, plan, attempt)
        if plan.multipart:
            return self._copy_multipart(job, plan, attempt)
        if job.upload_id:
            # Opened by an earlier run under other settings: its parts are never used now.
            self._abort(job, job.upload_id)
        return self._copy_single(job, plan, attempt)

    def _plan(self, job: Job) -> Plan:
        """Pick the path and the proof for this object.

        A single PUT decides its proof from the GET's headers (no extra request); a multipart
        copy starts with a pinned HEAD, which tells whether the ETag can be trusted as an MD5
        (not under KMS or customer-key encryption), which checksum the source carries, and
        the properties the upload is created with.
        """
        if job.size == 0:
            return Plan(multipart=False)
        part_size = self._own_part_size(job)
        # An object that fits in one part gains nothing from an upload of one part (there is
        # nothing to resume): one PUT moves it with fewer requests, and a source whose ETag is
        # its MD5 is then proven by Content-MD5 alone, with no hashing here.
        multipart = job.size > self.settings.resumable_threshold and job.size > part_size
        if not self.src.capabilities.content_etag:
            return Plan(multipart=multipart, part_size=part_size)
        count = multipart_parts(job.etag)
        if count is None and not multipart:
            return Plan(multipart=False)
        details = self.src.details(job.src_key, job.etag, version_id=job.version_id)
        if details.version_id and not job.version_id:
            # Every later read asks for this version: an overwrite of the key during the copy
            # then changes nothing in it (the pinned ETag alone would restart the copy).
            job.version_id = details.version_id
        props = details.properties
        common = {"details": details, "write_algorithm": self._write_algorithm(props.checksum)}
        own = {"multipart": multipart, "part_size": part_size, **common}
        proof = props.checksum
        if count is not None and not props.encrypted:
            layout = self._source_layout(job, count)
            if isinstance(layout, int):
                plan = Plan(multipart=True, part_size=layout, source_layout=True, **common)
                return self._checksum_guarded(plan)
            reason = layout
        elif is_md5_etag(job.etag) and not props.encrypted:
            if (
                proof is not None
                and proof.parts is None
                and proof.algorithm in checksums.CRC_ALGORITHMS
            ):
                # The source's own CRC of all its bytes proves the copy as its MD5 would; it
                # is combined from the parts' CRCs, computed as the bytes arrive, where the
                # MD5 would be hashed here in order at a small fraction of that speed.
                return self._checksum_guarded(Plan(proof=proof, **own))
            return self._checksum_guarded(Plan(whole_md5=True, **own))
        else:
            reason = "the source ETag is not an MD5 (encrypted or provider-specific)"
        if proof is not None and proof.parts is None:
            # Any part boundaries reproduce it; a CRC proof needs no MD5 of the parts either.
            return self._checksum_guarded(Plan(proof=proof, **own))
        if proof is not None and proof.parts is not None:
            layout = self._source_layout(job, proof.parts)
            if isinstance(layout, int):
                return Plan(multipart=True, part_size=layout, proof=proof, **common)
            reason = f"{reason}; its composite {proof.algorithm} checksum cannot be used: {layout}"
        return Plan(unverified=reason, **own)

    def _source_layout(self, job: Job, count: int) -> int | str:
        """The source's regular part size (same boundaries reproduce its fingerprints), or
        why its layout cannot be reproduced."""
        details = self.src.details(job.src_key, job.etag, part_one=True, version_id=job.version_id)
        size, n = details.part_size, details.parts_count
        if size is None or n is None:
            return "the source is a multipart object whose part layout the store hides"
        if n == count and part_count(job.size, size) == n and (size >= MIN_PART_SIZE or n == 1):
            return size
        return "the source's part layout cannot be reproduced (irregular or small parts)"

    def _checksum_guarded(self, plan: Plan) -> Plan:
        """Parts that need no MD5 of ours travel under a CRC the destination checks and
        confirms instead (about 30 times cheaper), where it takes checksums:
        - a single-part source copied in parts is hashed once, in order, to prove its MD5; a
          second MD5 per part (Content-MD5) would double that cost;
        - a multipart source copied with its own part boundaries is proven by the MD5s of
          its parts, which the destination computes itself as their ETags: once it confirms
          it received the very bytes read, its ETags must reproduce the source's."""
        if not plan.multipart or self._parts_need_md5:
            return plan
        if plan.source_layout and self.dst_encrypts:
            return plan  # the destination's ETags are no MD5s: ours prove the parts
        relayable = plan.proof is None and plan.write_algorithm is None
        if plan.source_layout and self.relays and relayable:
            # Nothing to compute on the bytes: they need not enter this process.
            return dataclasses.replace(plan, relay=True)
        algorithm = plan.write_algorithm
        if algorithm is None and self.dst.capabilities.checksums == "auto":
            algorithm = "CRC32C"
        if algorithm not in checksums.CRC_ALGORITHMS:
            return plan
        return dataclasses.replace(plan, write_algorithm=algorithm, checksum_parts=True)

    def _write_algorithm(self, source: Checksum | None) -> str | None:
        """The additional checksum writes carry: the destination's configured one, else the
        source's own (so the copy has the same kind of checksum), else none."""
        policy = self.dst.capabilities.checksums
        if policy == "MD5":
            return None
        if policy == "auto":
            return source.algorithm if source is not None else None
        return policy

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
                opened = self._open_relayed(job)
                if opened is not None:
                    body, properties = opened
                    with body:
                        data = body if self._relayable(properties) else body.read()
                        dst_etag, verified, how = self._put_verified(
                            job, data, properties, paced=True
                        )
                else:
                    data, properties = self.src.read_object(
                        job.src_key, job.size, etag=job.etag, version_id=job.version_id
                    )
                    dst_etag, verified, how = self._put_verified(job, data, properties)
            self.stats.sent(job.size)
            attempt.progressed += job.size
            if not self.src.capabilities.content_etag:
                verified, how = True, "local-read"
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

    def _open_relayed(self, job: Job) -> tuple[Relayed, ObjectProperties] | None:
        """The source's reply held open to be relayed into the PUT, where that may pay: both
        sides on plain HTTP, an object large enough that a copy through memory costs more
        than the pipe, and a source ETag that can be its MD5 (checked again on its reply)."""
        if not (self.relays and job.size >= RELAY_MIN and is_md5_etag(job.etag)):
            return None
        if self.dst_encrypts or self.dst.capabilities.checksums not in ("auto", "MD5"):
            return None  # a checksum of ours goes with every write, or the ETag proves nothing
        # Paced before the reply is opened: its body must not wait on the socket meanwhile.
        self._pace(job.size)
        return self.src.open_object(job.src_key, job.size, etag=job.etag, version_id=job.version_id)

    def _relayable(self, properties: ObjectProperties) -> bool:
        """Whether, as its reply shows the source, the PUT can take the bytes unseen: the
        source's ETag is its MD5 (not encrypted), which goes as Content-MD5 (the destination
        checks the bytes against it and its ETag repeats it), and no checksum of ours is
        wanted (the source carries none to pass on)."""
        return not properties.encrypted and self._write_algorithm(properties.checksum) is None

    def _put_verified(
        self, job: Job, data: Bytes | Relayed, properties: ObjectProperties, paced: bool = False
    ) -> tuple[str, bool, str]:
        """PUT the bytes so that the copy is proven equal to the source; return the
        destination's ETag and the verdict (verified, method or reason).

        When the source's ETag is its MD5, that very digest goes out as Content-MD5: the
        destination then checks the bytes against the source's own fingerprint, and a read or
        a write corrupted on the way is refused, with no hashing here. Where the destination
        reports an ETag that is not an MD5 (so neither check could be seen), or the source has
        no MD5, the bytes are hashed here. A source proven by its additional checksum has it
        recomputed here, and sent on when the destination takes that algorithm.
        """
        source_md5 = job.etag if is_md5_etag(job.etag) and not properties.encrypted else None
        md5_hex = source_md5 or hashlib.md5(data).hexdigest()
        verdict: tuple[bool, str] = (True, "source-md5")
        proof = properties.checksum
        if job.size == 0:
            pass
        elif source_md5 is None and proof is not None and proof.parts in (None, 1):
            ours = checksums.checksum_b64(proof.algorithm, data)
            if proof.parts == 1:
                ours = checksums.composite(proof.algorithm, [ours]).value
            if ours != proof.value:
                raise VerificationError(
                    f"{self.src.describe(job.src_key)}: the bytes read have {proof.algorithm} "
                    f"{ours}, the source's is {proof.value}"
                )
            verdict = (True, f"source-{proof.algorithm.lower()}")
        elif source_md5 is None:
            verdict = (False, "the source ETag is not an MD5 and it carries no usable checksum")
        algorithm = self._write_algorithm(proof) if job.size else None
        checksum = None
        if algorithm is not None:
            full = proof is not None and proof.algorithm == algorithm and proof.parts is None
            value = proof.value if full else checksums.checksum_b64(algorithm, data)
            checksum = Checksum(algorithm, value)
        if not paced:
            self._pace(len(data))
        dst_etag = self.dst.put_object(
            job.dst_key,
            data,
            md5_b64=base64.b64encode(bytes.fromhex(md5_hex)).decode(),
            storage_class=self.settings.storage_class,
            properties=properties,
            tags=self._tags(job, properties),
            checksum=checksum,
        )
        if is_md5_etag(dst_etag) and not self.dst_encrypts:
            if dst_etag != md5_hex:
                self.dst.delete_object(job.dst_key)
                raise VerificationError(
                    f"{self.dst.describe(job.dst_key)}: the destination reports ETag "
                    f"{dst_etag}, the source's MD5 is {md5_hex}"
                )
        elif not isinstance(data, Bytes):
            # Relayed: only the destination's ETag could have shown what it received.
            self.relays = False
            self.dst.delete_object(job.dst_key)
            raise TransientError(
                f"{self.dst.describe(job.dst_key)}: the destination's ETag {dst_etag!r} is not "
                "an MD5, so a relayed object cannot be proven; objects go through memory now"
            )
        elif source_md5 is not None and hashlib.md5(data).hexdigest() != source_md5:
            self.dst.delete_object(job.dst_key)
            raise VerificationError(
                f"{self.src.describe(job.src_key)}: the bytes read do not have the source's "
                f"MD5 {source_md5}"
            )
        return dst_etag, *verdict

    @property
    def dst_encrypts(self) -> bool:
        """Writes are KMS-encrypted: the destination's ETags are not MD5s of the bytes."""
        return not self.dst.capabilities.write_etags_md5

    # -- on the server ----------------------------------------------------------------------

    def _copy_on_server(self, job: Job, plan: Plan, attempt: Attempt) -> JobResult:
        """Copy with CopyObject, or part by part with UploadPartCopy where the source's own
        part layout keeps its ETag (and the copy resumable) or the object is over 5 GiB."""
        plan = dataclasses.replace(plan, write_algorithm=None)
        if plan.source_layout or job.size > MAX_PART_SIZE:
            return self._copy_parts_on_server(job, plan, attempt)

        def once() -> JobResult:
            self._check_stop()
            dst_etag = self.dst.copy_object(
                self.src,
                job.src_key,
                job.dst_key,
                etag=job.etag,
                version_id=job.version_id,
                storage_class=self.settings.storage_class,
                copy_tags=self.settings.copy_tags,
            )
            verified, how = self._check_server_copy(job, dst_etag)
            self.stats.sent(job.size)
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
            attempts=self.settings.part_attempts,
            what=f"server-side copy of {job.src_key!r}",
            should_stop=self.stop.is_set,
        )

    def _check_server_copy(self, job: Job, dst_etag: str) -> tuple[bool, str]:
        """A copy whose ETag equals the source's MD5 is proven; a different one is wrong only
        when the source's ETag really is its MD5 (not under KMS or a customer key)."""
        if job.etag and dst_etag == job.etag and is_md5_etag(dst_etag):
            return True, "source-md5"
        if is_md5_etag(job.etag) and is_md5_etag(dst_etag) and not self.dst_encrypts:
            if not self.src.details(
                job.src_key, job.etag, version_id=job.version_id
            ).properties.encrypted:
                self.dst.delete_object(job.dst_key)
                raise VerificationError(
                    f"{self.dst.describe(job.dst_key)}: the server's copy has ETag {dst_etag}, "
                    f"the source's MD5 is {job.etag}"
                )
        head = self.dst.head(job.dst_key)
        if head is None or head.size != job.size:
            found = "missing" if head is None else f"{head.size} bytes"
            raise VerificationError(
                f"{self.dst.describe(job.dst_key)}: after the server's copy the object is "
                f"{found}, the source has {job.size}"
            )
        return False, "the source's ETag is not an MD5 to compare the copy with"

    def _copy_parts_on_server(self, job: Job, plan: Plan, attempt: Attempt) -> JobResult:
        # Parts the ledger never recorded are copied again: the server copies them cheaply.
        reusable, _, upload_id = self._resume_or_start(job, plan)
        count = part_count(job.size, plan.part_size)
        reused = sum(p.size for p in reusable.values())
        if reusable:
            self.stats.reused(reused)
            attempt.progressed += reused
            attempt.reused += reused
        todo = [n for n in range(1, count + 1) if n not in reusable]
        futures = [
            self.part_pool.submit(self._copy_part_on_server, job, upload_id, plan, n, attempt)
            for n in todo
        ]
        parts = {**reusable, **_parts_done(futures)}
        ordered = [parts[n] for n in range(1, count + 1)]
        if plan.source_layout and not all(is_md5_etag(p.etag) for p in ordered):
            verified, how = False, "the part ETags the server gave are not MD5s"
        elif plan.source_layout:
            ours = multipart_etag([bytes.fromhex(p.etag) for p in ordered])
            if ours != job.etag:
                self._abort(job, upload_id)
                raise VerificationError(
                    f"{self.src.describe(job.src_key)}: the parts copied give ETag {ours}, the "
                    f"source's is {job.etag}"
                )
            verified, how = True, "source-etag"
        else:
            verified, how = False, "the parts copied do not reproduce the source's ETag"
        dst_etag = self._complete(job, plan, upload_id, ordered)
        self._check_after_complete(job, ordered, dst_etag)
        return JobResult(
            bytes_sent=job.size - reused,
            bytes_reused=reused,
            verified=verified,
            verify=how,
            dst_etag=dst_etag,
            notes=(*attempt.notes, "copied on the server"),
        )

    def _copy_part_on_server(
        self, job: Job, upload_id: str, plan: Plan, number: int, attempt: Attempt
    ) -> PartInfo:
        start, length = part_range(number, job.size, plan.part_size)

        def once() -> PartInfo:
            self._check_stop()
            etag = self.dst.upload_part_copy(
                self.src,
                job.src_key,
                job.dst_key,
                upload_id,
                number,
                start,
                length,
                etag=job.etag,
                version_id=job.version_id,
            )
            self.ledger.record_part(job, upload_id, number, length, etag)
            self.stats.sent(length)
            attempt.progressed += length
            return PartInfo(number, length, etag)

        return with_retries(
            once,
            attempts=self.settings.part_attempts,
            what=f"server-side copy of part {number} of {job.src_key!r}",
            should_stop=self.stop.is_set,
            give_up_on=(UploadMissingError,),
        )

    # -- multipart --------------------------------------------------------------------------

    def _copy_multipart(self, job: Job, plan: Plan, attempt: Attempt) -> JobResult:
        reusable, unrecorded, upload_id = self._resume_or_start(job, plan)
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
        hasher = self._ordered_hasher(plan)
        sums = PartSums(plan.part_algorithms) if plan.part_algorithms else None
        # Reused parts are read again (not sent) only when a proof or a checksum needs them.
        reread = hasher is not None or sums is not None
        numbers = [n for n in range(1, count + 1) if reread or n not in reusable]
        # A part the destination holds but the ledger never heard of (the process died before
        # recording it) is read again and kept when its bytes have the MD5 the store lists.
        expected = {n: p.etag for n, p in {**unrecorded, **reusable}.items()}
        try:
            done = self._run_parts(
                job, upload_id, plan, numbers, expected, hasher, sums, attempt, set(unrecorded)
            )
        finally:
            if hasher is not None:
                hasher.discard()
        parts = {**reusable, **done}
        ordered = [parts[n] for n in range(1, count + 1)]
        verified, how = self._check_before_complete(
            job, plan, upload_id, ordered, hasher, sums, attempt
        )
        dst_etag = self._complete(job, plan, upload_id, ordered)
        self._check_after_complete(job, ordered, dst_etag)
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

    @staticmethod
    def _ordered_hasher(plan: Plan) -> OrderedHash | None:
        if plan.whole_md5:
            return OrderedHash()
        if plan.ordered_proof and plan.proof is not None:
            return OrderedHash(plan.proof.algorithm.lower())
        return None

    def _resume_or_start(
        self, job: Job, plan: Plan
    ) -> tuple[dict[int, PartInfo], dict[int, PartInfo], str]:
        """Reuse the job's open upload where it is still valid, else start a new one.

        Returns the parts to reuse (listed and recorded), the parts listed with the right size
        and an MD5 ETag that the ledger has no record of (to check against the source), and
        the upload id."""
        if job.upload_id:
            stale = job.upload_etag != job.etag or job.part_size != plan.part_size
            if not stale:
                if plan.details is None:
                    # A pinned HEAD first: a source changed since the upload began (and not
                    # yet re-planned) must not get any of its old parts reused.
                    self.src.details(job.src_key, job.etag, version_id=job.version_id)
                listed = self.dst.list_parts(job.dst_key, job.upload_id)
                if listed is not None and plan.relay and any(p.checksum for p in listed):
                    # Begun with a checksum on every part (by a run that read the bytes): a
                    # relayed part, which carries none, would be refused.
                    log.info("%s: the open upload wants part checksums; starting over", job.dst_key)
                    self.dst.abort_upload(job.dst_key, job.upload_id)
                elif listed is not None:
                    return (*self._valid_parts(job, listed, plan.part_size), job.upload_id)
            else:
                # Parts of another source version, or cut at other boundaries: never mix them.
                log.info(
                    "%s: the open upload no longer fits the source; starting over", job.dst_key
                )
                self.dst.abort_upload(job.dst_key, job.upload_id)
        # A part-1 HEAD may not carry the object's metadata: the plain one does.
        details = plan.details or self.src.details(job.src_key, job.etag, version_id=job.version_id)
        upload_id = self.dst.create_upload(
            job.dst_key,
            storage_class=self.settings.storage_class,
            properties=details.properties,
            tags=self._tags(job, details.properties),
            checksum_algorithm=plan.write_algorithm,
        )
        self.ledger.set_upload(job, upload_id, plan.part_size, job.etag)
        return {}, {}, upload_id

    def _tags(self, job: Job, properties: ObjectProperties) -> tuple[tuple[str, str], ...]:
        """The source's tags, fetched only when the object has some (S3 sends no tag count
        for an object without tags, so no request is spent on those)."""
        if not self.settings.copy_tags or not properties.tag_count:
            return ()
        return self.src.get_tags(job.src_key)

    def _valid_parts(
        self, job: Job, listed: list[PartInfo], part_size: int
    ) -> tuple[dict[int, PartInfo], dict[int, PartInfo]]:
        """Parts the destination lists AND the ledger recorded, with the expected size; and
        the listed parts of the expected size that the ledger does not know, whose ETags are
        MD5s to check the source's bytes against."""
        assert job.upload_id is not None
        recorded = self.ledger.recorded_parts(job, job.upload_id)
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
                and not self.dst_encrypts
                and self.dst.capabilities.content_etag
            ):
                unrecorded[part.number] = part
        return valid, unrecorded

    def _run_parts(
        self,
        job: Job,
        upload_id: str,
        plan: Plan,
        numbers: list[int],
        expected: dict[int, str],
        hasher: OrderedHash | None,
        sums: PartSums | None,
        attempt: Attempt,
        unrecorded: set[int] | None = None,
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
            # Every part takes a buffer of the full part size (the last one too), so buffers
            # are reused from part to part and object to object.
            taken = self.budget.acquire(plan.part_size)
            future = self.part_pool.submit(
                self._part_task,
                job,
                upload_id,
                plan,
                number,
                expected.get(number),
                hasher,
                sums,
                _Release(self.budget, taken, window, plan.part_size),
                cancel,
                attempt,
                unrecorded is not None and number in unrecorded,
            )
            future.add_done_callback(lambda f: f.exception() is not None and cancel.set())
            futures.append(future)
        done = _parts_done(futures)
        self._check_stop()
        return done

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
        plan: Plan,
        number: int,
        expected_etag: str | None,
        hasher: OrderedHash | None,
        sums: PartSums | None,
        release: _Release,
        cancel: threading.Event,
        attempt: Attempt,
        unrecorded: bool = False,
    ) -> PartInfo:
        start, length = part_range(number, job.size, plan.part_size)
        algorithm = plan.write_algorithm

        def once() -> tuple[PartInfo, Bytes]:
            if cancel.is_set():
                raise Interrupted("another part of this object failed")
            self._check_stop()
            if plan.relay and self.relays and expected_etag is None:
                relayed = self._relay_part(job, upload_id, number, start, length)
                if relayed is not None:
                    self.ledger.record_part(job, upload_id, number, length, relayed)
                    self.stats.sent(length)
                    attempt.progressed += length
                    return PartInfo(number, length, relayed, None), b""
            # The part's checksums are computed piece by piece as the bytes arrive.
            running = sums.running() if sums is not None else None
            data = self.src.get_range(
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
            if plan.checksum_parts and guard and expected_etag is None:
                etag = self._upload_checksummed_part(job, upload_id, number, data, guard)
            if etag is None:
                md5 = hashlib.md5(data).digest()
                if expected_etag is not None and md5.hex() == expected_etag:
                    # A reused part is valid; one the ledger did not know is recorded now.
                    if unrecorded:
                        self.ledger.record_part(job, upload_id, number, length, expected_etag)
                        self.stats.reused(length)
                        attempt.progressed += length
                        attempt.reused += length
                    return PartInfo(number, length, expected_etag, checksum), data
                etag = self._upload_md5_part(job, upload_id, number, data, md5, guard)
            self.ledger.record_part(job, upload_id, number, length, etag)
            self.stats.sent(length)
            attempt.progressed += length
            return PartInfo(number, length, etag, checksum), data

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

    def _relay_part(
        self, job: Job, upload_id: str, number: int, start: int, length: int
    ) -> str | None:
        """Relay a part from the source to the destination; its ETag, or None when the source's
        reply cannot be relayed (the part is then read as any other)."""
        self._pace(length)
        body = self.src.open_range(
            job.src_key, start, length, etag=job.etag, version_id=job.version_id
        )
        if body is None:
            return None
        with body:
            etag = self.dst.upload_part(job.dst_key, upload_id, number, body, md5_b64=None)
        if not is_md5_etag(etag):
            self.relays = False
            raise TransientError(
                f"part {number} of {self.dst.describe(job.dst_key)}: the destination's ETag "
                f"{etag!r} is not an MD5, so it cannot prove a relayed part; parts go through "
                "memory now"
            )
        return etag

    def _upload_md5_part(
        self,
        job: Job,
        upload_id: str,
        number: int,
        data: Bytes,
        md5: bytes,
        guard: Checksum | None,
    ) -> str:
        """Send a part with its Content-MD5 (and checksum, if any); check the ETag returned."""
        self._pace(len(data))
        etag = self.dst.upload_part(
            job.dst_key,
            upload_id,
            number,
            data,
            md5_b64=base64.b64encode(md5).decode(),
            checksum=guard,
        )
        if is_md5_etag(etag) and not self.dst_encrypts and etag != md5.hex():
            raise VerificationError(
                f"part {number} of {self.dst.describe(job.dst_key)}: the destination "
                f"reports ETag {etag}, the bytes sent have MD5 {md5.hex()}"
            )
        return etag

    def _upload_checksummed_part(
        self, job: Job, upload_id: str, number: int, data: Bytes, guard: Checksum
    ) -> str | None:
        """Send a part guarded by its CRC alone; None when the destination did not confirm the
        checksum (it is then sent with an MD5, as every later part is)."""
        if self._parts_need_md5:
            return None
        self._pace(len(data))
        try:
            return self.dst.upload_part(
                job.dst_key, upload_id, number, data, md5_b64=None, checksum=guard
            )
        except ChecksumNotConfirmedError as exc:
            if not self._parts_need_md5:
                self._parts_need_md5 = True
                log.info("%s; parts are sent with Content-MD5 from now on", exc)
            return None

    def _check_before_complete(
        self,
        job: Job,
        plan: Plan,
        upload_id: str,
        parts: list[PartInfo],
        hasher: OrderedHash | None,
        sums: PartSums | None,
        attempt: Attempt,
    ) -> tuple[bool, str]:
        """Prove the parts against the source's fingerprint before they become an object.

        On a mismatch every part is read again once, parts whose bytes differ from what was
        sent are sent again, and the proof is repeated; a second mismatch fails the attempt.
        """
        if plan.source_layout and not all(is_md5_etag(p.etag) for p in parts):
            return False, "the destination's part ETags are not MD5s"
        if not (plan.source_layout or plan.whole_md5 or plan.proof is not None):
            return self._verdict(plan, "content-md5")
        ours, theirs, method = self._fingerprint(job, plan, parts, hasher, sums)
        if ours != theirs:
            log.warning(
                "%s: the bytes read give %s, the source has %s; re-reading parts",
                job.src_key,
                ours,
                theirs,
            )
            repaired, again = self._repair(job, plan, upload_id, parts, attempt)
            parts[:] = repaired
            ours, theirs, method = self._fingerprint(job, plan, parts, again, sums)
        if ours != theirs:
            self._abort(job, upload_id)
            raise VerificationError(
                f"{self.src.describe(job.src_key)}: the bytes read give {method} {ours}, the "
                f"source's is {theirs}"
            )
        return True, method

    def _fingerprint(
        self,
        job: Job,
        plan: Plan,
        parts: list[PartInfo],
        hasher: OrderedHash | None,
        sums: PartSums | None,
    ) -> tuple[str, str, str]:
        """(what the bytes read give, what the source says, the method's name)."""
        if plan.source_layout:
            ours = multipart_etag([bytes.fromhex(p.etag) for p in parts])
            return ours, job.etag or "", "source-etag"
        if plan.whole_md5:
            assert hasher is not None
            return hasher.hexdigest(), job.etag or "", "source-md5"
        proof = plan.proof
        assert proof is not None
        method = f"source-{proof.algorithm.lower()}"
        if hasher is not None:
            return hasher.b64digest(), proof.value, method
        assert sums is not None
        values = sums.of(proof.algorithm, len(parts))
        if proof.parts is not None:
            return (
                checksums.composite(proof.algorithm, [v for v, _ in values]).value,
                proof.value,
                method,
            )
        return checksums.full_object(proof.algorithm, values).value, proof.value, method

    def _repair(
        self, job: Job, plan: Plan, upload_id: str, parts: list[PartInfo], attempt: Attempt
    ) -> tuple[list[PartInfo], OrderedHash | None]:
        """Read every part again; send again those whose bytes differ from what was sent."""
        hasher = self._ordered_hasher(plan)
        sums = PartSums(plan.part_algorithms) if plan.part_algorithms else None
        expected = {p.number: p.etag for p in parts}
        try:
            fixed = self._run_parts(
                job, upload_id, plan, sorted(expected), expected, hasher, sums, attempt
            )
        except BaseException:
            if hasher is not None:
                hasher.discard()
            raise
        resent = sorted(n for n, p in fixed.items() if p.etag != expected[n])
        if resent:
            attempt.notes.append(f"parts {resent} were read corrupted and sent again")
        return [fixed[p.number] for p in parts], hasher

    def _complete(self, job: Job, plan: Plan, upload_id: str, parts: list[PartInfo]) -> str:
        algorithm = plan.write_algorithm
        try:
            return with_retries(
                lambda: self.dst.complete_upload(
                    job.dst_key, upload_id, parts, algorithm=algorithm
                ),
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
        elif not self.dst_encrypts and all(is_md5_etag(p.etag) for p in parts):
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


def _parts_done(futures: list[Future[PartInfo]]) -> dict[int, PartInfo]:
    """Wait for every part; raise the first real failure (before any part that only stopped
    because another failed)."""
    wait(futures)
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        real = [e for e in errors if not isinstance(e, Interrupted)]
        raise (real or errors)[0]
    return {f.result().number: f.result() for f in futures}


__all__ = [
    "Attempt",
    "Copier",
    "Interrupted",
    "OrderedHash",
    "PartSums",
    "VerificationError",
    "is_md5_etag",
    "multipart_etag",
    "multipart_parts",
]
