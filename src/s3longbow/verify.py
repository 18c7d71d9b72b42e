"""`longbow verify`: compare two sides by streaming both listings; optionally re-read data.

Sizes and content ETags decide where they can: two plain MD5 ETags, or two equal ETags, are a
proof either way. Where they cannot (multipart ETags with other part layouts, encrypted
sources), the additional checksums both sides report decide when they are of one algorithm
and one form (a HEAD each); anything else is unverifiable unless `deep` reads both objects and
compares their MD5s.

A local file is read and hashed in the form of the object it is compared with: its MD5 for a
plain ETag; for a multipart ETag, the MD5s of its parts at the object's part size (a HEAD of
part 1 tells it; where the store hides it, the usual part sizes that give the ETag's part
count are tried, in the same read); for an encrypted object, the additional checksum the
object carries. Two files compare their MD5s.

A missing key is looked up with a HEAD: a store that answers for a name its listing lacks
keeps the object under another name (it cannot store this key), which is said so.

The ignore patterns and the filters leave objects out as they do for `sync`: what they leave
out is neither compared nor reported missing or extra.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from s3longbow import checksums
from s3longbow.config import MiB, Settings
from s3longbow.errors import ObjectError
from s3longbow.model import Checksum, ObjectInfo
from s3longbow.pairs import PairRuntime, open_pairs
from s3longbow.plan.diff import Decision
from s3longbow.plan.filters import Filters
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.planner import plan_pair
from s3longbow.plan.tally import PlanSink
from s3longbow.plan.unstorable import answers_for
from s3longbow.stores.base import ObjectStore
from s3longbow.transfer.proof import is_md5_etag, multipart_etag, multipart_parts
from s3longbow.transfer.sizing import part_count, part_size_for
from s3longbow.verdicts import EMPTIED, RENAMED, UNSTORABLE, kept_without_bytes

_CHUNK = 8 * 1024 * 1024
MAX_LISTED = 100_000  # keys kept per category for the report; counts are always complete
# Files hashed at once: reading is the limit, and each read holds a piece in memory.
_FILES_AT_ONCE = threading.BoundedSemaphore(8)
_FILE_PIECE = 1024 * 1024
# Part sizes (MiB) of the tools that upload most objects: aws-cli and boto3 (8), rclone (5),
# s5cmd (50), and the powers of two others choose.
_USUAL_PART_MIB = (8, 5, 16, 15, 32, 50, 64, 100, 128, 256, 512, 1024)


class Verdict(enum.StrEnum):
    MATCH = "match"
    MISSING = "missing"
    EXTRA = "extra"
    DIFFERENT = "different"
    UNVERIFIABLE = "unverifiable"


@dataclass
class VerifyReport:
    """Counts per verdict, and the keys that did not match (with why)."""

    counts: dict[str, int] = field(default_factory=lambda: {v.value: 0 for v in Verdict})
    keys: dict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: {v.value: [] for v in Verdict if v is not Verdict.MATCH}
    )
    deep: bool = False
    ignored: int = 0
    filtered: int = 0  # source objects the filters left out (not compared)
    elapsed: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, verdict: Verdict, key: str, reason: str = "") -> None:
        with self._lock:
            self.counts[verdict.value] += 1
            if verdict is not Verdict.MATCH and len(self.keys[verdict.value]) < MAX_LISTED:
                self.keys[verdict.value].append((key, reason))

    @property
    def ok(self) -> bool:
        return all(n == 0 for v, n in self.counts.items() if v != Verdict.MATCH.value)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "deep": self.deep,
            "counts": self.counts,
            "ignored": self.ignored,
            "filtered": self.filtered,
            "elapsed_seconds": round(self.elapsed, 3),
            **{
                verdict: [{"key": k, "reason": r} for k, r in items]
                for verdict, items in self.keys.items()
            },
        }


def compare(
    src: ObjectInfo, dst: ObjectInfo, src_store: ObjectStore, dst_store: ObjectStore
) -> tuple[Verdict, str]:
    """Judge one pair of objects from their listings alone."""
    if kept_without_bytes(src, dst):
        return Verdict.DIFFERENT, f"{UNSTORABLE}: " + EMPTIED.format(found=dst.size, size=src.size)
    if src.size != dst.size:
        return Verdict.DIFFERENT, f"size {src.size} at source, {dst.size} at destination"
    if not (src_store.capabilities.content_etag and dst_store.capabilities.content_etag):
        return Verdict.UNVERIFIABLE, "a local file has no content fingerprint"
    if src.etag and src.etag == dst.etag:
        return Verdict.MATCH, ""
    if is_md5_etag(src.etag) and is_md5_etag(dst.etag):
        return Verdict.DIFFERENT, f"MD5 {src.etag} at source, {dst.etag} at destination"
    return Verdict.UNVERIFIABLE, f"ETags {src.etag} and {dst.etag} are not comparable"


def closer_look(
    src: ObjectInfo, dst: ObjectInfo, src_store: ObjectStore, dst_store: ObjectStore
) -> tuple[Verdict, str] | None:
    """Judge a pair the listings could not (or judged by ETags) from a HEAD of each side:
    the additional checksums decide where they are of one algorithm and one form; ETags of
    an encrypted object prove nothing either way. None: only the data can tell."""
    if "MD5" in (src_store.capabilities.checksums, dst_store.capabilities.checksums):
        return None
    a_props = src_store.details(src.key, src.etag).properties
    b_props = dst_store.details(dst.key, dst.etag).properties
    a, b = a_props.checksum, b_props.checksum
    if a is not None and b is not None and (a.algorithm, a.parts) == (b.algorithm, b.parts):
        if a.value == b.value:
            return Verdict.MATCH, ""
        return Verdict.DIFFERENT, f"checksum {a} at source, {b} at destination"
    if a_props.encrypted or b_props.encrypted:
        return Verdict.UNVERIFIABLE, "encrypted with KMS or a customer key: its ETag is no MD5"
    return None


def content_md5(store: ObjectStore, obj: ObjectInfo) -> str:
    """MD5 of an object's bytes, read in pinned ranges."""
    digest = hashlib.md5()
    for start in range(0, obj.size, _CHUNK):
        digest.update(store.get_range(obj.key, start, min(_CHUNK, obj.size - start), etag=obj.etag))
    return digest.hexdigest()


def part_sizes_for(size: int, parts: int, configured: int) -> list[int]:
    """The part sizes that cut `size` bytes into `parts` parts, most likely first: this
    tool's own (at the configured part size), the usual ones, and the smallest whole MiB."""
    smallest = -(-size // parts)
    candidates = [part_size_for(size, configured), *(n * MiB for n in _USUAL_PART_MIB)]
    candidates.append(-(-smallest // MiB) * MiB)
    fitting = [p for p in candidates if p >= smallest and part_count(size, p) == parts]
    return list(dict.fromkeys(fitting))


@dataclass
class _FileHashes:
    """One read of a file: its MD5, the multipart ETag its bytes make at each part size,
    and its additional checksums."""

    md5: str
    etags: dict[int, str]
    sums: dict[str, str]


class _PartHashes:
    """The MD5s of a file's parts at one part size, fed its bytes in order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.digests: list[bytes] = []
        self.part = hashlib.md5()
        self.filled = 0

    def update(self, view: memoryview) -> None:
        while view:
            take = min(self.size - self.filled, len(view))
            self.part.update(view[:take])
            view, self.filled = view[take:], self.filled + take
            if self.filled == self.size:
                self.digests.append(self.part.digest())
                self.part, self.filled = hashlib.md5(), 0

    def etag(self) -> str:
        """The multipart ETag these parts make (a last, shorter part included)."""
        last = [self.part.digest()] if self.filled or not self.digests else []
        return multipart_etag(self.digests + last)


def hash_file(
    store: ObjectStore,
    obj: ObjectInfo,
    part_sizes: Iterable[int] = (),
    algorithms: Iterable[str] = (),
) -> _FileHashes:
    """Read a file once (pinned to its listed version) and hash it every way asked."""
    whole = hashlib.md5()
    running = checksums.Running(list(algorithms))
    cuts = [_PartHashes(size) for size in part_sizes]
    with _FILES_AT_ONCE:
        for start in range(0, obj.size, _FILE_PIECE):
            length = min(_FILE_PIECE, obj.size - start)
            piece = memoryview(store.get_range(obj.key, start, length, etag=obj.etag))
            whole.update(piece)
            running.update(piece)
            for cut in cuts:
                cut.update(piece)
    etags = {cut.size: cut.etag() for cut in cuts}
    return _FileHashes(whole.hexdigest(), etags, running.b64())


def file_proof(
    src: ObjectInfo,
    dst: ObjectInfo,
    src_store: ObjectStore,
    dst_store: ObjectStore,
    part_size: int,
) -> tuple[Verdict, str]:
    """Judge a pair where a side is a local file (a store whose ETags do not describe
    content) by hashing the file in the other side's form."""
    if not src_store.capabilities.content_etag and not dst_store.capabilities.content_etag:
        a, b = hash_file(src_store, src).md5, hash_file(dst_store, dst).md5
        if a == b:
            return Verdict.MATCH, ""
        return Verdict.DIFFERENT, f"MD5 {a} at source, {b} at destination"
    if src_store.capabilities.content_etag:
        store, obj, file_store, file = src_store, src, dst_store, dst
    else:
        store, obj, file_store, file = dst_store, dst, src_store, src
    if is_md5_etag(obj.etag):
        md5 = hash_file(file_store, file).md5
        if md5 == obj.etag:
            return Verdict.MATCH, ""
        # Only an object encrypted with KMS or a customer key has an ETag like an MD5 that
        # is none: its HEAD tells, before the file is called different.
        props = store.details(obj.key, obj.etag).properties
        if props.encrypted:
            why = "the object is encrypted with KMS or a customer key: its ETag is no MD5"
            return _by_checksum(props.checksum, file_store, file, why)
        return Verdict.DIFFERENT, f"the file's MD5 is {md5}, the object's ETag {obj.etag}"
    parts = multipart_parts(obj.etag)
    layout = store.details(obj.key, obj.etag, part_one=parts is not None)
    props = layout.properties
    if props.encrypted:
        why = "the object is encrypted with KMS or a customer key: its ETag is no MD5"
        return _by_checksum(props.checksum, file_store, file, why)
    if parts is None:
        why = f"the object's ETag {obj.etag} describes no content"
        return _by_checksum(props.checksum, file_store, file, why)
    # The part size a HEAD of part 1 told, where it makes the ETag's part count.
    exact = layout.part_size if layout.parts_count == parts else None
    if exact and part_count(obj.size, exact) != parts:
        exact = None
    sizes = [exact] if exact else part_sizes_for(obj.size, parts, part_size)
    etags = hash_file(file_store, file, sizes).etags
    if obj.etag in etags.values():
        return Verdict.MATCH, ""
    if exact:
        return Verdict.DIFFERENT, (
            f"the file's parts of {exact} bytes give ETag {etags[exact]}, the object's is "
            f"{obj.etag}"
        )
    return Verdict.UNVERIFIABLE, (
        f"no usual part size reproduces the multipart ETag {obj.etag} (the store does not "
        "tell the object's part size)"
    )


def _by_checksum(
    checksum: Checksum | None, store: ObjectStore, file: ObjectInfo, why: str
) -> tuple[Verdict, str]:
    """Judge a file against an object's additional checksum of all its bytes, where its ETag
    cannot tell (`why`); a composite checksum would need the object's part layout."""
    if checksum is None or checksum.parts is not None:
        return Verdict.UNVERIFIABLE, f"{why}, and it has no checksum of all its bytes"
    ours = hash_file(store, file, algorithms=[checksum.algorithm]).sums[checksum.algorithm]
    if ours == checksum.value:
        return Verdict.MATCH, ""
    return (
        Verdict.DIFFERENT,
        f"the file's {checksum.algorithm} is {ours}, the object's {checksum.value}",
    )


class _Judging(PlanSink):
    """Hands every merged source object (missing, or present in any state) to `judge`, and
    reports each destination object no source object maps to as extra. The planner calls it
    from one listing thread at a time."""

    wants_extras = True
    wants_same = True

    def __init__(self, judge: Callable[[Decision], None], report: VerifyReport) -> None:
        self.judge = judge
        self.report = report

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        # Missing, or present with another size: sync would copy either.
        for decision in batch:
            self.judge(decision)

    def same(self, pair: PairRuntime, batch: list[Decision]) -> None:
        for decision in batch:
            self.judge(decision)

    def extras(self, pair: PairRuntime, batch: list[ObjectInfo]) -> None:
        for obj in batch:
            self.report.add(Verdict.EXTRA, obj.key, "not at the source")


def verify(settings: Settings, *, deep: bool = False) -> VerifyReport:
    """Compare every pair's source and destination; nothing is written anywhere."""
    started = time.monotonic()
    report = VerifyReport(deep=deep)
    ignore = IgnoreRules(settings.ignore_patterns)
    filters = Filters(settings.filters, now=time.time())
    with open_pairs(settings, read_only=True) as pairs:
        with ThreadPoolExecutor(settings.transfer.workers) as pool:
            for pair in pairs:
                _verify_pair(
                    pair,
                    ignore,
                    filters,
                    report,
                    pool,
                    deep=deep,
                    part_size=settings.transfer.part_size,
                    listing_threads=settings.transfer.listing_threads,
                )
    report.elapsed = time.monotonic() - started
    return report


def _verify_pair(
    pair: PairRuntime,
    ignore: IgnoreRules,
    filters: Filters,
    report: VerifyReport,
    pool: ThreadPoolExecutor,
    *,
    deep: bool,
    part_size: int,
    listing_threads: int,
) -> None:
    """Both sides listed and merged as sync plans them (by key range on several threads
    where both stores list in byte order), every present pair judged. The source is listed
    even where an inventory report stands for its listing in sync: a check of what is there
    now, not of what the report says."""
    pending: list[Future[None]] = []
    stores = (pair.src_store, pair.dst_store)
    files = not all(store.capabilities.content_etag for store in stores)

    def look_closer(src: ObjectInfo, dst: ObjectInfo, verdict: Verdict, reason: str) -> None:
        judged: tuple[Verdict, str] | None
        try:
            if files:
                judged = file_proof(src, dst, *stores, part_size)
            else:
                judged = closer_look(src, dst, *stores)
        except ObjectError as exc:
            judged = None
            reason = f"{reason}; reading failed: {exc}" if files else reason
        if judged is not None:
            verdict, reason = judged
        if verdict is Verdict.UNVERIFIABLE and deep:
            deep_compare(src, dst, reason)
        else:
            report.add(verdict, src.key, reason)

    def missing(src: ObjectInfo, dst_key: str) -> None:
        reason = f"{dst_key} is missing"
        if answers_for(pair.dst_store, dst_key):
            reason += f"; {UNSTORABLE}: {RENAMED}"
        report.add(Verdict.MISSING, src.key, reason)

    def deep_compare(src: ObjectInfo, dst: ObjectInfo, reason: str) -> None:
        try:
            a = content_md5(pair.src_store, src)
            b = content_md5(pair.dst_store, dst)
        except ObjectError as exc:
            report.add(Verdict.UNVERIFIABLE, src.key, f"{reason}; reading failed: {exc}")
            return
        if a == b:
            report.add(Verdict.MATCH, src.key)
        else:
            report.add(Verdict.DIFFERENT, src.key, f"content MD5 {a} at source, {b} at destination")

    def submit(task: Callable[..., None], *args: object) -> None:
        pending.append(pool.submit(task, *args))
        if len(pending) > 1000:  # keep the queue of lookups bounded
            pending.pop(0).result()

    def judge(decision: Decision) -> None:
        if decision.dst is None:
            # Only keys that are listed with their reason are worth a HEAD.
            if len(report.keys[Verdict.MISSING.value]) + len(pending) < MAX_LISTED:
                submit(missing, decision.src, decision.dst_key)
            else:
                report.add(Verdict.MISSING, decision.src.key, f"{decision.dst_key} is missing")
            return
        verdict, reason = compare(decision.src, decision.dst, pair.src_store, pair.dst_store)
        # Sizes that differ settle it; anything else may be settled by checksums.
        settled = decision.src.size != decision.dst.size or verdict is Verdict.MATCH
        if not settled:
            submit(look_closer, decision.src, decision.dst, verdict, reason)
        else:
            report.add(verdict, decision.src.key, reason)

    counts = plan_pair(
        dataclasses.replace(pair, inventory=None, inventory_store=None),
        ignore,
        _Judging(judge, report),
        listing_threads=listing_threads,
        filters=filters if filters else None,
    )
    report.filtered += counts.filtered
    report.ignored += counts.ignored + counts.unsupported
    for future in pending:
        future.result()
